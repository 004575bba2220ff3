//! The CPU augmentation kernel: from the uint8 image cache straight to normalised float32,
//! one pass per image for the affine warp (bilinear) and one for the intensity changes and
//! the normalisation, the images of a batch shared out across threads.
//!
//! It computes what `engine-torch`'s tensor path computes with `affine_grid` and
//! `grid_sample` (align_corners false), the per-image mean, contrast, brightness, clamp and
//! normalisation, without the intermediate float tensors that bound that path on a CPU. The
//! tensor path stays the one used on a GPU; a test in `engine-torch` checks that the two agree.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The random draws of one image: the affine map from output to input coordinates in
/// `grid_sample`'s normalised units (`[a, b, tx, c, d, ty]`: x_in = a x + b y + tx,
/// y_in = c x + d y + ty), the contrast factor about the image's mean and the brightness
/// factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// The affine map, row-major 2 x 3.
    pub theta: [f32; 6],
    /// Contrast factor (1 = none).
    pub contrast: f32,
    /// Brightness factor (1 = none).
    pub brightness: f32,
}

/// Where the warp samples outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// The nearest edge pixel (`grid_sample`'s `border`).
    Border,
    /// Zero (`grid_sample`'s `zeros`).
    Zeros,
}

/// Threads that run one piece of work together; [`augment`] shares the images of a batch out
/// through them.
pub trait Team {
    /// Calls `work` once on each thread of the team at once (the calling thread may be one of
    /// them) and returns when every call has returned.
    fn run(&self, work: &(dyn Fn() + Sync));
}

/// A team of the calling thread and `n - 1` scoped threads started for each run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads(pub usize);

impl Team for Threads {
    fn run(&self, work: &(dyn Fn() + Sync)) {
        std::thread::scope(|s| {
            for _ in 1..self.0 {
                s.spawn(work);
            }
            work();
        });
    }
}

/// One team member's buffers, reused across its images: the warped image in 0..255 units and
/// the source laid out as the vectorised warp reads it.
#[derive(Default)]
struct Scratch {
    warped: Vec<f32>,
    staged: Vec<u8>,
}

/// Warps every image of `src` (one slice per image, planar `channels x size x size` uint8, as
/// many as `draws`) by its draw, then applies its contrast and brightness about the image's
/// mean, clamps to 0..1 and normalises each channel by `mean` and `std` (a shorter list
/// repeats its last value), into `out` (one image after the other, float32). `intensity`
/// `None` leaves out everything after the warp but the scaling to 0..1 (masks).
///
/// The images are shared out one at a time among the threads of `team`. Every sample of the
/// images written is written once, so `out` need not be initialised; the result is the part
/// of `out` that holds them (empty when `out` has no room for one image).
#[allow(clippy::too_many_arguments)]
pub fn augment<'o>(
    src: &[&[u8]],
    out: &'o mut [MaybeUninit<f32>],
    channels: usize,
    size: usize,
    draws: &[Draw],
    padding: Padding,
    intensity: Option<(&[f64], &[f64])>,
    team: &dyn Team,
) -> &'o mut [f32] {
    let per = channels * size * size;
    let n = match per {
        0 => 0,
        _ => draws.len().min(src.len()).min(out.len() / per),
    };
    let out = &mut out[..n * per];
    let pick = |v: &[f64], c: usize| v.get(c).or(v.last()).copied().unwrap_or(0.0);
    let norm: Option<Vec<(f32, f32)>> = intensity.map(|(mean, std)| {
        (0..channels)
            .map(|c| {
                let sd = pick(std, c);
                let sd = if sd == 0.0 { 1.0 } else { sd };
                ((1.0 / sd) as f32, (pick(mean, c) / sd) as f32)
            })
            .collect()
    });
    let one = |i: usize, dst: &mut [MaybeUninit<f32>], scratch: &mut Scratch| {
        let Some(img) = src[i].get(..per) else {
            dst.fill(MaybeUninit::new(0.0));
            return;
        };
        let warped = &mut scratch.warped;
        warped.resize(per, 0.0);
        let sum = match padding {
            Padding::Border => warp(
                img,
                warped,
                channels,
                size,
                &draws[i].theta,
                &mut scratch.staged,
            ),
            Padding::Zeros => {
                warp_zeros(img, warped, channels, size, &draws[i].theta);
                None
            }
        };
        match &norm {
            Some(norm) => adjust(warped, dst, size, sum, &draws[i], norm),
            None => {
                for (o, v) in dst.iter_mut().zip(warped.iter()) {
                    o.write(v * (1.0 / 255.0));
                }
            }
        }
    };
    // Each image's output is taken once, by whichever thread draws its index first.
    let slots: Vec<Mutex<Option<&mut [MaybeUninit<f32>]>>> = out
        .chunks_mut(per.max(1))
        .map(|dst| Mutex::new(Some(dst)))
        .collect();
    let (next, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let work = || {
        let mut scratch = Scratch::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else { break };
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(dst) = taken {
                one(i, dst, &mut scratch);
                done.fetch_add(1, Ordering::Release);
            }
        }
    };
    if n > 1 {
        team.run(&work);
    }
    // Whatever the team left (all of it for one image or a team that ran nothing).
    work();
    drop(slots);
    assert_eq!(
        done.load(Ordering::Acquire),
        n,
        "a team returned before its work was done"
    );
    // SAFETY: every one of the n images of `out` was written whole (`one` writes every
    // sample of its slice), and `done` (read with Acquire after each writer's Release) says
    // all n writers finished.
    #[allow(unsafe_code)]
    let out = unsafe { written(out) };
    out
}

/// `out` as the floats it now holds.
///
/// # Safety
/// Every element of `out` must have been written.
#[allow(unsafe_code)]
unsafe fn written(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and (by the caller) every element
    // is initialised.
    unsafe { &mut *(std::ptr::from_mut(out) as *mut [f32]) }
}

/// Bilinear warp of one planar image into `dst`, in the source's 0..255 units, with border
/// padding. Returns the sum of the samples when it comes for free.
/// `staged` is a buffer the vectorised warp reuses.
fn warp(
    img: &[u8],
    dst: &mut [f32],
    channels: usize,
    size: usize,
    t: &[f32; 6],
    staged: &mut Vec<u8>,
) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if let Some(sum) = simd::warp(img, dst, channels, size, t, staged) {
        return Some(sum);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = staged;
    let mut at = Taps::new(size);
    for i in 0..size {
        at.row(t, i, 0);
        gather_planar(img, dst, channels, &at, i, 0);
    }
    None
}

/// Output row `i` of every channel of a planar image from column `start` on, one sample at a
/// time.
fn gather_planar(img: &[u8], dst: &mut [f32], channels: usize, at: &Taps, i: usize, start: usize) {
    let size = at.size;
    let plane = size * size;
    for c in 0..channels {
        let (Some(p), Some(row)) = (
            img.get(c * plane..(c + 1) * plane),
            dst.get_mut(c * plane + i * size..c * plane + (i + 1) * size),
        ) else {
            return;
        };
        for (j, v) in row.iter_mut().enumerate().skip(start) {
            let (o, oy) = (at.off[j] as usize, at.dy[j] as usize);
            // The right neighbour of the last column is the next row's first pixel (or past
            // the end): its weight is 0.
            let px = |k: usize| f32::from(p.get(k).copied().unwrap_or(0));
            let (a, b, c, d) = (px(o), px(o + 1), px(o + oy), px(o + oy + 1));
            let top = a + at.wx[j] * (b - a);
            let bottom = c + at.wx[j] * (d - c);
            *v = top + at.wy[j] * (bottom - top);
        }
    }
}

/// One output row's bilinear taps with border padding: per pixel, the offset of its top-left
/// source pixel, the offset to the row below (0 on the last row) and the two weights.
#[derive(Debug)]
struct Taps {
    size: usize,
    centres: Vec<f32>,
    off: Vec<i32>,
    dy: Vec<i32>,
    wx: Vec<f32>,
    wy: Vec<f32>,
}

impl Taps {
    fn new(size: usize) -> Taps {
        let n = size as f32;
        Taps {
            size,
            // The normalised centre of pixel j, as affine_grid makes it.
            centres: (0..size).map(|j| (2 * j + 1) as f32 / n - 1.0).collect(),
            off: vec![0; size],
            dy: vec![0; size],
            wx: vec![0.0; size],
            wy: vec![0.0; size],
        }
    }

    /// The taps of output row `i` under the map `t`, from column `start` on.
    fn row(&mut self, t: &[f32; 6], i: usize, start: usize) {
        let n = self.size as f32;
        let (last, half) = (n - 1.0, 0.5 * n);
        let yn = self.centres[i];
        let (bx, by) = (t[1] * yn + t[2], t[4] * yn + t[5]);
        let it = self.centres[start..]
            .iter()
            .zip(&mut self.off[start..])
            .zip(&mut self.dy[start..])
            .zip(&mut self.wx[start..])
            .zip(&mut self.wy[start..]);
        for ((((xn, off), dy), wx), wy) in it {
            // grid_sample's unnormalisation ((g + 1) S - 1) / 2, then the border clamp, after
            // which truncation is the floor.
            let ix = (((t[0] * xn + bx) + 1.0) * half - 0.5).clamp(0.0, last);
            let iy = (((t[3] * xn + by) + 1.0) * half - 0.5).clamp(0.0, last);
            let (x0, y0) = ((ix as i32) as f32, (iy as i32) as f32);
            *wx = ix - x0;
            *wy = iy - y0;
            *off = (y0 * n + x0) as i32;
            *dy = if y0 < last { n as i32 } else { 0 };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    //! The warp with AVX2 and FMA, when the CPU has them (checked at run time): the taps
    //! eight pixels at a time; for RGB a pixel's three channels in one vector with its right
    //! neighbour in the same 8-byte read, four pixels transposed into a vector per channel;
    //! for grey eight pixels at a time, each with its right neighbour in one gathered
    //! 4-byte lane.
    use std::arch::x86_64::{
        __m128, __m256, __m256i, _CMP_LT_OQ, _mm_add_ps, _mm_cvtss_f32, _mm_fmadd_ps,
        _mm_loadl_epi64, _mm_loadu_si128, _mm_movehl_ps, _mm_movelh_ps, _mm_set1_ps,
        _mm_setzero_ps, _mm_setzero_si128, _mm_shuffle_ps, _mm_storeu_ps, _mm_storeu_si128,
        _mm_sub_ps, _mm_unpackhi_epi8, _mm_unpackhi_epi16, _mm_unpackhi_ps, _mm_unpacklo_epi8,
        _mm_unpacklo_epi16, _mm_unpacklo_ps, _mm256_add_epi32, _mm256_add_ps, _mm256_and_si256,
        _mm256_castps_si256, _mm256_castps256_ps128, _mm256_cmp_ps, _mm256_cvtepi32_ps,
        _mm256_cvtepu8_epi32, _mm256_cvttps_epi32, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_i32gather_epi32, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_max_epi32,
        _mm256_max_ps, _mm256_min_epi32, _mm256_min_ps, _mm256_mul_ps, _mm256_set1_epi32,
        _mm256_set1_ps, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_srli_epi32,
        _mm256_storeu_ps, _mm256_storeu_si256, _mm256_sub_ps,
    };

    use super::Taps;

    /// [`super::warp`] of a grey or RGB image when the CPU has AVX2 and FMA, returning the
    /// sum of the samples; `None` (nothing written) otherwise.
    pub(super) fn warp(
        img: &[u8],
        dst: &mut [f32],
        channels: usize,
        size: usize,
        t: &[f32; 6],
        staged: &mut Vec<u8>,
    ) -> Option<f64> {
        let vectorised = channels == 1 || channels == 3;
        if !(vectorised && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        // SAFETY: the CPU has both features the function is compiled for (checked above).
        Some(unsafe { warp_avx2(img, dst, channels, size, t, staged) })
    }

    /// The warp of a grey (`channels` 1) or RGB (otherwise) image; returns the sum of its
    /// samples.
    #[target_feature(enable = "avx2,fma")]
    fn warp_avx2(
        img: &[u8],
        dst: &mut [f32],
        channels: usize,
        size: usize,
        t: &[f32; 6],
        staged: &mut Vec<u8>,
    ) -> f64 {
        let mut at = Taps::new(size);
        let mut total = 0f64;
        if channels == 1 {
            // The plane and 4 spare bytes, so that a 4-byte read at any pixel is inside.
            staged.clear();
            staged.extend_from_slice(&img[..img.len().min(size * size)]);
            staged.resize(size * size + 4, 0);
            for i in 0..size {
                taps(&mut at, t, i);
                total += f64::from(row_grey(staged, dst, &at, i));
            }
        } else {
            interleave(img, size, staged);
            for i in 0..size {
                taps(&mut at, t, i);
                total += f64::from(row_rgb(staged, dst, &at, i));
            }
        }
        total
    }

    /// [`Taps::row`] eight pixels at a time; the rest one at a time.
    #[target_feature(enable = "avx2,fma")]
    fn taps(at: &mut Taps, t: &[f32; 6], i: usize) {
        let size = at.size;
        let n = size as f32;
        let yn = at.centres[i];
        let (bx, by) = (t[1] * yn + t[2], t[4] * yn + t[5]);
        let (half, last) = (_mm256_set1_ps(0.5 * n), _mm256_set1_ps(n - 1.0));
        let (one, point5, zero) = (
            _mm256_set1_ps(1.0),
            _mm256_set1_ps(0.5),
            _mm256_setzero_ps(),
        );
        let (nv, ni) = (_mm256_set1_ps(n), _mm256_set1_epi32(size as i32));
        let unnorm = |a: f32, b: f32, x: __m256| {
            // Not fused, so that the coordinates round as the portable ones do.
            let g = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a), x), _mm256_set1_ps(b));
            let p = _mm256_sub_ps(_mm256_mul_ps(_mm256_add_ps(g, one), half), point5);
            _mm256_min_ps(_mm256_max_ps(p, zero), last)
        };
        let eights = size / 8 * 8;
        for j in (0..eights).step_by(8) {
            let c = &at.centres[j..j + 8];
            // SAFETY: `c` holds eight floats; the load is unaligned.
            let xn = unsafe { _mm256_loadu_ps(c.as_ptr()) };
            let ix = unnorm(t[0], bx, xn);
            let iy = unnorm(t[3], by, xn);
            // Clamped into the image, so truncation is the floor.
            let x0 = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(ix));
            let y0 = _mm256_cvtepi32_ps(_mm256_cvttps_epi32(iy));
            let off = _mm256_cvttps_epi32(_mm256_fmadd_ps(y0, nv, x0));
            let below = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(y0, last));
            let dy = _mm256_and_si256(below, ni);
            let (o, d) = (&mut at.off[j..j + 8], &mut at.dy[j..j + 8]);
            let (wx, wy) = (&mut at.wx[j..j + 8], &mut at.wy[j..j + 8]);
            // SAFETY: each slice holds eight values; the stores are unaligned.
            unsafe {
                _mm256_storeu_si256(o.as_mut_ptr().cast(), off);
                _mm256_storeu_si256(d.as_mut_ptr().cast(), dy);
                _mm256_storeu_ps(wx.as_mut_ptr(), _mm256_sub_ps(ix, x0));
                _mm256_storeu_ps(wy.as_mut_ptr(), _mm256_sub_ps(iy, y0));
            }
        }
        at.row(t, i, eights);
    }

    /// A planar RGB image into `out` as RGBx pixels (4 bytes each, x 0), with one spare
    /// pixel at the end, so that one 8-byte read fetches a pixel and its right neighbour.
    #[target_feature(enable = "avx2,fma")]
    fn interleave(img: &[u8], size: usize, out: &mut Vec<u8>) {
        let plane = size * size;
        out.clear();
        out.resize((plane + 1) * 4, 0);
        let (r, rest) = img.split_at(plane.min(img.len()));
        let (g, b) = rest.split_at(plane.min(rest.len()));
        let zero = _mm_setzero_si128();
        let blocks = r.len().min(g.len()).min(b.len()) / 16;
        for k in 0..blocks {
            let span = k * 16..k * 16 + 16;
            let (r, g, b) = (&r[span.clone()], &g[span.clone()], &b[span]);
            let o = &mut out[k * 64..k * 64 + 64];
            // SAFETY: `r`, `g` and `b` hold 16 bytes each and `o` 64; all unaligned.
            unsafe {
                let (r, g, b) = (
                    _mm_loadu_si128(r.as_ptr().cast()),
                    _mm_loadu_si128(g.as_ptr().cast()),
                    _mm_loadu_si128(b.as_ptr().cast()),
                );
                let (rg_lo, rg_hi) = (_mm_unpacklo_epi8(r, g), _mm_unpackhi_epi8(r, g));
                let (bx_lo, bx_hi) = (_mm_unpacklo_epi8(b, zero), _mm_unpackhi_epi8(b, zero));
                let p = o.as_mut_ptr();
                _mm_storeu_si128(p.cast(), _mm_unpacklo_epi16(rg_lo, bx_lo));
                _mm_storeu_si128(p.add(16).cast(), _mm_unpackhi_epi16(rg_lo, bx_lo));
                _mm_storeu_si128(p.add(32).cast(), _mm_unpacklo_epi16(rg_hi, bx_hi));
                _mm_storeu_si128(p.add(48).cast(), _mm_unpackhi_epi16(rg_hi, bx_hi));
            }
        }
        let done = blocks * 16;
        let rest = out[done * 4..].chunks_exact_mut(4);
        for (((px, r), g), b) in rest.zip(&r[done..]).zip(&g[done..]).zip(&b[done..]) {
            px[0] = *r;
            px[1] = *g;
            px[2] = *b;
        }
    }

    /// Pixels `o` and `o + 1` of an RGBx buffer as one vector of eight floats (`o` is
    /// clamped to the last pixel that has a right neighbour in the buffer).
    #[target_feature(enable = "avx2,fma")]
    fn pair(rgbx: &[u8], o: usize) -> __m256 {
        if rgbx.len() < 8 {
            return _mm256_setzero_ps();
        }
        let o = o.min((rgbx.len() - 8) / 4);
        // SAFETY: o * 4 + 8 <= rgbx.len(), so the 8-byte (unaligned) read is inside.
        let bytes = unsafe { _mm_loadl_epi64(rgbx.as_ptr().add(o * 4).cast()) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
    }

    /// One output pixel as an RGBx float vector from its taps: both columns interpolated
    /// between the rows at once, then between the columns.
    #[target_feature(enable = "avx2,fma")]
    fn pixel(rgbx: &[u8], off: i32, dy: i32, wx: f32, wy: f32) -> __m128 {
        let top = pair(rgbx, off as usize);
        let bottom = pair(rgbx, (off + dy) as usize);
        let cols = _mm256_fmadd_ps(_mm256_set1_ps(wy), _mm256_sub_ps(bottom, top), top);
        let (left, right) = (
            _mm256_castps256_ps128(cols),
            _mm256_extractf128_ps::<1>(cols),
        );
        _mm_fmadd_ps(_mm_set1_ps(wx), _mm_sub_ps(right, left), left)
    }

    /// Output row `i` of a grey `dst` from the plane `px` (with at least 4 bytes after its last
    /// pixel); returns the sum of its samples.
    #[target_feature(enable = "avx2,fma")]
    fn row_grey(px: &[u8], dst: &mut [f32], at: &Taps, i: usize) -> f32 {
        let size = at.size;
        let (Some(row), Some(reads)) = (
            dst.get_mut(i * size..(i + 1) * size),
            px.len().checked_sub(4),
        ) else {
            return 0.0;
        };
        // The offsets are clamped to where a 4-byte read still ends inside `px`.
        let reads = i32::try_from(reads).unwrap_or(i32::MAX);
        let (zero, last) = (_mm256_setzero_si256(), _mm256_set1_epi32(reads));
        let byte = _mm256_set1_epi32(0xff);
        let inside = |o: __m256i| _mm256_min_epi32(_mm256_max_epi32(o, zero), last);
        // A pixel (low byte) and its right neighbour (next byte) as floats.
        let split = |v: __m256i| {
            let left = _mm256_cvtepi32_ps(_mm256_and_si256(v, byte));
            let right = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32::<8>(v), byte));
            (left, right)
        };
        let mut sum = _mm256_setzero_ps();
        let eights = (at.off.chunks_exact(8).zip(at.dy.chunks_exact(8)))
            .zip(at.wx.chunks_exact(8).zip(at.wy.chunks_exact(8)))
            .zip(row.chunks_exact_mut(8));
        for (((o, d), (x, y)), out) in eights {
            // SAFETY: each chunk holds eight values; the loads and the store are unaligned.
            let (o, d, wx, wy) = unsafe {
                (
                    _mm256_loadu_si256(o.as_ptr().cast()),
                    _mm256_loadu_si256(d.as_ptr().cast()),
                    _mm256_loadu_ps(x.as_ptr()),
                    _mm256_loadu_ps(y.as_ptr()),
                )
            };
            let (top, bottom) = (inside(o), inside(_mm256_add_epi32(o, d)));
            // SAFETY: every offset is within 0..=px.len() - 4, so each 4-byte read (unaligned,
            // scale 1) is inside `px`.
            let (top, bottom) = unsafe {
                (
                    _mm256_i32gather_epi32::<1>(px.as_ptr().cast(), top),
                    _mm256_i32gather_epi32::<1>(px.as_ptr().cast(), bottom),
                )
            };
            let ((a, b), (c, e)) = (split(top), split(bottom));
            let upper = _mm256_fmadd_ps(wx, _mm256_sub_ps(b, a), a);
            let lower = _mm256_fmadd_ps(wx, _mm256_sub_ps(e, c), c);
            let v = _mm256_fmadd_ps(wy, _mm256_sub_ps(lower, upper), upper);
            sum = _mm256_add_ps(sum, v);
            // SAFETY: `out` holds eight floats; the store is unaligned.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        let total: f32 = lanes.iter().sum();
        // The last columns one at a time.
        let rest = size / 8 * 8;
        super::gather_planar(px, dst, 1, at, i, rest);
        let done = dst.get(i * size + rest..(i + 1) * size).unwrap_or_default();
        total + done.iter().sum::<f32>()
    }

    /// Output row `i` of the three planes of `dst`; returns the sum of its samples.
    #[target_feature(enable = "avx2,fma")]
    fn row_rgb(rgbx: &[u8], dst: &mut [f32], at: &Taps, i: usize) -> f32 {
        let size = at.size;
        let plane = size * size;
        let (r, rest) = dst.split_at_mut(plane.min(dst.len()));
        let (g, b) = rest.split_at_mut(plane.min(rest.len()));
        let span = i * size..(i + 1) * size;
        let (Some(r), Some(g), Some(b)) = (
            r.get_mut(span.clone()),
            g.get_mut(span.clone()),
            b.get_mut(span),
        ) else {
            return 0.0;
        };
        let mut sum = _mm_setzero_ps();
        let quads = (at.off.chunks_exact(4).zip(at.dy.chunks_exact(4)))
            .zip(at.wx.chunks_exact(4).zip(at.wy.chunks_exact(4)))
            .zip(r.chunks_exact_mut(4).zip(g.chunks_exact_mut(4)))
            .zip(b.chunks_exact_mut(4));
        for ((((o, d), (x, y)), (r4, g4)), b4) in quads {
            // Four pixels, transposed into a vector per channel.
            let (p0, p1, p2, p3) = (
                pixel(rgbx, o[0], d[0], x[0], y[0]),
                pixel(rgbx, o[1], d[1], x[1], y[1]),
                pixel(rgbx, o[2], d[2], x[2], y[2]),
                pixel(rgbx, o[3], d[3], x[3], y[3]),
            );
            let (t0, t1) = (_mm_unpacklo_ps(p0, p1), _mm_unpacklo_ps(p2, p3));
            let (t2, t3) = (_mm_unpackhi_ps(p0, p1), _mm_unpackhi_ps(p2, p3));
            let (vr, vg) = (_mm_movelh_ps(t0, t1), _mm_movehl_ps(t1, t0));
            let vb = _mm_movelh_ps(t2, t3);
            sum = _mm_add_ps(sum, _mm_add_ps(vr, _mm_add_ps(vg, vb)));
            // SAFETY: each chunk holds four floats; the stores are unaligned.
            unsafe {
                _mm_storeu_ps(r4.as_mut_ptr(), vr);
                _mm_storeu_ps(g4.as_mut_ptr(), vg);
                _mm_storeu_ps(b4.as_mut_ptr(), vb);
            }
        }
        let mut lanes = [0f32; 4];
        // SAFETY: `lanes` holds four floats.
        unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), sum) };
        let mut total: f32 = lanes.iter().sum();
        for j in size / 4 * 4..size {
            let v = pixel(rgbx, at.off[j], at.dy[j], at.wx[j], at.wy[j]);
            r[j] = _mm_cvtss_f32(v);
            g[j] = _mm_cvtss_f32(_mm_shuffle_ps::<0x55>(v, v));
            b[j] = _mm_cvtss_f32(_mm_shuffle_ps::<0xAA>(v, v));
            total += r[j] + g[j] + b[j];
        }
        total
    }
}

/// [`warp`] with zeros outside the image (masks), one sample at a time, with the same
/// coordinates and interpolation, so that a mask inside the image moves exactly as its image.
fn warp_zeros(img: &[u8], dst: &mut [f32], channels: usize, size: usize, t: &[f32; 6]) {
    let plane = size * size;
    let n = size as f32;
    let half = 0.5 * n;
    let centres: Vec<f32> = (0..size).map(|j| (2 * j + 1) as f32 / n - 1.0).collect();
    let s = size as i64;
    for (i, yn) in centres.iter().enumerate() {
        let (bx, by) = (t[1] * yn + t[2], t[4] * yn + t[5]);
        for (j, xn) in centres.iter().enumerate() {
            let ix = ((t[0] * xn + bx) + 1.0) * half - 0.5;
            let iy = ((t[3] * xn + by) + 1.0) * half - 0.5;
            let (fx, fy) = (ix.floor(), iy.floor());
            let (wx, wy) = (ix - fx, iy - fy);
            let (x0, y0) = (fx as i64, fy as i64);
            for ch in 0..channels {
                let p = &img[ch * plane..(ch + 1) * plane];
                let px = |x: i64, y: i64| {
                    let inside = x >= 0 && y >= 0 && x < s && y < s;
                    if inside {
                        f32::from(p[(y * s + x) as usize])
                    } else {
                        0.0
                    }
                };
                let (a, b) = (px(x0, y0), px(x0 + 1, y0));
                let (c, d) = (px(x0, y0 + 1), px(x0 + 1, y0 + 1));
                let top = a + wx * (b - a);
                let bottom = c + wx * (d - c);
                dst[ch * plane + i * size + j] = top + wy * (bottom - top);
            }
        }
    }
}

/// Contrast about the image's mean, brightness, clamp to 0..1 and normalisation of one
/// warped image in 0..255 units (`warped`, as long as `out`) into `out`, every sample of it.
/// `sum` is the sum of the samples when the warp computed it.
fn adjust(
    warped: &[f32],
    out: &mut [MaybeUninit<f32>],
    size: usize,
    sum: Option<f64>,
    d: &Draw,
    norm: &[(f32, f32)],
) {
    let plane = size * size;
    // Eight running sums, so the additions vectorise; each row's in f64.
    let total: f64 = sum.unwrap_or_else(|| {
        warped
            .chunks(size.max(1))
            .map(|row| {
                let mut lanes = [0f32; 8];
                let mut parts = row.chunks_exact(8);
                for part in &mut parts {
                    for (l, v) in lanes.iter_mut().zip(part) {
                        *l += v;
                    }
                }
                let rest: f32 = parts.remainder().iter().sum();
                lanes.iter().map(|l| f64::from(*l)).sum::<f64>() + f64::from(rest)
            })
            .sum()
    });
    let mean = (total / (warped.len() as f64 * 255.0)) as f32;
    // x / 255 * k * b + mean * (1 - k) * b
    let gain = d.contrast * d.brightness / 255.0;
    let offset = mean * (1.0 - d.contrast) * d.brightness;
    let planes = out
        .chunks_mut(plane.max(1))
        .zip(warped.chunks(plane.max(1)));
    for ((o, w), (inv_sd, shift)) in planes.zip(norm) {
        for (o, v) in o.iter_mut().zip(w) {
            o.write((v * gain + offset).clamp(0.0, 1.0) * inv_sd - shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: [f32; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

    fn images(src: &[u8], per: usize) -> Vec<&[u8]> {
        src.chunks(per).collect()
    }

    fn draw(theta: [f32; 6]) -> Draw {
        Draw {
            theta,
            contrast: 1.0,
            brightness: 1.0,
        }
    }

    #[test]
    fn the_identity_keeps_every_pixel_and_normalises() {
        let src: Vec<u8> = (0..2 * 3 * 16).map(|v| (v * 5 % 256) as u8).collect();
        let mut out = vec![MaybeUninit::uninit(); src.len()];
        let d = [draw(IDENTITY); 2];
        let got = augment(
            &images(&src, 48),
            &mut out,
            3,
            4,
            &d,
            Padding::Border,
            None,
            &Threads(2),
        );
        assert_eq!(got.len(), src.len());
        for (a, b) in src.iter().zip(got.iter()) {
            assert!((f32::from(*a) / 255.0 - b).abs() < 1e-6, "{a} {b}");
        }
        let (mean, std) = ([0.5, 0.25, 0.0], [0.5, 0.25, 2.0]);
        let got = augment(
            &images(&src, 48),
            &mut out,
            3,
            4,
            &d,
            Padding::Border,
            Some((&mean, &std)),
            &Threads(1),
        );
        let v = f32::from(src[16]) / 255.0;
        assert!((got[16] - (v - 0.25) / 0.25).abs() < 1e-5);
    }

    /// A team that runs nothing.
    struct Idle;

    impl Team for Idle {
        fn run(&self, _: &(dyn Fn() + Sync)) {}
    }

    #[test]
    fn every_image_is_done_once_whatever_the_team() {
        let (n, size) = (7, 9);
        let src: Vec<u8> = (0..n * 3 * size * size)
            .map(|v| (v * 37 % 251) as u8)
            .collect();
        let draws: Vec<Draw> = (0..n)
            .map(|k| Draw {
                theta: [0.9, 0.1 * k as f32, 0.05, -0.1, 1.1, 0.0],
                contrast: 0.8 + 0.05 * k as f32,
                brightness: 1.1,
            })
            .collect();
        let run = |team: &dyn Team| {
            let mut out = vec![MaybeUninit::uninit(); n * 3 * size * size];
            let norm = Some((&[0.5][..], &[0.25][..]));
            let src = images(&src, 3 * size * size);
            augment(&src, &mut out, 3, size, &draws, Padding::Border, norm, team).to_vec()
        };
        let alone = run(&Threads(1));
        assert_eq!(alone.len(), n * 3 * size * size);
        // More threads than images, a few, and a team that leaves everything to the caller.
        assert_eq!(run(&Threads(11)), alone);
        assert_eq!(run(&Threads(3)), alone);
        assert_eq!(run(&Idle), alone);
    }

    #[test]
    fn a_flip_mirrors_and_a_shift_pads_by_the_padding_mode() {
        // One 4x4 grey image whose value is its column; the first output row in 0..255.
        let src: Vec<u8> = (0..16).map(|i| (i % 4) as u8 * 10).collect();
        let first_row = |theta: [f32; 6], padding: Padding| -> Vec<f32> {
            let mut out = [MaybeUninit::uninit(); 16];
            let got = augment(
                &[&src[..]],
                &mut out,
                1,
                4,
                &[draw(theta)],
                padding,
                None,
                &Threads(1),
            );
            got[..4].iter().map(|v| (v * 255.0).round()).collect()
        };
        let flip = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        assert_eq!(
            first_row(flip, Padding::Border),
            vec![30.0, 20.0, 10.0, 0.0]
        );
        // Shift by one pixel (2 / S in normalised units): the input is read one column to
        // the right, so the last column comes from outside.
        let shift = [1.0, 0.0, 0.5, 0.0, 1.0, 0.0];
        assert_eq!(
            first_row(shift, Padding::Border),
            vec![10.0, 20.0, 30.0, 30.0]
        );
        assert_eq!(
            first_row(shift, Padding::Zeros),
            vec![10.0, 20.0, 30.0, 0.0]
        );
    }

    /// The portable warp: every output sample from its four neighbours one at a time.
    fn warp_portable(img: &[u8], channels: usize, size: usize, t: &[f32; 6]) -> Vec<f32> {
        let mut dst = vec![0f32; channels * size * size];
        let mut at = Taps::new(size);
        for i in 0..size {
            at.row(t, i, 0);
            gather_planar(img, &mut dst, channels, &at, i, 0);
        }
        dst
    }

    #[test]
    fn the_vectorised_warp_matches_the_portable_one() {
        let mut rng = engine_core::metrics::rng::Xoshiro256::seed_from(7);
        let mut u = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
        // Sizes off the vector widths too, grey and RGB, maps reaching outside the image.
        for (size, channels) in [(13, 3), (32, 3), (29, 1), (16, 1), (8, 3), (1, 3), (1, 1)] {
            let img: Vec<u8> = (0..channels * size * size)
                .map(|_| (u() * 255.0) as u8)
                .collect();
            for _ in 0..20 {
                let (a, s) = ((u() - 0.5) * 0.8, 0.7 + 0.6 * u());
                let t = [
                    s * a.cos(),
                    -s * a.sin(),
                    (u() - 0.5) * 0.6,
                    s * a.sin(),
                    s * a.cos(),
                    (u() - 0.5) * 0.6,
                ];
                let want = warp_portable(&img, channels, size, &t);
                let mut got = vec![0f32; want.len()];
                let sum = warp(&img, &mut got, channels, size, &t, &mut Vec::new());
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-3,
                        "size {size}, sample {k}: {g} against {w}"
                    );
                }
                if let Some(sum) = sum {
                    let total: f64 = want.iter().map(|v| f64::from(*v)).sum();
                    assert!((sum - total).abs() < 1e-3 * total.max(1.0), "{sum} {total}");
                }
            }
        }
    }

    #[test]
    fn too_little_room_gives_nothing_and_a_short_image_is_black() {
        let src = [7u8; 16];
        let mut out = [MaybeUninit::uninit(); 8];
        let d = [draw(IDENTITY)];
        let team = Threads(2);
        let got = augment(
            &[&src[..]],
            &mut out,
            1,
            4,
            &d,
            Padding::Border,
            None,
            &team,
        );
        assert!(got.is_empty(), "no room for one image");
        let mut out = [MaybeUninit::uninit(); 16];
        let got = augment(
            &[&src[..3]],
            &mut out,
            1,
            4,
            &d,
            Padding::Border,
            None,
            &team,
        );
        assert_eq!(got, &[0.0; 16][..], "a short image is black");
        let got = augment(&[], &mut out, 1, 4, &d, Padding::Border, None, &team);
        assert!(got.is_empty(), "no images");
    }

    #[test]
    fn contrast_and_brightness_act_about_the_mean_and_clamp() {
        let src = [0u8, 255, 100, 155];
        let mut out = [MaybeUninit::uninit(); 4];
        let d = Draw {
            theta: IDENTITY,
            contrast: 0.5,
            brightness: 1.5,
        };
        let out = augment(
            &[&src[..]],
            &mut out,
            1,
            2,
            &[d],
            Padding::Border,
            Some((&[0.0], &[1.0])),
            &Threads(1),
        );
        let mean = (0.0 + 255.0 + 100.0 + 155.0) / 4.0 / 255.0;
        for (s, o) in src.iter().zip(out.iter()) {
            let want = ((f32::from(*s) / 255.0 * 0.5 + mean * 0.5) * 1.5).clamp(0.0, 1.0);
            assert!((o - want).abs() < 1e-6, "{s}: {o} against {want}");
        }
        assert_eq!(out[1], 1.0, "clamped");
    }
}
