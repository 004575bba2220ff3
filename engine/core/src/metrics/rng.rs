//! A small seeded pseudo-random generator for resampling: xoshiro256++ seeded by splitmix64.
//!
//! Self-contained so that a bootstrap is reproducible from its seed alone, whatever the
//! version of any random-number crate, and so that each resample has its own stream
//! (results do not depend on how many threads drew them).

/// One step of splitmix64: a good 64-bit mixer, used to expand seeds.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The xoshiro256++ generator (Blackman and Vigna), 256 bits of state.
#[derive(Clone, Debug)]
pub struct Xoshiro256 {
    s: [u64; 4],
    /// The upper half of the last 64-bit output, not yet handed out by `next_u32`.
    spare: Option<u32>,
}

impl Xoshiro256 {
    /// A generator whose state is four splitmix64 outputs from `seed`.
    pub fn seed_from(seed: u64) -> Xoshiro256 {
        let mut sm = seed;
        Xoshiro256 {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
            spare: None,
        }
    }

    /// The generator for stream `index` of a run seeded with `seed` (e.g. one per resample).
    pub fn stream(seed: u64, index: u64) -> Xoshiro256 {
        let mut sm = seed;
        let base = splitmix64(&mut sm);
        let mut sm2 = index ^ base.rotate_left(17);
        Xoshiro256::seed_from(splitmix64(&mut sm2) ^ base)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The next 32 random bits: each 64-bit output serves two calls.
    pub fn next_u32(&mut self) -> u32 {
        match self.spare.take() {
            Some(x) => x,
            None => {
                let x = self.next_u64();
                self.spare = Some((x >> 32) as u32);
                x as u32
            }
        }
    }

    /// A uniform integer in `0..n` from 32 random bits, without modulo bias (Lemire's
    /// multiply-and-reject). `n` must be positive. Half the cost of [`Xoshiro256::below`]
    /// for the sizes a bootstrap draws from.
    pub fn below_u32(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        let mut m = u64::from(self.next_u32()) * u64::from(n);
        let mut low = m as u32;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u64::from(self.next_u32()) * u64::from(n);
                low = m as u32;
            }
        }
        (m >> 32) as u32
    }

    /// A uniform integer in `0..n` without modulo bias (Lemire's multiply-and-reject).
    /// `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        let mut low = m as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            while low < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut s), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Xoshiro256::seed_from(7);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.below(7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
    }

    #[test]
    fn below_u32_stays_in_range_and_covers_it() {
        let mut r = Xoshiro256::seed_from(9);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[r.below_u32(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 850 && c < 1150), "{seen:?}");
        assert_eq!(r.below_u32(1), 0);
    }

    #[test]
    fn streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4)
            .map(|i| Xoshiro256::stream(1, i).next_u64())
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|i| Xoshiro256::stream(1, i).next_u64())
            .collect();
        assert_eq!(a, b);
        let mut c = a.clone();
        c.dedup();
        assert_eq!(c.len(), 4);
        assert_ne!(Xoshiro256::stream(2, 0).next_u64(), a[0]);
    }
}
