# Sourced by hack/kube-build.sh and hack/peers-build.sh: builds one Go command of a pinned module.
#   go_build_cmd PREFIX NAME IMPORT-PATH OUT-DIR [EXTRA-LDFLAGS]
# Run from the module's directory. Writes OUT-DIR/NAME (via NAME.tmp, so that a cut build never
# leaves a binary that looks complete) and prints a running package count on stderr.
go_build_cmd() {
  local prefix="$1" name="$2" pkg="$3" out="$4" ldflags="${5:-}" n=0 line status=0
  echo "$prefix: $name ($pkg)" >&2
  # -v names each package as it is compiled: print a running count, not silence.
  CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath" \
    go build -v -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg" 2>&1 | {
    while IFS= read -r line; do
      case "$line" in
        *" "*|*":"*) echo "$line" >&2 ;;              # an error or a note, not a package path
        *)
          n=$((n + 1))
          if [ $((n % 100)) -eq 0 ]; then echo "$prefix:   $name: $n packages compiled" >&2; fi ;;
      esac
    done
    echo "$prefix:   $name: $n packages compiled" >&2
  } || status=$?
  [ "$status" -eq 0 ] && [ -f "$out/$name.tmp" ] || { echo "$prefix: building $name failed" >&2; return 1; }
  mv "$out/$name.tmp" "$out/$name"
}
