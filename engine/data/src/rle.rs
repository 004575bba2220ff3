//! SIIM-ACR's run-length encoding of masks: space-separated pairs `start length`, column-major
//! (pixels counted down each column, then across), where each start is relative to the end of
//! the previous run; `-1` means no mask.

/// Parses an `EncodedPixels` field: `None` for `-1` (no finding), the runs otherwise.
pub fn parse(text: &str) -> Result<Option<Vec<(u64, u64)>>, String> {
    let t = text.trim();
    if t == "-1" {
        return Ok(None);
    }
    let nums: Vec<u64> = t
        .split_whitespace()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| format!("`{s}` is not a whole number"))
        })
        .collect::<Result<_, _>>()?;
    if nums.is_empty() {
        return Err("is empty (use -1 for no mask)".into());
    }
    if nums.len() % 2 == 1 {
        return Err(format!(
            "has {} numbers; runs come in `start length` pairs",
            nums.len()
        ));
    }
    Ok(Some(nums.chunks_exact(2).map(|c| (c[0], c[1])).collect()))
}

/// Paints the runs into a `width` x `height` mask (row-major, 1 = inside).
pub fn decode(runs: &[(u64, u64)], width: usize, height: usize) -> Result<Vec<u8>, String> {
    let n = (width * height) as u64;
    let mut mask = vec![0u8; width * height];
    let mut pos = 0u64;
    for (start, len) in runs {
        pos += start;
        if pos + len > n {
            return Err(format!(
                "a run ends at pixel {}, past the image's {n}",
                pos + len
            ));
        }
        for k in pos..pos + len {
            // Column-major index k to row-major.
            let (col, row) = ((k as usize) / height, (k as usize) % height);
            mask[row * width + col] = 1;
        }
        pos += len;
    }
    Ok(mask)
}

/// Encodes a row-major mask (non-zero = inside) the SIIM way; `-1` when it is empty.
pub fn encode(mask: &[u8], width: usize, height: usize) -> String {
    let mut out = Vec::new();
    let mut last_end = 0usize;
    let mut run_start: Option<usize> = None;
    let total = width * height;
    for k in 0..=total {
        let inside = k < total && {
            let (col, row) = (k / height, k % height);
            mask[row * width + col] != 0
        };
        match (inside, run_start) {
            (true, None) => run_start = Some(k),
            (false, Some(s)) => {
                out.push(format!("{} {}", s - last_end, k - s));
                last_end = k;
                run_start = None;
            }
            _ => {}
        }
    }
    if out.is_empty() {
        "-1".into()
    } else {
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_relative_starts() {
        let (w, h) = (5, 4);
        let mut mask = vec![0u8; w * h];
        for (r, c) in [(1, 1), (2, 1), (0, 3), (1, 3), (3, 4)] {
            mask[r * w + c] = 1;
        }
        let text = encode(&mask, w, h);
        // Column-major pixels (col * height + row): column 1 rows 1-2 are 5-6 (a run starting
        // 5 after 0), column 3 rows 0-1 are 12-13 (5 after the end at 7), column 4 row 3 is
        // 19 (5 after the end at 14).
        assert_eq!(text, "5 2 5 2 5 1");
        let runs = parse(&text).unwrap().unwrap();
        assert_eq!(decode(&runs, w, h).unwrap(), mask);
        assert_eq!(encode(&[0; 6], 3, 2), "-1");
        assert_eq!(parse(" -1").unwrap(), None);
        assert!(parse("1 2 3").is_err());
        assert!(parse("a b").is_err());
        assert!(decode(&[(18, 5)], w, h).is_err());
    }
}
