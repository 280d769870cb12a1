//! Tensor-core hardware description ([`TensorCoreConfig`]) and the shipped presets
//! (`models/hw/core/*.toml`, embedded in the binary).

use crate::error::{Error, Result};
use crate::mx::Scheme;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How a GEMM is mapped onto the compute array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataflow {
    /// Tensor-core style: each core keeps an output tile in accumulator registers and streams
    /// K through MMA instructions (NVIDIA mma/wgmma/tcgen05, MXDOTP register kernels).
    OutputStationary,
    /// Systolic array as SCALE-Sim models it (Samajdar et al., ISPASS 2020): a fold of K x N
    /// weights is held in the `rows x cols` array and all M rows are streamed through it;
    /// each fold takes `2R + C + T - 2` cycles.
    WeightStationary,
}

impl std::fmt::Display for Dataflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dataflow::OutputStationary => "output-stationary",
            Dataflow::WeightStationary => "weight-stationary",
        })
    }
}

/// The order in which output tiles are handed to cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LoopOrder {
    /// Tiles along N vary fastest (row-major raster over the output): consecutive tiles
    /// share the same A (activation) panel.
    #[default]
    MOuter,
    /// Tiles along M vary fastest: consecutive tiles share the same B (weight) panel.
    NOuter,
}

impl std::fmt::Display for LoopOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoopOrder::MOuter => "m-outer",
            LoopOrder::NOuter => "n-outer",
        })
    }
}

/// One matrix-multiply-accumulate instruction of a core for one operand scheme.
///
/// Output-stationary: the instruction computes an `m x n` output block over a depth of `k`
/// (for example Blackwell `tcgen05.mma.kind::mxf8f6f4` with M = 128, N up to 256, K = 32).
/// Narrower instructions (N a multiple of `n_step`, down to `n_step`) take proportionally
/// fewer cycles, but never fewer than the core's issue interval.
///
/// Weight-stationary: one instruction is one fold of the systolic array; `k` is the depth of
/// K held in the array (rows x element pairs per PE), `n` the number of columns, `m` is
/// ignored, and `cycles` is ignored (the fold time follows SCALE-Sim's formula).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmaInstr {
    /// Output rows per instruction.
    pub m: u32,
    /// Maximum output columns per instruction.
    pub n: u32,
    /// Granularity of the instruction's N (N may be any multiple of it up to `n`);
    /// defaults to `n` (fixed shape).
    #[serde(default)]
    pub n_step: Option<u32>,
    /// Reduction depth per instruction (elements of K).
    pub k: u32,
    /// Cycles a full `m x n x k` instruction occupies the core's MMA units (its reciprocal
    /// throughput). MACs per cycle = m * n * k / cycles.
    pub cycles: u32,
    /// Datapath preset that computes this instruction bit-exactly (overrides the core's
    /// default `datapath`).
    #[serde(default)]
    pub datapath: Option<String>,
    /// Energy per useful multiply-accumulate in picojoules (optional).
    #[serde(default)]
    pub pj_per_mac: Option<f64>,
}

impl MmaInstr {
    /// Multiply-accumulates per cycle of one core at full occupancy.
    pub fn macs_per_cycle(&self) -> f64 {
        self.m as f64 * self.n as f64 * self.k as f64 / self.cycles.max(1) as f64
    }

    /// The N granularity.
    pub fn n_step(&self) -> u32 {
        self.n_step.unwrap_or(self.n)
    }
}

/// Geometry of a weight-stationary systolic array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayGeometry {
    /// PE rows (R): the K direction in weight-stationary mode.
    pub rows: u32,
    /// PE columns (C): the N direction.
    pub cols: u32,
}

/// Energy per byte moved at each memory level (picojoules); all optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EnergyConfig {
    /// Off-chip (DRAM/HBM) energy per byte.
    #[serde(default)]
    pub offchip_pj_per_byte: f64,
    /// Shared cache (L2) energy per byte.
    #[serde(default)]
    pub l2_pj_per_byte: f64,
    /// Per-core buffer (shared memory / TCDM / SRAM) energy per byte read by the array.
    #[serde(default)]
    pub buffer_pj_per_byte: f64,
}

/// Fixed tile sizes (output-stationary), overriding the automatic choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileOverride {
    /// Output rows per core tile (a multiple of the instruction's M).
    pub m: u32,
    /// Output columns per core tile (a multiple of the instruction's N step).
    pub n: u32,
    /// K depth per pipeline stage (a multiple of the instruction's K).
    pub k: u32,
}

/// A tensor-core (or systolic-array) accelerator, as the cycle simulator sees it.
///
/// Memory levels: off-chip memory (bandwidth shared by all cores) -> optional shared cache
/// (L2: lets concurrently running tiles share operand panels) -> per-core operand buffer
/// (shared memory, TCDM or SRAM; holds one or two pipeline stages) -> MMA units, which
/// accumulate into per-core accumulator registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorCoreConfig {
    /// Short name (the preset name for shipped presets).
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Clock of the MMA units in GHz.
    pub clock_ghz: f64,
    /// Number of cores (SMs, clusters, arrays) working in parallel.
    pub cores: u32,
    /// Output-stationary (tensor core) or weight-stationary (systolic array).
    pub dataflow: Dataflow,
    /// Default datapath preset name (exact, ocp-fp32, mxdotp, blackwell-mxf8f6f4,
    /// blackwell-mxf4nvf4, hopper-fp8); an instruction may override it.
    pub datapath: String,
    /// Minimum cycles between two MMA issues on one core.
    #[serde(default = "one")]
    pub issue_interval: u32,
    /// Cycles from the last MMA issue of a tile to its result being in the accumulators.
    #[serde(default)]
    pub pipeline_latency: u32,
    /// FP32 accumulator registers per core: bounds the output tile (tile_m * tile_n).
    pub accumulators: u64,
    /// Bytes of the per-core operand buffer (shared memory / TCDM / SRAM).
    pub buffer_bytes: u64,
    /// Bytes per cycle the per-core buffer delivers to the MMA units.
    pub buffer_bytes_per_cycle: f64,
    /// Bytes of the shared cache (0: none; then no operand sharing between cores).
    #[serde(default)]
    pub l2_bytes: u64,
    /// Bytes per cycle of the shared cache, all cores together (`inf`: unlimited).
    #[serde(default = "infinite")]
    pub l2_bytes_per_cycle: f64,
    /// Off-chip bandwidth in GB/s (1e9 bytes per second; `inf`: unlimited).
    pub offchip_gbps: f64,
    /// Whether operand loads of the next K stage overlap the current stage's MMAs.
    pub double_buffer: bool,
    /// Tile raster order.
    #[serde(default)]
    pub loop_order: LoopOrder,
    /// Whether the tiler may compute C^T = B A^T (swap operands) when that wastes less of
    /// the instruction shape (for example decode with few tokens).
    #[serde(default = "yes")]
    pub allow_swap: bool,
    /// Fixed tile sizes (output-stationary); chosen automatically when absent.
    #[serde(default)]
    pub tile: Option<TileOverride>,
    /// Systolic array geometry (weight-stationary only).
    #[serde(default)]
    pub array: Option<ArrayGeometry>,
    /// The MMA instruction per operand scheme (keys: mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2,
    /// mxfp6_e2m3, mxfp4, mxint8, nvfp4).
    pub mma: BTreeMap<String, MmaInstr>,
    /// Energy per byte at each level (optional).
    #[serde(default)]
    pub energy: Option<EnergyConfig>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn infinite() -> f64 {
    f64::INFINITY
}

/// The shipped presets: (name, TOML text).
pub const PRESETS: &[(&str, &str)] = &[
    ("b200", include_str!("../../models/hw/core/b200.toml")),
    (
        "h100-sxm",
        include_str!("../../models/hw/core/h100-sxm.toml"),
    ),
    (
        "mxdotp-cluster",
        include_str!("../../models/hw/core/mxdotp-cluster.toml"),
    ),
    (
        "systolic-128",
        include_str!("../../models/hw/core/systolic-128.toml"),
    ),
];

impl TensorCoreConfig {
    /// The names of the shipped presets.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// A shipped preset by name.
    pub fn preset(name: &str) -> Result<Self> {
        let (n, text) = PRESETS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown tensor-core preset '{name}' (presets: {})",
                    Self::preset_names().join(", ")
                ))
            })?;
        Self::from_toml(text, &format!("<preset {n}>"))
    }

    /// A preset name, or the path of a TOML file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if PRESETS
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name_or_path))
        {
            return Self::preset(name_or_path);
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "'{name_or_path}' is neither a tensor-core preset ({}) nor an existing file",
                Self::preset_names().join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, name_or_path)
    }

    /// Parse and validate TOML text; `origin` names the source in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: TensorCoreConfig =
            toml::from_str(text).map_err(|e| Error::malformed(origin, e.to_string()))?;
        cfg.validate()
            .map_err(|e| Error::malformed(origin, e.to_string()))?;
        Ok(cfg)
    }

    /// Check every field for consistency; the message names the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if !(self.clock_ghz.is_finite() && self.clock_ghz > 0.0) {
            return bad(format!("clock_ghz must be > 0, found {}", self.clock_ghz));
        }
        if self.cores == 0 {
            return bad("cores must be >= 1".into());
        }
        if self.issue_interval == 0 {
            return bad("issue_interval must be >= 1".into());
        }
        if self.accumulators == 0 {
            return bad("accumulators must be >= 1".into());
        }
        if self.buffer_bytes == 0 {
            return bad("buffer_bytes must be >= 1".into());
        }
        for (what, v) in [
            ("buffer_bytes_per_cycle", self.buffer_bytes_per_cycle),
            ("l2_bytes_per_cycle", self.l2_bytes_per_cycle),
            ("offchip_gbps", self.offchip_gbps),
        ] {
            if v.is_nan() || v <= 0.0 {
                return bad(format!("{what} must be > 0 (or inf), found {v}"));
            }
        }
        if self.mma.is_empty() {
            return bad("mma: at least one instruction ([mma.<scheme>]) is required".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for (key, ins) in &self.mma {
            let s: Scheme = key
                .parse()
                .map_err(|e| Error::invalid(format!("mma.{key}: {e}")))?;
            if !seen.insert(s) {
                return bad(format!("mma.{key}: scheme {s} is given twice"));
            }
            if ins.m == 0 || ins.n == 0 || ins.k == 0 || ins.cycles == 0 {
                return bad(format!("mma.{key}: m, n, k and cycles must all be >= 1"));
            }
            let step = ins.n_step();
            if step == 0 || ins.n % step != 0 {
                return bad(format!(
                    "mma.{key}: n_step ({step}) must be >= 1 and divide n ({})",
                    ins.n
                ));
            }
            if let Some(e) = ins.pj_per_mac {
                if !(e.is_finite() && e >= 0.0) {
                    return bad(format!("mma.{key}: pj_per_mac must be >= 0"));
                }
            }
            if self.dataflow == Dataflow::OutputStationary
                && (ins.m as u64) * (ins.n as u64) > self.accumulators
            {
                return bad(format!(
                    "mma.{key}: one instruction's output ({} x {}) exceeds the {} accumulators",
                    ins.m, ins.n, self.accumulators
                ));
            }
            if self.dataflow == Dataflow::WeightStationary {
                let arr = self.array.as_ref().ok_or_else(|| {
                    Error::invalid("dataflow weight-stationary needs an [array] rows/cols section")
                })?;
                if ins.n != arr.cols || ins.k % arr.rows != 0 {
                    return bad(format!(
                        "mma.{key}: weight-stationary needs n = array cols ({}) and k a multiple of array rows ({}); found n = {}, k = {}",
                        arr.cols, arr.rows, ins.n, ins.k
                    ));
                }
            }
        }
        if let Some(a) = &self.array {
            if a.rows == 0 || a.cols == 0 {
                return bad("array: rows and cols must be >= 1".into());
            }
        }
        if let Some(t) = &self.tile {
            if t.m == 0 || t.n == 0 || t.k == 0 {
                return bad("tile: m, n and k must be >= 1".into());
            }
        }
        if let Some(e) = &self.energy {
            for (what, v) in [
                ("offchip_pj_per_byte", e.offchip_pj_per_byte),
                ("l2_pj_per_byte", e.l2_pj_per_byte),
                ("buffer_pj_per_byte", e.buffer_pj_per_byte),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return bad(format!("energy.{what} must be >= 0, found {v}"));
                }
            }
        }
        Ok(())
    }

    /// The instruction for one scheme, if the core has one.
    pub fn instr_for(&self, s: Scheme) -> Option<&MmaInstr> {
        self.mma
            .iter()
            .find(|(k, _)| k.parse::<Scheme>().ok() == Some(s))
            .map(|(_, v)| v)
    }

    /// The instruction used for A in scheme `a` times B in scheme `b`. Equal schemes use
    /// their own instruction; mixed schemes use the slower of the two (lower MACs per cycle,
    /// then smaller K), as block-scaled MMAs run mixed operands at the rate of the wider one.
    pub fn instr(&self, a: Scheme, b: Scheme) -> Result<&MmaInstr> {
        let get = |s: Scheme| {
            self.instr_for(s).ok_or_else(|| {
                Error::invalid(format!(
                    "hardware '{}' has no MMA instruction for {s} (it supports: {})",
                    self.name,
                    self.mma.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        };
        let ia = get(a)?;
        if a == b {
            return Ok(ia);
        }
        let ib = get(b)?;
        let ka = (ia.macs_per_cycle(), ia.k);
        let kb = (ib.macs_per_cycle(), ib.k);
        Ok(if kb < ka { ib } else { ia })
    }

    /// The datapath preset name that computes `a x b`.
    pub fn datapath_for(&self, a: Scheme, b: Scheme) -> Result<String> {
        let i = self.instr(a, b)?;
        Ok(i.datapath.clone().unwrap_or_else(|| self.datapath.clone()))
    }

    /// Off-chip bytes per cycle of the MMA clock.
    pub fn offchip_bytes_per_cycle(&self) -> f64 {
        self.offchip_gbps / self.clock_ghz
    }

    /// Peak dense throughput in TFLOP/s (2 FLOP per MAC) for a scheme pair.
    pub fn peak_tflops(&self, a: Scheme, b: Scheme) -> Result<f64> {
        let i = self.instr(a, b)?;
        let macs = match self.dataflow {
            Dataflow::OutputStationary => i.macs_per_cycle(),
            Dataflow::WeightStationary => i.k as f64 * i.n as f64,
        };
        Ok(2.0 * macs * self.cores as f64 * self.clock_ghz * 1e9 / 1e12)
    }
}
