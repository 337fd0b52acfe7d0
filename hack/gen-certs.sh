#!/usr/bin/env bash
# Makes a self-signed CA and a serving certificate for the webhook's Service
# (aipam-webhook.aipam-system.svc by default), for local use and tests, then prints the
# caBundle to put in config/webhook/webhooks.yaml.
#
#   hack/gen-certs.sh [OUT_DIR]          # default ./certs
#   SERVICE=aipam-webhook NAMESPACE=aipam-system DAYS=365 hack/gen-certs.sh
#
# Writes OUT_DIR/ca.crt, ca.key, tls.crt, tls.key. Load the pair into the cluster with
#   kubectl -n aipam-system create secret tls aipam-webhook-tls --cert=OUT_DIR/tls.crt --key=OUT_DIR/tls.key
set -euo pipefail

OUT="${1:-./certs}"
SERVICE="${SERVICE:-aipam-webhook}"
NAMESPACE="${NAMESPACE:-aipam-system}"
DAYS="${DAYS:-365}"
EXTRA_SANS="${EXTRA_SANS:-}" # e.g. "DNS:localhost,IP:127.0.0.1"

command -v openssl >/dev/null 2>&1 || { echo "openssl is required" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"

CN="${SERVICE}.${NAMESPACE}.svc"
SANS="DNS:${SERVICE},DNS:${SERVICE}.${NAMESPACE},DNS:${CN},DNS:${CN}.cluster.local"
if [ -n "$EXTRA_SANS" ]; then SANS="${SANS},${EXTRA_SANS}"; fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.crt -days "$((DAYS * 10))" \
  -subj "/CN=aipam-webhook-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout tls.key -out tls.csr -subj "/CN=${CN}" 2>/dev/null

cat > tls.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=${SANS}
EXT

openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out tls.crt -days "$DAYS" -extfile tls.ext 2>/dev/null
rm -f tls.csr tls.ext ca.srl
chmod 600 ca.key tls.key

echo "wrote $(pwd)/{ca.crt,ca.key,tls.crt,tls.key} for ${CN}" >&2
echo "caBundle: $(base64 < ca.crt | tr -d '\n')"
