//! Segmentation masks: SIIM-ACR's run-length-encoded pneumothorax outlines, decoded at each
//! image's own size and resized and cropped exactly as the image is, into a decoded-image
//! cache of one channel (255 inside) that lines up with the images' cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine_core::manifest::{Dataset as DatasetSpec, DatasetFormat};

use crate::DataError;
use crate::image::Decoded;
use crate::imagecache::{self, CacheInfo, Failed};
use crate::read::siim::RLE_CSV;
use crate::table::Table;

/// Whether datasets of this layout carry masks.
pub fn has_masks(format: DatasetFormat) -> bool {
    format == DatasetFormat::SiimAcr
}

/// The masks of a dataset: for each image id with a mask, its runs (several rows of one
/// image together). Images without a row, or with `-1`, have none (an empty mask).
#[derive(Clone, Debug, Default)]
pub struct Masks {
    runs: BTreeMap<String, Vec<Vec<(u64, u64)>>>,
}

impl Masks {
    /// Reads the masks of the dataset declared by `spec` at `root`.
    pub fn read(spec: &DatasetSpec, root: &Path) -> Result<Masks, DataError> {
        if !has_masks(spec.format) {
            return Ok(Masks::default());
        }
        let table = Table::read(&root.join(spec.labels.as_deref().unwrap_or(RLE_CSV)))?;
        let id_col = table.require("ImageId", "SIIM-ACR's labels name each image in `ImageId`")?;
        let rle_col = table.require(
            "EncodedPixels",
            "SIIM-ACR's labels hold the masks in `EncodedPixels` (-1 for none)",
        )?;
        let mut runs: BTreeMap<String, Vec<Vec<(u64, u64)>>> = BTreeMap::new();
        for row in &table.rows {
            // Rows the reader refused are already problems of the catalog; they add nothing.
            if let Ok(Some(r)) = crate::rle::parse(Table::field(row, rle_col)) {
                runs.entry(Table::field(row, id_col).to_owned())
                    .or_default()
                    .push(r);
            }
        }
        Ok(Masks { runs })
    }

    /// How many images have a mask.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no image has one.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The mask of image `id` at `width` x `height`, row-major, 255 inside.
    pub fn decode(&self, id: &str, width: usize, height: usize) -> Result<Vec<u8>, String> {
        let mut mask = vec![0u8; width * height];
        for runs in self.runs.get(id).into_iter().flatten() {
            for (m, v) in mask
                .iter_mut()
                .zip(crate::rle::decode(runs, width, height)?)
            {
                *m |= v * 255;
            }
        }
        Ok(mask)
    }

    /// Writes (or reuses) the mask cache of `images` (ids and DICOM paths, in order) at
    /// `size`, under `dir` with the cache key `key`: each mask decoded at its DICOM file's
    /// `Columns` x `Rows` and resized and cropped like the image.
    pub fn cache(
        &self,
        dir: &Path,
        key: &str,
        images: &[(&str, PathBuf)],
        size: usize,
        threads: usize,
    ) -> std::io::Result<(CacheInfo, Vec<Failed>)> {
        if let Some(info) = imagecache::open(dir, key) {
            return Ok((info, Vec::new()));
        }
        let produce = |i: usize| -> Result<Vec<u8>, String> {
            let (id, path) = &images[i];
            let header = crate::dicom::read_header(path)?;
            let (Some(w), Some(h)) = (header.columns, header.rows) else {
                return Err("has no Rows and Columns".into());
            };
            let pixels = self.decode(id, w as usize, h as usize)?;
            let d = Decoded {
                width: w,
                height: h,
                channels: 1,
                pixels,
            };
            Ok(imagecache::resize_chw(&d, size, 1))
        };
        imagecache::build_with(dir, key, images.len(), size, 1, threads, &|_| {}, &produce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_one_image_are_merged() {
        let mut m = Masks::default();
        // A 4 x 3 image, column-major runs: pixel 1 (row 1, column 0) and pixel 6 (row 0,
        // column 2).
        m.runs.insert("a".into(), vec![vec![(1, 1)], vec![(6, 1)]]);
        let mask = m.decode("a", 4, 3).unwrap();
        assert_eq!(mask, vec![0, 0, 255, 0, 255, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(m.decode("none", 2, 2).unwrap(), vec![0; 4]);
        m.runs.insert("bad".into(), vec![vec![(10, 5)]]);
        assert!(m.decode("bad", 2, 2).is_err());
    }
}
