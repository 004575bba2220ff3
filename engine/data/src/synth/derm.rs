//! The dermoscopy family in the ISIC 2019 layout: eight lesion classes at ISIC-like
//! imbalance (nevus about half, dermatofibroma and vascular lesions about 1% each), JPEGs,
//! the one-hot ground truth and the metadata with lesion ids (some lesions imaged twice).
//!
//! What the classes look like, on skin of varying tone with occasional hairs:
//! - NV (nevus): a round or oval, evenly brown lesion with a smooth border;
//! - MEL (melanoma): larger and asymmetric, with a wobbly border, two or three colours (dark
//!   brown, black, a blue-grey veil). Borders and colours overlap with irregular nevi, so
//!   melanoma vs nevus is learnable but not trivial;
//! - BCC: pink, pearly, with thin branching red vessels;
//! - AK: a rough pink-red patch with scattered white scale;
//! - BKL: a tan to brown "stuck-on" plaque dotted with small pale cysts;
//! - DF: small, a brown ring around a pale centre;
//! - VASC: clustered red-purple lobules;
//! - SCC: a red keratotic nodule with a yellow-white central crust.
//!
//! `--difficulty D` (0 to 1, default 0) makes melanoma against nevus harder: a share D of
//! the melanomas are featureless, shaped and coloured like a nevus and told apart only by
//! one small, very dark off-centre patch and a slightly larger size, and a share D/2 of the
//! nevi are atypical, with an off-centre patch of a darker brown.

use std::f32::consts::TAU;
use std::fmt::Write as _;
use std::path::Path;

use super::SynthError;
use super::draw::{Canvas, Rng, bezier, ellipse, polyline};

/// ISIC 2019's classes, in its column order.
pub const CLASSES: [&str; 8] = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"];

/// ISIC 2019's class counts (MEL 4522, NV 12875, BCC 3323, AK 867, BKL 2624, DF 239, VASC 253, SCC 628).
const WEIGHTS: [f64; 8] = [4522.0, 12875.0, 3323.0, 867.0, 2624.0, 239.0, 253.0, 628.0];

/// Options of `engine synth derm`.
#[derive(Clone, Debug, PartialEq)]
pub struct DermOptions {
    /// Images.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Width and height in pixels.
    pub size: usize,
    /// Share of featureless (nevus-like) melanomas; half of it, of atypical nevi.
    pub difficulty: f64,
}

impl Default for DermOptions {
    fn default() -> Self {
        DermOptions {
            n: 2000,
            seed: 0,
            size: 128,
            difficulty: 0.0,
        }
    }
}

/// A lesion's shape and colours; a second image of the lesion reuses them.
#[derive(Clone, Debug)]
struct Lesion {
    class: usize,
    radius: f32,
    aspect: f32,
    angle: f32,
    /// Border harmonics (amplitude, frequency, phase).
    wobble: Vec<(f32, f32, f32)>,
    colors: Vec<[f32; 3]>,
    skin: [f32; 3],
    seed: u64,
    /// A melanoma drawn like a nevus (its second colour a small dark patch).
    featureless: bool,
}

fn jitter(rng: &mut Rng, c: [f32; 3], by: f64) -> [f32; 3] {
    [0, 1, 2].map(|k| (c[k] + rng.range(-by, by) as f32).clamp(0.0, 1.0))
}

impl Lesion {
    fn draw(rng: &mut Rng, class: usize, difficulty: f64) -> Lesion {
        let skin = jitter(rng, [0.86, 0.68, 0.58], 0.07);
        let mut wobble = Vec::new();
        let harmonics = |rng: &mut Rng, amp: f64, n: usize| -> Vec<(f32, f32, f32)> {
            (0..n)
                .map(|_| {
                    (
                        rng.range(0.0, amp) as f32,
                        (2 + rng.below(5)) as f32,
                        rng.range(0.0, 6.3) as f32,
                    )
                })
                .collect()
        };
        let brown = jitter(rng, [0.45, 0.28, 0.18], 0.06);
        // Drawn only with a difficulty, so that the default images stay as they were.
        let hard = |rng: &mut Rng, p: f64| difficulty > 0.0 && rng.chance(p);
        let mut featureless = false;
        let (radius, aspect, colors) = match CLASSES[class] {
            "NV" => {
                // Most nevi are regular; some are not.
                let amp = if rng.chance(0.2) { 0.12 } else { 0.04 };
                wobble = harmonics(rng, amp, 3);
                let mut c = vec![brown];
                if hard(rng, difficulty / 2.0) {
                    // Atypical: an off-centre patch of a darker brown.
                    c.push(brown.map(|v| v * 0.72));
                }
                (rng.range(0.16, 0.28), rng.range(0.8, 1.0), c)
            }
            "MEL" if hard(rng, difficulty) => {
                // Featureless: a nevus's shape and colour, slightly larger, with one small,
                // very dark off-centre patch.
                featureless = true;
                wobble = harmonics(rng, 0.05, 3);
                (
                    rng.range(0.2, 0.3),
                    rng.range(0.8, 1.0),
                    vec![brown, jitter(rng, [0.14, 0.09, 0.08], 0.03)],
                )
            }
            "MEL" => {
                let amp = if rng.chance(0.25) { 0.06 } else { 0.16 };
                wobble = harmonics(rng, amp, 4);
                let mut c = vec![
                    jitter(rng, [0.30, 0.18, 0.12], 0.05),
                    jitter(rng, [0.12, 0.08, 0.08], 0.04),
                ];
                if rng.chance(0.6) {
                    c.push(jitter(rng, [0.42, 0.48, 0.60], 0.05));
                }
                (rng.range(0.22, 0.36), rng.range(0.65, 0.95), c)
            }
            "BCC" => {
                wobble = harmonics(rng, 0.06, 3);
                (
                    rng.range(0.18, 0.3),
                    rng.range(0.75, 1.0),
                    vec![jitter(rng, [0.88, 0.62, 0.62], 0.05), [0.75, 0.1, 0.15]],
                )
            }
            "AK" => {
                wobble = harmonics(rng, 0.12, 4);
                (
                    rng.range(0.2, 0.32),
                    rng.range(0.6, 0.9),
                    vec![jitter(rng, [0.82, 0.45, 0.42], 0.06), [0.96, 0.94, 0.9]],
                )
            }
            "BKL" => {
                wobble = harmonics(rng, 0.08, 3);
                (
                    rng.range(0.2, 0.32),
                    rng.range(0.7, 1.0),
                    vec![jitter(rng, [0.62, 0.45, 0.30], 0.08), [0.9, 0.86, 0.75]],
                )
            }
            "DF" => {
                wobble = harmonics(rng, 0.04, 2);
                (
                    rng.range(0.12, 0.2),
                    rng.range(0.85, 1.0),
                    vec![jitter(rng, [0.5, 0.33, 0.25], 0.05), [0.93, 0.88, 0.84]],
                )
            }
            "VASC" => (
                rng.range(0.14, 0.24),
                rng.range(0.8, 1.0),
                vec![jitter(rng, [0.62, 0.1, 0.25], 0.06)],
            ),
            _ => {
                // SCC
                wobble = harmonics(rng, 0.1, 3);
                (
                    rng.range(0.18, 0.3),
                    rng.range(0.75, 1.0),
                    vec![jitter(rng, [0.78, 0.32, 0.3], 0.05), [0.92, 0.86, 0.55]],
                )
            }
        };
        Lesion {
            class,
            radius: radius as f32,
            aspect: aspect as f32,
            angle: rng.range(0.0, 3.2) as f32,
            wobble,
            colors,
            skin,
            seed: rng.below(u64::MAX),
            featureless,
        }
    }

    /// Soft coverage of the lesion's outline at centre (cx, cy), scaled by `k`.
    fn outline(&self, cx: f32, cy: f32, r: f32, k: f32) -> impl Fn(f32, f32) -> f32 + '_ {
        let (s, c) = self.angle.sin_cos();
        move |x, y| {
            let (dx, dy) = (x - cx, y - cy);
            let (u, v) = (dx * c + dy * s, (-dx * s + dy * c) / self.aspect);
            let theta = v.atan2(u);
            let wob: f32 = self
                .wobble
                .iter()
                .map(|(a, f, p)| a * (f * theta + p).sin())
                .sum();
            let rr = r * k * (1.0 + wob);
            let d = (u * u + v * v).sqrt();
            ((rr - d) / 1.5 + 0.5).clamp(0.0, 1.0)
        }
    }
}

fn image(rng: &mut Rng, s: usize, l: &Lesion) -> Canvas {
    let sf = s as f32;
    let mut img = Canvas::new(s, s, &l.skin);
    // Skin texture.
    let mut tex = Canvas::new(s, s, &[0.0]);
    tex.noise(rng, 1.0);
    tex.blur(1);
    img.add(&[0.03, 0.03, 0.03], |x, y| {
        tex.data[(y as usize).min(s - 1) * s + (x as usize).min(s - 1)]
    });
    let (cx, cy) = (
        sf * (0.5 + rng.range(-0.06, 0.06) as f32),
        sf * (0.5 + rng.range(-0.06, 0.06) as f32),
    );
    let r = l.radius * sf * rng.range(0.92, 1.08) as f32;
    let mut lr = Rng::stream(l.seed, 0);
    // An off-centre patch of colour `c` inside the lesion, its radii a share of `r`.
    let mut patch = |img: &mut Canvas, c: &[f32; 3], size: (f64, f64)| {
        let (ox, oy) = (
            lr.range(-0.4, 0.4) as f32 * r,
            lr.range(-0.4, 0.4) as f32 * r,
        );
        let blob = ellipse(
            cx + ox,
            cy + oy,
            r * lr.range(size.0, size.1) as f32,
            r * lr.range(size.0 - 0.05, size.1 - 0.05) as f32,
            lr.range(0.0, 3.0) as f32,
            3.0,
        );
        let inside = l.outline(cx, cy, r, 0.95);
        img.paint(c, |x, y| blob(x, y).min(inside(x, y)) * 0.85);
    };
    let nevus = |img: &mut Canvas| {
        img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
        let core = l.colors[0].map(|v| v * 0.85);
        img.paint(&core, l.outline(cx, cy, r, 0.6));
    };
    match CLASSES[l.class] {
        "MEL" if l.featureless => {
            nevus(&mut img);
            patch(&mut img, &l.colors[1], (0.15, 0.25));
        }
        "MEL" => {
            img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
            // Off-centre darker and veil regions make it asymmetric.
            for c in &l.colors[1..] {
                patch(&mut img, c, (0.25, 0.5));
            }
        }
        "NV" => {
            nevus(&mut img);
            for c in &l.colors[1..] {
                patch(&mut img, c, (0.2, 0.35));
            }
        }
        "BCC" => {
            img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
            for _ in 0..4 {
                let a = lr.range(0.0, f64::from(TAU)) as f32;
                let start = (cx + 0.1 * r * a.cos(), cy + 0.1 * r * a.sin());
                let end = (
                    cx + 0.85 * r * (a + 0.4).cos(),
                    cy + 0.85 * r * (a + 0.4).sin(),
                );
                let ctrl = (
                    cx + 0.5 * r * (a - 0.5).cos(),
                    cy + 0.5 * r * (a - 0.5).sin(),
                );
                img.paint(
                    &l.colors[1],
                    polyline(bezier(start, ctrl, end, 10), (0.012 * sf).max(1.0)),
                );
            }
        }
        "AK" | "BKL" => {
            img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
            let n = if CLASSES[l.class] == "AK" { 25 } else { 12 };
            for _ in 0..n {
                let (a, d) = (
                    lr.range(0.0, f64::from(TAU)) as f32,
                    lr.range(0.0, 0.8) as f32 * r,
                );
                let dot = ellipse(
                    cx + d * a.cos(),
                    cy + d * a.sin(),
                    (0.015 * sf).max(1.0),
                    (0.015 * sf).max(1.0),
                    0.0,
                    1.0,
                );
                img.paint(&l.colors[1], |x, y| dot(x, y) * 0.9);
            }
        }
        "DF" => {
            img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
            img.paint(&l.colors[1], l.outline(cx, cy, r, 0.5));
        }
        "VASC" => {
            for _ in 0..5 {
                let (a, d) = (
                    lr.range(0.0, f64::from(TAU)) as f32,
                    lr.range(0.0, 0.6) as f32 * r,
                );
                let lob = ellipse(
                    cx + d * a.cos(),
                    cy + d * a.sin(),
                    r * 0.45,
                    r * 0.4,
                    a,
                    2.0,
                );
                img.paint(&l.colors[0], lob);
            }
        }
        _ => {
            img.paint(&l.colors[0], l.outline(cx, cy, r, 1.0));
            let crust = ellipse(cx, cy, r * 0.4, r * 0.3, l.angle, 2.0);
            img.paint(&l.colors[1], crust);
        }
    }
    // Hairs on some images.
    if rng.chance(0.3) {
        for _ in 0..1 + rng.below(3) {
            let a = (rng.range(0.0, 1.0) as f32 * sf, 0.0);
            let b = (rng.range(0.0, 1.0) as f32 * sf, sf);
            let c = (
                rng.range(0.0, 1.0) as f32 * sf,
                rng.range(0.3, 0.7) as f32 * sf,
            );
            img.paint(
                &[0.15, 0.1, 0.08],
                polyline(bezier(a, c, b, 16), (0.008 * sf).max(0.8)),
            );
        }
    }
    img.noise(rng, 0.012);
    img
}

/// Writes the dermoscopy family into `out` (an empty directory).
pub(crate) fn write(out: &Path, o: &DermOptions) -> Result<String, SynthError> {
    let mut plan = Rng::stream(o.seed, 0);
    // Lesions, a few of them imaged twice.
    let mut images: Vec<(usize, Lesion)> = Vec::with_capacity(o.n);
    let mut lesion_no = 0usize;
    while images.len() < o.n {
        let class = plan.weighted(&WEIGHTS);
        let lesion = Lesion::draw(&mut plan, class, o.difficulty);
        let views = if plan.chance(0.2) { 2 } else { 1 };
        for _ in 0..views.min(o.n - images.len()) {
            images.push((lesion_no, lesion.clone()));
        }
        lesion_no += 1;
    }
    let dir = out.join("ISIC_2019_Training_Input");
    std::fs::create_dir_all(&dir).map_err(|e| SynthError::io(&dir, e))?;
    let idx: Vec<usize> = (0..images.len()).collect();
    let written = crate::par::map(&idx, |&i| -> Result<(), SynthError> {
        let mut rng = Rng::stream(o.seed, 1 + i as u64);
        let img = image(&mut rng, o.size, &images[i].1);
        super::write_jpeg_rgb(
            &dir.join(format!("ISIC_{:07}.jpg", i)),
            o.size,
            &img.to_u8(),
        )
    });
    for w in written {
        w?;
    }
    let mut gt = String::from("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n");
    let mut meta = String::from("image,age_approx,anatom_site_general,lesion_id,sex\n");
    let sites = [
        "anterior torso",
        "posterior torso",
        "lower extremity",
        "upper extremity",
        "head/neck",
    ];
    let mut counts = [0usize; 8];
    for (i, (lesion_no, l)) in images.iter().enumerate() {
        counts[l.class] += 1;
        let mut r = Rng::stream(o.seed ^ 0x15_1C, *lesion_no as u64);
        write!(gt, "ISIC_{i:07}").ok();
        for k in 0..9 {
            write!(gt, ",{}", if k == l.class { "1.0" } else { "0.0" }).ok();
        }
        gt.push('\n');
        writeln!(
            meta,
            "ISIC_{i:07},{},{},IL_{:07},{}",
            5 * (4 + r.below(14)),
            sites[r.below(5) as usize],
            lesion_no,
            if r.chance(0.5) { "female" } else { "male" }
        )
        .ok();
    }
    super::write_text(&out.join("ISIC_2019_Training_GroundTruth.csv"), &gt)?;
    super::write_text(&out.join("ISIC_2019_Training_Metadata.csv"), &meta)?;
    let per: Vec<String> = CLASSES
        .iter()
        .zip(counts)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    Ok(format!(
        "{} JPEGs of {lesion_no} lesions: {}",
        images.len(),
        per.join(", ")
    ))
}
