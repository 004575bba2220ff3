//! Synthetic datasets in the real layouts, with known, learnable signals, deterministic for a
//! seed (each image is drawn from its own random stream, so the thread count does not
//! matter): `chest` (SIIM-ACR DICOM with a drain shortcut), `derm` (ISIC 2019) and `wrist`
//! (YOLO boxes with a configurable boxed share). Each module's documentation says what its
//! signals look like; the written `README.md` repeats it with the options used.
//!
//! The output directory is built aside and renamed into place, so a failed or interrupted
//! run leaves nothing half-written, and an existing non-empty directory is never touched.

mod chest;
mod derm;
mod draw;
mod wrist;

use std::path::{Path, PathBuf};

pub use chest::ChestOptions;
pub use derm::{CLASSES as DERM_CLASSES, DermOptions};
pub use wrist::WristOptions;

/// The largest dataset `engine synth` makes.
pub const MAX_IMAGES: usize = 100_000;
/// The image sizes it accepts.
pub const SIZES: std::ops::RangeInclusive<usize> = 16..=1024;

/// A family with its options.
#[derive(Clone, Debug, PartialEq)]
pub enum Family {
    /// Chest radiographs (SIIM-ACR + NEATX-like drains).
    Chest(ChestOptions),
    /// Dermoscopy (ISIC 2019).
    Derm(DermOptions),
    /// Wrist radiographs (YOLO).
    Wrist(WristOptions),
}

/// Why a synthetic dataset could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SynthError {
    /// What went wrong.
    pub message: String,
    /// Whether the user's input was at fault (exit 2) rather than the system (exit 1).
    pub usage: bool,
}

impl SynthError {
    fn new(message: impl Into<String>) -> SynthError {
        SynthError {
            message: message.into(),
            usage: false,
        }
    }

    fn usage(message: impl Into<String>) -> SynthError {
        SynthError {
            message: message.into(),
            usage: true,
        }
    }

    fn io(path: &Path, e: std::io::Error) -> SynthError {
        SynthError::new(format!("cannot write {}: {e}", path.display()))
    }
}

/// Writes `family` into `out`, which must not exist or be an empty directory. Returns a
/// one-line description of what was written.
pub fn write(family: &Family, out: &Path) -> Result<String, SynthError> {
    let (n, size, name) = match family {
        Family::Chest(o) => (o.n, o.size, "chest"),
        Family::Derm(o) => (o.n, o.size, "derm"),
        Family::Wrist(o) => (o.n, o.size, "wrist"),
    };
    if n == 0 || n > MAX_IMAGES {
        return Err(SynthError::usage(format!(
            "--n {n}: choose between 1 and {MAX_IMAGES} images"
        )));
    }
    if !SIZES.contains(&size) {
        return Err(SynthError::usage(format!(
            "--size {size}: choose between {} and {} pixels",
            SIZES.start(),
            SIZES.end()
        )));
    }
    let shares: Vec<(&str, f64)> = match family {
        Family::Chest(o) => vec![
            ("--positive-rate", o.positive_rate),
            ("--drain-given-positive", o.drain_given_positive),
            ("--drain-given-negative", o.drain_given_negative),
            ("--test-fraction", o.test_fraction),
            ("--test-drain-given-positive", o.test_drain_given_positive),
            ("--test-drain-given-negative", o.test_drain_given_negative),
        ],
        Family::Derm(o) => vec![("--difficulty", o.difficulty)],
        Family::Wrist(o) => vec![
            ("--positive-rate", o.positive_rate),
            ("--box-fraction", o.box_fraction),
            ("--test-fraction", o.test_fraction),
            ("--difficulty", o.difficulty),
        ],
    };
    for (flag, v) in shares {
        if !(0.0..=1.0).contains(&v) {
            return Err(SynthError::usage(format!(
                "{flag} {v}: a share between 0 and 1"
            )));
        }
    }
    if let Family::Chest(o) = family
        && o.neatx_n > MAX_IMAGES
    {
        return Err(SynthError::usage(format!(
            "--neatx {}: at most {MAX_IMAGES}",
            o.neatx_n
        )));
    }
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| SynthError::usage(format!("cannot read {}: {e}", out.display())))?
                .next()
                .is_none();
        if !empty {
            return Err(SynthError::usage(format!(
                "{} already exists and is not empty; refusing to write into it",
                out.display()
            )));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| SynthError::io(&parent, e))?;
    let base = out
        .file_name()
        .map_or_else(|| "synth".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{base}.synth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| SynthError::io(&tmp, e))?;
    let result = (|| {
        let described = match family {
            Family::Chest(o) => chest::write(&tmp, o)?,
            Family::Derm(o) => derm::write(&tmp, o)?,
            Family::Wrist(o) => wrist::write(&tmp, o)?,
        };
        write_text(&tmp.join("README.md"), &readme(name, family, &described))?;
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| SynthError::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| SynthError::io(out, e))?;
        Ok(described)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn readme(name: &str, family: &Family, described: &str) -> String {
    let (doc, declaration) = match family {
        Family::Chest(o) => (
            include_str!("chest.rs"),
            format!(
                "  siim:\n    format: siim-acr\n    root: {name}\n    attributes:\n      drain: {{file: drains.csv}}\n    split: {{by: patient, val: 0.15, test: 0.15, seed: 7, stratify: [drain]{}}}\n  neatx:\n    format: csv-images\n    root: {name}/neatx\n    labels: drains.csv\n    image_column: image_id\n    target: drain\n",
                if o.test_fraction > 0.0 {
                    ", file: split.csv"
                } else {
                    ""
                }
            ),
        ),
        Family::Derm(_) => (
            include_str!("derm.rs"),
            format!(
                "  isic:\n    format: isic2019\n    root: {name}\n    split: {{by: lesion, val: 0.15, test: 0.15, seed: 7}}\n"
            ),
        ),
        Family::Wrist(o) => (
            include_str!("wrist.rs"),
            format!(
                "  wrist:\n    format: yolo\n    root: {name}\n    split: {{by: patient, val: 0.15, test: 0.15, seed: 7{}}}\n",
                if o.test_fraction > 0.0 {
                    ", file: split.csv"
                } else {
                    ""
                }
            ),
        ),
    };
    let about: String = doc
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "# Synthetic `{name}` dataset\n\nMade by `engine synth` ({family:?}).\n\n{described}.\n\n## What the signals look like\n\n{about}\n\n## Declaring it in a manifest\n\n```yaml\ndatasets:\n{declaration}```\n\n(`root` is relative to the manifest's directory; adjust it to where this directory lies.)\n"
    )
}

/// A UID under the UUID-derived root `2.25` (PS3.5 B.2), from the generator.
fn uid(rng: &mut draw::Rng) -> String {
    let v = (u128::from(rng.below(u64::MAX)) << 64) | u128::from(rng.below(u64::MAX));
    format!("2.25.{v}")
}

fn write_text(path: &Path, text: &str) -> Result<(), SynthError> {
    std::fs::write(path, text).map_err(|e| SynthError::io(path, e))
}

fn write_png_gray(path: &Path, size: usize, pixels: &[u8]) -> Result<(), SynthError> {
    image::save_buffer_with_format(
        path,
        pixels,
        size as u32,
        size as u32,
        image::ExtendedColorType::L8,
        image::ImageFormat::Png,
    )
    .map_err(|e| SynthError::new(format!("cannot write {}: {e}", path.display())))
}

fn write_jpeg_rgb(path: &Path, size: usize, pixels: &[u8]) -> Result<(), SynthError> {
    let file = std::fs::File::create(path).map_err(|e| SynthError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, 92)
        .encode(
            pixels,
            size as u32,
            size as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| SynthError::new(format!("cannot write {}: {e}", path.display())))
}
