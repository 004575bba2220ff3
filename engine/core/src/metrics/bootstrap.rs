//! Percentile bootstrap: seeded, by item or by cluster (patient), parallel across cores,
//! with confidence intervals and a paired test of two models on the same resamples.
//!
//! A statistic is a function of per-item *weights*: the number of times each item was
//! drawn into the resample (all ones for the original sample). Metrics written that way
//! need no copy of the data per resample, and a statistic that sorts once up front walks
//! its sorted order in O(n) per resample.

use std::collections::HashMap;
use std::hash::Hash;

use super::rng::Xoshiro256;

/// Resamples drawn when the user does not say.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// How to bootstrap: how many resamples, from which seed, at which confidence level.
#[derive(Clone, Debug, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples; 0 gives point estimates without intervals.
    pub resamples: usize,
    /// Seed of the resampling; the same seed gives the same intervals on any machine and
    /// with any number of threads.
    pub seed: u64,
    /// Two-sided confidence level of the percentile intervals, e.g. 0.95.
    pub level: f64,
    /// Worker threads; 0 uses every available core.
    pub threads: usize,
}

impl Default for Bootstrap {
    fn default() -> Bootstrap {
        Bootstrap {
            resamples: DEFAULT_RESAMPLES,
            seed: 0,
            level: 0.95,
            threads: 0,
        }
    }
}

/// What is drawn with replacement: single items, or whole clusters of items (patients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Units {
    /// Each of `n` items is drawn independently.
    Items(usize),
    /// Clusters are drawn, and every item of a drawn cluster comes with it.
    Clusters {
        /// The cluster of each item, densely numbered from 0.
        cluster_of: Vec<u32>,
        /// The number of clusters.
        clusters: usize,
    },
}

impl Units {
    /// Clusters from one key per item (e.g. patient ids), numbered in order of first appearance.
    pub fn clusters<K: Hash + Eq>(keys: &[K]) -> Units {
        let mut ids: HashMap<&K, u32> = HashMap::with_capacity(keys.len());
        let mut cluster_of = Vec::with_capacity(keys.len());
        for k in keys {
            let next = ids.len() as u32;
            cluster_of.push(*ids.entry(k).or_insert(next));
        }
        Units::Clusters {
            clusters: ids.len(),
            cluster_of,
        }
    }

    /// The number of items.
    pub fn items(&self) -> usize {
        match self {
            Units::Items(n) => *n,
            Units::Clusters { cluster_of, .. } => cluster_of.len(),
        }
    }

    /// The number of units drawn per resample (items, or clusters).
    pub fn draws(&self) -> usize {
        match self {
            Units::Items(n) => *n,
            Units::Clusters { clusters, .. } => *clusters,
        }
    }

    /// The same units with items reordered: item `i` of the result is item `order[i]` here.
    pub fn permuted(&self, order: &[usize]) -> Units {
        match self {
            Units::Items(n) => Units::Items(*n),
            Units::Clusters {
                cluster_of,
                clusters,
            } => Units::Clusters {
                cluster_of: order.iter().map(|&i| cluster_of[i]).collect(),
                clusters: *clusters,
            },
        }
    }

    /// Fills `weights` (one per item) with the multiplicities of one resample.
    fn draw(&self, rng: &mut Xoshiro256, weights: &mut [u32], scratch: &mut Vec<u32>) {
        match self {
            Units::Items(n) => {
                weights.fill(0);
                draw_counts(rng, *n, weights);
            }
            Units::Clusters {
                cluster_of,
                clusters,
            } => {
                scratch.clear();
                scratch.resize(*clusters, 0);
                draw_counts(rng, *clusters, scratch);
                for (w, &c) in weights.iter_mut().zip(cluster_of) {
                    *w = scratch[c as usize];
                }
            }
        }
    }
}

/// Adds to `counts` (of length `n`) the multiplicities of `n` draws with replacement.
fn draw_counts(rng: &mut Xoshiro256, n: usize, counts: &mut [u32]) {
    match u32::try_from(n) {
        Ok(n32) => {
            for _ in 0..n {
                counts[rng.below_u32(n32) as usize] += 1;
            }
        }
        Err(_) => {
            for _ in 0..n {
                counts[rng.below(n as u64) as usize] += 1;
            }
        }
    }
}

/// A point estimate with its bootstrap percentile interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The statistic on the original sample; NaN when it is undefined there.
    pub value: f64,
    /// The percentile interval; `None` without resamples or when fewer than two resamples
    /// gave a defined value.
    pub ci: Option<(f64, f64)>,
    /// Resamples on which the statistic was defined (e.g. an AUC needs both classes).
    pub resamples: usize,
}

/// The paired bootstrap comparison of one statistic between two models.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedTest {
    /// The statistic of model A on the original sample.
    pub a: f64,
    /// The statistic of model B on the original sample.
    pub b: f64,
    /// `a - b` on the original sample.
    pub diff: f64,
    /// Percentile interval of `a - b` over the resamples.
    pub ci: Option<(f64, f64)>,
    /// Two-sided p-value of "no difference": `min(1, 2 (k + 1) / (B + 1))`, where `k` is
    /// the number of the `B` resamples whose difference lies on the far side of zero
    /// (the smaller of the counts with `a - b <= 0` and with `a - b >= 0`).
    pub p_value: Option<f64>,
    /// One-sided p-value of "A is not higher than B": `(k + 1) / (B + 1)` with `k` the
    /// resamples whose difference is at most zero. Small when A is higher.
    pub p_higher: Option<f64>,
    /// One-sided p-value of "A is not lower than B": `(k + 1) / (B + 1)` with `k` the
    /// resamples whose difference is at least zero. Small when A is lower.
    pub p_lower: Option<f64>,
    /// Resamples on which both statistics were defined.
    pub resamples: usize,
}

impl Bootstrap {
    /// The statistic `stat` (several values at once) on every resample, in resample order.
    /// `stat` receives one weight per item and returns a vector of the same length each
    /// time; NaN marks a value undefined on that resample.
    pub fn replicate<F>(&self, units: &Units, stat: F) -> Vec<Vec<f64>>
    where
        F: Fn(&[u32]) -> Vec<f64> + Sync,
    {
        let b = self.resamples;
        if b == 0 || units.draws() == 0 {
            return Vec::new();
        }
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        }
        .clamp(1, b);
        let chunk = b.div_ceil(threads);
        let run = |range: std::ops::Range<usize>| {
            let mut weights = vec![0u32; units.items()];
            let mut scratch = Vec::new();
            range
                .map(|r| {
                    let mut rng = Xoshiro256::stream(self.seed, r as u64);
                    units.draw(&mut rng, &mut weights, &mut scratch);
                    stat(&weights)
                })
                .collect::<Vec<_>>()
        };
        if threads == 1 {
            return run(0..b);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk).min(b)..((t + 1) * chunk).min(b);
                    s.spawn(move || run(range))
                })
                .collect();
            handles
                .into_iter()
                // A panic in a worker is a bug in a statistic; carry it to the caller.
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Point estimates and percentile intervals of every value `stat` returns.
    pub fn estimate<F>(&self, units: &Units, stat: F) -> Vec<Estimate>
    where
        F: Fn(&[u32]) -> Vec<f64> + Sync,
    {
        let point = stat(&vec![1; units.items()]);
        let reps = self.replicate(units, &stat);
        (0..point.len())
            .map(|j| {
                let mut xs: Vec<f64> = reps
                    .iter()
                    .filter_map(|r| r.get(j).copied())
                    .filter(|v| !v.is_nan())
                    .collect();
                Estimate {
                    value: point[j],
                    ci: self.interval(&mut xs),
                    resamples: xs.len(),
                }
            })
            .collect()
    }

    /// The paired bootstrap test of two models' statistics on the same resamples.
    pub fn paired<A, B>(&self, units: &Units, stat_a: A, stat_b: B) -> Vec<PairedTest>
    where
        A: Fn(&[u32]) -> Vec<f64> + Sync,
        B: Fn(&[u32]) -> Vec<f64> + Sync,
    {
        let ones = vec![1; units.items()];
        let (a, b) = (stat_a(&ones), stat_b(&ones));
        let reps = self.replicate(units, |w| {
            let (ra, rb) = (stat_a(w), stat_b(w));
            ra.iter().zip(&rb).map(|(x, y)| x - y).collect()
        });
        a.iter()
            .zip(&b)
            .enumerate()
            .map(|(j, (&a, &b))| {
                let mut d: Vec<f64> = reps
                    .iter()
                    .filter_map(|r| r.get(j).copied())
                    .filter(|v| !v.is_nan())
                    .collect();
                let le = d.iter().filter(|&&x| x <= 0.0).count();
                let ge = d.iter().filter(|&&x| x >= 0.0).count();
                let total = d.len() as f64;
                let share = |k: usize| (k as f64 + 1.0) / (total + 1.0);
                let defined = !d.is_empty();
                let p_value = defined.then(|| (2.0 * share(le.min(ge))).min(1.0));
                PairedTest {
                    a,
                    b,
                    diff: a - b,
                    ci: self.interval(&mut d),
                    p_value,
                    p_higher: defined.then(|| share(le)),
                    p_lower: defined.then(|| share(ge)),
                    resamples: d.len(),
                }
            })
            .collect()
    }

    /// The percentile interval of the values (sorted in place), or `None` with fewer than two.
    fn interval(&self, xs: &mut [f64]) -> Option<(f64, f64)> {
        if xs.len() < 2 {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        let tail = (1.0 - self.level) / 2.0;
        Some((quantile(xs, tail), quantile(xs, 1.0 - tail)))
    }
}

/// The `p` quantile of sorted values by linear interpolation between order statistics
/// (numpy's default, Hyndman and Fan's type 7).
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(w: &[u32], xs: &[f64]) -> Vec<f64> {
        let n: u32 = w.iter().sum();
        let s: f64 = w.iter().zip(xs).map(|(&w, x)| f64::from(w) * x).sum();
        vec![s / f64::from(n)]
    }

    fn sample() -> Vec<f64> {
        let mut r = Xoshiro256::seed_from(3);
        (0..500)
            .map(|_| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .collect()
    }

    #[test]
    fn same_seed_same_intervals_whatever_the_threads() {
        let xs = sample();
        let units = Units::Items(xs.len());
        let one = Bootstrap {
            threads: 1,
            ..Bootstrap::default()
        };
        let four = Bootstrap {
            threads: 4,
            ..Bootstrap::default()
        };
        let a = one.estimate(&units, |w| mean(w, &xs));
        let b = four.estimate(&units, |w| mean(w, &xs));
        assert_eq!(a, b);
        let other = Bootstrap {
            seed: 1,
            ..Bootstrap::default()
        };
        assert_ne!(other.estimate(&units, |w| mean(w, &xs)), a);
    }

    #[test]
    fn interval_contains_the_point_estimate() {
        let xs = sample();
        let e = &Bootstrap::default().estimate(&Units::Items(xs.len()), |w| mean(w, &xs))[0];
        let (lo, hi) = e.ci.unwrap();
        assert!(lo < e.value && e.value < hi, "{e:?}");
        // The mean of 500 uniforms has a standard error of about 0.013: the interval is
        // about four of those wide.
        assert!(hi - lo > 0.03 && hi - lo < 0.07, "{e:?}");
        assert_eq!(e.resamples, DEFAULT_RESAMPLES);
    }

    #[test]
    fn every_resample_draws_n_items() {
        let b = Bootstrap {
            resamples: 50,
            ..Bootstrap::default()
        };
        let reps = b.replicate(&Units::Items(37), |w| {
            vec![f64::from(w.iter().sum::<u32>())]
        });
        assert_eq!(reps.len(), 50);
        assert!(reps.iter().all(|r| r[0] == 37.0));
    }

    #[test]
    fn cluster_resampling_keeps_patients_whole() {
        // Five patients with 1 to 5 items each.
        let keys: Vec<u32> = (0..5u32)
            .flat_map(|p| std::iter::repeat_n(p, p as usize + 1))
            .collect();
        let units = Units::clusters(&keys);
        assert_eq!(units.draws(), 5);
        let b = Bootstrap {
            resamples: 300,
            ..Bootstrap::default()
        };
        let reps = b.replicate(&units, |w| w.iter().map(|&x| f64::from(x)).collect());
        let mut varied = false;
        for r in &reps {
            for p in 0..5u32 {
                let ws: Vec<f64> = keys
                    .iter()
                    .zip(r)
                    .filter(|(k, _)| **k == p)
                    .map(|(_, w)| *w)
                    .collect();
                assert!(
                    ws.windows(2).all(|x| x[0] == x[1]),
                    "patient {p} split: {ws:?}"
                );
            }
            // Five patients drawn each time: the multiplicities per patient sum to five.
            let per_patient: f64 = (0..5u32)
                .map(|p| r[keys.iter().position(|k| *k == p).unwrap()])
                .sum();
            assert_eq!(per_patient, 5.0);
            varied |= r.iter().any(|&w| w != 1.0);
        }
        assert!(varied);
    }

    #[test]
    fn permuted_units_follow_their_items() {
        let units = Units::clusters(&["a", "b", "a", "c"]);
        assert_eq!(
            units.permuted(&[3, 2, 1, 0]),
            Units::Clusters {
                cluster_of: vec![2, 0, 1, 0],
                clusters: 3
            }
        );
    }

    #[test]
    fn undefined_values_are_left_out_of_the_interval() {
        let b = Bootstrap {
            resamples: 100,
            ..Bootstrap::default()
        };
        let est = b.estimate(&Units::Items(4), |w| {
            vec![if w[0] == 0 { f64::NAN } else { 1.0 }]
        });
        assert!(est[0].resamples < 100 && est[0].resamples > 50, "{est:?}");
        assert_eq!(est[0].ci, Some((1.0, 1.0)));
    }

    #[test]
    fn paired_test_finds_a_real_difference_and_not_a_null_one() {
        let xs = sample();
        let shifted: Vec<f64> = xs.iter().map(|x| x + 0.1).collect();
        let units = Units::Items(xs.len());
        let b = Bootstrap::default();
        let t = &b.paired(&units, |w| mean(w, &shifted), |w| mean(w, &xs))[0];
        assert!((t.diff - 0.1).abs() < 1e-12);
        assert!(t.p_value.unwrap() < 0.01, "{t:?}");
        // One-sided: the shifted sample is higher on every resample, never lower.
        let floor = 1.0 / (b.resamples as f64 + 1.0);
        assert_eq!((t.p_higher, t.p_lower), (Some(floor), Some(1.0)));
        let reverse = &b.paired(&units, |w| mean(w, &xs), |w| mean(w, &shifted))[0];
        assert_eq!(
            (reverse.p_higher, reverse.p_lower),
            (Some(1.0), Some(floor))
        );
        let same = &b.paired(&units, |w| mean(w, &xs), |w| mean(w, &xs))[0];
        assert_eq!(same.p_value, Some(1.0));
        assert_eq!((same.p_higher, same.p_lower), (Some(1.0), Some(1.0)));
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        assert!((quantile(&xs, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile(&xs, 0.5) - 2.5).abs() < 1e-12);
    }
}
