#!/usr/bin/env bash
# CI check of the golden-vector flow on a real HDL simulator: installs Icarus Verilog if
# missing (Debian package), then requires that the MX dot-product RTL passes the committed
# vectors (rtl-vectors/run_rtl.sh exits 0) and that the deliberately broken variant is caught
# (rtl-vectors/run_rtl.sh --broken exits 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v iverilog >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq iverilog
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq iverilog
    fi
fi
(cd "$root" && cargo build --quiet --bin mxsim)
export MXSIM="${CARGO_TARGET_DIR:-$root/target}/debug/mxsim"
echo "== RTL against the golden vectors (must pass)"
"$root/rtl-vectors/run_rtl.sh"
echo "== broken RTL (truncating) against the golden vectors (must be caught)"
set +e
"$root/rtl-vectors/run_rtl.sh" --broken > /tmp/rtl_broken.$$ 2>&1
rc=$?
set -e
tail -n 8 /tmp/rtl_broken.$$
rm -f /tmp/rtl_broken.$$
if [[ $rc -ne 1 ]]; then
    echo "rtl_check: the broken RTL was not caught (run_rtl.sh --broken exited $rc, expected 1)" >&2
    exit 1
fi
echo "rtl_check: OK (golden RTL passes, broken RTL caught)"
