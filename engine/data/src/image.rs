//! Decoding images of any supported kind into 8-bit pixels: PNG and JPEG (through the
//! `image` crate) and DICOM (through [`crate::dicom`]).

use std::path::Path;

use crate::read::has_extension;

/// A decoded image: 8 bits per sample, 1 (grey) or 3 (RGB) channels, row-major, interleaved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 or 3.
    pub channels: u8,
    /// `width * height * channels` samples.
    pub pixels: Vec<u8>,
}

/// Decodes the image file at `path` by its extension (`.dcm` is DICOM; anything else by
/// content). Alpha is dropped; 16-bit PNGs are scaled to 8 bits.
pub fn decode(path: &Path) -> Result<Decoded, String> {
    if has_extension(path, &["dcm", "dicom"]) {
        return crate::dicom::decode(path);
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| format!("cannot be opened: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot be read: {e}"))?;
    let img = reader
        .decode()
        .map_err(|e| format!("cannot be decoded: {e}"))?;
    Ok(from_dynamic(img))
}

/// Decodes an in-memory PNG or JPEG.
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("cannot be decoded: {e}"))?;
    Ok(from_dynamic(img))
}

fn from_dynamic(img: image::DynamicImage) -> Decoded {
    let grey = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::L16
            | image::ColorType::La8
            | image::ColorType::La16
    );
    if grey {
        let g = img.into_luma8();
        Decoded {
            width: g.width(),
            height: g.height(),
            channels: 1,
            pixels: g.into_raw(),
        }
    } else {
        let c = img.into_rgb8();
        Decoded {
            width: c.width(),
            height: c.height(),
            channels: 3,
            pixels: c.into_raw(),
        }
    }
}
