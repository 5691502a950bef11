#!/bin/sh
# Fuzzes the multicast packet decoder (fuzz/fuzz_targets/mcast_packet.rs) for a bounded time.
#
#   tools/fuzz.sh [SECONDS]        default 60
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and either a nightly toolchain or the stable
# one with RUSTC_BOOTSTRAP=1 (which this script sets when there is no nightly). Where
# cargo-fuzz cannot run, it says so and exits 0: the proptests in
# plugins/mcast/tests/decode.rs cover the decoder meanwhile. FUZZ_TOOLCHAIN=stable uses the
# stable toolchain even where a nightly is installed.
# A crash input is copied to plugins/mcast/tests/regressions/, which `cargo test` replays.
set -eu
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz);" \
         "the proptests in plugins/mcast/tests/decode.rs stand in" >&2
    exit 0
fi
# FUZZ_TOOLCHAIN=stable forces the stable toolchain even where a nightly is installed.
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain="+nightly"
else
    toolchain=""
    export RUSTC_BOOTSTRAP=1
fi

mkdir -p corpus/mcast_packet
status=0
cargo $toolchain fuzz run mcast_packet corpus/mcast_packet \
    "$root/plugins/mcast/tests/regressions" \
    -- -max_total_time="$secs" -max_len=9000 || status=$?

found=0
for f in artifacts/mcast_packet/crash-* artifacts/mcast_packet/oom-* artifacts/mcast_packet/timeout-*; do
    [ -e "$f" ] || continue
    cp "$f" "$root/plugins/mcast/tests/regressions/$(basename "$f").bin"
    found=$((found + 1))
done
if [ "$found" -gt 0 ]; then
    echo "fuzz.sh: $found input(s) copied to plugins/mcast/tests/regressions/: fix, then keep them" >&2
    exit 1
fi
exit "$status"
