//! Cycle-approximate simulator of MX tensor cores and systolic arrays.
//!
//! A [`TensorCoreConfig`] describes the hardware (clock, cores, MMA instruction shape and rate
//! per MX scheme, buffers, bandwidths, dataflow, the datapath preset it computes with);
//! presets live in `models/hw/core/*.toml`. [`simulate_gemm`] tiles one GEMM onto the cores
//! and reports cycles, utilization, bytes per memory level (elements and block scales),
//! stalls and energy; [`tiling`] gives the tile and instruction decomposition it assumed, so a
//! functional GEMM can follow the same order, which [`functional::gemm_tiled`] does. [`llm`] lists the GEMMs of transformer LLMs
//! (`models/llm/*.json`) and totals them per model. See `docs/simulator.md`.

pub mod config;
pub mod functional;
pub mod gemm;
pub mod llm;

pub use config::{
    ArrayGeometry, Dataflow, EnergyConfig, LoopOrder, MmaInstr, TensorCoreConfig, TileOverride,
};
pub use functional::{gemm_tiled, TiledGemm};
pub use gemm::{
    elem_bytes, row_bytes, scale_bytes, simulate_gemm, tensor_scale_bytes, tiling, Bound,
    EnergyReport, GemmReport, GemmShape, StallBreakdown, Tiling,
};
