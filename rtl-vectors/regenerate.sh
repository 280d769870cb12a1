#!/usr/bin/env bash
# Regenerate every committed vector pack listed in rtl-vectors/packs.txt.
# Usage: rtl-vectors/regenerate.sh [OUTDIR]   (default: rtl-vectors itself)
# The mxsim binary is $MXSIM if set, otherwise built with cargo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$here}
if [[ -z "${MXSIM:-}" ]]; then
    (cd "$root" && cargo build --quiet --bin mxsim)
    MXSIM="${CARGO_TARGET_DIR:-$root/target}/debug/mxsim"
fi
while read -r dir args; do
    [[ -z "$dir" || "$dir" == \#* ]] && continue
    # shellcheck disable=SC2086
    "$MXSIM" vectors gen $args --out "$out/$dir"
done < "$here/packs.txt"
