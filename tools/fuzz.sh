#!/bin/sh
# Fuzzes, for a bounded time each:
#   mcast_packet  the multicast packet decoder (fuzz/fuzz_targets/mcast_packet.rs)
#   config_conf   the EMQX .conf loader, Settings::from_str(text, FileFormat::Conf, ..)
#                 (fuzz/fuzz_targets/config_conf.rs)
#
#   tools/fuzz.sh [SECONDS] [TARGET...]   default 60 seconds per target, every target
#   tools/fuzz.sh 600 config_conf         one target, ten minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and either a nightly toolchain or the stable
# one with RUSTC_BOOTSTRAP=1 (which this script sets when there is no nightly). Where
# cargo-fuzz cannot run, it says so and exits 0: the proptests stand in meanwhile
# (plugins/mcast/tests/decode.rs; crates/autocluster/tests/config.rs). FUZZ_TOOLCHAIN=stable
# uses the stable toolchain even where a nightly is installed.
# A crash input is moved to the target's regression directory, which `cargo test` replays:
#   mcast_packet  plugins/mcast/tests/regressions/
#   config_conf   crates/autocluster/tests/regressions/conf/ (crates/autocluster/tests/conf_regressions.rs)
# The regression directories are corpus directories too: every kept input seeds the next run.
# config_conf also gets fuzz/config_conf.dict (keys, units, the largest numbers) and inputs of
# up to 32 KiB, room for a long value such as 1,001 terms of a duration.
set -eu
secs="${1:-60}"
if [ $# -gt 0 ]; then shift; fi
targets="${*:-mcast_packet config_conf}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz);" \
         "the proptests in plugins/mcast/tests/decode.rs and crates/autocluster/tests/config.rs stand in" >&2
    exit 0
fi
# FUZZ_TOOLCHAIN=stable forces the stable toolchain even where a nightly is installed.
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain="+nightly"
else
    toolchain=""
    export RUSTC_BOOTSTRAP=1
fi

status=0
found=0
for target in $targets; do
    case "$target" in
        mcast_packet)
            regressions="$root/plugins/mcast/tests/regressions"
            ext=".bin"
            max_len=9000
            seeds=""
            dict=""
            ;;
        config_conf)
            regressions="$root/crates/autocluster/tests/regressions/conf"
            ext=".conf"
            max_len=32768
            # Start from real files: the examples and the loader's own test fixtures.
            seeds="$root/examples/conf $root/crates/autocluster/tests/fixtures"
            dict="-dict=$root/fuzz/config_conf.dict"
            ;;
        *)
            echo "fuzz.sh: unknown target $target (mcast_packet, config_conf)" >&2
            exit 2
            ;;
    esac
    mkdir -p "corpus/$target" "$regressions"
    for dir in $seeds; do
        for f in "$dir"/*.conf; do
            [ -e "$f" ] && cp "$f" "corpus/$target/seed-$(basename "$f")"
        done
    done
    echo "fuzz.sh: $target for ${secs}s" >&2
    cargo $toolchain fuzz run "$target" "corpus/$target" "$regressions" \
        -- -max_total_time="$secs" -max_len="$max_len" ${dict:+"$dict"} || status=$?
    for f in "artifacts/$target"/crash-* "artifacts/$target"/oom-* "artifacts/$target"/timeout-*; do
        [ -e "$f" ] || continue
        mv "$f" "$regressions/$(basename "$f")$ext"
        found=$((found + 1))
        echo "fuzz.sh: $(basename "$f") moved to $regressions/" >&2
    done
done
if [ "$found" -gt 0 ]; then
    echo "fuzz.sh: $found input(s) moved to the regression directories: fix, then keep them" >&2
    exit 1
fi
exit "$status"
