#!/usr/bin/env bash
# Build the MX dot-product RTL (rtl-vectors/rtl/mx_dot32.v) with Icarus Verilog, run the
# committed ocp-fp32 dot vectors of MXFP8 E4M3 and MXFP4 through it with the testbench, and
# check the output dumps with `mxsim vectors check`.
#
# Usage: rtl-vectors/run_rtl.sh [--broken]
#   --broken  build the deliberately broken unit (truncation instead of round-to-nearest-even);
#             the checker must then report mismatches.
# Exit status: 0 when every dump matches, 1 when the checker found mismatches, 2 on errors.
# The mxsim binary is $MXSIM if set, otherwise built with cargo.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
truncate=0
case "${1:-}" in
    "") ;;
    --broken) truncate=1 ;;
    *) echo "usage: $0 [--broken]" >&2; exit 2 ;;
esac
command -v iverilog >/dev/null && command -v vvp >/dev/null \
    || { echo "run_rtl.sh: iverilog/vvp not found (apt-get install iverilog)" >&2; exit 2; }
if [[ -z "${MXSIM:-}" ]]; then
    (cd "$root" && cargo build --quiet --bin mxsim) || exit 2
    MXSIM="${CARGO_TARGET_DIR:-$root/target}/debug/mxsim"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for pack in mxfp8_e4m3:0 mxfp4:1; do
    scheme=${pack%:*}
    fp4=${pack#*:}
    dir="$here/$scheme/dot-ocp-fp32"
    n=$(wc -l < "$dir/dot.hex")
    iverilog -g2012 -Wall -P tb_mx_dot32.FP4="$fp4" -P tb_mx_dot32.TRUNCATE="$truncate" \
        -o "$work/sim_$scheme" "$here/rtl/mx_dot32.v" "$here/rtl/tb_mx_dot32.v" || exit 2
    vvp -n "$work/sim_$scheme" +vectors="$dir/dot.hex" +out="$work/$scheme.hex" +n="$n" || exit 2
    "$MXSIM" vectors check "$dir" --actual "$work/$scheme.hex" --max-show 3
    rc=$?
    if [[ $rc -eq 2 ]]; then exit 2; fi
    if [[ $rc -ne 0 ]]; then status=1; fi
done
exit $status
