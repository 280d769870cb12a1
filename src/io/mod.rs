//! File formats shared by every layer: NumPy `.npy` arrays and atomic (temporary file +
//! rename) output, so that a failed command never leaves a partial or corrupted file.

pub mod atomic;
pub mod npy;

pub use atomic::write_atomic;
pub use npy::{read_npy, write_npy, NpyArray, NpyData};
