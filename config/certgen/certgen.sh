#!/bin/sh
# aipam-certgen: the webhook's serving certificate without cert-manager (config/certgen/).
#
# Runs as the one-shot Job aipam-certgen (image aipam/aipam-certgen: openssl and kubectl on
# alpine), in the Pod's namespace, with the ServiceAccount aipam-certgen, which may only get and
# patch the Secret aipam-webhook-tls and the two webhook configurations named aipam-webhook.
#
# 1. Reads the Secret (created empty by the installation). When it holds a certificate for
#    SERVICE.NAMESPACE.svc, signed by its ca.crt, valid for more than RENEW_BEFORE_DAYS, it is
#    kept: a second run changes nothing but the caBundle (idempotent).
# 2. Otherwise makes a new CA and serving certificate (ECDSA P-256; the CA's key is thrown away).
# 3. Patches caBundle into every webhook of both configurations FIRST, with the new CA followed
#    by the previous one, so that replicas still serving the old certificate stay trusted while
#    the kubelet updates the Secret volume (the webhook reloads the files within seconds).
# 4. Patches the Secret (tls.crt, tls.key, ca.crt).
#
# Environment: NAMESPACE (required), SERVICE (aipam-webhook), SECRET (aipam-webhook-tls),
# WEBHOOK_CONFIG (aipam-webhook), DAYS (3650), RENEW_BEFORE_DAYS (90), WAIT_SECONDS (300: how
# long to wait for the Secret and the configurations, which the same `kubectl apply` creates).
# kubectl uses the in-cluster ServiceAccount, or KUBECONFIG when set (the tests).
set -eu

NAMESPACE="${NAMESPACE:?NAMESPACE is required}"
SERVICE="${SERVICE:-aipam-webhook}"
SECRET="${SECRET:-aipam-webhook-tls}"
WEBHOOK_CONFIG="${WEBHOOK_CONFIG:-aipam-webhook}"
DAYS="${DAYS:-3650}"
RENEW_BEFORE_DAYS="${RENEW_BEFORE_DAYS:-90}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"
CN="${SERVICE}.${NAMESPACE}.svc"

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) aipam-certgen: $*"; }
b64() { base64 < "$1" | tr -d '\n'; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# Waits until `kubectl get ARGS...` succeeds.
wait_for() {
  waited=0
  until kubectl get "$@" -o name >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      log "gave up waiting for $*"
      kubectl get "$@" -o name
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

wait_for -n "$NAMESPACE" secret "$SECRET"
wait_for mutatingwebhookconfiguration "$WEBHOOK_CONFIG"
wait_for validatingwebhookconfiguration "$WEBHOOK_CONFIG"

# 1. What the Secret holds now.
field() {
  kubectl -n "$NAMESPACE" get secret "$SECRET" -o "jsonpath={.data.$1}" | base64 -d > "$2"
}
field 'tls\.crt' current.crt
field 'tls\.key' current.key
field 'ca\.crt' current-ca.crt

keep=false
if [ -s current.crt ] && [ -s current.key ] && [ -s current-ca.crt ] \
  && openssl x509 -in current.crt -noout -checkend "$((RENEW_BEFORE_DAYS * 86400))" >/dev/null 2>&1 \
  && openssl verify -CAfile current-ca.crt current.crt >/dev/null 2>&1 \
  && openssl x509 -in current.crt -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:${CN}\(,\|\$\)"; then
  keep=true
fi

if [ "$keep" = true ]; then
  log "secret $NAMESPACE/$SECRET holds a valid certificate for $CN: kept"
  cp current-ca.crt bundle.pem
else
  # 2. A new CA and serving certificate.
  log "making a new CA and serving certificate for $CN ($DAYS days)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout ca.key -out ca.crt -days "$DAYS" -subj "/CN=aipam-webhook-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout tls.key -out tls.csr -subj "/CN=${CN}" 2>/dev/null
  cat > tls.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:${SERVICE},DNS:${SERVICE}.${NAMESPACE},DNS:${CN},DNS:${CN}.cluster.local
EXT
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out tls.crt -days "$DAYS" -extfile tls.ext 2>/dev/null
  cp ca.crt bundle.pem
  if [ -s current-ca.crt ] && ! cmp -s current-ca.crt ca.crt; then
    cat current-ca.crt >> bundle.pem
  fi
fi

# 3. caBundle of every webhook of both configurations (a `test` on each name guards the index).
bundle="$(b64 bundle.pem)"
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  ops=""
  i=0
  for name in $(kubectl get "$kind" "$WEBHOOK_CONFIG" -o 'jsonpath={range .webhooks[*]}{.name}{" "}{end}'); do
    ops="${ops:+$ops,}{\"op\":\"test\",\"path\":\"/webhooks/$i/name\",\"value\":\"$name\"}"
    ops="$ops,{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
    i=$((i + 1))
  done
  if [ "$i" -gt 0 ]; then
    kubectl patch "$kind" "$WEBHOOK_CONFIG" --type=json -p "[$ops]" >/dev/null
  fi
  log "caBundle set on $i webhooks of $kind/$WEBHOOK_CONFIG"
done

# 4. The Secret.
if [ "$keep" != true ]; then
  kubectl -n "$NAMESPACE" patch secret "$SECRET" --type=merge \
    -p "{\"data\":{\"tls.crt\":\"$(b64 tls.crt)\",\"tls.key\":\"$(b64 tls.key)\",\"ca.crt\":\"$(b64 ca.crt)\"}}" >/dev/null
  log "secret $NAMESPACE/$SECRET written"
fi
log "done"
