//! Dot-product and GEMM-tile vectors, their expected outputs computed by the bit-exact
//! datapath model ([`crate::datapath::dot`] and [`crate::datapath::gemm`]) for any preset or
//! configuration file.
//!
//! A `dot` vector holds, for one output, the `K` element codes of each operand with their
//! scale codes and an FP32 accumulator `c`, and the expected FP32 result `d`. `K` covers one
//! instruction of the datapath, extended to whole scale blocks: MXDOTP's 8-pair FP8
//! operations give `K = 32` (four operations chained through the FP32 accumulator, one block),
//! Blackwell `mxf8f6f4` gives 32, `mxf4nvf4` 64, `ocp-fp32` one block.
//! A `gemm-tile` vector holds an `M x K` tile of A, an `N x K` tile of B (B transposed, so each
//! of its rows is one output column's reduction vector), an `M x N` tile of C, and the
//! expected `M x N` tile D.

use super::gen::{GenSpec, Op};
use super::layout::{Dir, FieldKind, Layout, LayoutBuilder};
use super::pack::{sha256_hex, DatapathInfo, Manifest, Pack, GENERATOR_VERSION};
use super::patterns::{self, below, Level};
use crate::datapath::{self, instruction_chunks, DatapathConfig, OperandRow};
use crate::error::{Error, Result};
use crate::format::{decode_f64, Decoded, Format};
use crate::mx::{MxTensor, Scheme};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// One operand's side of a case: `K` element codes and their scale codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// Element codes.
    pub codes: Vec<u8>,
    /// Scale codes, one per block.
    pub scales: Vec<u8>,
}

/// One dot-product case.
#[derive(Debug, Clone, PartialEq)]
pub struct DotCase {
    /// Operand A.
    pub a: Operand,
    /// Operand B.
    pub b: Operand,
    /// Accumulator bits (FP32).
    pub c: u32,
}

/// The shape of a dot-product vector: operand schemes, block sizes, and K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotShape {
    /// Scheme of A.
    pub a: Scheme,
    /// Scheme of B.
    pub b: Scheme,
    /// Block size of A.
    pub ba: usize,
    /// Block size of B.
    pub bb: usize,
    /// Elements per vector.
    pub k: usize,
}

impl DotShape {
    /// Scales per operand row: (A, B).
    pub fn blocks(&self) -> (usize, usize) {
        (self.k.div_ceil(self.ba), self.k.div_ceil(self.bb))
    }
}

/// Elements per vector for a datapath: the first instruction's K, extended by further
/// instructions until it ends on a boundary of both operands' scale blocks (a whole number of
/// blocks of each).
pub fn vector_k(cfg: &DatapathConfig, a: Scheme, ba: usize, b: Scheme, bb: usize) -> Result<usize> {
    let l = lcm(ba, bb);
    let span = l * 64;
    let chunks = instruction_chunks(cfg, a, ba, b, bb, span)?;
    if chunks.len() <= 1 {
        // the whole reduction is one fused operation: one block of each operand
        return Ok(l);
    }
    let mut k = 0;
    for (_, len) in chunks {
        k += len;
        if k % l == 0 {
            return Ok(k);
        }
    }
    Ok(l)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// The layout of a dot vector.
pub fn dot_layout(s: &DotShape) -> Layout {
    let (na, nb) = s.blocks();
    let (ea, eb) = (s.a.element(), s.b.element());
    LayoutBuilder::default()
        .array("a", s.k, Dir::In, ea.bits(), FieldKind::Code(ea))
        .array("sa", na, Dir::In, 8, FieldKind::Code(s.a.scale_format()))
        .array("b", s.k, Dir::In, eb.bits(), FieldKind::Code(eb))
        .array("sb", nb, Dir::In, 8, FieldKind::Code(s.b.scale_format()))
        .field("c", Dir::In, 32, FieldKind::F32)
        .field("d", Dir::Out, 32, FieldKind::F32)
        .build()
}

/// The layout of a gemm-tile vector: `a<i>_<k>`, `sa<i>_<j>`, `b<n>_<k>`, `sb<n>_<j>`,
/// `c<i>_<n>`, `d<i>_<n>`.
pub fn tile_layout(s: &DotShape, m: usize, n: usize) -> Layout {
    let (na, nb) = s.blocks();
    let (ea, eb) = (s.a.element(), s.b.element());
    let mut l = LayoutBuilder::default();
    for i in 0..m {
        l = l.array(
            &format!("a{i}_"),
            s.k,
            Dir::In,
            ea.bits(),
            FieldKind::Code(ea),
        );
    }
    for i in 0..m {
        l = l.array(
            &format!("sa{i}_"),
            na,
            Dir::In,
            8,
            FieldKind::Code(s.a.scale_format()),
        );
    }
    for j in 0..n {
        l = l.array(
            &format!("b{j}_"),
            s.k,
            Dir::In,
            eb.bits(),
            FieldKind::Code(eb),
        );
    }
    for j in 0..n {
        l = l.array(
            &format!("sb{j}_"),
            nb,
            Dir::In,
            8,
            FieldKind::Code(s.b.scale_format()),
        );
    }
    for i in 0..m {
        l = l.array(&format!("c{i}_"), n, Dir::In, 32, FieldKind::F32);
    }
    for i in 0..m {
        l = l.array(&format!("d{i}_"), n, Dir::Out, 32, FieldKind::F32);
    }
    l.build()
}

/// Codes of `fmt` that every pack exercises: zeros, smallest and largest subnormal, smallest
/// normal, one, the values just below and above one, the largest value, NaN/Inf where the
/// format has them, and the negative of each.
pub fn special_codes(fmt: Format) -> Vec<u8> {
    let n = fmt.code_count();
    let mut v: Vec<u8> = Vec::new();
    let find = |x: f64| (0..n).map(|c| c as u8).find(|&c| decode_f64(fmt, c) == x);
    let mut pos = vec![0u8];
    let vals = patterns::code_values(fmt);
    let smallest = vals.iter().copied().find(|&x| x > 0.0).unwrap_or(1.0);
    let targets = [
        smallest,
        fmt.min_normal(),
        fmt.min_normal() - smallest,
        1.0,
        fmt.max_normal(),
    ];
    for t in targets {
        if let Some(c) = find(t) {
            pos.push(c);
            if c > 1 {
                pos.push(c - 1);
            }
            pos.push(c + 1);
        }
    }
    for c in pos {
        if (c as u32) < n && decode_f64(fmt, c) >= 0.0 && !decode_f64(fmt, c).is_nan() {
            v.push(c);
            let neg = match fmt {
                Format::Int8 => (-(c as i8 as i32)) as i8 as u8,
                _ => c | fmt.sign_mask(),
            };
            v.push(neg);
        }
    }
    for c in 0..n {
        if matches!(
            crate::format::decode_parts(fmt, c as u8),
            Decoded::Nan | Decoded::Inf { .. }
        ) {
            v.push(c as u8);
        }
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|c| seen.insert(*c));
    v
}

/// FP32 accumulator patterns: zeros, one, extremes, NaN, infinities.
const C_SPECIALS: [u32; 12] = [
    0x0000_0000,
    0x8000_0000,
    0x3F80_0000,
    0xBF80_0000,
    0x0000_0001,
    0x8080_0000,
    0x7F7F_FFFF,
    0xFF7F_FFFF,
    0x7F80_0000,
    0xFF80_0000,
    0x7FC0_0000,
    0x4B80_0000, // 2^24: where FP32 stops holding every integer
];

/// The code of value `x` in `fmt` (exact), if any.
fn code_of(fmt: Format, x: f64) -> Option<u8> {
    (0..fmt.code_count())
        .map(|c| c as u8)
        .find(|&c| decode_f64(fmt, c) == x && (x != 0.0 || c == 0))
}

/// The code of the smallest positive value of `fmt`.
fn smallest_code(fmt: Format) -> u8 {
    (1..fmt.code_count())
        .map(|c| c as u8)
        .filter(|&c| {
            let v = decode_f64(fmt, c);
            v > 0.0 && v.is_finite()
        })
        .min_by(|&x, &y| decode_f64(fmt, x).total_cmp(&decode_f64(fmt, y)))
        .unwrap_or(1)
}

/// The largest finite code of `fmt` (positive).
fn max_code(fmt: Format) -> u8 {
    fmt.max_code()
}

/// The neutral scale (value 1): E8M0 127, UE4M3 0x38.
fn unit_scale(fmt: Format) -> u8 {
    if fmt == Format::E8M0 {
        127
    } else {
        0x38
    }
}

fn scale_codes(fmt: Format) -> Vec<u8> {
    if fmt == Format::E8M0 {
        patterns::E8M0_SCALES.to_vec()
    } else {
        patterns::UE4M3_SCALES.to_vec()
    }
}

struct Builder<'a> {
    s: &'a DotShape,
}

impl Builder<'_> {
    fn operand(&self, scheme: Scheme, bs: usize, codes: Vec<u8>, scale: u8) -> Operand {
        let _ = scheme;
        Operand {
            codes,
            scales: vec![scale; self.s.k.div_ceil(bs)],
        }
    }
    fn a(&self, codes: Vec<u8>, scale: u8) -> Operand {
        self.operand(self.s.a, self.s.ba, codes, scale)
    }
    fn b(&self, codes: Vec<u8>, scale: u8) -> Operand {
        self.operand(self.s.b, self.s.bb, codes, scale)
    }
}

/// The negation of a code (sign flip; two's complement for INT8).
fn neg(fmt: Format, c: u8) -> u8 {
    match fmt {
        Format::Int8 => (c as i8).wrapping_neg() as u8,
        _ => c ^ fmt.sign_mask(),
    }
}

/// The special dot cases of a shape (see `docs/vectors.md`): zero blocks, one-hot products of
/// every special code pair, all-max blocks under every scale pair, cancelling signs, products
/// spanning more than any alignment window, far accumulators, FP32 rounding boundaries, NaN
/// and Inf in every input.
pub fn dot_patterns(s: &DotShape, level: Level) -> Vec<DotCase> {
    let (fa, fb) = (s.a.element(), s.b.element());
    let (sfa, sfb) = (s.a.scale_format(), s.b.scale_format());
    let (ua, ub) = (unit_scale(sfa), unit_scale(sfb));
    let k = s.k;
    let bld = Builder { s };
    let mut out = Vec::new();
    let zero = |n| vec![0u8; n];
    // zero blocks with every special accumulator
    for &c in &C_SPECIALS {
        out.push(DotCase {
            a: bld.a(zero(k), ua),
            b: bld.b(zero(k), ub),
            c,
        });
    }
    // one-hot: every special code pair at one position (both operands' patterns crossed)
    let (pa, pb) = (special_codes(fa), special_codes(fb));
    let positions: Vec<usize> = match level {
        Level::One => vec![0],
        _ => vec![0, k / 2, k - 1],
    };
    for &p in &positions {
        for &x in &pa {
            for &y in &pb {
                let (mut ac, mut bc) = (zero(k), zero(k));
                ac[p] = x;
                bc[p] = y;
                out.push(DotCase {
                    a: bld.a(ac, ua),
                    b: bld.b(bc, ub),
                    c: 0,
                });
            }
        }
    }
    // all-max blocks under every pair of interesting scales (overflow to Inf, NaN scales)
    let (sca, scb) = (scale_codes(sfa), scale_codes(sfb));
    let pairs: Vec<(u8, u8)> = match level {
        Level::One => sca
            .iter()
            .enumerate()
            .flat_map(|(i, &x)| {
                [
                    (x, scb[i % scb.len()]),
                    (x, scb[scb.len() - 1 - i % scb.len()]),
                ]
            })
            .collect(),
        _ => sca
            .iter()
            .flat_map(|&x| scb.iter().map(move |&y| (x, y)))
            .collect(),
    };
    for &(x, y) in &pairs {
        out.push(DotCase {
            a: bld.a(vec![max_code(fa); k], x),
            b: bld.b(vec![max_code(fb); k], y),
            c: 0,
        });
        // every scale pair with a one-hot 1 x 1 product: the result is exactly the scale
        // product (or its overflow / underflow)
        if let (Some(oa), Some(ob)) = (code_of(fa, 1.0), code_of(fb, 1.0)) {
            let (mut ac, mut bc) = (zero(k), zero(k));
            ac[0] = oa;
            bc[0] = ob;
            out.push(DotCase {
                a: bld.a(ac, x),
                b: bld.b(bc, y),
                c: 0x3F80_0000,
            });
        }
    }
    // cancelling signs: a_i * b_i = +m, -m, +m, ... sums to zero exactly; with a +-0 or tiny C
    // (the sign of an exact zero), and with one small product left over (massive cancellation)
    for &(x, y) in &[
        (max_code(fa), max_code(fb)),
        (smallest_code(fa), smallest_code(fb)),
    ] {
        let ac: Vec<u8> = (0..k)
            .map(|i| if i % 2 == 0 { x } else { neg(fa, x) })
            .collect();
        let bc = vec![y; k];
        for c in [0u32, 0x8000_0000, 0x0000_0001, 0x3F80_0000] {
            out.push(DotCase {
                a: bld.a(ac.clone(), ua),
                b: bld.b(bc.clone(), ub),
                c,
            });
        }
        let mut ac2 = ac.clone();
        ac2[k - 1] = smallest_code(fa);
        out.push(DotCase {
            a: bld.a(ac2, ua),
            b: bld.b(bc, ub),
            c: 0,
        });
    }
    // products spanning more than any alignment window: the largest product and the smallest
    // ones in the same instruction, in both orders, plus a far-away accumulator
    let (smin_a, smin_b) = (smallest_code(fa), smallest_code(fb));
    for order in [false, true] {
        let mut ac: Vec<u8> = vec![smin_a; k];
        let mut bc: Vec<u8> = vec![smin_b; k];
        let big = if order { k - 1 } else { 0 };
        ac[big] = max_code(fa);
        bc[big] = max_code(fb);
        for c in [0u32, 0x3F80_0000, 0xCB80_0000, 0x0080_0000] {
            out.push(DotCase {
                a: bld.a(ac.clone(), ua),
                b: bld.b(bc.clone(), ub),
                c,
            });
        }
        // the same with the small products negative: the truncation direction matters
        let ac2: Vec<u8> = ac
            .iter()
            .enumerate()
            .map(|(i, &x)| if i == big { x } else { neg(fa, x) })
            .collect();
        out.push(DotCase {
            a: bld.a(ac2, ua),
            b: bld.b(bc.clone(), ub),
            c: 0,
        });
    }
    // accumulator far above / far below the products (MXDOTP's reach, alignment with C)
    if let (Some(oa), Some(ob)) = (code_of(fa, 1.0), code_of(fb, 1.0)) {
        for ce in [20i32, 24, 25, 26, 34, 35, 36, 37, 40, 70, -20, -30, -60] {
            for sign in [0u32, 0x8000_0000] {
                let c = sign | (((ce + 127) as u32) << 23);
                let (mut ac, mut bc) = (zero(k), zero(k));
                ac[0] = oa;
                bc[0] = ob;
                ac[1] = oa;
                bc[1] = neg(fb, ob);
                ac[2] = oa;
                bc[2] = ob;
                out.push(DotCase {
                    a: bld.a(ac, ua),
                    b: bld.b(bc, ub),
                    c,
                });
            }
        }
        // FP32 rounding boundaries: C = 2^e * (1 + j ulp) plus products summing to exactly
        // half an ulp of C, and half an ulp plus or minus the smallest product
        for e in [0i32, 24, -100] {
            for j in [0u32, 1] {
                let c = (((e + 127) as u32) << 23) | j;
                // one product of value 2^(e-24): unit elements, scales summing to e-24
                let se = e - 24;
                let (xa, xb) = if sfa == Format::E8M0 && sfb == Format::E8M0 {
                    let xa = (se / 2).clamp(-127, 127);
                    ((xa + 127) as u8, (se - xa + 127).clamp(0, 254) as u8)
                } else {
                    (ua, ub)
                };
                let mut tail = vec![(0u8, 0u8), (oa, smin_b), (oa, neg(fb, smin_b))];
                if fa != Format::Int8 {
                    tail.push((neg(fa, oa), smin_b));
                }
                for (ta, tb) in tail {
                    let (mut ac, mut bc) = (zero(k), zero(k));
                    ac[0] = oa;
                    bc[0] = ob;
                    ac[1] = ta;
                    bc[1] = tb;
                    out.push(DotCase {
                        a: bld.a(ac.clone(), xa),
                        b: bld.b(bc.clone(), xb),
                        c,
                    });
                    out.push(DotCase {
                        a: bld.a(ac, xa),
                        b: bld.b(bc, xb),
                        c: c ^ 0x8000_0000,
                    });
                }
            }
        }
    }
    // NaN anywhere: an element, a scale, the accumulator; Inf elements against zero
    for fmt_side in [0, 1] {
        let f = if fmt_side == 0 { fa } else { fb };
        for c in special_codes(f) {
            if !matches!(
                crate::format::decode_parts(f, c),
                Decoded::Nan | Decoded::Inf { .. }
            ) {
                continue;
            }
            let (mut ac, mut bc) = (vec![max_code(fa); k], vec![max_code(fb); k]);
            if fmt_side == 0 {
                ac[k / 2] = c;
                bc[k / 2] = 0;
            } else {
                bc[k - 1] = c;
            }
            out.push(DotCase {
                a: bld.a(ac, ua),
                b: bld.b(bc, ub),
                c: 0,
            });
        }
    }
    let nan_a = if sfa == Format::E8M0 { 0xFF } else { 0x7F };
    out.push(DotCase {
        a: bld.a(vec![max_code(fa); k], nan_a),
        b: bld.b(vec![0; k], ub),
        c: 0,
    });
    out.push(DotCase {
        a: bld.a(zero(k), ua),
        b: bld.b(zero(k), ub),
        c: 0x7FC0_0000,
    });
    out
}

/// A random dot case: codes mostly finite (one in 64 anywhere in the code space), scales near
/// 1 (a window of +-8 binades; one in eight anywhere), C of the magnitude the products have
/// (one in eight any pattern).
pub fn random_dot(s: &DotShape, rng: &mut ChaCha8Rng) -> DotCase {
    let (fa, fb) = (s.a.element(), s.b.element());
    let (na, nb) = s.blocks();
    let code = |rng: &mut ChaCha8Rng, f: Format| -> u8 {
        let r = rng.next_u64();
        let c = (r % f.code_count() as u64) as u8;
        if !(r >> 32).is_multiple_of(64)
            && matches!(
                crate::format::decode_parts(f, c),
                Decoded::Nan | Decoded::Inf { .. }
            )
        {
            0
        } else {
            c
        }
    };
    let scale = |rng: &mut ChaCha8Rng, f: Format| -> u8 {
        let r = rng.next_u64();
        if f == Format::E8M0 {
            if r.is_multiple_of(8) {
                ((r >> 8) % 256) as u8
            } else {
                (119 + (r >> 8) % 17) as u8
            }
        } else if r.is_multiple_of(8) {
            ((r >> 8) % 128) as u8
        } else {
            (0x30 + (r >> 8) % 16) as u8
        }
    };
    let a = Operand {
        codes: (0..s.k).map(|_| code(rng, fa)).collect(),
        scales: (0..na).map(|_| scale(rng, s.a.scale_format())).collect(),
    };
    let b = Operand {
        codes: (0..s.k).map(|_| code(rng, fb)).collect(),
        scales: (0..nb).map(|_| scale(rng, s.b.scale_format())).collect(),
    };
    let r = rng.next_u64();
    let c = if r.is_multiple_of(8) {
        (r >> 32) as u32
    } else {
        let e = ilog2_max(fa) + ilog2_max(fb) + 4 - (below(rng, 40) as i32);
        let e = e.clamp(-126, 127);
        ((r as u32 >> 8) & 0x8000_0000)
            | (((e + 127) as u32) << 23)
            | ((r >> 40) as u32 & 0x7F_FFFF)
    };
    DotCase { a, b, c }
}

fn ilog2_max(f: Format) -> i32 {
    patterns::ilog2(f.max_normal())
}

/// Every code pair as a one-hot product at position 0, scales 1, C = 0.
fn every_pair(s: &DotShape) -> Vec<DotCase> {
    let (fa, fb) = (s.a.element(), s.b.element());
    let bld = Builder { s };
    let (ua, ub) = (
        unit_scale(s.a.scale_format()),
        unit_scale(s.b.scale_format()),
    );
    let mut out = Vec::new();
    for x in 0..fa.code_count() {
        for y in 0..fb.code_count() {
            let (mut ac, mut bc) = (vec![0u8; s.k], vec![0u8; s.k]);
            ac[0] = x as u8;
            bc[0] = y as u8;
            out.push(DotCase {
                a: bld.a(ac, ua),
                b: bld.b(bc, ub),
                c: 0,
            });
        }
    }
    out
}

/// The datapath a spec names, with its name and hash for the manifest.
pub fn load_datapath(spec: &GenSpec) -> Result<(DatapathConfig, DatapathInfo)> {
    let name = spec.datapath.as_deref().ok_or_else(|| {
        Error::invalid(format!(
            "--op {} needs --datapath <preset|file.toml>",
            spec.op
        ))
    })?;
    let cfg = DatapathConfig::load(name)?;
    let json = serde_json::to_string(&cfg)
        .map_err(|e| Error::invalid(format!("cannot serialize datapath config: {e}")))?;
    let preset = if crate::datapath::preset_text(name).is_some() {
        name.to_string()
    } else {
        format!("{} (file {name})", cfg.name)
    };
    Ok((
        cfg,
        DatapathInfo {
            preset,
            sha256: sha256_hex(json.as_bytes()),
            k: 0,
        },
    ))
}

/// The operand schemes of a dot/gemm-tile spec.
pub fn operand_schemes(spec: &GenSpec) -> Result<(Scheme, Scheme)> {
    let pick = |x: &Option<String>, side: &str| -> Result<Scheme> {
        x.as_deref()
            .or(spec.format.as_deref())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--op {} needs --format or --{side}-format",
                    spec.op
                ))
            })?
            .parse()
    };
    Ok((pick(&spec.a_format, "a")?, pick(&spec.b_format, "b")?))
}

fn cases(s: &DotShape, spec: &GenSpec, n_random: usize) -> Vec<DotCase> {
    let mut v = match spec.level {
        Level::Exhaustive => {
            let mut v = every_pair(s);
            v.extend(dot_patterns(s, Level::Two));
            v
        }
        l => dot_patterns(s, l),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    v.extend((0..n_random).map(|_| random_dot(s, &mut rng)));
    v
}

fn row<'a>(scheme: Scheme, bs: usize, o: &'a Operand) -> OperandRow<'a> {
    OperandRow {
        scheme,
        block_size: bs,
        codes: &o.codes,
        scales: &o.scales,
    }
}

/// Generate a `dot` or `gemm-tile` pack.
pub fn generate(spec: &GenSpec) -> Result<Pack> {
    let (a, b) = operand_schemes(spec)?;
    let (cfg, mut info) = load_datapath(spec)?;
    let (ba, bb) = (a.default_block(), b.default_block());
    let k = vector_k(&cfg, a, ba, b, bb)?;
    if k > 512 {
        return Err(Error::invalid(format!(
            "datapath '{}' gives K = {k} per vector; at most 512 supported",
            cfg.name
        )));
    }
    info.k = k;
    let s = DotShape { a, b, ba, bb, k };
    let n_random = spec.count.unwrap_or(match spec.level {
        Level::One => 300,
        Level::Two => 3000,
        Level::Exhaustive => 0,
    });
    let cases = cases(&s, spec, n_random);
    let (layout, rows) = match spec.op {
        Op::GemmTile => {
            let (m, n) = spec.tile.unwrap_or((16, 8));
            let layout = tile_layout(&s, m, n);
            let tiles = cases.len().div_ceil(m.max(n));
            let mut rows = Vec::with_capacity(tiles);
            for t in 0..tiles {
                let pick = |i: usize| &cases[(t * m.max(n) + i) % cases.len()];
                let ta = tensor(a, ba, k, (0..m).map(|i| &pick(i).a));
                let tb = tensor(b, bb, k, (0..n).map(|j| &pick(j).b));
                let c: Vec<f32> = (0..m * n)
                    .map(|x| f32::from_bits(pick(x % m.max(n)).c))
                    .collect();
                let d = datapath::gemm(&ta, &tb, Some(&c), &cfg)?;
                let mut r: Vec<u64> = Vec::new();
                r.extend(ta.codes.iter().map(|&x| x as u64));
                r.extend(ta.scales.iter().map(|&x| x as u64));
                r.extend(tb.codes.iter().map(|&x| x as u64));
                r.extend(tb.scales.iter().map(|&x| x as u64));
                r.extend(c.iter().map(|x| x.to_bits() as u64));
                r.extend(d.iter().map(|x| x.to_bits() as u64));
                rows.push(r);
            }
            (layout, rows)
        }
        _ => {
            let layout = dot_layout(&s);
            let mut rows = Vec::with_capacity(cases.len());
            for cs in &cases {
                let d = datapath::dot(
                    row(a, ba, &cs.a),
                    row(b, bb, &cs.b),
                    f32::from_bits(cs.c),
                    &cfg,
                )?;
                let mut r: Vec<u64> = Vec::new();
                r.extend(cs.a.codes.iter().map(|&x| x as u64));
                r.extend(cs.a.scales.iter().map(|&x| x as u64));
                r.extend(cs.b.codes.iter().map(|&x| x as u64));
                r.extend(cs.b.scales.iter().map(|&x| x as u64));
                r.push(cs.c as u64);
                r.push(d.to_bits() as u64);
                rows.push(r);
            }
            (layout, rows)
        }
    };
    let mut formats = BTreeMap::new();
    formats.insert("a".to_string(), a.to_string());
    formats.insert("b".to_string(), b.to_string());
    let mut options = BTreeMap::new();
    options.insert("k".to_string(), k.to_string());
    options.insert("block_size_b".to_string(), bb.to_string());
    if spec.op == Op::GemmTile {
        let (m, n) = spec.tile.unwrap_or((16, 8));
        options.insert("tile".to_string(), format!("{m}x{n}"));
    }
    let manifest = Manifest {
        generator: GENERATOR_VERSION.to_string(),
        op: spec.op.name().to_string(),
        formats,
        scale_rule: None,
        block_size: Some(ba),
        rounding: format!("{:?}", cfg.output_rounding).to_ascii_lowercase(),
        overflow: None,
        datapath: Some(info),
        options,
        seed: spec.seed,
        level: spec.level.to_string(),
        random_count: n_random,
        count: rows.len(),
        line_bits: layout.line_bits(),
        fields: layout.fields,
        files: BTreeMap::new(),
    };
    Ok(Pack { manifest, rows })
}

/// Stack operand rows into an unquantized-free [`MxTensor`] (codes and scales as given).
fn tensor<'a>(
    scheme: Scheme,
    bs: usize,
    k: usize,
    rows: impl Iterator<Item = &'a Operand>,
) -> MxTensor {
    let mut codes = Vec::new();
    let mut scales = Vec::new();
    let mut n = 0;
    for r in rows {
        codes.extend_from_slice(&r.codes);
        scales.extend_from_slice(&r.scales);
        n += 1;
    }
    MxTensor {
        scheme,
        block_size: bs,
        rows: n,
        cols: k,
        codes,
        scales,
        global_scale: 1.0,
        clipped_blocks: 0,
    }
}
