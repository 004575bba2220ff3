//! The `engine-worker` binary: `doctor` reports libtorch and a passing training self-test;
//! `bench-images` runs on RGB and grey caches.

use std::process::Command;

#[test]
fn doctor_reports_libtorch_and_a_self_test_that_learns() {
    let out = Command::new(env!("CARGO_BIN_EXE_engine-worker"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["libtorch"]["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0")
    );
    let test = &report["self_test"]["Ok"];
    assert!(
        test["final_loss"].as_f64().unwrap() < test["initial_loss"].as_f64().unwrap(),
        "{report}"
    );
}

#[test]
fn an_unknown_device_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_engine-worker"))
        .args(["doctor", "--device", "tpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}

/// `bench-images` builds an RGB or a grey cache in its first epoch and augments from it in
/// every epoch, one JSON line each; other channel counts are usage errors.
#[test]
fn bench_images_runs_on_rgb_and_grey_caches() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for k in 0..6u8 {
        let img = image::RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([x as u8 * 10, y as u8 * 12, k * 40])
        });
        img.save(images.join(format!("{k}.png"))).unwrap();
    }
    let run = |channels: &str| {
        Command::new(env!("CARGO_BIN_EXE_engine-worker"))
            .arg("bench-images")
            .arg(&images)
            .arg("--cache")
            .arg(dir.path().join(format!("cache{channels}")))
            .args(["--size", "16", "--epochs", "2", "--batch", "4"])
            .args(["--channels", channels])
            .output()
            .unwrap()
    };
    let mut firsts = vec![];
    for channels in ["1", "3"] {
        let out = run(channels);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for (k, line) in lines.iter().enumerate() {
            assert_eq!(line["epoch"], k + 1);
            assert_eq!(line["images"], 6);
            assert!(line["images_per_s"].as_f64().unwrap() > 0.0, "{line}");
            assert!(line["checksum"].as_f64().unwrap().is_finite(), "{line}");
        }
        firsts.push(lines[0]["checksum"].as_f64().unwrap());
    }
    // Three normalised channels sum to something else than one.
    assert!((firsts[0] - firsts[1]).abs() > 1.0, "{firsts:?}");
    let out = run("2");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--channels"));
}
