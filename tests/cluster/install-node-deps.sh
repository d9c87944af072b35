#!/usr/bin/env bash
# Installs, from Debian's packages, what the real nodes of tests/cluster need on the host beside
# the components build.sh builds: runc (the OCI runtime under containerd), the CNI plugins
# (bridge, host-local, portmap, loopback), iptables (kube-proxy's iptables mode, on nf_tables)
# and conntrack. Needs root and apt; does nothing when all is there.
set -euo pipefail
packages=(runc containernetworking-plugins iptables conntrack)
need=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [[ ${#need[@]} == 0 ]]; then
  echo "node dependencies: installed (${packages[*]})"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "node dependencies missing (${need[*]}), and installing them needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "node dependencies: installed ${need[*]}"
