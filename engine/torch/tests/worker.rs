//! The `engine-worker` binary: `doctor` reports libtorch and a passing training self-test.

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
