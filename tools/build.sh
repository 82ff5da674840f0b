#!/usr/bin/env bash
# Build the local control plane's binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok) from the Go modules pinned in tools/*/go.mod.
#
# Binaries go to a cache outside the repository, one folder per component and version:
#   ${GPUSCALE_CACHE:-~/.cache/gpuscale}/<component>-<version>/bin
# Only missing binaries are built, so a second run takes a second.
# Usage: tools/build.sh [--print-bin-dirs]
set -euo pipefail

tools_dir=$(cd "$(dirname "$0")" && pwd)
cache=${GPUSCALE_CACHE:-$HOME/.cache/gpuscale}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# Print the version that a tool module's go.mod pins for a module path.
pinned_version() {
  awk -v mod="$2" '$1 == "require" && $2 == mod { print $3 } $1 == mod && $2 ~ /^v/ { print $2 }' \
    "$tools_dir/$1/go.mod" | head -n 1
}

k8s_version=$(pinned_version k8s k8s.io/kubernetes)
etcd_version=$(pinned_version etcd go.etcd.io/etcd/server/v3)
kwok_version=$(pinned_version kwok sigs.k8s.io/kwok)
# The suffix names the build recipe: bump it when the flags change, so cached binaries are rebuilt.
k8s_bin=$cache/k8s-$k8s_version-r2/bin
etcd_bin=$cache/etcd-$etcd_version/bin
kwok_bin=$cache/kwok-$kwok_version/bin

if [[ "${1:-}" == "--print-bin-dirs" ]]; then
  echo "$k8s_bin:$etcd_bin:$kwok_bin"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "error: the go command was not found; install Go 1.26 or newer and rerun" >&2
  exit 1
fi

# Version stamps that `make` in the Kubernetes repository would set; without them the binaries
# report v0.0.0-master+$Format:%H$, which `kubectl version` cannot parse.
k8s_minor=${k8s_version#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $package.gitVersion=$k8s_version -X $package.gitMajor=1 -X $package.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done

# Build one binary unless it is already in the cache.
build() {
  local module_dir=$1 package=$2 out=$3 extra_ldflags=${4:-}
  if [[ -x "$out" ]]; then
    echo "  $(basename "$out"): cached at $out"
    return
  fi
  mkdir -p "$(dirname "$out")"
  local started=$SECONDS
  (cd "$tools_dir/$module_dir" && go build -tags tools -trimpath -ldflags="-s -w$extra_ldflags" -o "$out.partial" "$package")
  mv "$out.partial" "$out"
  echo "  $(basename "$out"): built in $((SECONDS - started)) s"
}

echo "Building the local control plane (Kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version)"
total_started=$SECONDS
build etcd go.etcd.io/etcd/server/v3 "$etcd_bin/etcd"
build kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_bin/kwok"
for command in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build k8s "k8s.io/kubernetes/cmd/$command" "$k8s_bin/$command" "$k8s_ldflags"
done
echo "Tools ready in $((SECONDS - total_started)) s"
