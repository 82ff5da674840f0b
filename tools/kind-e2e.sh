#!/usr/bin/env bash
# Run the e2e suite against a kind cluster instead of the local control plane (`make e2e-kind`).
#
# Needs Docker (a running engine), kind, network access to pull the base images and kwok's
# release manifest, and the venv (`make venv`). Steps:
#   1. create the kind cluster (unless it exists) and write its kubeconfig;
#   2. build the trainer image (trainer-image/Dockerfile) and the operator image (./Dockerfile)
#      and load both into the cluster;
#   3. install kwok in the cluster with the project's stages, and 2 fake nodes with 4
#      nvidia.com/gpu each, as the local control plane has;
#   4. install the CRDs and deploy the operator from manifests/operator;
#   5. run `pytest -m e2e` with GPUSCALE_E2E_KUBECONFIG pointing at the cluster and
#      GPUSCALE_E2E_OPERATOR=deployment, so the tests drive the deployed operator.
# Trainer pods are scheduled onto the fake GPU nodes, where nothing runs containers, so the
# digits test still runs its workers through the dev pod runner on this machine.
#
# Settings (environment): KIND_CLUSTER_NAME (default gpuscale-e2e), KIND_NODE_IMAGE (default:
# kind's own), KWOK_VERSION (default v0.8.0), KEEP_CLUSTER=1 to keep the cluster afterwards.
# Extra arguments go to pytest, for example `tools/kind-e2e.sh -k digits`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER_NAME:-gpuscale-e2e}
kwok_version=${KWOK_VERSION:-v0.8.0}
state=$repo/.local-cluster/kind
kubeconfig=$state/kubeconfig
python=$repo/.venv/bin/python
trainer_image=gpuscale/trainer:0.1.0
operator_image=gpuscale/operator:0.1.0

fail() {
  echo "error: $*" >&2
  exit 1
}

step() {
  step_started=$SECONDS
  echo
  echo "== $*"
}

step_done() {
  echo "   done in $((SECONDS - step_started)) s"
}

# --- 0. Prerequisites: fail before changing anything. ---
command -v docker >/dev/null 2>&1 \
  || fail "docker not found on PATH; make e2e-kind needs Docker (https://docs.docker.com/engine/install/). Without it, run make test-e2e, which uses the local control plane."
docker info >/dev/null 2>&1 \
  || fail "the Docker engine is not reachable (docker info failed); start it, or check that this user may use it"
command -v kind >/dev/null 2>&1 \
  || fail "kind not found on PATH; install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation), for example: go install sigs.k8s.io/kind@latest"
[[ -x $python ]] || fail "$python not found; run make venv first"
kubectl=$(command -v kubectl || true)
for dir in $("$repo/tools/build.sh" --print-bin-dirs 2>/dev/null | tr ':' ' '); do
  if [[ -x $dir/kubectl ]]; then kubectl=$dir/kubectl; break; fi
done
[[ -n $kubectl ]] || fail "kubectl not found on PATH or in the tools cache; run make tools or install kubectl"
k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }

mkdir -p "$state"
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap 'echo; echo "== Delete the kind cluster $cluster"; kind delete cluster --name "$cluster" --kubeconfig "$kubeconfig" || true' EXIT
fi

# --- 1. The cluster. ---
step "Create the kind cluster $cluster"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "   reusing the existing cluster"
  kind export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig"
else
  kind create cluster --name "$cluster" --kubeconfig "$kubeconfig" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
echo "   export KUBECONFIG=$kubeconfig"
step_done

# --- 2. Images. ---
step "Build and load $trainer_image and $operator_image"
docker build -t "$trainer_image" "$repo/trainer-image"
docker build -t "$operator_image" -f "$repo/Dockerfile" "$repo"
kind load docker-image "$trainer_image" "$operator_image" --name "$cluster"
step_done

# --- 3. kwok, its stages and the fake GPU nodes. ---
step "Install kwok $kwok_version with the project's stages and 2 fake GPU nodes"
k apply --server-side -f "https://github.com/kubernetes-sigs/kwok/releases/download/$kwok_version/kwok.yaml"
k wait --for=condition=Established crd/stages.kwok.x-k8s.io --timeout=60s
k apply --server-side -f "$repo/operator/gpuscale/cluster/kwok-stages.yaml"
k -n kube-system rollout status deployment/kwok-controller --timeout=180s
# The same fake nodes as the local control plane (gpuscale.cluster.launcher's defaults).
for index in 0 1; do
  k apply -f - <<EOF
apiVersion: v1
kind: Node
metadata:
  name: gpu-node-$index
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: gpu-node-$index
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB
    nvidia.com/gpu.count: "4"
status:
  capacity: {cpu: "32", memory: 256Gi, pods: "110", nvidia.com/gpu: "4"}
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", nvidia.com/gpu: "4"}
EOF
done
k wait --for=condition=Ready node/gpu-node-0 node/gpu-node-1 --timeout=120s
step_done

# --- 4. CRDs and the operator. ---
step "Install the CRDs and deploy the operator"
k apply --server-side -f "$repo/crds"
k apply -f "$repo/manifests/operator"
k -n gpuscale-system rollout status deployment/gpuscale-operator --timeout=180s
step_done

# --- 5. The e2e suite. ---
step "Run the e2e suite against the kind cluster"
# Two tests apply only to the local control plane, so they are deselected. One expects exactly
# the 2 fake nodes, but kind adds its own node. The other starts a local control plane itself.
cd "$repo"
GPUSCALE_E2E_KUBECONFIG=$kubeconfig GPUSCALE_E2E_OPERATOR=deployment \
  "$python" -m pytest -ra -m e2e \
  --deselect tests/e2e/test_local_cluster.py::test_fake_nodes_ready_with_gpus \
  --deselect tests/e2e/test_local_cluster.py::test_start_stop_twice_leaves_nothing \
  "$@"
step_done
