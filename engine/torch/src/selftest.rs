//! A tiny training run (2-layer MLP, fixed seed) that proves forward, backward and optimizer steps work on a device.

use crate::Error;
use crate::device::check_device;
use serde::Serialize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use tch::nn::{self, Init, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

const SEED: i64 = 20_240_611;
const SAMPLES: i64 = 128;
const INPUTS: i64 = 8;
const HIDDEN: i64 = 32;
const STEPS: usize = 25;
const LEARNING_RATE: f64 = 1e-2;

/// Serialises self-tests: each reseeds libtorch's process-wide generator, and two running at
/// once would interleave their draws.
static SEEDED: Mutex<()> = Mutex::new(());

/// The outcome of a successful [`self_test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelfTestReport {
    /// The device the test ran on, e.g. `Cpu` or `Cuda(0)`.
    pub device: String,
    /// Trainable parameters of the model.
    pub parameters: i64,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Loss before the first step.
    pub initial_loss: f64,
    /// Loss after the last step.
    pub final_loss: f64,
    /// L2 norm of the gradient of all parameters at the first step.
    pub initial_grad_norm: f64,
    /// Wall time of the whole test, in milliseconds.
    pub elapsed_ms: f64,
}

/// Trains a 2-layer MLP on a fixed-seed synthetic regression (targets from a random
/// teacher) with AdamW for a few steps on `device`.
///
/// Checks that the forward pass gives a finite loss, that backward fills finite, non-zero
/// gradients for every parameter, and that the loss is finite at every step and lower at the
/// end than at the start. Reseeds libtorch's global generator; the result is deterministic
/// unless other threads draw random numbers at the same time.
pub fn self_test(device: Device) -> Result<SelfTestReport, Error> {
    check_device(device)?;
    let _seeded = SEEDED.lock().unwrap_or_else(PoisonError::into_inner);
    // tch's optimizer and a few helpers panic on libtorch errors instead of returning them.
    match catch_unwind(AssertUnwindSafe(|| run(device))) {
        Ok(result) => result,
        Err(payload) => Err(Error::Panic(crate::error::panic_message(payload.as_ref()))),
    }
}

fn run(device: Device) -> Result<SelfTestReport, Error> {
    let start = Instant::now();
    tch::manual_seed(SEED);

    // Data on the CPU generator so that it is the same whatever the device.
    let x = Tensor::f_randn([SAMPLES, INPUTS], (Kind::Float, Device::Cpu))?;
    let teacher = Tensor::f_randn([INPUTS, 1], (Kind::Float, Device::Cpu))?;
    let y = x.f_matmul(&teacher)?.f_tanh()?;
    let (x, y) = (x.f_to_device(device)?, y.f_to_device(device)?);

    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let w1 = root.f_kaiming_uniform("w1", &[HIDDEN, INPUTS])?;
    let b1 = root.f_var("b1", &[HIDDEN], Init::Const(0.0))?;
    let w2 = root.f_kaiming_uniform("w2", &[1, HIDDEN])?;
    let b2 = root.f_var("b2", &[1], Init::Const(0.0))?;
    let params = [&w1, &b1, &w2, &b2];
    let parameters = params.iter().map(|p| p.numel()).sum::<usize>();
    let forward = |x: &Tensor| -> Result<Tensor, Error> {
        Ok(x.f_linear(&w1, Some(&b1))?
            .f_relu()?
            .f_linear(&w2, Some(&b2))?)
    };
    let loss_of = |x: &Tensor, y: &Tensor| -> Result<Tensor, Error> {
        Ok(forward(x)?.f_mse_loss(y, Reduction::Mean)?)
    };

    let mut opt = nn::adamw(0.9, 0.999, 0.0).build(&vs, LEARNING_RATE)?;
    let mut initial_loss = f64::NAN;
    let mut initial_grad_norm = f64::NAN;
    for step in 0..STEPS {
        opt.zero_grad();
        let loss = loss_of(&x, &y)?;
        let value = finite(loss.f_double_value(&[])?, "loss", step)?;
        loss.f_backward()?;
        if step == 0 {
            initial_loss = value;
            initial_grad_norm = grad_norm(&params)?;
        }
        opt.step();
    }
    let final_loss = tch::no_grad(|| -> Result<f64, Error> {
        finite(loss_of(&x, &y)?.f_double_value(&[])?, "loss", STEPS)
    })?;
    if final_loss >= initial_loss {
        return Err(Error::SelfTest(format!(
            "loss did not decrease in {STEPS} steps: {initial_loss} -> {final_loss}"
        )));
    }
    Ok(SelfTestReport {
        device: format!("{device:?}"),
        parameters: i64::try_from(parameters).unwrap_or(i64::MAX),
        steps: STEPS,
        initial_loss,
        final_loss,
        initial_grad_norm,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// L2 norm over the gradients of `params`; every gradient must exist, be finite and not all zero.
fn grad_norm(params: &[&Tensor]) -> Result<f64, Error> {
    let mut sum_sq = 0.0;
    for (i, p) in params.iter().enumerate() {
        let grad = p.f_grad()?;
        if !grad.defined() {
            return Err(Error::SelfTest(format!(
                "parameter {i} has no gradient after backward"
            )));
        }
        let sq = grad.f_square()?.f_sum(Kind::Double)?.f_double_value(&[])?;
        sum_sq += finite(sq, "squared gradient norm", 0)?;
    }
    if sum_sq == 0.0 {
        return Err(Error::SelfTest(
            "all gradients are zero after backward".to_owned(),
        ));
    }
    Ok(sum_sq.sqrt())
}

fn finite(value: f64, what: &str, step: usize) -> Result<f64, Error> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::SelfTest(format!("{what} is {value} at step {step}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_passes_on_cpu() {
        let report = self_test(Device::Cpu).unwrap();
        assert_eq!(report.device, "Cpu");
        assert_eq!(report.steps, STEPS);
        assert_eq!(report.parameters, HIDDEN * INPUTS + HIDDEN + HIDDEN + 1);
        assert!(report.final_loss < 0.5 * report.initial_loss, "{report:?}");
        assert!(report.initial_grad_norm > 0.0);
    }

    #[test]
    fn self_test_is_deterministic_on_cpu() {
        let a = self_test(Device::Cpu).unwrap();
        let b = self_test(Device::Cpu).unwrap();
        assert_eq!(a.initial_loss, b.initial_loss);
        assert_eq!(a.final_loss, b.final_loss);
    }
}
