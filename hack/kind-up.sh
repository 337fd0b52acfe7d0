#!/usr/bin/env bash
# A two-node kind cluster with the project installed, then the end-to-end scenarios against it.
# Needs Docker (a running engine), kind (v0.20 or later: node labels in its config), kubectl and
# cargo. Not run where it was written (no Docker engine there); shellcheck-clean.
#
#   hack/kind-up.sh              # create (or reuse), build, load, install, test
#   SKIP_TESTS=1 hack/kind-up.sh # stop after the installation
#   INSTALL_MULTUS=1 ...         # also install Multus (see below)
#   hack/kind-up.sh down         # delete the cluster
#
# Nodes: the control plane labelled node-subnet=subnet-6 and the worker node-subnet=subnet-7,
# the zone labels of config/samples/zones/00-nodes.yaml (kind names its nodes
# aipam-control-plane and aipam-worker, not as the sample does; the pools select on the label
# only). The control plane's NoSchedule taint is removed so that both zones run workloads.
#
# Multus is NOT installed by default. Without a `v1.multus-cni.io/default-network` or
# `k8s.v1.cni.cncf.io/networks` annotation the webhook serves the Pod's eth0, which is what most
# scenarios need; the addresses are reserved, bound and released by the IPAM whatever CNI plugin
# then wires the Pod (kindnet here, which gives the Pod its own address: the reservation is
# recorded, not used). The NetworkAttachmentDefinition CRD (Multus' API, from
# e2e/fixtures/) is installed so that the samples' networks can be created and read by the
# webhook. With INSTALL_MULTUS=1, Multus (thick plugin, MULTUS_VERSION) is installed too; Pods
# then really get the macvlan networks they name, so the networks' "master" must be an interface
# of the kind nodes (eth0; the zone sample names ens192 and its Pods would not start).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-aipam}"
KUBECONFIG_OUT="${KUBECONFIG_OUT:-$PWD/target/kind-${CLUSTER}.kubeconfig}"
MULTUS_VERSION="${MULTUS_VERSION:-v4.1.4}"
# The tag config/default gives every image (its `images:` list).
TAG="$(awk '/newTag:/ {print $2; exit}' config/default/kustomization.yaml)"
IMAGES=(webhook operator cni certgen)

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "$1 is required" >&2; exit 1; }
}

if [ "${1:-}" = "down" ]; then
  need kind
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

for tool in docker kind kubectl cargo; do need "$tool"; done
docker info >/dev/null 2>&1 || { echo "the Docker engine is not running" >&2; exit 1; }
mkdir -p "$(dirname "$KUBECONFIG_OUT")"
export KUBECONFIG="$KUBECONFIG_OUT"

echo "== cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG_OUT"
else
  kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_OUT" --wait 120s --config - <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    labels:
      node-subnet: subnet-6
  - role: worker
    labels:
      node-subnet: subnet-7
KIND
fi
kubectl taint nodes --all node-role.kubernetes.io/control-plane:NoSchedule- >/dev/null 2>&1 || true
kubectl get nodes -L node-subnet

echo "== images (tag $TAG)"
for target in "${IMAGES[@]}"; do
  docker build --target "$target" -t "aipam/aipam-$target:$TAG" .
  kind load docker-image --name "$CLUSTER" "aipam/aipam-$target:$TAG"
done

echo "== Multus API"
kubectl apply -f e2e/fixtures/00-network-attachment-definition-crd.yaml
if [ "${INSTALL_MULTUS:-0}" = "1" ]; then
  kubectl apply -f "https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/${MULTUS_VERSION}/deployments/multus-daemonset-thick.yml"
  kubectl -n kube-system rollout status daemonset/kube-multus-ds --timeout=300s
fi

echo "== install (config/default)"
kubectl apply -k config/default
kubectl -n aipam-system wait --for=condition=complete job/aipam-certgen --timeout=300s
kubectl -n aipam-system rollout status deployment/aipam-webhook --timeout=300s
kubectl -n aipam-system rollout status deployment/aipam-operator --timeout=300s
kubectl -n aipam-system rollout status daemonset/aipam-cni --timeout=300s

if [ "${SKIP_TESTS:-0}" = "1" ]; then
  echo "installed; KUBECONFIG=$KUBECONFIG_OUT"
  exit 0
fi

echo "== end-to-end scenarios against the cluster"
cargo build --workspace --bins --locked
E2E_KUBECONFIG="$KUBECONFIG_OUT" cargo test -p aipam-e2e --test scenarios -- --test-threads=1
