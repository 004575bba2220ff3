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
pub const FORMAT_VERSION: u32 = 1;
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
    let resized: Vec<u8> = if d.channels == 1 {
        let img =
            image::GrayImage::from_raw(d.width, d.height, d.pixels.clone()).unwrap_or_default();
        image::imageops::resize(
            &img,
            nw as u32,
            nh as u32,
            image::imageops::FilterType::Triangle,
        )
        .into_raw()
    } else {
        let img =
            image::RgbImage::from_raw(d.width, d.height, d.pixels.clone()).unwrap_or_default();
        image::imageops::resize(
            &img,
            nw as u32,
            nh as u32,
            image::imageops::FilterType::Triangle,
        )
        .into_raw()
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
