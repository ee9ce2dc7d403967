# shellcheck shell=bash
# Steps: the local lab's Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler from k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and KWOK
# (sigs.k8s.io/kwok/cmd/kwok), all built from Go modules through the module proxy.
# Sourced by toolchain/build; every function runs in a subshell with `set -euo pipefail`.
#
# Each tool is built from a wrapper module under toolchain/go/<name>/ whose go.mod (regenerated from
# pins.env by that directory's sync.sh) names the pinned module and declares the command as a `tool`.
# Builds use -mod=readonly, so go.mod/go.sum in the repo are the whole truth and stay untouched.

# _wrapper_check DIR MODULE VERSION: fail unless DIR/go.mod requires MODULE at VERSION (pins.env is
# the one file of versions; the wrapper must follow it).
_wrapper_check() {
  local dir="$1" mod="$2" ver="$3"
  if ! grep -Eq "^[[:space:]]*(require[[:space:]]+)?${mod//./\\.}[[:space:]]+${ver//./\\.}([[:space:]]|$)" "$dir/go.mod"; then
    echo "toolchain/go/${dir##*/}/go.mod does not require $mod $ver (the pin in pins.env)." >&2
    echo "Run toolchain/go/${dir##*/}/sync.sh and commit go.mod/go.sum." >&2
    return 1
  fi
}

# _go_build_tool DIR PACKAGE OUTPUT [LDFLAGS]: build PACKAGE (a `tool` of the wrapper module in DIR)
# into $TC_BIN/OUTPUT, statically (CGO_ENABLED=0 from toolchain/build), without VCS stamping.
_go_build_tool() {
  local dir="$1" pkg="$2" out="$3" ldflags="${4:-}"
  go version
  (cd "$dir" && go build -mod=readonly -buildvcs=false -ldflags "-s -w $ldflags" -o "$TC_BIN/$out.tmp" "$pkg")
  mv -f "$TC_BIN/$out.tmp" "$TC_BIN/$out"
  ls -l "$TC_BIN/$out"
}

# _version_check BINARY TEXT: BINARY --version must print TEXT (what the pin says was built).
_version_check() {
  local out
  out="$("$1" --version)"
  echo "$out"
  if [[ "$out" != *"$2"* ]]; then
    echo "$1 --version does not say '$2'" >&2
    return 1
  fi
}

# Version stamps, as kubernetes' hack/lib/version.sh sets them: without them the binaries report
# v0.0.0-master+$Format, which clients such as Pulumi's kubernetes provider refuse.
_kube_ldflags() {
  local v="$KUBERNETES_VERSION" major minor kv ld="" p
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for kv in "gitVersion=v$v" "gitMajor=$major" "gitMinor=$minor" "gitTreeState=clean" \
      "buildDate=1970-01-01T00:00:00Z"; do
      ld+=" -X $p.$kv"
    done
  done
  echo "$ld"
}

_kube_build() {
  local cmd="$1"
  _wrapper_check "$here/go/kube" k8s.io/kubernetes "v$KUBERNETES_VERSION"
  _go_build_tool "$here/go/kube" "k8s.io/kubernetes/cmd/$cmd" "$cmd" "$(_kube_ldflags)"
  _version_check "$TC_BIN/$cmd" "Kubernetes v$KUBERNETES_VERSION"
}
step_kube_apiserver() { _kube_build kube-apiserver; }
step_kube_controller_manager() { _kube_build kube-controller-manager; }
step_kube_scheduler() { _kube_build kube-scheduler; }
# kubectl: not used by the program or the tests; the benchmark of the manual procedure
# (bench/manual-vs-pulumi) runs the walkthrough's kubectl commands with it.
step_kubectl() {
  _wrapper_check "$here/go/kube" k8s.io/kubernetes "v$KUBERNETES_VERSION"
  _go_build_tool "$here/go/kube" k8s.io/kubernetes/cmd/kubectl kubectl "$(_kube_ldflags)"
  "$TC_BIN/kubectl" version --client | grep -F "Client Version: v$KUBERNETES_VERSION"
}

step_etcd() {
  local v="v$ETCD_VERSION"
  _wrapper_check "$here/go/etcd" go.etcd.io/etcd/server/v3 "$v"
  # etcd's own Makefile stamps the git SHA only; the version string is compiled in (api/version).
  _go_build_tool "$here/go/etcd" go.etcd.io/etcd/server/v3 etcd
  _version_check "$TC_BIN/etcd" "etcd Version: $ETCD_VERSION"
}

# KWOK, plus its default Stages: the standalone `kwok` controller simulates nothing without Stage
# objects, and only kwokctl embeds the defaults. The step writes the same set kwokctl uses for a
# binary cluster (node-initialize, node-heartbeat-with-lease, pod-ready/complete/delete), straight from
# the pinned module's kustomize/stage/, to $TC_DIR/share/kwok/default-stages.yaml (the lab passes it
# to `kwok --config`).
step_kwok() {
  local v="v$KWOK_VERSION" src f out="$TC_DIR/share/kwok/default-stages.yaml"
  _wrapper_check "$here/go/kwok" sigs.k8s.io/kwok "$v"
  _go_build_tool "$here/go/kwok" sigs.k8s.io/kwok/cmd/kwok kwok
  _version_check "$TC_BIN/kwok" "kwok version v$KWOK_VERSION"
  src="$(cd "$here/go/kwok" && go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  mkdir -p "${out%/*}"
  : >"$out.tmp"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    { echo "---"; echo "# sigs.k8s.io/kwok@$v kustomize/stage/$f"; cat "$src/kustomize/stage/$f"; } >>"$out.tmp"
  done
  mv -f "$out.tmp" "$out"
  grep -c '^kind: Stage' "$out"
  # The CRDs of KWOK's per-pod Exec and PortForward: the lab's data plane (lab/podexec.py) creates one
  # of each for every pod it runs, so `kubectl exec` and `kubectl port-forward` reach that pod's own
  # network namespace (KWOK is started with --enable-crds=Exec,PortForward).
  out="$TC_DIR/share/kwok/crds.yaml"
  : >"$out.tmp"
  for f in kwok.x-k8s.io_execs.yaml kwok.x-k8s.io_portforwards.yaml; do
    { echo "---"; echo "# sigs.k8s.io/kwok@$v kustomize/crd/bases/$f"; cat "$src/kustomize/crd/bases/$f"; } >>"$out.tmp"
  done
  mv -f "$out.tmp" "$out"
  grep -c '^kind: CustomResourceDefinition' "$out"
}

register kube-apiserver step_kube_apiserver
register kube-controller-manager step_kube_controller_manager
register kube-scheduler step_kube_scheduler
register kubectl step_kubectl optional
register etcd step_etcd
register kwok step_kwok
