//! Images on the training device: the decoded-image cache of `engine-data` mapped with
//! libtorch's `from_file` and moved whole to the device when it fits, batches gathered by
//! index, and augmentation (flips, affine and crop, intensity) as seeded tensor operations on
//! the device. When the cache does not fit, batches are gathered from the mapped file on the
//! CPU and moved one at a time.

use engine_core::metrics::rng::Xoshiro256;
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
    pub fn apply_with_masks(
        &self,
        batch: &Tensor,
        masks: Option<&Tensor>,
        seed: u64,
        first_index: u64,
    ) -> Result<(Tensor, Option<Tensor>), Error> {
        let size = batch.size();
        let (n, c) = (size[0], size[1]);
        let dev = batch.device();
        let mut theta = Vec::with_capacity(n as usize * 6);
        let mut bright = Vec::with_capacity(n as usize);
        let mut contr = Vec::with_capacity(n as usize);
        for i in 0..n as u64 {
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
            theta.extend_from_slice(&[
                (s * a.cos() * flip) as f32,
                (-s * a.sin()) as f32,
                tx as f32,
                (s * a.sin() * flip) as f32,
                (s * a.cos()) as f32,
                ty as f32,
            ]);
            bright.push(unif(&mut r, 1.0 - self.brightness, 1.0 + self.brightness) as f32);
            contr.push(unif(&mut r, 1.0 - self.contrast, 1.0 + self.contrast) as f32);
        }
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
