//! Hostile data and weight files: pickles that explode, nesting without end,
//! offsets that overflow, files that never end or are not files at all.

#[allow(unused_imports)]
use super::*;
