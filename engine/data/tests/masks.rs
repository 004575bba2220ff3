//! Masks of the synthetic chest family through the mask cache: at the images' own size the
//! cache holds exactly the decoded run-length masks; smaller, only positives have any.

use engine_core::manifest::{Dataset, DatasetFormat};
use engine_data::imagecache;
use engine_data::masks::Masks;
use engine_data::salt::Salt;
use engine_data::synth::{self, ChestOptions, Family};

#[test]
fn the_mask_cache_lines_up_with_the_images() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("chest");
    synth::write(
        &Family::Chest(ChestOptions {
            n: 40,
            size: 48,
            neatx_n: 0,
            positive_rate: 0.5,
            seed: 9,
            ..ChestOptions::default()
        }),
        &root,
    )
    .unwrap();
    let spec = Dataset::new(DatasetFormat::SiimAcr, root.display().to_string());
    let salt = Salt::from_bytes([7; 32]);
    let catalog = engine_data::read(&spec, &root, &salt).unwrap();
    let masks = Masks::read(&spec, &root).unwrap();
    let images: Vec<(String, std::path::PathBuf)> = catalog.images();
    let pairs: Vec<(&str, std::path::PathBuf)> = images
        .iter()
        .map(|(id, p)| (id.as_str(), root.join(p)))
        .collect();
    assert!(!masks.is_empty() && masks.len() < images.len());
    let cache = dir.path().join("cache");
    for size in [48usize, 24] {
        let (info, failed) = masks
            .cache(&cache, &format!("k{size}"), &pairs, size, 2)
            .unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!((info.n, info.channels, info.size), (images.len(), 1, size));
        let bytes = std::fs::read(&info.path).unwrap();
        let data = &bytes[imagecache::HEADER_BYTES as usize..];
        for (i, (id, _)) in images.iter().enumerate() {
            let got = &data[i * size * size..(i + 1) * size * size];
            if size == 48 {
                assert_eq!(got, masks.decode(id, 48, 48).unwrap().as_slice(), "{id}");
            }
            let any = got.iter().any(|v| *v > 0);
            let want = masks.decode(id, 48, 48).unwrap().iter().any(|v| *v > 0);
            assert_eq!(any, want, "{id} at {size} px");
        }
    }
}
