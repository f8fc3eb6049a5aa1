//! Trusted state read back: checkpoints and feature caches that lie,
//! caches keyed on too little, `--resume` after a change of settings.

#[allow(unused_imports)]
use super::*;
