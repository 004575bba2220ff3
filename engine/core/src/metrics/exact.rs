//! Exact confidence intervals for proportions (sensitivity, specificity, predictive values,
//! shares), and how many cases a claim about a proportion would need.
//!
//! A percentile bootstrap collapses at 0 and 1: 9 of 9 positives found gives
//! `[1.0, 1.0]`, as if nine cases proved a perfect sensitivity. The Clopper-Pearson
//! interval inverts two one-sided binomial tests, so its coverage is at least the nominal
//! level for every true proportion and sample size; it is the conservative choice, and the
//! one a claim about a requirement should rest on. (9 of 9 gives `[0.664, 1.0]`.) The
//! bounds are Beta quantiles, computed with `statrs`, and agree with statsmodels'
//! `proportion_confint(method="beta")` (checked on fixtures in `tests/metrics.rs`).

use statrs::distribution::{Beta, ContinuousCDF};

/// A count of successes among trials, with its exact interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proportion {
    /// Successes (e.g. positives found).
    pub k: u64,
    /// Trials (e.g. positives); 0 leaves the proportion undefined.
    pub n: u64,
    /// `k / n`; NaN when `n` is 0.
    pub value: f64,
    /// The Clopper-Pearson interval; `None` when `n` is 0.
    pub ci: Option<(f64, f64)>,
}

impl Proportion {
    /// `k` of `n` with the two-sided Clopper-Pearson interval at `level` (e.g. 0.95).
    pub fn new(k: u64, n: u64, level: f64) -> Proportion {
        Proportion {
            k,
            n,
            value: if n == 0 {
                f64::NAN
            } else {
                k as f64 / n as f64
            },
            ci: clopper_pearson(k, n, level),
        }
    }
}

/// The two-sided Clopper-Pearson interval of `k` successes in `n` trials at `level`;
/// `None` when `n` is 0 or `k > n`.
pub fn clopper_pearson(k: u64, n: u64, level: f64) -> Option<(f64, f64)> {
    if n == 0 || k > n || !(0.0..1.0).contains(&level) {
        return None;
    }
    let alpha = 1.0 - level;
    let lower = if k == 0 {
        0.0
    } else {
        beta_quantile(k as f64, (n - k + 1) as f64, alpha / 2.0)?
    };
    let upper = if k == n {
        1.0
    } else {
        beta_quantile((k + 1) as f64, (n - k) as f64, 1.0 - alpha / 2.0)?
    };
    Some((lower, upper))
}

fn beta_quantile(a: f64, b: f64, p: f64) -> Option<f64> {
    Beta::new(a, b).ok().map(|d| d.inverse_cdf(p))
}

/// Which side of a target a claim is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The proportion is at least the target.
    AtLeast,
    /// The proportion is at most the target.
    AtMost,
}

/// The largest number of trials [`trials_needed`] looks at; beyond it the answer is "more
/// than this".
pub const MAX_TRIALS: u64 = 1_000_000;

/// How many trials, at the observed proportion `observed`, the Clopper-Pearson interval at
/// `level` needs to lie wholly on the claimed side of `target`: `Some(n)`, or `None` when no
/// number of trials can do it (the observed proportion is not strictly on the claimed side)
/// or it would take more than [`MAX_TRIALS`].
///
/// The successes at `n` trials are `observed * n` rounded; the smallest such `n` is found by
/// doubling, then bisection (rounding makes the condition nearly, not exactly, monotone, so
/// the answer is a planning figure: "about n").
pub fn trials_needed(observed: f64, target: f64, side: Side, level: f64) -> Option<u64> {
    if !observed.is_finite() || !target.is_finite() {
        return None;
    }
    let clears = |n: u64| {
        let k = ((observed * n as f64).round() as u64).min(n);
        clopper_pearson(k, n, level).is_some_and(|(lo, hi)| match side {
            Side::AtLeast => lo >= target,
            Side::AtMost => hi <= target,
        })
    };
    let beyond = match side {
        Side::AtLeast => observed > target,
        Side::AtMost => observed < target,
    };
    if !beyond {
        return None;
    }
    let mut hi = 1u64;
    while !clears(hi) {
        if hi >= MAX_TRIALS {
            return None;
        }
        hi = (hi * 2).min(MAX_TRIALS);
    }
    let mut lo = hi / 2;
    // `lo` does not clear (or is 0); `hi` does.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if clears(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_successes_still_leave_room_below() {
        // The rule of three, roughly: 9 of 9 cannot rule out a true rate near two thirds.
        let (lo, hi) = clopper_pearson(9, 9, 0.95).unwrap();
        assert_eq!(hi, 1.0);
        assert!((lo - 0.025f64.powf(1.0 / 9.0)).abs() < 1e-12, "{lo}");
        let (lo, hi) = clopper_pearson(0, 9, 0.95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(
            (hi - (1.0 - 0.025f64.powf(1.0 / 9.0))).abs() < 1e-12,
            "{hi}"
        );
    }

    #[test]
    fn undefined_without_trials() {
        assert_eq!(clopper_pearson(0, 0, 0.95), None);
        assert_eq!(clopper_pearson(3, 2, 0.95), None);
        assert!(Proportion::new(0, 0, 0.95).value.is_nan());
    }

    #[test]
    fn trials_needed_for_a_perfect_sensitivity_against_ninety_percent() {
        // All found: the lower bound is 0.025^(1/n), at least 0.9 from n = 36 on.
        assert_eq!(trials_needed(1.0, 0.9, Side::AtLeast, 0.95), Some(36));
        assert!(0.025f64.powf(1.0 / 35.0) < 0.9);
        // At or below the target no number of cases helps.
        assert_eq!(trials_needed(0.9, 0.9, Side::AtLeast, 0.95), None);
        assert_eq!(trials_needed(0.8, 0.9, Side::AtLeast, 0.95), None);
        // The other side: a share of at most 30% when 10% is observed.
        let n = trials_needed(0.1, 0.3, Side::AtMost, 0.95).unwrap();
        let k = (0.1 * n as f64).round() as u64;
        assert!(clopper_pearson(k, n, 0.95).unwrap().1 <= 0.3);
        let k = (0.1 * (n - 1) as f64).round() as u64;
        assert!(clopper_pearson(k, n - 1, 0.95).unwrap().1 > 0.3);
    }
}
