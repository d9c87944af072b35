#!/usr/bin/env bash
# Builds the third-party components the end-to-end tests run against, from the
# Go modules pinned in tests/cluster/components/<component>/go.mod, into
#   ${IDN_TOOLS_CACHE:-$HOME/.cache/idn/tools}/<component>-<version>/bin/
# A component whose binaries are already there is not rebuilt.
#
# usage: tests/cluster/build.sh [component ...]     build (default: the control plane and tools)
#        tests/cluster/build.sh --nodes              build what real nodes need
#        tests/cluster/build.sh --path component     print its bin dir only
#        tests/cluster/build.sh --list               list the components
#
# Needs only Go (>= the go line of each go.mod, 1.26.7 at most) and a module
# proxy. Builds run under `nice -n 19`, one at a time, with CGO disabled.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
components_dir=$here/components
cache=${IDN_TOOLS_CACHE:-$HOME/.cache/idn/tools}
all=(kubernetes etcd kwok helm prometheus jaeger)
# what real nodes add (`--nodes`): the kubelet and kube-proxy, the cluster DNS, the image tool
# and the sandbox process of every pod
nodes=(kubelet containerd coredns crane pause)
# built only when named (bench/run.sh asks for it), not by a plain build.sh
extra=(ghz)

# the folder in components/ whose go.mod pins a component: the kubelet comes from the same
# Kubernetes module as the control plane, so that the two never differ in version
module_dir() {
  case $1 in
    kubelet) echo "$components_dir/kubernetes" ;;
    *) echo "$components_dir/$1" ;;
  esac
}

# main module (the one whose version keys the cache) of each component
main_module() {
  case $1 in
    kubernetes | kubelet) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok ;;
    helm) echo helm.sh/helm/v4 ;;
    prometheus) echo github.com/prometheus/prometheus ;;
    jaeger) echo github.com/jaegertracing/jaeger ;;
    ghz) echo github.com/bojand/ghz ;;
    containerd) echo github.com/containerd/containerd/v2 ;;
    coredns) echo github.com/coredns/coredns ;;
    crane) echo github.com/google/go-containerregistry ;;
    pause) echo idn.local/tests/cluster/components/pause ;;
    *) echo "unknown component: $1 (known: ${all[*]} ${nodes[*]} ${extra[*]})" >&2; return 1 ;;
  esac
}

# "<package> <binary name>" lines
packages() {
  case $1 in
    kubernetes)
      echo k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
      echo k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
      echo k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler ;;
    etcd) echo go.etcd.io/etcd/server/v3 etcd ;;
    kwok)
      echo sigs.k8s.io/kwok/cmd/kwok kwok
      echo ./kwok-stages kwok-stages ;;  # our own: prints kwok's default Stage objects
    helm) echo helm.sh/helm/v4/cmd/helm helm ;;
    prometheus)
      echo github.com/prometheus/prometheus/cmd/prometheus prometheus
      echo github.com/prometheus/prometheus/cmd/promtool promtool ;;
    jaeger) echo github.com/jaegertracing/jaeger/cmd/jaeger jaeger ;;
    ghz) echo github.com/bojand/ghz/cmd/ghz ghz ;;
    kubelet)
      echo k8s.io/kubernetes/cmd/kubelet kubelet
      echo k8s.io/kubernetes/cmd/kube-proxy kube-proxy ;;
    containerd)
      echo github.com/containerd/containerd/v2/cmd/containerd containerd
      echo github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 containerd-shim-runc-v2
      echo github.com/containerd/containerd/v2/cmd/ctr ctr ;;
    coredns) echo github.com/coredns/coredns coredns ;;
    crane) echo github.com/google/go-containerregistry/cmd/crane crane ;;
    pause) echo . pause ;;  # our own: the pod sandbox process
  esac
}

version_of() {
  local mod
  mod=$(main_module "$1")
  # our own program: versioned by its source
  if [[ $1 == pause ]]; then
    echo "src-$(cat "$components_dir/pause/go.mod" "$components_dir/pause/main.go" | sha256sum | cut -c1-12)"
    return
  fi
  awk -v m="$mod" '($1 == "require" && $2 == m) || ($1 == m) { print ($1 == "require" ? $3 : $2); exit }' \
    "$(module_dir "$1")/go.mod"
}

# Go build tags and -X version stamps, so that the binaries report their release.
build_tags() {
  case $1 in
    # Prometheus: drop every service-discovery plugin but Kubernetes (the
    # cloud SDKs double the build); static_configs and file_sd always work.
    prometheus) echo remove_all_sd,enable_kubernetes_sd ;;
    *) echo "" ;;
  esac
}

ldflags() {
  local c=$1 v=$2 date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local f="-s -w"
  case $c in
    kubernetes | kubelet)
      local major minor
      major=${v#v}; major=${major%%.*}
      minor=${v#v}; minor=${minor#*.}; minor=${minor%%.*}
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        f+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
        f+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
      done ;;
    etcd) f+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" ;;
    kwok)
      local kube
      kube=$(version_of kubernetes)
      f+=" -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${kube#v}" ;;
    helm) f+=" -X helm.sh/helm/v4/internal/version.version=$v -X helm.sh/helm/v4/internal/version.gitTreeState=clean" ;;
    prometheus)
      # module v0.3XY.Z is Prometheus 3.XY.Z
      local pv=${v#v0.}
      pv="${pv:0:1}.$((10#${pv:1:2})).${pv#*.}"
      f+=" -X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Revision=$v"
      f+=" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=idn"
      f+=" -X github.com/prometheus/common/version.BuildDate=$date" ;;
    jaeger)
      # module v1.76.0 is the v1.76.0 / v2.13.0 release; cmd/jaeger is Jaeger v2
      local rest=${v#v1.}
      local jv=v2.$(( ${rest%%.*} - 63 )).${rest#*.}
      f+=" -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$jv"
      f+=" -X github.com/jaegertracing/jaeger/internal/version.commitSHA=$v"
      f+=" -X github.com/jaegertracing/jaeger/internal/version.date=$date" ;;
    ghz) f+=" -X main.version=${v#v}" ;;
    containerd) f+=" -X github.com/containerd/containerd/v2/version.Version=$v -X github.com/containerd/containerd/v2/version.Revision=$v" ;;
    coredns) f+=" -X github.com/coredns/coredns/coremain.GitCommit=$v" ;;
    crane) f+=" -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$v" ;;
  esac
  echo "$f"
}

bin_dir() { echo "$cache/$1-$(version_of "$1")/bin"; }

is_built() {
  local c=$1 dir pkg name
  dir=$(bin_dir "$c")
  while read -r pkg name; do
    [[ -x $dir/$name ]] || return 1
  done < <(packages "$c")
}

build() {
  local c=$1 v dir tmp start end pkgs=() names=() pkg name
  v=$(version_of "$c")
  dir=$(bin_dir "$c")
  if is_built "$c"; then
    echo "$c $v: cached in $dir"
    return 0
  fi
  while read -r pkg name; do pkgs+=("$pkg"); names+=("$name"); done < <(packages "$c")
  tmp=$cache/.tmp-$c-$v-$$
  rm -rf "$tmp"
  mkdir -p "$tmp/bin"
  echo "$c $v: building ${names[*]} (go $(go env GOVERSION)) ..."
  start=$(date +%s)
  (
    cd "$(module_dir "$c")"
    export CGO_ENABLED=0
    nice -n 19 go build -mod=readonly -trimpath -buildvcs=false \
      -tags "$(build_tags "$c")" -ldflags "$(ldflags "$c" "$v")" \
      -o "$tmp/bin/" "${pkgs[@]}"
  ) || { rm -rf "$tmp"; echo "$c $v: BUILD FAILED" >&2; return 1; }
  end=$(date +%s)
  # the upstream main of etcd is the module root go.etcd.io/etcd/server/v3,
  # so go names its binary "server"
  if [[ $c == etcd && ! -e $tmp/bin/etcd ]]; then mv "$tmp/bin/server" "$tmp/bin/etcd"; fi
  {
    echo "component=$c"
    echo "version=$v"
    echo "go=$(go env GOVERSION)"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$((end - start))"
  } > "$tmp/build-info"
  rm -rf "$(dirname "$dir")"
  mkdir -p "$(dirname "$(dirname "$dir")")"
  mv "$tmp" "$(dirname "$dir")"
  echo "$c $v: built in $((end - start))s -> $dir ($(du -sh "$dir" | cut -f1))"
}

case ${1:-} in
  --path) shift; [[ $# == 1 ]] || { echo "usage: $0 --path component" >&2; exit 2; }; main_module "$1" >/dev/null; bin_dir "$1"; exit 0 ;;
  --list) for c in "${all[@]}" "${nodes[@]}" "${extra[@]}"; do echo "$c $(main_module "$c") $(version_of "$c")"; done; exit 0 ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

command -v go >/dev/null || { echo "go is not installed" >&2; exit 1; }
targets=("$@")
if [[ ${1:-} == --nodes ]]; then targets=("${nodes[@]}"); fi
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for c in "${targets[@]}"; do main_module "$c" >/dev/null; done
total_start=$(date +%s)
for c in "${targets[@]}"; do build "$c"; done
echo "done in $(( $(date +%s) - total_start ))s; cache $cache: $(du -sh "$cache" 2>/dev/null | cut -f1)"
