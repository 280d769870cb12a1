//! Vector generation: what each operation's vectors hold and how their expected outputs are
//! computed from the golden models (`format` for casts, `mx` for block quantization,
//! `datapath` for dot products and GEMM tiles).

use super::layout::{Dir, FieldKind, Layout, LayoutBuilder};
use super::pack::{Manifest, Pack, GENERATOR_VERSION};
use super::patterns::{self, Level};
use crate::error::{Error, Result};
use crate::format::{
    decode_f32, encode_with_flags, stochastic_bits, CastOptions, Format, Overflow, Rounding,
};
use crate::mx::{quantize, MxConfig, ScaleRule, Scheme};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};

/// The operations vectors can be generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// float32 -> element or scale code, with exception flags.
    Cast,
    /// code -> float32 (exact).
    Decode,
    /// One block of float32 -> scale code and element codes.
    Quantize,
    /// Two blocks of codes with scales and an FP32 accumulator -> FP32, one instruction's K.
    Dot,
    /// An instruction-shaped tile: A (M x K) and B (K x N) codes and scales, C -> D.
    GemmTile,
}

impl Op {
    /// Name used in manifests and file names.
    pub fn name(self) -> &'static str {
        match self {
            Op::Cast => "cast",
            Op::Decode => "decode",
            Op::Quantize => "quantize",
            Op::Dot => "dot",
            Op::GemmTile => "gemm-tile",
        }
    }
}

impl std::str::FromStr for Op {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "cast" => Op::Cast,
            "decode" => Op::Decode,
            "quantize" => Op::Quantize,
            "dot" => Op::Dot,
            "gemm-tile" | "gemm" => Op::GemmTile,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown op '{s}' (expected cast, decode, quantize, dot or gemm-tile)"
                )))
            }
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that determines a pack. The same spec always gives byte-identical files.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSpec {
    /// Operation.
    pub op: Op,
    /// Format: a scalar format for cast/decode (`e4m3`, ...), a scheme for quantize
    /// (`mxfp8_e4m3`, `mxfp4`, `nvfp4`, ...), both operands' scheme for dot/gemm-tile.
    pub format: Option<String>,
    /// Scheme of operand A (dot, gemm-tile), overriding `format`.
    pub a_format: Option<String>,
    /// Scheme of operand B (dot, gemm-tile), overriding `format`.
    pub b_format: Option<String>,
    /// Scale rule (quantize).
    pub scale_rule: ScaleRule,
    /// Block size (quantize); the scheme's default when `None`.
    pub block_size: Option<usize>,
    /// Rounding (cast, quantize).
    pub rounding: Rounding,
    /// Overflow policy (cast).
    pub overflow: Overflow,
    /// Datapath preset name or configuration file (dot, gemm-tile).
    pub datapath: Option<String>,
    /// Tile shape M x N (gemm-tile); K is the datapath's instruction K.
    pub tile: Option<(usize, usize)>,
    /// Level.
    pub level: Level,
    /// Number of random cases; a per-op default when `None`.
    pub count: Option<usize>,
    /// Seed of the random cases.
    pub seed: u64,
}

impl GenSpec {
    /// A spec with the defaults of the CLI: RNE, saturate, floor, level 1, seed 1.
    pub fn new(op: Op, format: &str) -> Self {
        GenSpec {
            op,
            format: Some(format.to_string()),
            a_format: None,
            b_format: None,
            scale_rule: ScaleRule::Floor,
            block_size: None,
            rounding: Rounding::Rne,
            overflow: Overflow::Saturate,
            datapath: None,
            tile: None,
            level: Level::One,
            count: None,
            seed: 1,
        }
    }

    fn random_count(&self, l1: usize, l2: usize) -> usize {
        self.count.unwrap_or(match self.level {
            Level::One => l1,
            Level::Two => l2,
            Level::Exhaustive => 0,
        })
    }

    fn need_format(&self) -> Result<&str> {
        self.format
            .as_deref()
            .ok_or_else(|| Error::invalid(format!("--op {} needs --format", self.op)))
    }
}

fn base_manifest(spec: &GenSpec, layout: Layout, random_count: usize) -> Manifest {
    Manifest {
        generator: GENERATOR_VERSION.to_string(),
        op: spec.op.name().to_string(),
        formats: BTreeMap::new(),
        scale_rule: None,
        block_size: None,
        rounding: spec.rounding.to_string(),
        overflow: None,
        datapath: None,
        options: BTreeMap::new(),
        seed: spec.seed,
        level: spec.level.to_string(),
        random_count,
        count: 0,
        line_bits: layout.line_bits(),
        fields: layout.fields,
        files: BTreeMap::new(),
    }
}

/// Generate the pack `spec` describes.
pub fn generate(spec: &GenSpec) -> Result<Pack> {
    match spec.op {
        Op::Cast => gen_cast(spec),
        Op::Decode => gen_decode(spec),
        Op::Quantize => gen_quantize(spec),
        Op::Dot | Op::GemmTile => super::dot::generate(spec),
    }
}

/// Keep the first occurrence of each item, in order.
fn dedup_keep_order<T: Clone + Eq + std::hash::Hash>(v: Vec<T>) -> Vec<T> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

fn gen_cast(spec: &GenSpec) -> Result<Pack> {
    let fmt: Format = spec.need_format()?.parse()?;
    let stochastic = spec.rounding == Rounding::Stochastic;
    let mut b = LayoutBuilder::default().field("x", Dir::In, 32, FieldKind::F32);
    if stochastic {
        b = b.field("rand", Dir::In, 32, FieldKind::Random);
    }
    let layout = b
        .code("code", Dir::Out, fmt)
        .field("flags", Dir::Out, 5, FieldKind::Flags)
        .build();
    let n_random = spec.random_count(1000, 10000);
    let mut inputs = match spec.level {
        Level::Exhaustive => patterns::cast_exhaustive(fmt),
        l => patterns::cast_patterns(fmt, l),
    };
    inputs = dedup_keep_order(inputs);
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    inputs.extend((0..n_random).map(|_| patterns::random_cast_input(fmt, &mut rng)));
    let opts = CastOptions {
        rounding: spec.rounding,
        overflow: spec.overflow,
        flush_subnormals: false,
        int8_allow_min: false,
        seed: spec.seed,
    };
    let rows = inputs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let (code, flags) = encode_with_flags(fmt, f32::from_bits(x) as f64, &opts, i as u64);
            let mut r = vec![x as u64];
            if stochastic {
                r.push(stochastic_bits(spec.seed, i as u64) as u64);
            }
            r.extend([code as u64, flags.bits() as u64]);
            r
        })
        .collect();
    let mut m = base_manifest(spec, layout, n_random);
    m.formats.insert("format".into(), fmt.to_string());
    m.overflow = Some(match spec.overflow {
        Overflow::Saturate => "saturate".into(),
        Overflow::Nonsat => "nonsat".into(),
    });
    Ok(Pack { manifest: m, rows })
}

fn gen_decode(spec: &GenSpec) -> Result<Pack> {
    let fmt: Format = spec.need_format()?.parse()?;
    let layout = LayoutBuilder::default()
        .code("code", Dir::In, fmt)
        .field("y", Dir::Out, 32, FieldKind::F32)
        .build();
    // every code at every level: the domain is at most 256 codes
    let rows = (0..fmt.code_count())
        .map(|c| vec![c as u64, decode_f32(fmt, c as u8).to_bits() as u64])
        .collect();
    let mut m = base_manifest(spec, layout, 0);
    m.formats.insert("format".into(), fmt.to_string());
    m.rounding = "exact".into();
    Ok(Pack { manifest: m, rows })
}

/// The quantizer configuration a quantize pack uses: the scheme's defaults with the spec's
/// rule, block size and rounding; NVFP4's per-tensor scale off (a pack holds single blocks).
pub fn quantize_config(spec: &GenSpec) -> Result<MxConfig> {
    let scheme: Scheme = spec.need_format()?.parse()?;
    let mut cfg = MxConfig::new(scheme).with_rule(spec.scale_rule);
    if let Some(k) = spec.block_size {
        if !(1..=256).contains(&k) {
            return Err(Error::invalid(format!(
                "block size {k} out of range (1 to 256 for vectors)"
            )));
        }
        cfg = cfg.with_block(k);
    }
    cfg.rounding = spec.rounding;
    cfg.nv_tensor_scale = false;
    Ok(cfg)
}

fn gen_quantize(spec: &GenSpec) -> Result<Pack> {
    let cfg = quantize_config(spec)?;
    let (elem, sfmt, k) = (
        cfg.scheme.element(),
        cfg.scheme.scale_format(),
        cfg.block_size,
    );
    if k < 3 {
        return Err(Error::invalid(
            "quantize vectors need a block size of at least 3",
        ));
    }
    let stochastic = spec.rounding == Rounding::Stochastic;
    let global = matches!(cfg.rule, ScaleRule::Prescale(_))
        || matches!(cfg.rule, ScaleRule::Mse { alphas } if alphas >= 2);
    let mut b = LayoutBuilder::default().array("x", k, Dir::In, 32, FieldKind::F32);
    if stochastic {
        b = b.array("rand", k, Dir::In, 32, FieldKind::Random);
    }
    b = b.code("scale", Dir::Out, sfmt);
    if global {
        b = b.field("gscale", Dir::Out, 32, FieldKind::F32);
    }
    let layout = b
        .array("q", k, Dir::Out, elem.bits(), FieldKind::Code(elem))
        .build();
    let n_random = spec.random_count(200, 2000);
    let mut blocks = match spec.level {
        Level::One => patterns::quantize_patterns(elem, sfmt, k, Level::One),
        _ => patterns::quantize_patterns(elem, sfmt, k, Level::Two),
    };
    if spec.level == Level::Exhaustive {
        // every element rounding decision inside a block: each cast boundary value of the
        // element format, beside the block maximum that fixes the scale, at scales 1 and 2^-20
        let maxn = elem.max_normal() as f32;
        for s in [1.0f32, (2.0f32).powi(-20)] {
            for x in patterns::cast_exhaustive(elem) {
                let v = f32::from_bits(x) * s;
                let mut blk = vec![0.0f32; k];
                blk[0] = maxn * s;
                blk[1] = v;
                blk[2] = -v;
                blocks.push(blk);
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let pat_level = if spec.level == Level::One {
        Level::One
    } else {
        Level::Two
    };
    blocks
        .extend((0..n_random).map(|_| patterns::random_block(elem, sfmt, k, pat_level, &mut rng)));
    let mut rows = Vec::with_capacity(blocks.len());
    for (i, blk) in blocks.iter().enumerate() {
        let mut c = cfg.clone();
        c.seed = spec.seed.wrapping_add(i as u64);
        let t = quantize(blk, 1, k, &c)?;
        let mut r: Vec<u64> = blk.iter().map(|x| x.to_bits() as u64).collect();
        if stochastic {
            r.extend((0..k).map(|j| stochastic_bits(c.seed, j as u64) as u64));
        }
        r.push(t.scales[0] as u64);
        if global {
            r.push((t.global_scale as f32).to_bits() as u64);
        }
        r.extend(t.codes.iter().map(|&q| q as u64));
        rows.push(r);
    }
    let mut m = base_manifest(spec, layout, n_random);
    m.formats.insert("scheme".into(), cfg.scheme.to_string());
    m.formats.insert("element".into(), elem.to_string());
    m.formats.insert("scale".into(), sfmt.to_string());
    m.scale_rule = Some(cfg.rule.to_string());
    m.block_size = Some(k);
    m.options
        .insert("zero_block_scale".into(), "smallest (code 0)".into());
    m.options
        .insert("element_overflow".into(), "saturate".into());
    if cfg.scheme == Scheme::Nvfp4 {
        m.options.insert(
            "nv_tensor_scale".into(),
            "off (block scale = amax / 6 in UE4M3)".into(),
        );
    }
    if stochastic {
        m.options.insert(
            "stochastic_seed".into(),
            "seed + vector index; rand<j> are the bits used for element j".into(),
        );
    }
    Ok(Pack { manifest: m, rows })
}
