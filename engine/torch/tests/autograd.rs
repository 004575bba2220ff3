//! Integration tests: libtorch links, and autograd's gradients match analytic ones on the CPU.

use engine_torch::tch::{Device, Kind, Tensor};
use engine_torch::{parse_device, runtime_info, self_test};

fn assert_close(actual: &Tensor, expected: &Tensor) {
    let max_err = (actual - expected).abs().max().double_value(&[]);
    assert!(
        max_err < 1e-10,
        "max abs error {max_err}\nactual {actual}\nexpected {expected}"
    );
}

#[test]
fn gradient_of_elementwise_function_matches_analytic() {
    // f(x) = sum(sin(x) * x^2), df/dx = cos(x) x^2 + 2 x sin(x)
    let x = Tensor::linspace(-3.0, 3.0, 101, (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let f = (x.sin() * x.square()).sum(Kind::Double);
    f.backward();
    let xd = x.detach();
    let analytic = xd.cos() * xd.square() + 2.0 * &xd * xd.sin();
    assert_close(&x.grad(), &analytic);
}

#[test]
fn gradient_through_a_linear_layer_matches_analytic() {
    // L = sum((x W^T + b)^2) / 2: dL/dW = r^T x, dL/db = sum_rows(r), with r = x W^T + b.
    engine_torch::tch::manual_seed(7);
    let x = Tensor::randn([5, 3], (Kind::Double, Device::Cpu));
    let w = Tensor::randn([4, 3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let b = Tensor::randn([4], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let r = x.linear(&w, Some(&b));
    let loss = r.square().sum(Kind::Double) / 2.0;
    loss.backward();
    let r = r.detach();
    assert_close(&w.grad(), &r.tr().matmul(&x));
    assert_close(&b.grad(), &r.sum_dim_intlist(0, false, Kind::Double));
}

#[test]
fn self_test_passes_on_cpu_and_reports() {
    let device = parse_device("cpu").unwrap();
    let report = self_test(device).unwrap();
    assert!(report.final_loss < report.initial_loss);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["device"], "Cpu");
    let info = serde_json::to_value(runtime_info()).unwrap();
    assert!(info["cpu_threads"].as_i64().unwrap() >= 1);
    assert_eq!(info["cuda_linked"], cfg!(feature = "cuda"));
}
