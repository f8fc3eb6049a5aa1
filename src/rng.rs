//! Our own random numbers, so that a seed gives the same tensor on every
//! machine, build and thread count.
//!
//! The generator is SplitMix64 (Steele, Lea & Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014): a 64-bit counter advanced
//! by the golden-ratio increment and passed through a fixed mixing function.
//! Uniform f32 values take the top 24 bits (`[0, 1)`, exactly representable);
//! normal values use the Box-Muller transform in f64, one pair per two draws.
//! Tensors are filled sequentially on one thread, so results never depend on
//! scheduling.

/// A seeded SplitMix64 stream.
/// Serialisable, so a checkpoint can continue the same stream; read back, a
/// spare normal value must be one Box-Muller can make (finite).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SavedRng")]
pub struct Rng {
    state: u64,
    spare_normal: Option<f64>,
}

/// An [`Rng`] as a file holds it, before it is checked.
#[derive(serde::Deserialize)]
struct SavedRng {
    state: u64,
    spare_normal: Option<f64>,
}

impl TryFrom<SavedRng> for Rng {
    type Error = String;

    fn try_from(s: SavedRng) -> Result<Rng, String> {
        match s.spare_normal {
            // Box-Muller's radius is at most sqrt(-2 ln 2^-53), about 8.6.
            Some(z) if z.is_nan() || z.abs() > 9.0 => Err(format!("rng.spare_normal: {z} is not a normal draw")),
            _ => Ok(Rng { state: s.state, spare_normal: s.spare_normal }),
        }
    }
}

impl Rng {
    /// The stream of `seed`: the same numbers on every machine.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed, spare_normal: None }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare_normal.take() {
            return z as f32;
        }
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]: ln is finite
        let u2 = self.uniform_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare_normal = Some(r * t.sin());
        (r * t.cos()) as f32
    }

    /// Uniform integer in `0..n` (n > 0), by rejection so it is unbiased.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn known_values_pin_the_stream() {
        // SplitMix64 from seed 0 and from 1234567: the reference outputs of
        // the published algorithm (Vigna's splitmix64.c).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut r = Rng::new(1234567);
        let first: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(
            first,
            [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
        );
        // Uniform floats are the top 24 bits of the same stream, scaled.
        let mut r = Rng::new(1234567);
        let u: Vec<f32> = (0..2).map(|_| r.uniform()).collect();
        // The top 24 bits of those outputs, over 2^24.
        assert_eq!(u, [5873360.0 / 16_777_216.0, 2913264.0 / 16_777_216.0]);
    }

    #[test]
    fn a_saved_stream_continues_and_a_forged_one_is_refused() {
        let mut r = Rng::new(5);
        r.normal();
        let json = serde_json::to_string(&r).unwrap();
        let mut back: Rng = serde_json::from_str(&json).unwrap();
        assert_eq!((back.normal(), back.next_u64()), (r.normal(), r.next_u64()));
        for bad in ["1e300", "-20.0"] {
            let forged = format!("{{\"state\":1,\"spare_normal\":{bad}}}");
            let err = serde_json::from_str::<Rng>(&forged).unwrap_err().to_string();
            assert!(err.contains("rng.spare_normal"), "{err}");
        }
        assert!(serde_json::from_str::<Rng>("{\"state\":-1,\"spare_normal\":null}").is_err());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = Rng::new(7);
        let xs: Vec<f64> = (0..200_000).map(|_| r.normal() as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }
}
