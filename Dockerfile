# syntax=docker/dockerfile:1
# The project's images, one multi-stage build:
#
#   docker build --target webhook  -t aipam/aipam-webhook:0.1.0  .
#   docker build --target operator -t aipam/aipam-operator:0.1.0 .
#   docker build --target cni      -t aipam/aipam-cni:0.1.0      .
#   docker build --target certgen  -t aipam/aipam-certgen:0.1.0  .
#
# (hack/kind-up.sh builds all four.) The binaries are static (musl; rustls with ring, no
# OpenSSL), so the webhook and the operator run on distroless/static as user 65532 and the CNI
# plugin copied to the nodes runs on any host. Paths and users match config/:
#   /usr/local/bin/aipam-webhook   (entrypoint; config/webhook/deployment.yaml passes flags only)
#   /usr/local/bin/aipam-operator  (entrypoint; config/operator/deployment.yaml)
#   /usr/local/bin/spiderpool      (copied to the host by config/cni/daemonset.yaml's /bin/sh loop,
#                                   which needs busybox: sh cat cp mv chmod mkdir base64 tr cksum
#                                   date sleep; runs as root, the DaemonSet says so)
#   certgen: /bin/sh, openssl, kubectl (config/certgen/certgen.sh, user 65532)

ARG RUST_IMAGE=rust:1-alpine3.21
ARG ALPINE_IMAGE=alpine:3.21
ARG BUSYBOX_IMAGE=busybox:1.37-musl
ARG DISTROLESS_IMAGE=gcr.io/distroless/static-debian12:nonroot

# ---- builder: the three binaries, static ----
FROM ${RUST_IMAGE} AS builder
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p aipam-webhook --bin aipam-webhook \
        -p aipam-operator --bin aipam-operator \
        -p aipam-cni --bin spiderpool \
 && mkdir -p /out \
 && cp target/release/aipam-webhook target/release/aipam-operator target/release/spiderpool /out/ \
 && for b in /out/*; do \
      if grep -q '/lib/ld-musl' "$b"; then echo "$b is not static" >&2; exit 1; fi; \
    done

# ---- webhook ----
FROM ${DISTROLESS_IMAGE} AS webhook
COPY --from=builder /out/aipam-webhook /usr/local/bin/aipam-webhook
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/aipam-webhook"]

# ---- operator ----
FROM ${DISTROLESS_IMAGE} AS operator
COPY --from=builder /out/aipam-operator /usr/local/bin/aipam-operator
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/aipam-operator"]

# ---- cni: the plugin binary and busybox for the installer loop ----
FROM ${BUSYBOX_IMAGE} AS cni
COPY --from=builder /out/spiderpool /usr/local/bin/spiderpool
# The DaemonSet runs as root on purpose (it writes root-owned host directories) with every
# capability dropped; the image's default user does not matter there.
ENTRYPOINT ["/usr/local/bin/spiderpool"]

# ---- certgen: openssl and kubectl for config/certgen/certgen.sh ----
FROM ${ALPINE_IMAGE} AS kubectl
ARG KUBECTL_VERSION=v1.33.1
ARG TARGETARCH=amd64
RUN apk add --no-cache curl \
 && curl -fsSLo /kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && curl -fsSLo /kubectl.sha256 "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256" \
 && echo "$(cat /kubectl.sha256)  /kubectl" | sha256sum -c - \
 && chmod 0755 /kubectl

FROM ${ALPINE_IMAGE} AS certgen
RUN apk add --no-cache openssl
COPY --from=kubectl /kubectl /usr/local/bin/kubectl
USER 65532:65532
ENTRYPOINT ["/bin/sh"]
