//! Hostile pipeline files: sizes with no ceiling, variants that recurse,
//! values that are valid TOML but meaningless, bad input that "succeeds".

#[allow(unused_imports)]
use super::*;
