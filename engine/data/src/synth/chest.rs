//! The chest family: SIIM-ACR-style DICOM chest radiographs with pneumothorax masks, a chest
//! drain as a separate image signal whose rate depends on the label (the shortcut), and a
//! NEATX-like set of PNGs with drain labels for training a drain classifier.
//!
//! What the signals look like (all sizes relative to the image):
//! - every image: a bright body ellipse on dark air, two dark lung fields with faint
//!   blurred-noise vessel texture and curved rib shadows, a bright heart shadow; patients
//!   keep their build across their images, which are jittered by a small shift and rotation;
//! - pneumothorax: on one side, the lung edge pulls away (the collapsed lung is a smaller
//!   ellipse shifted medially and down); between them the field is a little darker and has
//!   no vessel texture, bounded by a faint pleural line. Its extent varies from a thin rim to
//!   about a quarter of the lung, so small ones are hard to see under the image noise. The
//!   mask (in `train-rle.csv`) is exactly that region;
//! - chest drain: a thin, very bright tube entering through the lateral chest wall low on
//!   one side (the pneumothorax side when there is one) and curving up towards the apex,
//!   continuing outside the body to the image edge.
//!
//! Stored pixel formats vary as in real archives: 12-bit MONOCHROME2 with a VOI window,
//! MONOCHROME1 (inverted), a modality rescale (slope 2, intercept -1024), and 8-bit without a
//! window; a correct reader shows them all alike.

use std::fmt::Write as _;
use std::path::Path;

use super::draw::{Canvas, Rng, bezier, ellipse, polyline};
use super::{SynthError, uid, write_png_gray};
use crate::dicom;

/// Options of `engine synth chest`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChestOptions {
    /// Images in the SIIM-ACR part.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Width and height in pixels.
    pub size: usize,
    /// Share of images with a pneumothorax.
    pub positive_rate: f64,
    /// P(drain | pneumothorax) outside the test split.
    pub drain_given_positive: f64,
    /// P(drain | no pneumothorax) outside the test split.
    pub drain_given_negative: f64,
    /// Share of patients written to `split.csv` as the test split (0: no split file).
    pub test_fraction: f64,
    /// P(drain | pneumothorax) in the test split.
    pub test_drain_given_positive: f64,
    /// P(drain | no pneumothorax) in the test split.
    pub test_drain_given_negative: f64,
    /// Images in the NEATX-like drain set (0: none).
    pub neatx_n: usize,
}

impl Default for ChestOptions {
    fn default() -> Self {
        ChestOptions {
            n: 2000,
            seed: 0,
            size: 128,
            positive_rate: 0.25,
            drain_given_positive: 0.6,
            drain_given_negative: 0.1,
            test_fraction: 0.0,
            test_drain_given_positive: 0.6,
            test_drain_given_negative: 0.1,
            neatx_n: 500,
        }
    }
}

/// One patient's build.
#[derive(Clone, Copy, Debug)]
struct Look {
    body_rx: f32,
    body_ry: f32,
    body: f32,
    lung_rx: f32,
    lung_ry: f32,
    lung_dx: f32,
    lung: f32,
    heart: f32,
}

impl Look {
    fn draw(rng: &mut Rng) -> Look {
        Look {
            body_rx: rng.range(0.40, 0.47) as f32,
            body_ry: rng.range(0.46, 0.53) as f32,
            body: rng.range(0.50, 0.60) as f32,
            lung_rx: rng.range(0.14, 0.18) as f32,
            lung_ry: rng.range(0.27, 0.33) as f32,
            lung_dx: rng.range(0.18, 0.22) as f32,
            lung: rng.range(0.18, 0.26) as f32,
            heart: rng.range(0.58, 0.68) as f32,
        }
    }
}

/// What one image shows.
#[derive(Clone, Copy, Debug)]
struct Findings {
    /// Pneumothorax side (-1 right of the image's centre line... i.e. left, +1 right) and extent.
    ptx: Option<(f32, f32)>,
    /// Drain side.
    drain: Option<f32>,
}

/// Draws one radiograph; returns the image (1 channel, 0..1) and the pneumothorax mask.
fn radiograph(rng: &mut Rng, s: usize, look: &Look, f: &Findings) -> (Canvas, Vec<u8>) {
    let sf = s as f32;
    let (jx, jy) = (
        rng.range(-0.02, 0.02) as f32 * sf,
        rng.range(-0.02, 0.02) as f32 * sf,
    );
    let rot = rng.range(-0.03, 0.03) as f32;
    let (cx, cy) = (0.5 * sf + jx, 0.55 * sf + jy);
    let mut img = Canvas::new(s, s, &[0.08]);
    img.paint(
        &[look.body],
        ellipse(cx, cy, look.body_rx * sf, look.body_ry * sf, rot, 2.0),
    );
    let lung_cy = cy - 0.1 * sf;
    let lungs: Vec<(f32, f32, f32, f32)> = [-1.0f32, 1.0]
        .iter()
        .map(|side| {
            (
                *side,
                cx + side * look.lung_dx * sf,
                lung_cy,
                side * 0.08 + rot,
            )
        })
        .collect();
    let (lrx, lry) = (look.lung_rx * sf, look.lung_ry * sf);
    // Vessel texture: blurred noise, kept only inside the aerated lung.
    let mut texture = Canvas::new(s, s, &[0.0]);
    texture.noise(rng, 1.0);
    texture.blur(2);
    let mut mask = vec![0u8; s * s];
    let mut aerated = vec![0f32; s * s];
    let mut lung_cover = vec![0f32; s * s];
    for (side, lx, ly, ang) in &lungs {
        let whole = ellipse(*lx, *ly, lrx, lry, *ang, 1.5);
        let collapsed = f.ptx.filter(|(ps, _)| ps == side).map(|(_, extent)| {
            let (crx, cry) = (lrx * (1.0 - 0.6 * extent), lry * (1.0 - 0.35 * extent));
            let (ccx, ccy) = (lx - side * (lrx - crx) * 0.9, ly + (lry - cry) * 0.8);
            (ccx, ccy, crx, cry)
        });
        for y in 0..s {
            for x in 0..s {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let w = whole(px, py);
                lung_cover[y * s + x] = lung_cover[y * s + x].max(w);
                let a = match collapsed {
                    Some((ccx, ccy, crx, cry)) => {
                        let inner = ellipse(ccx, ccy, crx, cry, *ang, 1.0)(px, py);
                        if w > 0.5 && inner < 0.5 {
                            mask[y * s + x] = 1;
                        }
                        w.min(inner)
                    }
                    None => w,
                };
                aerated[y * s + x] = aerated[y * s + x].max(a);
            }
        }
        img.paint(&[look.lung], &whole);
        if let Some((ccx, ccy, crx, cry)) = collapsed {
            // The air outside the collapsed lung: darker, no markings.
            let in_ptx = |x: f32, y: f32| {
                whole(x, y).min(1.0 - ellipse(ccx, ccy, crx, cry, *ang, 1.0)(x, y))
            };
            img.paint(&[look.lung * 0.75], in_ptx);
            // The visceral pleural line at the collapsed lung's edge.
            let ring = ellipse(ccx, ccy, crx + 0.8, cry + 0.8, *ang, 0.8);
            let inside = ellipse(
                ccx,
                ccy,
                (crx - 0.8).max(1.0),
                (cry - 0.8).max(1.0),
                *ang,
                0.8,
            );
            img.paint(&[look.lung + 0.1], |x, y| {
                (ring(x, y) - inside(x, y)).min(whole(x, y) * 2.0)
            });
        }
    }
    img.add(&[0.07], |x, y| {
        let (xi, yi) = ((x as usize).min(s - 1), (y as usize).min(s - 1));
        texture.data[yi * s + xi] * aerated[yi * s + xi] * 2.5
    });
    // Ribs: faint curved bands across each lung.
    for (side, lx, ly, _) in &lungs {
        for k in 0..6 {
            let y0 = ly - lry * 0.85 + k as f32 * lry * 0.32;
            let pts = bezier(
                (cx + side * 0.02 * sf, y0 - 0.04 * sf),
                (lx + side * lrx * 0.6, y0 - 0.08 * sf),
                (lx + side * lrx * 1.25, y0 + 0.06 * sf),
                12,
            );
            let band = polyline(pts, 0.03 * sf);
            let cover = &lung_cover;
            img.add(&[0.05], |x, y| {
                let (xi, yi) = ((x as usize).min(s - 1), (y as usize).min(s - 1));
                band(x, y) * cover[yi * s + xi]
            });
        }
    }
    // Heart and mediastinum.
    img.paint(
        &[look.heart],
        ellipse(
            cx + 0.04 * sf,
            cy + 0.08 * sf,
            0.13 * sf,
            0.12 * sf,
            rot,
            2.0,
        ),
    );
    img.paint(
        &[look.heart * 0.95],
        ellipse(cx, cy - 0.15 * sf, 0.05 * sf, 0.2 * sf, rot, 2.0),
    );
    if let Some(side) = f.drain {
        let entry_y = cy + rng.range(0.02, 0.12) as f32 * sf;
        let wall_x = cx + side * (look.body_rx * sf * 0.92);
        let tip = (
            cx + side * look.lung_dx * sf * rng.range(0.7, 1.1) as f32,
            lung_cy - lry * rng.range(0.5, 0.8) as f32,
        );
        let ctrl = (wall_x - side * 0.02 * sf, tip.1 + 0.1 * sf);
        let mut pts = vec![(
            if side > 0.0 { sf + 2.0 } else { -2.0 },
            entry_y + 0.12 * sf,
        )];
        pts.extend(bezier((wall_x, entry_y), ctrl, tip, 16));
        let width = (0.014 * sf).max(1.3);
        img.paint(&[0.97], polyline(pts, width));
    }
    img.noise(rng, 0.035);
    (img, mask)
}

/// How one image is stored.
#[derive(Clone, Copy, Debug)]
enum Storage {
    Mono2Windowed,
    Mono1,
    Rescaled,
    EightBit,
}

/// Writes the chest family into `out` (an empty directory).
pub(crate) fn write(out: &Path, o: &ChestOptions) -> Result<String, SynthError> {
    let s = o.size;
    let mut plan_rng = Rng::stream(o.seed, 0);
    // Patients, their images and what each shows.
    struct Planned {
        patient: usize,
        test: bool,
        ptx: bool,
        drain: bool,
        storage: Storage,
    }
    let mut planned: Vec<Planned> = Vec::with_capacity(o.n);
    let mut looks: Vec<Look> = Vec::new();
    while planned.len() < o.n {
        let patient = looks.len();
        looks.push(Look::draw(&mut plan_rng));
        let test = plan_rng.chance(o.test_fraction);
        let k = 1 + plan_rng.weighted(&[0.35, 0.3, 0.2, 0.15]);
        for _ in 0..k.min(o.n - planned.len()) {
            let ptx = plan_rng.chance(o.positive_rate);
            let p_drain = match (test, ptx) {
                (false, true) => o.drain_given_positive,
                (false, false) => o.drain_given_negative,
                (true, true) => o.test_drain_given_positive,
                (true, false) => o.test_drain_given_negative,
            };
            let drain = plan_rng.chance(p_drain);
            let storage = match plan_rng.weighted(&[0.7, 0.15, 0.1, 0.05]) {
                0 => Storage::Mono2Windowed,
                1 => Storage::Mono1,
                2 => Storage::Rescaled,
                _ => Storage::EightBit,
            };
            planned.push(Planned {
                patient,
                test,
                ptx,
                drain,
                storage,
            });
        }
    }
    let patient_ids: Vec<(String, String)> = (0..looks.len())
        .map(|p| {
            let mut r = Rng::stream(o.seed ^ 0x05EE_D1D5, p as u64);
            (
                format!("SYNTH^PATIENT{p:05}"),
                format!("SYNTH{:010}", r.below(10_000_000_000)),
            )
        })
        .collect();
    let images_dir = out.join("dicom-images-train");
    let indices: Vec<usize> = (0..planned.len()).collect();
    let results = crate::par::map(&indices, |&i| -> Result<(String, String), SynthError> {
        let p = &planned[i];
        let mut rng = Rng::stream(o.seed, 1 + i as u64);
        let side = if rng.chance(0.5) { -1.0 } else { 1.0 };
        let f = Findings {
            ptx: p.ptx.then(|| (side, rng.range(0.06, 0.4) as f32)),
            drain: p.drain.then(|| {
                if p.ptx {
                    side
                } else if rng.chance(0.5) {
                    -1.0
                } else {
                    1.0
                }
            }),
        };
        let (img, mask) = radiograph(&mut rng, s, &looks[p.patient], &f);
        let (study, series, sop) = (uid(&mut rng), uid(&mut rng), uid(&mut rng));
        let (name, pid) = &patient_ids[p.patient];
        let dir = images_dir.join(&study).join(&series);
        std::fs::create_dir_all(&dir).map_err(|e| SynthError::io(&dir, e))?;
        let (pixels, bits_allocated, bits_stored, mono1, rescale, window) = match p.storage {
            Storage::Mono2Windowed => (
                img.to_u16(4095),
                16,
                12,
                false,
                (1.0, 0.0),
                Some((2048.0, 4096.0)),
            ),
            Storage::Mono1 => (
                img.to_u16(4095).into_iter().map(|v| 4095 - v).collect(),
                16,
                12,
                true,
                (1.0, 0.0),
                Some((2048.0, 4096.0)),
            ),
            Storage::Rescaled => (
                img.to_u16(2047),
                16,
                12,
                false,
                (2.0, -1024.0),
                Some((1023.0, 4095.0)),
            ),
            Storage::EightBit => (
                img.to_u8().into_iter().map(u16::from).collect(),
                8,
                8,
                false,
                (1.0, 0.0),
                None,
            ),
        };
        let path = dir.join(format!("{sop}.dcm"));
        dicom::write(
            &path,
            &dicom::Image {
                patient_name: name,
                patient_id: pid,
                study_uid: &study,
                series_uid: &series,
                sop_uid: &sop,
                columns: s as u16,
                rows: s as u16,
                pixels: &pixels,
                bits_allocated,
                bits_stored,
                monochrome1: mono1,
                rescale,
                window,
            },
        )
        .map_err(|e| SynthError::new(format!("cannot write {}: {e}", path.display())))?;
        let rle = if p.ptx {
            crate::rle::encode(&mask, s, s)
        } else {
            "-1".into()
        };
        Ok((sop, rle))
    });
    let mut rle_csv = String::from("ImageId, EncodedPixels\n");
    let mut drains = String::from("image_id,drain\n");
    let mut split = String::from("image_id,split\n");
    for (p, r) in planned.iter().zip(results) {
        let (sop, rle) = r?;
        // SIIM lists a mask with several runs as one row; an image could have several rows.
        writeln!(rle_csv, "{sop}, {rle}").ok();
        writeln!(drains, "{sop},{}", u8::from(p.drain)).ok();
        if p.test {
            writeln!(split, "{sop},test").ok();
        }
    }
    super::write_text(&out.join("train-rle.csv"), &rle_csv)?;
    super::write_text(&out.join("drains.csv"), &drains)?;
    if o.test_fraction > 0.0 {
        super::write_text(&out.join("split.csv"), &split)?;
    }
    if o.neatx_n > 0 {
        write_neatx(&out.join("neatx"), o)?;
    }
    let n_pos = planned.iter().filter(|p| p.ptx).count();
    Ok(format!(
        "{} DICOM images of {} patients ({} with pneumothorax), drains at P(drain | pneumothorax) = {}, P(drain | none) = {}{}{}",
        planned.len(),
        looks.len(),
        n_pos,
        o.drain_given_positive,
        o.drain_given_negative,
        if o.test_fraction > 0.0 {
            format!(
                "; split.csv fixes {} test images with P(drain | pneumothorax) = {}, P(drain | none) = {}",
                planned.iter().filter(|p| p.test).count(),
                o.test_drain_given_positive,
                o.test_drain_given_negative
            )
        } else {
            String::new()
        },
        if o.neatx_n > 0 {
            format!("; neatx/: {} PNGs with drain labels", o.neatx_n)
        } else {
            String::new()
        }
    ))
}

/// The NEATX-like drain set: PNG radiographs of other patients, drain in 40%, pneumothorax
/// independent of it.
fn write_neatx(dir: &Path, o: &ChestOptions) -> Result<(), SynthError> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| SynthError::io(&images, e))?;
    let indices: Vec<usize> = (0..o.neatx_n).collect();
    let rows = crate::par::map(&indices, |&i| -> Result<String, SynthError> {
        let mut rng = Rng::stream(o.seed ^ 0x4E_4541_5458, i as u64);
        let look = Look::draw(&mut rng);
        let drain = rng.chance(0.4);
        let side = if rng.chance(0.5) { -1.0 } else { 1.0 };
        let f = Findings {
            ptx: rng.chance(0.1).then(|| (side, rng.range(0.2, 0.6) as f32)),
            drain: drain.then_some(side),
        };
        let (img, _) = radiograph(&mut rng, o.size, &look, &f);
        let id = format!("NEATX_{i:06}");
        write_png_gray(&images.join(format!("{id}.png")), o.size, &img.to_u8())?;
        Ok(format!("{id},{}", u8::from(drain)))
    });
    let mut csv = String::from("image_id,drain\n");
    for r in rows {
        csv.push_str(&r?);
        csv.push('\n');
    }
    super::write_text(&dir.join("drains.csv"), &csv)
}
