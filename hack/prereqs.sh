# Sourced by hack/test.sh and hack/demo.sh: what the real control plane and the node simulator
# need on a fresh machine. Go builds the control plane from e2e/controlplane; the simulated nodes
# run Debian's CNI plugins (installed here when missing) in network namespaces (ip, nsenter,
# root); kubectl is the machine's own.
if ! command -v go >/dev/null 2>&1; then
  echo "go is required (Go 1.26: the control plane is built from Go modules)" >&2
  exit 1
fi
if [ ! -x /usr/lib/cni/bridge ]; then
  echo "== installing Debian's containernetworking-plugins"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null
fi
for tool in ip nsenter kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done
