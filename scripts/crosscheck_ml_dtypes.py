#!/usr/bin/env python3
"""Cross-check `mxsim cast` against ml_dtypes (an independent implementation).

Encodes >= 1,000,000 float32 inputs to E4M3, E5M2, E3M2, E2M3, E2M1 (RNE, --overflow nonsat)
and E8M0 (RNA, --overflow nonsat) with `mxsim cast` and with ml_dtypes' casts, and requires
bit-identical codes (NaN compared as NaN). Also decodes every code of each format with
`mxsim cast --decode` and compares with ml_dtypes.

Inputs: random float32 bit patterns over all exponents; f32 subnormal patterns sampled densely
(every 8th pattern, plus every pattern near 2^-127 and 1.5 * 2^-127); specials; every
representable value of each format, every midpoint of neighbours, and the float32 values
1 and 2 ulp either side of each of them (both signs).

The one documented ml_dtypes quirk: E8M0 of positive f32 subnormals with bit patterns
0x00400001..0x005FFFFF (values in (2^-127, 1.5 * 2^-127)) gives code 1 (2^-126) in ml_dtypes
although 2^-127 (code 0) is nearer; mxsim gives code 0. Those inputs are excluded from the
E8M0 comparison, counted and printed, and the script asserts that they are the ONLY
mismatches (and that each of them is exactly ml_dtypes 1 vs mxsim 0).

Usage: python3 scripts/crosscheck_ml_dtypes.py [path/to/mxsim]
Exit status 0 when everything matches, 1 on any mismatch.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import ml_dtypes

FORMATS = {
    # name: (ml_dtypes type, bits, mxsim rounding)
    "e4m3": (ml_dtypes.float8_e4m3fn, 8, "rne"),
    "e5m2": (ml_dtypes.float8_e5m2, 8, "rne"),
    "e3m2": (ml_dtypes.float6_e3m2fn, 6, "rne"),
    "e2m3": (ml_dtypes.float6_e2m3fn, 6, "rne"),
    "e2m1": (ml_dtypes.float4_e2m1fn, 4, "rne"),
    "e8m0": (ml_dtypes.float8_e8m0fnu, 8, "rna"),
}
QUIRK_LO, QUIRK_HI = 0x00400001, 0x005FFFFF


def f32_from_bits(b):
    return np.asarray(b, dtype=np.uint32).view(np.float32)


def ulp_neighbours(v):
    """v and the float32 values 1 and 2 ulp either side (finite only)."""
    v = v[np.isfinite(v)].astype(np.float32)
    out = [v]
    up, down = v.copy(), v.copy()
    with np.errstate(over="ignore"):
        for _ in range(2):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            out += [up, down]
    return np.concatenate(out)


def format_values(dt, bits):
    codes = np.arange(1 << bits, dtype=np.uint8)
    vals = codes.view(dt).astype(np.float64)
    vals = np.unique(np.abs(vals[np.isfinite(vals)]))
    mids = (vals[:-1] + vals[1:]) / 2
    top = vals[-1] + (vals[-1] - vals[-2]) if len(vals) > 1 else vals[-1] * 2
    extra = np.array([(vals[-1] + top) / 2, top, top * 2])
    allv = np.concatenate([vals, mids, extra]).astype(np.float32)
    allv = ulp_neighbours(allv)
    return np.concatenate([allv, -allv])


def build_inputs():
    rng = np.random.default_rng(20240601)
    parts = [f32_from_bits(rng.integers(0, 1 << 32, size=600_000, dtype=np.uint64).astype(np.uint32))]
    sub = np.arange(1, 0x0080_0000, 8, dtype=np.uint32)
    near = np.concatenate([np.arange(0x003F_F000, 0x0040_1000, dtype=np.uint32),
                           np.arange(0x005F_F000, 0x0060_1000, dtype=np.uint32)])
    sub = np.concatenate([sub, near])
    parts += [f32_from_bits(sub), -f32_from_bits(sub)]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan,
                         np.finfo(np.float32).max, -np.finfo(np.float32).max,
                         np.finfo(np.float32).tiny, np.finfo(np.float32).smallest_subnormal,
                         2.0 ** -127, 1.5 * 2.0 ** -127, 2.0 ** 127, 1.5 * 2.0 ** 127],
                        dtype=np.float32)
    parts.append(specials)
    parts.append(f32_from_bits(np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
                                         0x7FFFFFFF, 0xFFFFFFFF], dtype=np.uint32)))
    for dt, bits, _ in FORMATS.values():
        parts.append(format_values(dt, bits))
    return np.concatenate(parts).astype(np.float32)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
        sys.exit(1)


def same_or_both_nan(a_codes, b_codes, dt):
    va = a_codes.view(dt).astype(np.float32)
    vb = b_codes.view(dt).astype(np.float32)
    return (a_codes == b_codes) | (np.isnan(va) & np.isnan(vb))


def main():
    mxsim = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "release", "mxsim")
    if not os.path.exists(mxsim):
        sys.stderr.write(f"mxsim binary not found at {mxsim}\n")
        return 1
    x = build_inputs()
    print(f"ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__}: {x.size} float32 inputs")
    assert x.size >= 1_000_000
    bits = x.view(np.uint32)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        xin = os.path.join(d, "x.npy")
        np.save(xin, x)
        for name, (dt, nbits, rounding) in FORMATS.items():
            out = os.path.join(d, f"{name}.npy")
            run([mxsim, "cast", "--to", name, "--rounding", rounding, "--overflow", "nonsat",
                 "--input", xin, "--output", out])
            got = np.load(out)
            want = x.astype(dt).view(np.uint8)
            ok = same_or_both_nan(got, want, dt)
            excluded = np.zeros(x.size, dtype=bool)
            if name == "e8m0":
                excluded = (bits >= QUIRK_LO) & (bits <= QUIRK_HI)
                n_ex = int(excluded.sum())
                quirk_ok = np.all((want[excluded] == 1) & (got[excluded] == 0))
                print(f"  e8m0: {n_ex} inputs in the documented ml_dtypes quirk range "
                      f"0x{QUIRK_LO:08X}..0x{QUIRK_HI:08X} excluded "
                      f"({int((~ok & excluded).sum())} of them differ: ml_dtypes 1, mxsim 0)")
                if not quirk_ok:
                    print("  FAIL: quirk-range inputs do not show exactly the documented difference")
                    failures += 1
            bad = ~ok & ~excluded
            nbad = int(bad.sum())
            print(f"  {name} ({rounding}, nonsat): {x.size - int(excluded.sum())} compared, {nbad} mismatches")
            if nbad:
                failures += 1
                for i in np.flatnonzero(bad)[:10]:
                    print(f"    x = {x[i]!r} (0x{bits[i]:08X}): mxsim 0x{got[i]:02X}, ml_dtypes 0x{want[i]:02X}")
            # decode every code
            codes = np.arange(1 << nbits, dtype=np.uint8)
            cin = os.path.join(d, f"{name}_codes.npy")
            cout = os.path.join(d, f"{name}_dec.npy")
            np.save(cin, codes)
            run([mxsim, "cast", "--decode", "--from", name, "--input", cin, "--output", cout])
            dec = np.load(cout)
            ref = codes.view(dt).astype(np.float32)
            dok = (dec.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(dec) & np.isnan(ref))
            print(f"  {name} decode: {codes.size} codes, {int((~dok).sum())} mismatches")
            if not dok.all():
                failures += 1
                for c in np.flatnonzero(~dok)[:10]:
                    print(f"    code 0x{c:02X}: mxsim {dec[c]!r}, ml_dtypes {ref[c]!r}")
    if failures:
        print(f"cross-check FAILED ({failures} failing checks)")
        return 1
    print("cross-check passed: mxsim cast is bit-identical to ml_dtypes (quirk range excepted)")
    return 0


if __name__ == "__main__":
    with np.errstate(all="ignore"):  # overflow/NaN casts are part of the test
        sys.exit(main())
