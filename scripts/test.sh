#!/usr/bin/env bash
# The project's one test command: every Rust test, then the ml_dtypes cross-check of
# `mxsim cast` against the binary just built. Installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

# softfloat-wrapper (a dev-dependency) builds Berkeley SoftFloat with cmake
if ! command -v cmake >/dev/null 2>&1; then
    echo "test.sh: installing cmake<4 with pip (needed by softfloat-wrapper)"
    "$PY" -m pip install --quiet 'cmake<4'
fi
# the cross-check needs numpy and ml_dtypes
if ! "$PY" -c 'import numpy, ml_dtypes' >/dev/null 2>&1; then
    echo "test.sh: installing numpy and ml_dtypes with pip"
    "$PY" -m pip install --quiet numpy ml_dtypes
fi

# the RTL proof of the golden vectors runs on Icarus Verilog (Debian package)
if ! command -v iverilog >/dev/null 2>&1; then
    echo "test.sh: installing iverilog with apt-get"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq iverilog
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq iverilog
    fi
fi
export MXSIM_REQUIRE_RTL=1

# profile.test builds with opt-level 2, so the exhaustive tests run fast without --release
echo "test.sh: cargo test"
cargo test

# `cargo test` builds target/debug/mxsim (the binary the CLI tests ran)
echo "test.sh: ml_dtypes cross-check"
"$PY" scripts/crosscheck_ml_dtypes.py target/debug/mxsim

echo "test.sh: all tests passed"
