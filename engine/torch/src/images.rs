//! Images on the training device: the decoded-image cache of `engine-data` mapped with
//! libtorch's `from_file` and moved whole to the device when it fits, batches gathered by
//! index, and seeded augmentation (flips, affine and crop, intensity): tensor operations on
//! a GPU; on the CPU one fused pass per image ([`engine_data::augment`]) straight from the
//! mapped cache into the batch tensor. When the cache does not fit on the device, batches
//! are gathered from the mapped file on the CPU and moved one at a time.

use engine_core::metrics::rng::Xoshiro256;
use engine_data::augment::{self, Draw, Padding};
use engine_data::imagecache::{CacheInfo, HEADER_BYTES};
use tch::{Device, Kind, Tensor};

use crate::Error;

/// A dataset view's images as uint8 `N x C x S x S`.
#[derive(Debug)]
pub struct DeviceImages {
    data: Tensor,
    device: Device,
    resident: bool,
    info: CacheInfo,
}

impl DeviceImages {
    /// Maps the cache file and moves it to `device` when its samples fit in `budget_bytes`.
    pub fn load(
        info: &CacheInfo,
        device: Device,
        budget_bytes: u64,
    ) -> Result<DeviceImages, Error> {
        let path = info.path.to_str().ok_or_else(|| {
            Error::SelfTest(format!("cache path {} is not UTF-8", info.path.display()))
        })?;
        let total = (HEADER_BYTES + info.data_bytes()) as i64;
        let file = Tensor::f_from_file(path, false, Some(total), (Kind::Uint8, Device::Cpu))?;
        let shape = [
            info.n as i64,
            info.channels as i64,
            info.size as i64,
            info.size as i64,
        ];
        let data = file
            .f_narrow(0, HEADER_BYTES as i64, info.data_bytes() as i64)?
            .f_view(shape)?;
        let resident = device == Device::Cpu || info.data_bytes() <= budget_bytes;
        let data = if resident && device != Device::Cpu {
            data.f_to_device(device)?
        } else {
            data
        };
        Ok(DeviceImages {
            data,
            device,
            resident,
            info: info.clone(),
        })
    }

    /// How many images.
    pub fn len(&self) -> usize {
        self.info.n
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.info.n == 0
    }

    /// Whether the whole set lives on the device.
    pub fn resident(&self) -> bool {
        self.resident
    }

    /// The images at `indices`, uint8 on the device.
    pub fn batch(&self, indices: &[i64]) -> Result<Tensor, Error> {
        let idx = Tensor::from_slice(indices).f_to_device(self.data.device())?;
        let b = self.data.f_index_select(0, &idx)?;
        Ok(if b.device() == self.device {
            b
        } else {
            b.f_to_device(self.device)?
        })
    }
}

/// Seeded augmentation done on the device.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Largest rotation, in degrees either way.
    pub rotate_deg: f64,
    /// Largest shift, as a share of the size, either way.
    pub translate: f64,
    /// Range of zoom (1 = none); zooming in crops.
    pub scale: (f64, f64),
    /// Largest brightness change, as a factor either way (0.2: 0.8 to 1.2).
    pub brightness: f64,
    /// Largest contrast change, as a factor either way.
    pub contrast: f64,
    /// Per-channel mean subtracted after augmentation.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f64>,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            hflip: 0.5,
            rotate_deg: 10.0,
            translate: 0.05,
            scale: (0.9, 1.1),
            brightness: 0.2,
            contrast: 0.2,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }
}

fn unif(rng: &mut Xoshiro256, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
}

impl Augment {
    /// Augments a uint8 batch `N x C x S x S` into normalised floats on the same device. Each
    /// sample's parameters come from its own stream of `seed`, so results do not depend on
    /// the device or the batch size.
    pub fn apply(&self, batch: &Tensor, seed: u64, first_index: u64) -> Result<Tensor, Error> {
        Ok(self.apply_with_masks(batch, None, seed, first_index)?.0)
    }

    /// [`Augment::apply`], with uint8 masks `N x 1 x S x S` (255 inside) moved by the same
    /// flips and affine warps (bilinear, zeros outside) into floats from 0 to 1.
    ///
    /// On the CPU the work is one fused pass per image ([`engine_data::augment`]) on
    /// libtorch's intra-op threads; on other devices it is tensor operations on the device.
    /// Both compute the same thing.
    pub fn apply_with_masks(
        &self,
        batch: &Tensor,
        masks: Option<&Tensor>,
        seed: u64,
        first_index: u64,
    ) -> Result<(Tensor, Option<Tensor>), Error> {
        let size = batch.size();
        let square = size.len() == 4 && size[2] == size[3];
        if !(batch.device() == Device::Cpu && batch.kind() == Kind::Uint8 && square) {
            return self.tensor_ops(batch, masks, seed, first_index);
        }
        let batch = batch.f_contiguous()?;
        let masks = masks.map(Tensor::f_contiguous).transpose()?;
        let (c, s) = (size[1] as usize, size[2] as usize);
        cpu::read_u8(&batch, |images| {
            let images: Vec<&[u8]> = images.chunks(c * s * s).collect();
            match &masks {
                Some(m) => cpu::read_u8(m, |m| {
                    let m: Vec<&[u8]> = m.chunks(s * s).collect();
                    self.fused(&images, Some(&m), c, s, seed, first_index)
                })?,
                None => self.fused(&images, None, c, s, seed, first_index),
            }
        })?
    }

    /// [`Augment::apply_with_masks`] on the images at `indices` of `images` (and of `masks`):
    /// on the CPU straight from the cache, without gathering a uint8 batch first.
    pub fn apply_indices(
        &self,
        images: &DeviceImages,
        masks: Option<&DeviceImages>,
        indices: &[i64],
        seed: u64,
        first_index: u64,
    ) -> Result<(Tensor, Option<Tensor>), Error> {
        let on_cpu = |d: &DeviceImages| d.device == Device::Cpu && d.data.device() == Device::Cpu;
        if !(on_cpu(images) && masks.is_none_or(on_cpu)) {
            let x = images.batch(indices)?;
            let m = masks.map(|m| m.batch(indices)).transpose()?;
            return self.apply_with_masks(&x, m.as_ref(), seed, first_index);
        }
        let (c, s) = (images.info.channels, images.info.size);
        fn pick<'a>(
            all: &'a [u8],
            indices: &[i64],
            per: usize,
            n: usize,
        ) -> Result<Vec<&'a [u8]>, Error> {
            indices
                .iter()
                .map(|&i| {
                    let k = usize::try_from(i).ok().filter(|k| *k < n).ok_or_else(|| {
                        Error::SelfTest(format!("image index {i} of a cache of {n}"))
                    })?;
                    all.get(k * per..(k + 1) * per)
                        .ok_or_else(|| Error::SelfTest(format!("the cache holds no image {k}")))
                })
                .collect()
        }
        cpu::read_u8(&images.data, |all| {
            let picked = pick(all, indices, c * s * s, images.len())?;
            match masks {
                Some(m) => cpu::read_u8(&m.data, |all_m| {
                    let m = pick(all_m, indices, s * s, m.len())?;
                    self.fused(&picked, Some(&m), c, s, seed, first_index)
                })?,
                None => self.fused(&picked, None, c, s, seed, first_index),
            }
        })?
    }

    /// Each sample's random draws: its parameters come from its own stream of `seed`.
    fn draws(&self, n: usize, seed: u64, first_index: u64) -> Vec<Draw> {
        (0..n as u64)
            .map(|i| {
                let mut r = Xoshiro256::stream(seed, first_index + i);
                let flip = if unif(&mut r, 0.0, 1.0) < self.hflip {
                    -1.0
                } else {
                    1.0
                };
                let a = unif(&mut r, -self.rotate_deg, self.rotate_deg).to_radians();
                let s = 1.0 / unif(&mut r, self.scale.0, self.scale.1);
                let (tx, ty) = (
                    unif(&mut r, -self.translate, self.translate) * 2.0,
                    unif(&mut r, -self.translate, self.translate) * 2.0,
                );
                // Output coordinates to input coordinates: rotate, zoom, flip x.
                let theta = [
                    (s * a.cos() * flip) as f32,
                    (-s * a.sin()) as f32,
                    tx as f32,
                    (s * a.sin() * flip) as f32,
                    (s * a.cos()) as f32,
                    ty as f32,
                ];
                let brightness = unif(&mut r, 1.0 - self.brightness, 1.0 + self.brightness) as f32;
                let contrast = unif(&mut r, 1.0 - self.contrast, 1.0 + self.contrast) as f32;
                Draw {
                    theta,
                    contrast,
                    brightness,
                }
            })
            .collect()
    }

    /// The CPU path: from each image's uint8 samples (`c x s x s`, and `1 x s x s` for its
    /// mask) straight into the output tensors, on libtorch's intra-op threads.
    fn fused(
        &self,
        images: &[&[u8]],
        masks: Option<&[&[u8]]>,
        c: usize,
        s: usize,
        seed: u64,
        first_index: u64,
    ) -> Result<(Tensor, Option<Tensor>), Error> {
        let n = images.len();
        let draws = self.draws(n, seed, first_index);
        let team = cpu::IntraOp;
        let shape = |ch: usize| [n as i64, ch as i64, s as i64, s as i64];
        let x = cpu::empty_f32(shape(c), |dst| {
            let norm = Some((&self.mean[..], &self.std[..]));
            augment::augment(images, dst, c, s, &draws, Padding::Border, norm, &team).len()
        })?;
        let masks = match masks {
            Some(m) => Some(cpu::empty_f32(shape(1), |dst| {
                augment::augment(m, dst, 1, s, &draws, Padding::Zeros, None, &team).len()
            })?),
            None => None,
        };
        Ok((x, masks))
    }

    /// The tensor path, on any device.
    fn tensor_ops(
        &self,
        batch: &Tensor,
        masks: Option<&Tensor>,
        seed: u64,
        first_index: u64,
    ) -> Result<(Tensor, Option<Tensor>), Error> {
        let size = batch.size();
        let (n, c) = (size[0], size[1]);
        let dev = batch.device();
        let draws = self.draws(n as usize, seed, first_index);
        let theta: Vec<f32> = draws.iter().flat_map(|d| d.theta).collect();
        let bright: Vec<f32> = draws.iter().map(|d| d.brightness).collect();
        let contr: Vec<f32> = draws.iter().map(|d| d.contrast).collect();
        let theta = Tensor::from_slice(&theta)
            .f_view([n, 2, 3])?
            .f_to_device(dev)?;
        // In place wherever possible: a batch of 224-pixel images is tens of megabytes, and
        // a fresh tensor per step costs page faults that rival the arithmetic on a CPU.
        let mut x = batch.f_to_kind(Kind::Float)?;
        let _ = x.f_div_scalar_(255.0)?;
        let grid = Tensor::f_affine_grid_generator(&theta, [n, c, size[2], size[3]], false)?;
        // Bilinear, border padding.
        let mut x = x.f_grid_sampler_2d(&grid, 0, 1, false)?;
        let masks = match masks {
            Some(m) => {
                let mut m = m.f_to_kind(Kind::Float)?;
                let _ = m.f_div_scalar_(255.0)?;
                // Bilinear, zeros outside: nothing is inside beyond the image.
                Some(m.f_grid_sampler_2d(&grid, 0, 0, false)?)
            }
            None => None,
        };
        let b = Tensor::from_slice(&bright)
            .f_view([n, 1, 1, 1])?
            .f_to_device(dev)?;
        let k = Tensor::from_slice(&contr)
            .f_view([n, 1, 1, 1])?
            .f_to_device(dev)?;
        // Contrast about each image's mean, then brightness: x * k * b + mean * (1 - k) * b.
        let mean = x.f_mean_dim(&[1i64, 2, 3][..], true, Kind::Float)?;
        let offset = mean.f_mul(&(1.0 - &k))?.f_mul(&b)?;
        let _ = x.f_mul_(&k.f_mul(&b)?)?;
        let _ = x.f_add_(&offset)?;
        let _ = x.f_clamp_(0.0, 1.0)?;
        let take = |v: &[f64]| -> Vec<f32> {
            (0..c as usize)
                .map(|i| v.get(i).or(v.last()).copied().unwrap_or(0.0) as f32)
                .collect()
        };
        let m = Tensor::from_slice(&take(&self.mean))
            .f_view([1, c, 1, 1])?
            .f_to_device(dev)?;
        let sd = Tensor::from_slice(&take(&self.std))
            .f_view([1, c, 1, 1])?
            .f_to_device(dev)?;
        let _ = x.f_sub_(&m)?;
        let _ = x.f_div_(&sd)?;
        Ok((x, masks))
    }
}

/// The order of `n` items in epoch `epoch` of a run seeded with `seed` (Fisher-Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    let mut r = Xoshiro256::stream(seed ^ 0xE90C_u64, epoch);
    for i in (1..n).rev() {
        let j = r.below((i + 1) as u64) as usize;
        order.swap(i, j);
    }
    order
}

#[allow(unsafe_code)]
mod cpu {
    //! CPU tensors' samples as slices, and libtorch's intra-op threads as a team, for the
    //! fused augmentation.
    use std::mem::MaybeUninit;

    use engine_data::augment::Team;
    use tch::{Device, Kind, Tensor};

    use crate::Error;

    /// libtorch's intra-op threads: the OpenMP team its CPU operations run on, so that the
    /// augmentation neither waits for nor competes with threads of its own. libtorch's
    /// workers wait for the next parallel region spinning for a while after each one (for
    /// example after the operation that consumed the previous batch); a second set of
    /// threads would share the cores with them meanwhile. Where libtorch's threads are not
    /// an OpenMP team this is a team of scoped threads of the same size.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct IntraOp;

    #[cfg(target_os = "linux")]
    mod omp {
        use std::any::Any;
        use std::ffi::{c_uint, c_void};
        use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
        use std::sync::{Mutex, PoisonError};

        #[link(name = "gomp")]
        unsafe extern "C" {
            /// libgomp's entry to a parallel region (what `#pragma omp parallel`, and so
            /// libtorch's `at::parallel_for`, compiles to): runs `f(data)` on every thread of
            /// the calling thread's team, itself included, and returns when all have
            /// returned. `num_threads` 0 is the team's current size.
            fn GOMP_parallel(
                f: unsafe extern "C" fn(*mut c_void),
                data: *mut c_void,
                num_threads: c_uint,
                flags: c_uint,
            );
        }

        struct Region<'a> {
            work: &'a (dyn Fn() + Sync),
            panic: Mutex<Option<Box<dyn Any + Send>>>,
        }

        unsafe extern "C" fn member(data: *mut c_void) {
            // SAFETY: `data` is the `Region` that `run` passed, alive until GOMP_parallel
            // returns there, after every member has returned; it is only read (it is Sync).
            let region = unsafe { &*(data as *const Region<'_>) };
            // No unwinding into C: a panic is kept and raised again by `run`.
            if let Err(p) = catch_unwind(AssertUnwindSafe(region.work)) {
                let mut first = region.panic.lock().unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert(p);
            }
        }

        pub(super) fn run(work: &(dyn Fn() + Sync)) {
            // libtorch sets up a thread's team size on its first query, as before its own
            // regions; then a region of the current size needs no `num_threads`, as in
            // libtorch's (which avoids that clause: it makes libgomp rebuild its pool).
            if tch::get_num_threads() <= 1 {
                work();
                return;
            }
            let region = Region {
                work,
                panic: Mutex::new(None),
            };
            // SAFETY: `member` matches the callback libgomp expects and never unwinds; it
            // gets a pointer to `region`, which outlives the call (GOMP_parallel returns
            // only when every member has). The same libgomp runs libtorch's own regions
            // (torch-sys links it, and libtorch_cpu needs it).
            unsafe {
                GOMP_parallel(member, std::ptr::from_ref(&region).cast_mut().cast(), 0, 0);
            }
            let panic = region.panic.into_inner();
            if let Some(p) = panic.unwrap_or_else(PoisonError::into_inner) {
                resume_unwind(p);
            }
        }
    }

    impl Team for IntraOp {
        fn run(&self, work: &(dyn Fn() + Sync)) {
            #[cfg(target_os = "linux")]
            omp::run(work);
            #[cfg(not(target_os = "linux"))]
            {
                let n = usize::try_from(tch::get_num_threads()).unwrap_or(1);
                engine_data::augment::Threads(n.max(1)).run(work);
            }
        }
    }

    /// Runs `f` on the samples of `t`, a contiguous uint8 CPU tensor.
    pub(super) fn read_u8<R>(t: &Tensor, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        if t.device() != Device::Cpu || t.kind() != Kind::Uint8 || !t.is_contiguous() {
            return Err(Error::SelfTest(
                "fused augmentation reads contiguous uint8 CPU tensors".into(),
            ));
        }
        let n = t.numel();
        if n == 0 {
            return Ok(f(&[]));
        }
        // SAFETY: `t` is a contiguous uint8 CPU tensor, so its data pointer addresses `n`
        // initialised bytes; the slice is only read, and ends before this function returns,
        // while `t` (borrowed) keeps the storage alive.
        let samples = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, n) };
        Ok(f(samples))
    }

    /// A new float32 CPU tensor of `shape`, filled by `f`, which gets its samples
    /// uninitialised and returns how many it wrote from the first on: all of them, or it is
    /// an error.
    pub(super) fn empty_f32(
        shape: [i64; 4],
        f: impl FnOnce(&mut [MaybeUninit<f32>]) -> usize,
    ) -> Result<Tensor, Error> {
        let out = Tensor::f_empty(shape, (Kind::Float, Device::Cpu))?;
        let n = out.numel();
        if n > 0 {
            // SAFETY: `out` was just made by `empty`: a contiguous float32 CPU tensor
            // (libtorch aligns CPU storage to 64 bytes) of `n` samples that no other tensor
            // shares, so the mutable slice is the only access to them while `f` runs;
            // `MaybeUninit` makes no claim on what they hold.
            let samples = unsafe {
                std::slice::from_raw_parts_mut(out.data_ptr() as *mut MaybeUninit<f32>, n)
            };
            let written = f(samples);
            if written != n {
                return Err(Error::SelfTest(format!(
                    "the augmentation wrote {written} of a batch's {n} samples"
                )));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The intra-op team runs the work once on each of libtorch's threads at once, and a
    /// panic in the work reaches the caller.
    #[test]
    fn the_intra_op_team_is_libtorchs_threads() {
        use engine_data::augment::Team;
        use std::collections::HashSet;
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        tch::set_num_threads(3);
        let ids = Mutex::new(HashSet::new());
        // Every member waits (up to 10 s) until all three have arrived: they run at once.
        let (arrived, met) = (AtomicUsize::new(0), AtomicUsize::new(0));
        cpu::IntraOp.run(&|| {
            ids.lock().unwrap().insert(std::thread::current().id());
            arrived.fetch_add(1, Ordering::SeqCst);
            let start = Instant::now();
            while arrived.load(Ordering::SeqCst) < 3 && start.elapsed() < Duration::from_secs(10) {
                std::thread::yield_now();
            }
            if arrived.load(Ordering::SeqCst) == 3 {
                met.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(ids.into_inner().unwrap().len(), 3);
        assert_eq!(met.into_inner(), 3, "the members did not run at once");
        let caught = std::panic::catch_unwind(|| cpu::IntraOp.run(&|| panic!("in the work")));
        let message = caught.unwrap_err();
        assert_eq!(message.downcast_ref::<&str>(), Some(&"in the work"));
    }

    /// The fused CPU path and the tensor path (the one a GPU takes) compute the same batch:
    /// RGB and grey, sizes off the vector widths, the default augmentation and masks.
    #[test]
    fn the_fused_cpu_path_matches_the_tensor_path() {
        for (c, s) in [(3i64, 37i64), (1, 29), (3, 64)] {
            let n = 6;
            let batch = Tensor::randint(256, [n, c, s, s], (Kind::Uint8, Device::Cpu));
            let masks = Tensor::randint(2, [n, 1, s, s], (Kind::Uint8, Device::Cpu)) * 255;
            let aug = Augment {
                rotate_deg: 30.0,
                translate: 0.2,
                scale: (0.7, 1.3),
                brightness: 0.4,
                contrast: 0.4,
                ..Augment::default()
            };
            let (x, m) = aug.apply_with_masks(&batch, Some(&masks), 5, 11).unwrap();
            let (y, k) = aug.tensor_ops(&batch, Some(&masks), 5, 11).unwrap();
            assert_eq!(x.size(), y.size());
            let diff = (&x - &y).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{c} channels, {s} px: images differ by {diff}");
            let diff = (m.unwrap() - k.unwrap()).abs().max().double_value(&[]);
            // float32 coordinates made in another order: about 1e-7 of the size in pixels.
            assert!(diff < 1e-4, "{c} channels, {s} px: masks differ by {diff}");
            // The draws moved the images: the check compares augmented batches.
            let plain = batch.to_kind(Kind::Float) / 255.0;
            let mean = Tensor::from_slice(&[0.485f32, 0.456, 0.406]).narrow(0, 0, c);
            let sd = Tensor::from_slice(&[0.229f32, 0.224, 0.225]).narrow(0, 0, c);
            let plain = (plain - mean.view([1, c, 1, 1])) / sd.view([1, c, 1, 1]);
            assert!((&x - plain).abs().mean(Kind::Float).double_value(&[]) > 0.1);
        }
    }
}
