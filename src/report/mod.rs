//! Reports: tables, summaries and SVG plots.

pub mod study;
