//! Shared bench helpers: median timing and the one-line output format.
#![allow(dead_code)]

use std::time::Instant;

/// Median wall time in seconds of `runs` calls of `f`, after one warm-up.
pub fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The middle value of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The value of `key` in a peer's output line `bench=.. impl=.. value=..`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// A peer's output line's `value=`, as a number.
pub fn value(line: &str) -> Option<f64> {
    field(line, "value")?.parse().ok()
}

/// Repeat count that keeps one measurement near `budget` seconds.
pub fn runs_for(one_run_seconds: f64, budget: f64) -> usize {
    ((budget / one_run_seconds.max(1e-9)) as usize).clamp(5, 51) | 1
}

/// Deterministic pseudo-random fill in [-1, 1) (a bench needs no quality).
pub fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
