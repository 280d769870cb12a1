//! # mxsim
//!
//! A bit-exact reference model and simulator of Microscaling (MX) tensor cores, following the
//! OCP Microscaling Formats (MX) v1.0 specification and the NVFP4 format.
//!
//! Layers (data flows one way, no module reaches back up):
//! `format` (scalar element and scale codecs) -> `mx` (block quantization, scale rules,
//! packing) -> `datapath` (bit-exact dot products and GEMM) -> `sim` (cycle-approximate tensor
//! core) and `model` (LLM forward passes) -> `ptq` (quantization methods) -> `report`.
//! `vectors` generates and checks golden RTL test vectors; `cli` is the `mxsim` binary;
//! `io` holds file formats shared by every layer (NumPy `.npy`, atomic writes).

pub mod cli;
pub mod datapath;
pub mod error;
pub mod format;
pub mod io;
pub mod model;
pub mod mx;
pub mod ptq;
pub mod report;
pub mod sim;
pub mod vectors;

pub use error::{Error, Result};
