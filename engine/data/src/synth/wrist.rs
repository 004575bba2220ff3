//! The wrist family in the GRAZPEDWRI-DX style YOLO layout: greyscale PNG radiographs of a
//! child's forearm and wrist, one box class `fracture`, about half the images fractured, and
//! boxes kept for only a share of the images (`--box-fraction`); the rest carry an image-level
//! label only (in `image_labels.csv`, which labels every image). With `--test-fraction`, a
//! share of the patients is fixed as the test split in `split.csv` (columns `image_id,split`),
//! and their images keep every box, as a benchmark's test set is fully annotated.
//!
//! What the signals look like: soft tissue as a wide grey band; radius and ulna as long
//! bright bones with brighter cortices, running up to a row of small carpal bones. Every
//! image has a smooth, dark transverse growth plate near the end of the radius (a normal
//! finding that must not be flagged). A fracture is a dark, jagged line across the radius
//! (sometimes the ulna too) a little below the growth plate, with the distal fragment shifted
//! sideways by a pixel or two; its box encloses the line with a small margin.
//!
//! `--difficulty D` (0 to 1, default 0) makes fractures subtler: the line is fainter (closer
//! to the bone's brightness) and shorter, the cortical step is left out of a share D of them,
//! and the noise is stronger, so that a detector does not saturate within a few epochs.

use std::fmt::Write as _;
use std::path::Path;

use super::SynthError;
use super::draw::{Canvas, Rng, ellipse, polyline};

/// Options of `engine synth wrist`.
#[derive(Clone, Debug, PartialEq)]
pub struct WristOptions {
    /// Images.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Width and height in pixels.
    pub size: usize,
    /// Share of images with a fracture.
    pub positive_rate: f64,
    /// Share of images whose boxes are kept (the rest have image-level labels only).
    pub box_fraction: f64,
    /// Share of patients fixed as the test split in `split.csv`; their images keep every
    /// box, as a benchmark's test set is fully annotated (0: no file).
    pub test_fraction: f64,
    /// How subtle fractures are, from 0 (the default) to 1.
    pub difficulty: f64,
}

impl Default for WristOptions {
    fn default() -> Self {
        WristOptions {
            n: 2000,
            seed: 0,
            size: 128,
            positive_rate: 0.5,
            box_fraction: 1.0,
            test_fraction: 0.0,
            difficulty: 0.0,
        }
    }
}

/// Draws one radiograph; returns it and the fracture boxes (normalised cx, cy, w, h).
fn radiograph(rng: &mut Rng, s: usize, fracture: bool, difficulty: f64) -> (Canvas, Vec<[f32; 4]>) {
    let d = difficulty as f32;
    let sf = s as f32;
    let mut img = Canvas::new(s, s, &[0.06]);
    let tilt = rng.range(-0.08, 0.08) as f32;
    let cx = sf * (0.5 + rng.range(-0.05, 0.05) as f32);
    // Soft tissue.
    img.paint(
        &[0.26],
        ellipse(cx, sf * 0.6, sf * 0.3, sf * 0.75, tilt, 3.0),
    );
    // Radius (left) and ulna (right), long bones up to y_top.
    let y_top = sf * rng.range(0.28, 0.34) as f32;
    let radius_x = cx - sf * 0.09;
    let ulna_x = cx + sf * 0.1;
    let bone = |img: &mut Canvas, x: f32, half_w: f32, top: f32| {
        let pts = vec![(x + tilt * (sf - top) * 0.3, top), (x, sf + 4.0)];
        img.paint(&[0.62], polyline(pts.clone(), half_w * 2.0));
        // Cortex brighter than the marrow: paint the marrow darker inside.
        img.paint(&[0.52], polyline(pts, half_w * 1.0));
    };
    bone(&mut img, radius_x, sf * 0.055, y_top);
    bone(&mut img, ulna_x, sf * 0.04, y_top + sf * 0.04);
    // Distal radius flare and carpal bones.
    img.paint(
        &[0.6],
        ellipse(
            radius_x + tilt * (sf - y_top) * 0.3,
            y_top,
            sf * 0.08,
            sf * 0.035,
            tilt,
            2.0,
        ),
    );
    for k in 0..5 {
        let x = cx - sf * 0.13 + k as f32 * sf * 0.065 + rng.range(-0.01, 0.01) as f32 * sf;
        let y = y_top - sf * (0.07 + rng.range(0.0, 0.03) as f32);
        img.paint(
            &[0.58],
            ellipse(x, y, sf * 0.03, sf * 0.025, rng.range(0.0, 3.0) as f32, 1.5),
        );
    }
    // The growth plate: smooth, dark, transverse, near the end of the radius.
    let plate_y = y_top + sf * 0.04;
    let rx_at =
        |y: f32| radius_x + tilt * (sf - y) * 0.3 * ((y - y_top) / (sf - y_top)).clamp(0.0, 1.0);
    let plate = vec![
        (rx_at(plate_y) - sf * 0.06, plate_y + sf * 0.005),
        (rx_at(plate_y), plate_y - sf * 0.004),
        (rx_at(plate_y) + sf * 0.06, plate_y + sf * 0.005),
    ];
    img.paint(&[0.3], polyline(plate, (0.012 * sf).max(1.0)));
    let mut boxes = Vec::new();
    if fracture {
        let both = rng.chance(0.3);
        let fy = plate_y + sf * rng.range(0.06, 0.16) as f32;
        let shorter = 1.0 - 0.4 * d;
        let mut lines = vec![(rx_at(fy), sf * 0.06 * shorter)];
        if both {
            lines.push((ulna_x, sf * 0.045 * shorter));
        }
        for (bx, half) in lines {
            let n = 7;
            let pts: Vec<(f32, f32)> = (0..=n)
                .map(|i| {
                    let t = i as f32 / n as f32;
                    let jag =
                        if i % 2 == 0 { 1.0 } else { -1.0 } * sf * rng.range(0.006, 0.016) as f32;
                    (bx - half + 2.0 * half * t, fy + jag + (t - 0.5) * sf * 0.03)
                })
                .collect();
            let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
            for (x, y) in &pts {
                x0 = x0.min(*x);
                y0 = y0.min(*y);
                x1 = x1.max(*x);
                y1 = y1.max(*y);
            }
            img.paint(&[0.2 + 0.3 * d], polyline(pts, (0.014 * sf).max(1.2)));
            // A small step in the cortex below the line, left out of a share `difficulty`
            // of fractures (the chance is drawn only with a difficulty, so that the default
            // images stay as they were).
            let shift = sf * rng.range(0.006, 0.014) as f32;
            let stepless = difficulty > 0.0 && rng.chance(difficulty);
            if !stepless {
                img.paint(
                    &[0.66],
                    polyline(
                        vec![
                            (bx - half - shift, fy + sf * 0.02),
                            (bx - half - shift, fy + sf * 0.06),
                        ],
                        (0.01 * sf).max(1.0),
                    ),
                );
            }
            let m = sf * 0.02;
            let (x0, y0, x1, y1) = (
                (x0 - m).max(0.0),
                (y0 - m).max(0.0),
                (x1 + m).min(sf),
                (y1 + m).min(sf),
            );
            boxes.push([
                (x0 + x1) / 2.0 / sf,
                (y0 + y1) / 2.0 / sf,
                (x1 - x0) / sf,
                (y1 - y0) / sf,
            ]);
        }
    }
    img.blur(1);
    img.noise(rng, 0.02 + 0.03 * d);
    (img, boxes)
}

/// Writes the wrist family into `out` (an empty directory).
pub(crate) fn write(out: &Path, o: &WristOptions) -> Result<String, SynthError> {
    let mut plan = Rng::stream(o.seed, 0);
    // (patient, fracture, boxed) per image; a patient has one to three images. Test
    // patients (drawn only when there is a test split, so other outputs stay as they were)
    // keep every box.
    let mut planned: Vec<(usize, bool, bool)> = Vec::with_capacity(o.n);
    let mut test_patients = std::collections::BTreeSet::new();
    let mut patients = 0usize;
    while planned.len() < o.n {
        let fracture = plan.chance(o.positive_rate);
        let views = 1 + plan.weighted(&[0.4, 0.4, 0.2]);
        let test = o.test_fraction > 0.0 && plan.chance(o.test_fraction);
        if test {
            test_patients.insert(patients);
        }
        for _ in 0..views.min(o.n - planned.len()) {
            let boxed = plan.chance(o.box_fraction) || test;
            planned.push((patients, fracture, boxed));
        }
        patients += 1;
    }
    for d in ["images", "labels"] {
        let p = out.join(d);
        std::fs::create_dir_all(&p).map_err(|e| SynthError::io(&p, e))?;
    }
    let idx: Vec<usize> = (0..planned.len()).collect();
    let written = crate::par::map(&idx, |&i| -> Result<usize, SynthError> {
        let (_, fracture, boxed) = planned[i];
        let mut rng = Rng::stream(o.seed, 1 + i as u64);
        let (img, boxes) = radiograph(&mut rng, o.size, fracture, o.difficulty);
        let id = format!("{i:06}");
        super::write_png_gray(
            &out.join("images").join(format!("{id}.png")),
            o.size,
            &img.to_u8(),
        )?;
        if boxed {
            let mut text = String::new();
            for b in &boxes {
                writeln!(text, "0 {:.6} {:.6} {:.6} {:.6}", b[0], b[1], b[2], b[3]).ok();
            }
            super::write_text(&out.join("labels").join(format!("{id}.txt")), &text)?;
        }
        Ok(boxes.len())
    });
    let mut csv = String::from("image_id,fracture,patient_id\n");
    let mut split = String::from("image_id,split\n");
    let mut n_boxes = 0;
    for (i, ((patient, fracture, _), w)) in planned.iter().zip(written).enumerate() {
        let nb = w?;
        if planned[i].2 {
            n_boxes += nb;
        }
        writeln!(csv, "{i:06},{},P{patient:05}", u8::from(*fracture)).ok();
        if test_patients.contains(patient) {
            writeln!(split, "{i:06},test").ok();
        }
    }
    super::write_text(&out.join("image_labels.csv"), &csv)?;
    if o.test_fraction > 0.0 {
        super::write_text(&out.join("split.csv"), &split)?;
    }
    super::write_text(&out.join("classes.txt"), "fracture\n")?;
    let boxed = planned.iter().filter(|p| p.2).count();
    let positives = planned.iter().filter(|p| p.1).count();
    let test_images = planned
        .iter()
        .filter(|p| test_patients.contains(&p.0))
        .count();
    Ok(format!(
        "{} PNGs of {patients} patients, {positives} with a fracture; {boxed} boxed ({n_boxes} boxes), {} with image-level labels only{}",
        planned.len(),
        planned.len() - boxed,
        if o.test_fraction > 0.0 {
            format!(
                "; split.csv fixes {test_images} test images of {} patients, every one boxed",
                test_patients.len()
            )
        } else {
            String::new()
        }
    ))
}
