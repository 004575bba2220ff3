//! Our DICOM reader against files written by another implementation (pydicom): each fixture
//! in `tests/fixtures/dicom` comes with the 8-bit display image pydicom's modality and VOI
//! LUT functions give (a binary PGM); see `make_fixtures.py` there for how they were made.

use std::path::{Path, PathBuf};

use engine_data::dicom::decode;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom")
        .join(name)
}

/// Reads a binary (P5) PGM of maxval 255: (width, height, pixels).
fn read_pgm(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..pos]).unwrap().to_owned());
    }
    pos += 1; // the single whitespace after maxval
    assert_eq!(fields[0], "P5", "{}: not a binary PGM", path.display());
    assert_eq!(fields[3], "255", "{}: maxval", path.display());
    let width: u32 = fields[1].parse().unwrap();
    let height: u32 = fields[2].parse().unwrap();
    let pixels = bytes[pos..].to_vec();
    assert_eq!(
        pixels.len(),
        (width * height) as usize,
        "{}: pixel count",
        path.display()
    );
    (width, height, pixels)
}

/// Decodes `<name>.dcm`, compares it with `<name>.pgm` and returns the largest difference.
fn check(name: &str, tolerance: u8) -> u8 {
    let decoded =
        decode(&fixture(&format!("{name}.dcm"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (width, height, expected) = read_pgm(&fixture(&format!("{name}.pgm")));
    assert_eq!(
        (decoded.width, decoded.height),
        (width, height),
        "{name}: size"
    );
    assert_eq!(decoded.channels, 1, "{name}: channels");
    assert_eq!(decoded.pixels.len(), expected.len(), "{name}: pixel count");
    let (worst, at) = decoded
        .pixels
        .iter()
        .zip(&expected)
        .map(|(a, b)| a.abs_diff(*b))
        .enumerate()
        .map(|(i, d)| (d, i))
        .max()
        .unwrap();
    println!("{name}: max abs difference {worst}");
    assert!(
        worst <= tolerance,
        "{name}: pixel ({}, {}) is {} where pydicom gives {} (tolerance {tolerance})",
        at % width as usize,
        at / width as usize,
        decoded.pixels[at],
        expected[at]
    );
    worst
}

#[test]
fn a_8bit_monochrome2_without_window_is_min_max() {
    check("a_u8_minmax", 1);
}

#[test]
fn b_16bit_12_stored_masks_unused_bits_and_windows() {
    check("b_u16_12bit_window", 1);
}

#[test]
fn c_rescale_slope_and_intercept_then_window() {
    check("c_u16_rescale_window", 1);
}

#[test]
fn d_monochrome1_is_inverted() {
    check("d_mono1_window", 1);
}

#[test]
fn e_signed_16bit_with_negative_values() {
    check("e_s16_window", 1);
}

#[test]
fn e2_signed_12_of_16_bits_sign_extends_from_bit_11() {
    check("e2_s16_12bit_window", 1);
}

#[test]
fn f_implicit_vr_little_endian() {
    check("f_implicit_vr", 1);
}

#[test]
fn g_jpeg_baseline_8bit_matches_pillow_within_2() {
    check("g_jpeg_baseline", 2);
}

#[test]
fn h_truncated_pixel_data_is_an_error_not_a_panic() {
    let path = fixture("h_truncated.dcm");
    let result = std::panic::catch_unwind(|| decode(&path));
    match result {
        Ok(Err(e)) => println!("h_truncated: rejected: {e}"),
        Ok(Ok(d)) => panic!("a truncated file was decoded ({}x{})", d.width, d.height),
        Err(_) => panic!("decoding a truncated file panicked"),
    }
}
