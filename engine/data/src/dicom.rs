//! DICOM through dicom-rs: the header fields the readers need, and pixel data turned into an
//! 8-bit grey image the way a viewer shows it (stored value, modality rescale, VOI window,
//! MONOCHROME1 inverted). Native (uncompressed) transfer syntaxes of 8 and 16 bits and
//! JPEG baseline are read; the writer makes the synthetic chest radiographs.
//!
//! Identifiers (patient name and id, UIDs) are read only to group images; they never leave
//! this crate in clear (see [`crate::salt`]).

use std::borrow::Cow;
use std::path::Path;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};

use crate::image::Decoded;

/// What the readers take from a DICOM header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// `PatientID`, when set.
    pub patient_id: Option<String>,
    /// `Columns` (the width), when set.
    pub columns: Option<u32>,
    /// `Rows` (the height), when set.
    pub rows: Option<u32>,
}

/// Reads the header (everything before the pixel data).
pub fn read_header(path: &Path) -> Result<Header, String> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("not a readable DICOM file: {e}"))?;
    Ok(Header {
        patient_id: string(&obj, tags::PATIENT_ID),
        columns: uint(&obj, tags::COLUMNS),
        rows: uint(&obj, tags::ROWS),
    })
}

fn string(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn uint(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u32>().ok())
}

fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| !v.is_empty())
}

/// Decodes the first frame of the DICOM file at `path` into 8-bit grey.
pub fn decode(path: &Path) -> Result<Decoded, String> {
    let obj =
        dicom_object::open_file(path).map_err(|e| format!("not a readable DICOM file: {e}"))?;
    decode_object(&obj)
}

/// Decodes an opened DICOM object's first frame into 8-bit grey.
pub fn decode_object(obj: &DefaultDicomObject) -> Result<Decoded, String> {
    let rows = uint(obj, tags::ROWS).ok_or("no Rows")? as usize;
    let cols = uint(obj, tags::COLUMNS).ok_or("no Columns")? as usize;
    if rows == 0 || cols == 0 || rows > 1 << 15 || cols > 1 << 15 {
        return Err(format!("implausible size {cols}x{rows}"));
    }
    let samples = uint(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if samples != 1 {
        return Err(format!(
            "{samples} samples per pixel; only greyscale DICOM is read"
        ));
    }
    let bits_allocated = uint(obj, tags::BITS_ALLOCATED).ok_or("no BitsAllocated")?;
    let bits_stored = uint(obj, tags::BITS_STORED)
        .unwrap_or(bits_allocated)
        .clamp(1, bits_allocated.max(1));
    let signed = uint(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let photometric =
        string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let monochrome1 = match photometric.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => {
            return Err(format!(
                "photometric interpretation {other} is not greyscale"
            ));
        }
    };
    let n = rows * cols;
    let element = obj.element(tags::PIXEL_DATA).map_err(|_| "no pixel data")?;
    let ts = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    let stored: Vec<f64> = match element.value() {
        Value::Primitive(p) => native_values(p, n, bits_allocated, bits_stored, signed)?,
        Value::PixelSequence(seq) => {
            if ts != uids::JPEG_BASELINE8_BIT {
                return Err(format!(
                    "compressed transfer syntax {ts} is not supported (native and JPEG baseline are)"
                ));
            }
            let fragments = seq.fragments();
            let bytes: Vec<u8> = fragments.iter().flat_map(|f| f.iter().copied()).collect();
            let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
                .map_err(|e| format!("its JPEG pixel data cannot be decoded: {e}"))?
                .into_luma8();
            if img.width() as usize != cols || img.height() as usize != rows {
                return Err("its JPEG frame's size differs from Rows and Columns".into());
            }
            img.into_raw().into_iter().map(f64::from).collect()
        }
        _ => return Err("pixel data is not a value".into()),
    };
    let slope = floats(obj, tags::RESCALE_SLOPE).map_or(1.0, |v| v[0]);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT).map_or(0.0, |v| v[0]);
    let window = match (
        floats(obj, tags::WINDOW_CENTER),
        floats(obj, tags::WINDOW_WIDTH),
    ) {
        (Some(c), Some(w)) if w[0] >= 1.0 => Some((c[0], w[0])),
        _ => None,
    };
    let pixels = to_display(&stored, slope, intercept, window, monochrome1);
    Ok(Decoded {
        width: cols as u32,
        height: rows as u32,
        channels: 1,
        pixels,
    })
}

/// The stored values of the first frame of native pixel data.
fn native_values(
    p: &PrimitiveValue,
    n: usize,
    bits_allocated: u32,
    bits_stored: u32,
    signed: bool,
) -> Result<Vec<f64>, String> {
    let mask: u32 = if bits_stored >= 32 {
        u32::MAX
    } else {
        (1u32 << bits_stored) - 1
    };
    let convert = |raw: u32| -> f64 {
        let v = raw & mask;
        if signed && bits_stored < 32 && v & (1 << (bits_stored - 1)) != 0 {
            f64::from(v as i32 - (1i32 << bits_stored))
        } else {
            f64::from(v)
        }
    };
    let short = |got: usize| format!("pixel data holds {got} values for {n} pixels (truncated?)");
    match (bits_allocated, p) {
        (8, _) => {
            let bytes: Cow<'_, [u8]> = p.to_bytes();
            if bytes.len() < n {
                return Err(short(bytes.len()));
            }
            Ok(bytes[..n].iter().map(|b| convert(u32::from(*b))).collect())
        }
        (16, PrimitiveValue::U16(v)) => {
            if v.len() < n {
                return Err(short(v.len()));
            }
            Ok(v[..n].iter().map(|x| convert(u32::from(*x))).collect())
        }
        (16, PrimitiveValue::I16(v)) => {
            if v.len() < n {
                return Err(short(v.len()));
            }
            Ok(v[..n]
                .iter()
                .map(|x| convert(u32::from(*x as u16)))
                .collect())
        }
        (16, PrimitiveValue::U8(v)) => {
            if v.len() < 2 * n {
                return Err(short(v.len() / 2));
            }
            Ok(v[..2 * n]
                .chunks_exact(2)
                .map(|c| convert(u32::from(u16::from_le_bytes([c[0], c[1]]))))
                .collect())
        }
        (bits, _) => Err(format!(
            "{bits} bits allocated per pixel; 8 and 16 are read"
        )),
    }
}

/// Modality rescale, then the VOI window (DICOM PS3.3 C.11.2.1.2, linear) or the image's
/// own range when there is none, then MONOCHROME1 inverted so that bright is always dense.
pub fn to_display(
    stored: &[f64],
    slope: f64,
    intercept: f64,
    window: Option<(f64, f64)>,
    monochrome1: bool,
) -> Vec<u8> {
    let values: Vec<f64> = stored.iter().map(|v| v * slope + intercept).collect();
    let map: Box<dyn Fn(f64) -> f64> = match window {
        Some((c, w)) => Box::new(move |x| {
            let lo = c - 0.5 - (w - 1.0) / 2.0;
            let hi = c - 0.5 + (w - 1.0) / 2.0;
            if x <= lo {
                0.0
            } else if x > hi || w <= 1.0 {
                255.0
            } else {
                ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
            }
        }),
        None => {
            let (lo, hi) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(*v), b.max(*v))
                });
            let span = if hi > lo { hi - lo } else { 1.0 };
            Box::new(move |x| (x - lo) / span * 255.0)
        }
    };
    values
        .into_iter()
        .map(|v| {
            let y = map(v).round().clamp(0.0, 255.0) as u8;
            if monochrome1 { 255 - y } else { y }
        })
        .collect()
}

/// A greyscale image to write as DICOM (the synthetic chest radiographs).
#[derive(Clone, Debug)]
pub struct Image<'a> {
    /// `PatientName` (synthetic: `SYNTH^...`).
    pub patient_name: &'a str,
    /// `PatientID`.
    pub patient_id: &'a str,
    /// `StudyInstanceUID`.
    pub study_uid: &'a str,
    /// `SeriesInstanceUID`.
    pub series_uid: &'a str,
    /// `SOPInstanceUID`: the image id.
    pub sop_uid: &'a str,
    /// Width in pixels.
    pub columns: u16,
    /// Height in pixels.
    pub rows: u16,
    /// Stored values, row by row.
    pub pixels: &'a [u16],
    /// 8 or 16.
    pub bits_allocated: u16,
    /// Bits used of each value.
    pub bits_stored: u16,
    /// Whether bright means less dense (the stored values are then inverted).
    pub monochrome1: bool,
    /// Modality rescale (slope, intercept).
    pub rescale: (f64, f64),
    /// VOI window (centre, width), if any.
    pub window: Option<(f64, f64)>,
}

/// Writes `img` as a DICOM Part 10 file (explicit VR little endian, digital X-ray for presentation).
pub fn write(path: &Path, img: &Image<'_>) -> Result<(), String> {
    let n = usize::from(img.rows) * usize::from(img.columns);
    if img.pixels.len() != n {
        return Err(format!("{} values for {n} pixels", img.pixels.len()));
    }
    let str_el = |tag: Tag, vr: VR, s: &str| DataElement::new(tag, vr, PrimitiveValue::from(s));
    let u16_el = |tag: Tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let ds_el =
        |tag: Tag, v: f64| DataElement::new(tag, VR::DS, PrimitiveValue::from(format_ds(v)));
    let mut elements = vec![
        str_el(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        ),
        str_el(tags::SOP_INSTANCE_UID, VR::UI, img.sop_uid),
        str_el(tags::MODALITY, VR::CS, "CR"),
        str_el(tags::PATIENT_NAME, VR::PN, img.patient_name),
        str_el(tags::PATIENT_ID, VR::LO, img.patient_id),
        str_el(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        str_el(tags::VIEW_POSITION, VR::CS, "PA"),
        str_el(tags::STUDY_INSTANCE_UID, VR::UI, img.study_uid),
        str_el(tags::SERIES_INSTANCE_UID, VR::UI, img.series_uid),
        u16_el(tags::SAMPLES_PER_PIXEL, 1),
        str_el(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            if img.monochrome1 {
                "MONOCHROME1"
            } else {
                "MONOCHROME2"
            },
        ),
        u16_el(tags::ROWS, img.rows),
        u16_el(tags::COLUMNS, img.columns),
        u16_el(tags::BITS_ALLOCATED, img.bits_allocated),
        u16_el(tags::BITS_STORED, img.bits_stored),
        u16_el(tags::HIGH_BIT, img.bits_stored - 1),
        u16_el(tags::PIXEL_REPRESENTATION, 0),
        ds_el(tags::RESCALE_INTERCEPT, img.rescale.1),
        ds_el(tags::RESCALE_SLOPE, img.rescale.0),
    ];
    if let Some((c, w)) = img.window {
        elements.push(ds_el(tags::WINDOW_CENTER, c));
        elements.push(ds_el(tags::WINDOW_WIDTH, w));
    }
    let pixel_value = match img.bits_allocated {
        8 => {
            let mut bytes: Vec<u8> = img.pixels.iter().map(|v| *v as u8).collect();
            if bytes.len() % 2 == 1 {
                bytes.push(0);
            }
            DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(bytes))
        }
        16 => DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(img.pixels.iter().copied().collect()),
        ),
        b => return Err(format!("{b} bits allocated; 8 or 16 are written")),
    };
    elements.push(pixel_value);
    let obj = InMemDicomObject::from_element_iter(elements);
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .map_err(|e| e.to_string())?;
    file.write_to_file(path).map_err(|e| e.to_string())
}

/// A decimal string (DS) of at most 16 characters.
fn format_ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 { s } else { format!("{v:.6e}") }
}
