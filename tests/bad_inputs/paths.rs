//! Hostile names and outputs: names that climb out of the output folder,
//! output files that collide, commits that fail halfway.

#[allow(unused_imports)]
use super::*;
