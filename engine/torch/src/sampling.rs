//! Which training images each epoch sees, and mixup's blending weights: seeded draws that
//! depend only on the seed and the epoch, so a run is reproducible.

use engine_core::metrics::rng::Xoshiro256;
use engine_core::stages::train::{Sampler, SamplerKind};

use crate::images::epoch_order;

/// The group of each image for a sampler: its class, crossed with the attribute for
/// `group_balanced` (present at 0.5 and above; an image without the value forms its own
/// group per class).
pub fn groups(kind: SamplerKind, classes: &[usize], attribute: &[Option<f64>]) -> Vec<usize> {
    match kind {
        SamplerKind::GroupBalanced => classes
            .iter()
            .zip(attribute)
            .map(|(c, a)| {
                c * 3
                    + match a {
                        Some(v) if *v >= 0.5 => 1,
                        Some(_) => 0,
                        None => 2,
                    }
            })
            .collect(),
        _ => classes.to_vec(),
    }
}

/// Per-image drawing weights for `sampler` (`None` for `uniform`), from each image's class
/// and group (see [`groups`]). Every non-empty group gets the same total weight, except
/// under `ratio`, where negatives (class 0) get `negatives_per_positive` times the total of
/// the positives.
pub fn weights(sampler: &Sampler, classes: &[usize], groups: &[usize]) -> Option<Vec<f64>> {
    let count = |g: &[usize]| {
        let mut counts = vec![0usize; g.iter().max().map_or(0, |m| m + 1)];
        for &x in g {
            counts[x] += 1;
        }
        counts
    };
    match sampler.kind {
        SamplerKind::Uniform => None,
        SamplerKind::ClassBalanced | SamplerKind::GroupBalanced => {
            let counts = count(groups);
            Some(groups.iter().map(|g| 1.0 / counts[*g] as f64).collect())
        }
        SamplerKind::Ratio => {
            let r = sampler.negatives_per_positive.unwrap_or(1.0);
            let counts = count(classes);
            Some(
                classes
                    .iter()
                    .map(|c| {
                        let share = if *c == 0 { r } else { 1.0 };
                        share / counts[*c] as f64
                    })
                    .collect(),
            )
        }
    }
}

/// The indices an epoch visits: every image once in a seeded order without weights, else `n`
/// draws with replacement in proportion to `weights`.
pub fn epoch_indices(weights: Option<&[f64]>, n: usize, seed: u64, epoch: u64) -> Vec<i64> {
    let Some(w) = weights else {
        return epoch_order(n, seed, epoch);
    };
    let mut cumulative = Vec::with_capacity(w.len());
    let mut total = 0.0;
    for v in w {
        total += v;
        cumulative.push(total);
    }
    let mut r = Xoshiro256::stream(seed ^ 0x5A3B_u64, epoch);
    (0..n)
        .map(|_| {
            let u = unit(&mut r) * total;
            cumulative.partition_point(|c| *c <= u).min(w.len() - 1) as i64
        })
        .collect()
}

/// A uniform draw in `[0, 1)`.
pub fn unit(r: &mut Xoshiro256) -> f64 {
    (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn normal(r: &mut Xoshiro256) -> f64 {
    // Box-Muller; 1 - unit is in (0, 1], so the logarithm is finite.
    let u = 1.0 - unit(r);
    let v = unit(r);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A Gamma(`shape`, 1) draw (Marsaglia and Tsang; boosted for shapes below 1).
fn gamma(r: &mut Xoshiro256, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - unit(r);
        return gamma(r, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(r);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - unit(r);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(`alpha`, `alpha`) draw: mixup's blending weight.
pub fn beta(r: &mut Xoshiro256, alpha: f64) -> f64 {
    let a = gamma(r, alpha);
    let b = gamma(r, alpha);
    if a + b > 0.0 { a / (a + b) } else { 0.5 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(kind: SamplerKind, ratio: Option<f64>) -> Sampler {
        Sampler {
            kind,
            attribute: None,
            negatives_per_positive: ratio,
        }
    }

    fn shares(idx: &[i64], key: &[usize], k: usize) -> Vec<f64> {
        let mut c = vec![0.0; k];
        for i in idx {
            c[key[*i as usize]] += 1.0;
        }
        c.iter().map(|x| x / idx.len() as f64).collect()
    }

    #[test]
    fn class_balanced_draws_each_class_equally_often() {
        let classes: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let s = sampler(SamplerKind::ClassBalanced, None);
        let g = groups(s.kind, &classes, &[]);
        let w = weights(&s, &classes, &g).unwrap();
        let idx = epoch_indices(Some(&w), 20_000, 7, 0);
        let sh = shares(&idx, &classes, 2);
        assert!((sh[1] - 0.5).abs() < 0.02, "{sh:?}");
    }

    #[test]
    fn group_balanced_crosses_label_and_attribute() {
        // Drains on 60% of positives and 10% of negatives.
        let n = 2000;
        let classes: Vec<usize> = (0..n).map(|i| usize::from(i < 500)).collect();
        let attr: Vec<Option<f64>> = (0..n)
            .map(|i| {
                let present = if i < 500 { i % 10 < 6 } else { i % 10 < 1 };
                Some(if present { 0.9 } else { 0.1 })
            })
            .collect();
        let s = Sampler {
            kind: SamplerKind::GroupBalanced,
            attribute: Some("drain".into()),
            negatives_per_positive: None,
        };
        let g = groups(s.kind, &classes, &attr);
        let w = weights(&s, &classes, &g).unwrap();
        let idx = epoch_indices(Some(&w), 40_000, 1, 3);
        let sh = shares(&idx, &g, 6);
        for group in [0, 1, 3, 4] {
            assert!((sh[group] - 0.25).abs() < 0.02, "{sh:?}");
        }
    }

    #[test]
    fn ratio_sets_the_negative_share() {
        let classes: Vec<usize> = (0..1000).map(|i| usize::from(i % 20 == 0)).collect();
        let s = sampler(SamplerKind::Ratio, Some(2.0));
        let w = weights(&s, &classes, &classes).unwrap();
        let idx = epoch_indices(Some(&w), 30_000, 2, 0);
        let sh = shares(&idx, &classes, 2);
        assert!((sh[0] - 2.0 / 3.0).abs() < 0.02, "{sh:?}");
    }

    #[test]
    fn draws_depend_on_seed_and_epoch_only() {
        let w = vec![1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            epoch_indices(Some(&w), 50, 9, 1),
            epoch_indices(Some(&w), 50, 9, 1)
        );
        assert_ne!(
            epoch_indices(Some(&w), 50, 9, 1),
            epoch_indices(Some(&w), 50, 9, 2)
        );
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        for alpha in [0.2, 1.0, 4.0] {
            let mut r = Xoshiro256::seed_from(11);
            let xs: Vec<f64> = (0..40_000).map(|_| beta(&mut r, alpha)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
            let want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
            assert!(
                (var - want).abs() < 0.1 * want,
                "alpha {alpha}: var {var} vs {want}"
            );
            assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }
}
