//! The decoded-image cache: every image of a dataset view decoded once, resized (shorter side
//! to the resolution, then centre-cropped to a square) and stored as one compact file of
//! uint8 samples, `N x C x S x S`, after a 64-byte header. Training maps it with libtorch's
//! `from_file` and moves it whole to the device when it fits, so later epochs never decode.
//!
//! A cache file is identified by its key: the dataset's fingerprint, the ids of the images in
//! order, the resolution, the channels and the format version. It is built on all cores and
//! renamed into place when complete; a file with a wrong header or length is rebuilt.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Bumped when the file layout or the resizing changes.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes before the samples.
pub const HEADER_BYTES: u64 = 64;
const MAGIC: &[u8; 8] = b"ENGIMG01";

/// What a cache file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The file.
    pub path: PathBuf,
    /// Images.
    pub n: usize,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Width and height.
    pub size: usize,
    /// The key it was built for.
    pub key: String,
}

impl CacheInfo {
    /// Bytes of samples (without the header).
    pub fn data_bytes(&self) -> u64 {
        (self.n * self.channels * self.size * self.size) as u64
    }
}

/// An image that could not be cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Its index in the input order.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// The cache key of `ids` (in order) from a dataset with content fingerprint `fingerprint`.
pub fn key(fingerprint: &str, ids: &[&str], size: usize, channels: usize) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(fingerprint.as_bytes());
    h.update(&(size as u64).to_le_bytes());
    h.update(&(channels as u64).to_le_bytes());
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\0");
    }
    h.finalize().to_hex()[..32].to_owned()
}

/// Opens the cache file `dir/<key>.u8` if it is complete.
pub fn open(dir: &Path, key: &str) -> Option<CacheInfo> {
    let path = dir.join(format!("{key}.u8"));
    let mut header = [0u8; HEADER_BYTES as usize];
    let f = std::fs::File::open(&path).ok()?;
    f.read_exact_at(&mut header, 0).ok()?;
    let info = parse_header(&header, &path, key)?;
    let len = f.metadata().ok()?.len();
    (len == HEADER_BYTES + info.data_bytes()).then_some(info)
}

fn parse_header(h: &[u8], path: &Path, key: &str) -> Option<CacheInfo> {
    if &h[..8] != MAGIC {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
    if u32_at(8) != FORMAT_VERSION {
        return None;
    }
    let stored_key = std::str::from_utf8(&h[32..64]).ok()?;
    if stored_key != key {
        return None;
    }
    Some(CacheInfo {
        path: path.to_path_buf(),
        n: usize::try_from(u64_at(12)).ok()?,
        channels: u32_at(20) as usize,
        size: u32_at(24) as usize,
        key: key.to_owned(),
    })
}

fn header(n: usize, channels: usize, size: usize, key: &str) -> [u8; HEADER_BYTES as usize] {
    let mut h = [0u8; HEADER_BYTES as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&(n as u64).to_le_bytes());
    h[20..24].copy_from_slice(&(channels as u32).to_le_bytes());
    h[24..28].copy_from_slice(&(size as u32).to_le_bytes());
    let k = key.as_bytes();
    h[32..32 + k.len().min(32)].copy_from_slice(&k[..k.len().min(32)]);
    h
}

/// Decodes `paths` (in order) on `threads` threads, resizes each to `size` x `size` with
/// `channels` channels, and writes the cache file `dir/<key>.u8`. An image that cannot be
/// decoded becomes zeros and is reported in the result; `progress` is called with the count
/// done so far.
pub fn build(
    dir: &Path,
    key: &str,
    paths: &[PathBuf],
    size: usize,
    channels: usize,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> std::io::Result<(CacheInfo, Vec<Failed>)> {
    let produce = |i: usize| -> Result<Vec<u8>, String> {
        crate::image::decode(&paths[i]).map(|d| resize_chw(&d, size, channels))
    };
    build_with(
        dir,
        key,
        paths.len(),
        size,
        channels,
        threads,
        progress,
        &produce,
    )
}

/// Writes the cache file `dir/<key>.u8` of `n` samples, each `channels x size x size` as
/// `produce(i)` makes it (on `threads` threads); a sample it cannot make becomes zeros and
/// is reported in the result.
#[allow(clippy::too_many_arguments)]
pub fn build_with(
    dir: &Path,
    key: &str,
    n: usize,
    size: usize,
    channels: usize,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
    produce: &(dyn Fn(usize) -> Result<Vec<u8>, String> + Sync),
) -> std::io::Result<(CacheInfo, Vec<Failed>)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{key}.u8"));
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&tmp)?;
    file.write_all_at(&header(n, channels, size, key), 0)?;
    let per_image = channels * size * size;
    file.set_len(HEADER_BYTES + (n * per_image) as u64)?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    let io_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let samples = match produce(i) {
                        Ok(v) if v.len() == per_image => v,
                        Ok(v) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(Failed {
                                    index: i,
                                    reason: format!(
                                        "made {} samples instead of {per_image}",
                                        v.len()
                                    ),
                                });
                            }
                            vec![0u8; per_image]
                        }
                        Err(reason) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(Failed { index: i, reason });
                            }
                            vec![0u8; per_image]
                        }
                    };
                    if let Err(e) =
                        file.write_all_at(&samples, HEADER_BYTES + (i * per_image) as u64)
                    {
                        if let Ok(mut slot) = io_error.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                    let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress(d);
                }
            });
        }
    });
    if let Some(e) = io_error.into_inner().ok().flatten() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort_by_key(|f| f.index);
    let info = CacheInfo {
        path,
        n,
        channels,
        size,
        key: key.to_owned(),
    };
    Ok((info, failed))
}

/// A decoded image resized to `width` x `height` with the bilinear (triangle) filter,
/// antialiased when shrinking, as Pillow's `BILINEAR` does: SIMD convolutions from
/// `fast_image_resize`. Its pixels are interleaved, with the image's channels; an image whose
/// samples do not match its size gives black.
fn resize(d: &crate::image::Decoded, width: usize, height: usize) -> Vec<u8> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let kind = if d.channels == 1 {
        PixelType::U8
    } else {
        PixelType::U8x3
    };
    let black = vec![0u8; width * height * usize::from(d.channels.max(1))];
    let Ok(src) = ImageRef::new(d.width, d.height, &d.pixels, kind) else {
        return black;
    };
    let mut dst = Image::new(width as u32, height as u32, kind);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    match Resizer::new().resize(&src, &mut dst, &options) {
        Ok(()) => dst.into_vec(),
        Err(_) => black,
    }
}

/// Resizes a decoded image so that its shorter side is `size` (bilinear, antialiased by the
/// triangle filter), centre-crops it to `size` x `size`, converts to `channels` channels, and
/// lays it out channel-first.
pub fn resize_chw(d: &crate::image::Decoded, size: usize, channels: usize) -> Vec<u8> {
    let (w, h) = (d.width as usize, d.height as usize);
    let scale = size as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as usize).max(size),
        ((h as f64 * scale).round() as usize).max(size),
    );
    let resized = resize(d, nw, nh);
    let src_c = usize::from(d.channels);
    let (x0, y0) = ((nw - size) / 2, (nh - size) / 2);
    let mut out = vec![0u8; channels * size * size];
    for y in 0..size {
        for x in 0..size {
            let o = ((y0 + y) * nw + (x0 + x)) * src_c;
            for c in 0..channels {
                let v = if src_c == 1 {
                    resized.get(o).copied().unwrap_or(0)
                } else if channels == 1 {
                    // ITU-R 601 luma.
                    let (r, g, b) = (
                        resized[o] as f32,
                        resized[o + 1] as f32,
                        resized[o + 2] as f32,
                    );
                    (0.299 * r + 0.587 * g + 0.114 * b).round() as u8
                } else {
                    resized[o + c]
                };
                out[c * size * size + y * size + x] = v;
            }
        }
    }
    out
}

/// Where a letterboxed image sits in its square: resized to `width` x `height` pixels
/// (the longer side filling the square, the aspect kept) and placed at `(left, top)`; the
/// rest is black.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// The source image's width and height.
    pub source: (u32, u32),
    /// The resized image's width and height.
    pub width: usize,
    /// The resized image's height.
    pub height: usize,
    /// Its left edge in the square.
    pub left: usize,
    /// Its top edge in the square.
    pub top: usize,
}

impl Letterbox {
    /// The placement of a `w` x `h` image in a `size` square.
    pub fn of(w: u32, h: u32, size: usize) -> Letterbox {
        let scale = size as f64 / f64::from(w.max(h).max(1));
        let width = ((f64::from(w) * scale).round() as usize).clamp(1, size);
        let height = ((f64::from(h) * scale).round() as usize).clamp(1, size);
        Letterbox {
            source: (w, h),
            width,
            height,
            left: (size - width) / 2,
            top: (size - height) / 2,
        }
    }

    /// A point of the source image (in pixels) in the square's pixels.
    pub fn to_square(&self, x: f64, y: f64) -> (f64, f64) {
        let (w, h) = (
            f64::from(self.source.0.max(1)),
            f64::from(self.source.1.max(1)),
        );
        (
            x * self.width as f64 / w + self.left as f64,
            y * self.height as f64 / h + self.top as f64,
        )
    }

    /// A point of the square (in pixels) in the source image's pixels.
    pub fn to_source(&self, x: f64, y: f64) -> (f64, f64) {
        let (w, h) = (
            f64::from(self.source.0.max(1)),
            f64::from(self.source.1.max(1)),
        );
        (
            (x - self.left as f64) * w / self.width as f64,
            (y - self.top as f64) * h / self.height as f64,
        )
    }
}

/// Resizes a decoded image into a `size` square without cropping (see [`Letterbox`]),
/// converts it to `channels` channels, and lays it out channel-first.
pub fn letterbox_chw(d: &crate::image::Decoded, size: usize, channels: usize) -> Vec<u8> {
    let lb = Letterbox::of(d.width, d.height, size);
    let resized = resize(d, lb.width, lb.height);
    let src_c = usize::from(d.channels);
    let mut out = vec![0u8; channels * size * size];
    for y in 0..lb.height {
        for x in 0..lb.width {
            let o = (y * lb.width + x) * src_c;
            for c in 0..channels {
                let v = if src_c == 1 {
                    resized.get(o).copied().unwrap_or(0)
                } else if channels == 1 {
                    let px = |k: usize| f32::from(resized.get(o + k).copied().unwrap_or(0));
                    (0.299 * px(0) + 0.587 * px(1) + 0.114 * px(2)).round() as u8
                } else {
                    resized.get(o + c).copied().unwrap_or(0)
                };
                out[c * size * size + (lb.top + y) * size + (lb.left + x)] = v;
            }
        }
    }
    out
}

/// A letterboxed cache: the file, each source image's width and height, and the images
/// that could not be decoded.
pub type Letterboxed = (CacheInfo, Vec<(u32, u32)>, Vec<Failed>);

/// The letterboxed cache of `paths` (see [`letterbox_chw`]) under `key`, built when missing,
/// with each source image's width and height (kept beside it in `<key>.sizes.json`; `(0, 0)`
/// for an image that could not be decoded, which is cached black).
pub fn letterbox_cache(
    dir: &Path,
    key: &str,
    paths: &[PathBuf],
    size: usize,
    channels: usize,
    threads: usize,
) -> std::io::Result<Letterboxed> {
    let sizes_path = dir.join(format!("{key}.sizes.json"));
    if let Some(info) = open(dir, key)
        && let Ok(text) = std::fs::read_to_string(&sizes_path)
        && let Ok(sizes) = serde_json::from_str::<Vec<(u32, u32)>>(&text)
        && sizes.len() == info.n
    {
        return Ok((info, sizes, Vec::new()));
    }
    let sizes = std::sync::Mutex::new(vec![(0u32, 0u32); paths.len()]);
    let produce = |i: usize| -> Result<Vec<u8>, String> {
        let d = crate::image::decode(&paths[i])?;
        if let Ok(mut s) = sizes.lock() {
            s[i] = (d.width, d.height);
        }
        Ok(letterbox_chw(&d, size, channels))
    };
    let (info, failed) = build_with(
        dir,
        key,
        paths.len(),
        size,
        channels,
        threads,
        &|_| {},
        &produce,
    )?;
    let sizes = sizes.into_inner().unwrap_or_default();
    let text = serde_json::to_string(&sizes).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{key}.sizes.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &sizes_path)?;
    Ok((info, sizes, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterboxing_keeps_the_whole_image_and_maps_points_both_ways() {
        // A 40x20 image: white, so the padding is what stays black.
        let d = crate::image::Decoded {
            width: 40,
            height: 20,
            channels: 1,
            pixels: vec![255; 800],
        };
        let lb = Letterbox::of(40, 20, 32);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (32, 16, 0, 8));
        let out = letterbox_chw(&d, 32, 1);
        assert_eq!(out[0], 0, "the top band is padding");
        assert_eq!(out[8 * 32], 255, "the image starts at row 8");
        assert_eq!(out[24 * 32], 0, "and ends before row 24");
        let (x, y) = lb.to_square(20.0, 10.0);
        assert_eq!((x, y), (16.0, 16.0));
        let (sx, sy) = lb.to_source(x, y);
        assert!((sx - 20.0).abs() < 1e-9 && (sy - 10.0).abs() < 1e-9);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        image::GrayImage::from_pixel(40, 20, image::Luma([255]))
            .save(&p)
            .unwrap();
        let (info, sizes, failed) = letterbox_cache(
            &dir.path().join("c"),
            "k1",
            std::slice::from_ref(&p),
            32,
            1,
            1,
        )
        .unwrap();
        assert_eq!(
            (info.n, sizes.clone(), failed.len()),
            (1, vec![(40, 20)], 0)
        );
        // From the cache the second time, sizes included.
        let (again, sizes2, _) =
            letterbox_cache(&dir.path().join("c"), "k1", &[p], 32, 1, 1).unwrap();
        assert_eq!((again, sizes2), (info, sizes));
    }

    #[test]
    fn build_open_and_reject_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, v) in [10u8, 200].iter().enumerate() {
            let p = dir.path().join(format!("{i}.png"));
            image::GrayImage::from_pixel(20, 10, image::Luma([*v]))
                .save(&p)
                .unwrap();
            paths.push(p);
        }
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not an image").unwrap();
        paths.push(bad);
        let k = key("fp", &["0", "1", "bad"], 8, 3);
        let (info, failed) = build(&dir.path().join("c"), &k, &paths, 8, 3, 2, &|_| {}).unwrap();
        assert_eq!((info.n, info.channels, info.size), (3, 3, 8));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].index, 2);
        let bytes = std::fs::read(&info.path).unwrap();
        assert_eq!(bytes.len() as u64, HEADER_BYTES + info.data_bytes());
        let img = |i: usize| {
            &bytes[HEADER_BYTES as usize + i * 192..HEADER_BYTES as usize + (i + 1) * 192]
        };
        assert!(img(0).iter().all(|v| *v == 10));
        assert!(img(1).iter().all(|v| *v == 200));
        assert!(img(2).iter().all(|v| *v == 0));
        assert_eq!(open(&dir.path().join("c"), &k), Some(info));
        assert_eq!(open(&dir.path().join("c"), &key("fp2", &["0"], 8, 3)), None);
        // A truncated file is not complete.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("c").join(format!("{k}.u8")))
            .unwrap();
        f.set_len(100).unwrap();
        assert_eq!(open(&dir.path().join("c"), &k), None);
    }

    #[test]
    fn the_resize_agrees_with_the_image_crates_triangle_filter() {
        // A smooth 97x61 RGB gradient with a ripple, shrunk and enlarged.
        let (w, h) = (97u32, 61u32);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = |k: u32| ((x * 2 + y * k + (x * y) % 7) % 256) as u8;
            image::Rgb([v(1), v(2), v(3)])
        });
        let d = crate::image::Decoded {
            width: w,
            height: h,
            channels: 3,
            pixels: img.clone().into_raw(),
        };
        for (nw, nh) in [(150usize, 94usize), (40, 25)] {
            let ours = resize(&d, nw, nh);
            let theirs = image::imageops::resize(
                &img,
                nw as u32,
                nh as u32,
                image::imageops::FilterType::Triangle,
            )
            .into_raw();
            assert_eq!(ours.len(), theirs.len());
            let worst = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            let mean = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| f64::from(a.abs_diff(*b)))
                .sum::<f64>()
                / ours.len() as f64;
            assert!(
                worst <= 1 && mean < 0.25,
                "{nw}x{nh}: worst {worst}, mean {mean}"
            );
        }
    }

    #[test]
    fn resize_keeps_the_centre_and_converts_channels() {
        // A 4x2 RGB image: left half red, right half blue; the centre crop of a 2x2 resize
        // keeps both halves.
        let mut px = Vec::new();
        for _y in 0..2 {
            for x in 0..4 {
                px.extend_from_slice(if x < 2 { &[255, 0, 0] } else { &[0, 0, 255] });
            }
        }
        let d = crate::image::Decoded {
            width: 4,
            height: 2,
            channels: 3,
            pixels: px,
        };
        let out = resize_chw(&d, 2, 3);
        assert_eq!(out.len(), 12);
        assert!(out[0] > 100 && out[8 + 1] > 100, "{out:?}");
        let grey = resize_chw(&d, 2, 1);
        assert_eq!(grey.len(), 4);
    }
}
