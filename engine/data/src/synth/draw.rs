//! A small float canvas and a seeded random source for drawing synthetic images.

use engine_core::metrics::rng::Xoshiro256;

/// Uniform and normal draws on top of xoshiro256++.
#[derive(Clone, Debug)]
pub(crate) struct Rng(Xoshiro256);

impl Rng {
    /// The stream for item `index` of a dataset seeded with `seed` (independent of threads).
    pub fn stream(seed: u64, index: u64) -> Rng {
        Rng(Xoshiro256::stream(seed, index))
    }

    /// Uniform in [0, 1).
    pub fn unif(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unif()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unif() < p
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unif().max(1e-300);
        let u2 = self.unif();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A whole number in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n.max(1))
    }

    /// An index drawn with the given weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unif() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// A `w` x `h` image with `c` channels of floats in [0, 1] (row-major, interleaved).
#[derive(Clone, Debug)]
pub(crate) struct Canvas {
    pub w: usize,
    pub h: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Canvas {
    /// A canvas filled with `color` (one value per channel).
    pub fn new(w: usize, h: usize, color: &[f32]) -> Canvas {
        let c = color.len();
        let mut data = Vec::with_capacity(w * h * c);
        for _ in 0..w * h {
            data.extend_from_slice(color);
        }
        Canvas { w, h, c, data }
    }

    /// Blends `color` into every pixel by the coverage `alpha(x, y)` in [0, 1] (x, y in pixels).
    pub fn paint(&mut self, color: &[f32], alpha: impl Fn(f32, f32) -> f32) {
        for y in 0..self.h {
            for x in 0..self.w {
                let a = alpha(x as f32 + 0.5, y as f32 + 0.5).clamp(0.0, 1.0);
                if a <= 0.0 {
                    continue;
                }
                let o = (y * self.w + x) * self.c;
                for (v, c) in self.data[o..o + self.c].iter_mut().zip(color) {
                    *v = *v * (1.0 - a) + c * a;
                }
            }
        }
    }

    /// Adds `delta(x, y)` (per channel scale `scale`) to every pixel.
    pub fn add(&mut self, scale: &[f32], delta: impl Fn(f32, f32) -> f32) {
        for y in 0..self.h {
            for x in 0..self.w {
                let d = delta(x as f32 + 0.5, y as f32 + 0.5);
                if d == 0.0 {
                    continue;
                }
                let o = (y * self.w + x) * self.c;
                for (v, s) in self.data[o..o + self.c].iter_mut().zip(scale) {
                    *v += s * d;
                }
            }
        }
    }

    /// Adds Gaussian noise of standard deviation `sigma`.
    pub fn noise(&mut self, rng: &mut Rng, sigma: f32) {
        for v in &mut self.data {
            *v += sigma * rng.normal() as f32;
        }
    }

    /// A box blur of radius 1, `times` times (smooths noise into texture).
    pub fn blur(&mut self, times: usize) {
        for _ in 0..times {
            let src = self.data.clone();
            for y in 0..self.h {
                for x in 0..self.w {
                    for k in 0..self.c {
                        let mut sum = 0.0;
                        let mut n = 0.0;
                        for dy in -1i32..=1 {
                            for dx in -1i32..=1 {
                                let (xx, yy) = (x as i32 + dx, y as i32 + dy);
                                if xx >= 0
                                    && yy >= 0
                                    && (xx as usize) < self.w
                                    && (yy as usize) < self.h
                                {
                                    sum += src[(yy as usize * self.w + xx as usize) * self.c + k];
                                    n += 1.0;
                                }
                            }
                        }
                        self.data[(y * self.w + x) * self.c + k] = sum / n;
                    }
                }
            }
        }
    }

    /// 8-bit samples.
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }

    /// Samples scaled to `max` (for 12- or 16-bit DICOM).
    pub fn to_u16(&self, max: u16) -> Vec<u16> {
        self.data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * f32::from(max)).round() as u16)
            .collect()
    }
}

/// Soft coverage of an ellipse centred at (cx, cy) with radii (rx, ry), rotated by `angle`
/// radians; the edge is `soft` pixels wide.
pub(crate) fn ellipse(
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    angle: f32,
    soft: f32,
) -> impl Fn(f32, f32) -> f32 {
    let (s, c) = angle.sin_cos();
    move |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
        let r = ((u / rx).powi(2) + (v / ry).powi(2)).sqrt();
        let edge = soft / rx.min(ry).max(1e-3);
        ((1.0 - r) / edge + 0.5).clamp(0.0, 1.0)
    }
}

/// Distance from (x, y) to the segment (a, b).
pub(crate) fn seg_dist(x: f32, y: f32, a: (f32, f32), b: (f32, f32)) -> f32 {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len2 = vx * vx + vy * vy;
    let t = if len2 > 0.0 {
        (((x - a.0) * vx + (y - a.1) * vy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (a.0 + t * vx, a.1 + t * vy);
    ((x - px).powi(2) + (y - py).powi(2)).sqrt()
}

/// Soft coverage of a polyline `points` of the given width.
pub(crate) fn polyline(points: Vec<(f32, f32)>, width: f32) -> impl Fn(f32, f32) -> f32 {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for (x, y) in &points {
        x0 = x0.min(*x);
        y0 = y0.min(*y);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    let pad = width + 2.0;
    move |x, y| {
        if x < x0 - pad || x > x1 + pad || y < y0 - pad || y > y1 + pad {
            return 0.0;
        }
        let d = points
            .windows(2)
            .map(|w| seg_dist(x, y, w[0], w[1]))
            .fold(f32::MAX, f32::min);
        (width / 2.0 - d + 0.5).clamp(0.0, 1.0)
    }
}

/// Points along a quadratic Bezier curve from `a` through control `c` to `b`.
pub(crate) fn bezier(a: (f32, f32), c: (f32, f32), b: (f32, f32), n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let u = 1.0 - t;
            (
                u * u * a.0 + 2.0 * u * t * c.0 + t * t * b.0,
                u * u * a.1 + 2.0 * u * t * c.1 + t * t * b.1,
            )
        })
        .collect()
}
