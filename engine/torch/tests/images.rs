//! The decoded-image cache on the training device: loaded from the file `engine-data`
//! writes, gathered by index, augmented by seeded tensor operations.

use engine_data::imagecache;
use engine_torch::images::{Augment, DeviceImages, epoch_order};
use engine_torch::tch::{Device, Kind};

fn identity() -> Augment {
    Augment {
        hflip: 0.0,
        rotate_deg: 0.0,
        translate: 0.0,
        scale: (1.0, 1.0),
        brightness: 0.0,
        contrast: 0.0,
        mean: vec![0.0],
        std: vec![1.0],
    }
}

/// The default augmentation, normalising one grey channel.
fn grey_default() -> Augment {
    Augment {
        mean: vec![0.5],
        std: vec![0.25],
        ..Augment::default()
    }
}

/// Three 6x6 grey images with a bright left column, and the cache built from them.
fn cached(dir: &std::path::Path) -> imagecache::CacheInfo {
    let mut paths = Vec::new();
    for i in 0..3u8 {
        let mut img = image::GrayImage::from_pixel(6, 6, image::Luma([20 * (i + 1)]));
        for y in 0..6 {
            img.put_pixel(0, y, image::Luma([250]));
        }
        let p = dir.join(format!("{i}.png"));
        img.save(&p).unwrap();
        paths.push(p);
    }
    let key = imagecache::key("test", &["0", "1", "2"], 6, 1);
    let (info, failed) =
        imagecache::build(&dir.join("cache"), &key, &paths, 6, 1, 2, &|_| {}).unwrap();
    assert!(failed.is_empty());
    info
}

#[test]
fn the_cache_loads_whole_and_batches_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let info = cached(dir.path());
    let images = DeviceImages::load(&info, Device::Cpu, u64::MAX).unwrap();
    assert_eq!(images.len(), 3);
    assert!(images.resident());
    let b = images.batch(&[2, 0]).unwrap();
    assert_eq!(b.size(), [2, 1, 6, 6]);
    assert_eq!(b.kind(), Kind::Uint8);
    assert_eq!(b.int64_value(&[0, 0, 3, 3]), 60);
    assert_eq!(b.int64_value(&[1, 0, 3, 3]), 20);
    assert_eq!(b.int64_value(&[1, 0, 3, 0]), 250);
}

#[test]
fn identity_augmentation_is_a_rescale_and_a_flip_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let images = DeviceImages::load(&cached(dir.path()), Device::Cpu, u64::MAX).unwrap();
    let b = images.batch(&[0, 1, 2]).unwrap();
    let out = identity().apply(&b, 1, 0).unwrap();
    let want = b.to_kind(Kind::Float) / 255.0;
    let diff = (&out - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "identity changed the images by {diff}");
    let flipped = Augment {
        hflip: 1.0,
        ..identity()
    }
    .apply(&b, 1, 0)
    .unwrap();
    let mirrored = want.flip([3]);
    let diff = (&flipped - &mirrored).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "a flip is not a mirror: {diff}");
}

#[test]
fn augmentation_is_seeded_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let images = DeviceImages::load(&cached(dir.path()), Device::Cpu, u64::MAX).unwrap();
    let aug = grey_default();
    let all = images.batch(&[0, 1, 2]).unwrap();
    let a = aug.apply(&all, 7, 0).unwrap();
    let b = aug.apply(&all, 7, 0).unwrap();
    assert!(a.equal(&b), "the same seed gives the same batch");
    let c = aug.apply(&all, 8, 0).unwrap();
    assert!(!a.equal(&c), "another seed gives another batch");
    // Sample 2 of the batch is augmented as it would be alone (its stream is its index).
    let alone = aug.apply(&images.batch(&[2]).unwrap(), 7, 2).unwrap();
    let diff = (a.narrow(0, 2, 1) - alone).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
    assert!(a.isfinite().all().int64_value(&[]) == 1);
}

#[test]
fn epochs_are_seeded_permutations() {
    let e0 = epoch_order(100, 3, 0);
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<i64>>());
    assert_eq!(e0, epoch_order(100, 3, 0));
    assert_ne!(e0, epoch_order(100, 3, 1));
    assert_ne!(e0, epoch_order(100, 4, 0));
}

#[test]
fn masks_move_with_their_images() {
    // A bright square away from the borders, as image and as mask.
    let mut img = vec![0u8; 4 * 32 * 32];
    for n in 0..4 {
        for y in 10..20 {
            for x in 8..18 {
                img[n * 1024 + y * 32 + x] = 255;
            }
        }
    }
    let batch = engine_torch::tch::Tensor::from_slice(&img).view([4, 1, 32, 32]);
    let aug = Augment {
        hflip: 0.5,
        rotate_deg: 20.0,
        translate: 0.1,
        scale: (0.8, 1.2),
        ..identity()
    };
    let (x, m) = aug.apply_with_masks(&batch, Some(&batch), 9, 0).unwrap();
    let m = m.unwrap();
    assert_eq!(m.size(), vec![4, 1, 32, 32]);
    let diff = (&x - &m).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "image and mask differ by {diff}");
    // And they did move.
    let moved = (&m - batch.to_kind(Kind::Float) / 255.0)
        .abs()
        .max()
        .double_value(&[]);
    assert!(moved > 0.5);
    // Without masks, the images are the same as before.
    let plain = aug.apply(&batch, 9, 0).unwrap();
    assert_eq!((&plain - &x).abs().max().double_value(&[]), 0.0);
}

#[test]
fn augmenting_by_index_from_the_cache_equals_augmenting_a_gathered_batch() {
    let dir = tempfile::tempdir().unwrap();
    let images = DeviceImages::load(&cached(dir.path()), Device::Cpu, u64::MAX).unwrap();
    let aug = grey_default();
    let idx = [2i64, 0, 2];
    let (x, none) = aug.apply_indices(&images, None, &idx, 4, 9).unwrap();
    assert!(none.is_none());
    let want = aug.apply(&images.batch(&idx).unwrap(), 4, 9).unwrap();
    assert_eq!(x.size(), [3, 1, 6, 6]);
    assert!(x.equal(&want), "the same draws and samples");
    // As masks too: the cache's images, moved like the images.
    let (_, m) = aug
        .apply_indices(&images, Some(&images), &idx, 4, 9)
        .unwrap();
    assert_eq!(m.unwrap().size(), [3, 1, 6, 6]);
    // An index outside the cache is an error, not a panic.
    let err = aug.apply_indices(&images, None, &[3], 4, 0).unwrap_err();
    assert!(err.to_string().contains("index 3"), "{err}");
}
