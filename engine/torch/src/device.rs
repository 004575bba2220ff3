//! Parsing device names (`cpu`, `cuda`, `cuda:N`, `auto`) into checked tch devices.

use crate::Error;
use tch::{Cuda, Device};

/// Turns a device name into a [`Device`] this process can use.
///
/// `auto` is the first CUDA device when there is one, else the CPU. A CUDA device that
/// libtorch cannot see is an error rather than a silent fall-back to the CPU.
pub fn parse_device(name: &str) -> Result<Device, Error> {
    let name = name.trim().to_ascii_lowercase();
    let device = match name.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(ordinal)) => Device::Cuda(ordinal),
            _ => return Err(Error::UnknownDevice(name)),
        },
    };
    check_device(device)?;
    Ok(device)
}

/// Fails with [`Error::CudaUnavailable`] when `device` is a CUDA device libtorch cannot see.
pub(crate) fn check_device(device: Device) -> Result<(), Error> {
    if let Device::Cuda(requested) = device {
        let available = if Cuda::is_available() {
            Cuda::device_count()
        } else {
            0
        };
        if i64::try_from(requested).map_or(true, |r| r >= available) {
            return Err(Error::CudaUnavailable {
                requested,
                available,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        assert!(matches!(parse_device("tpu"), Err(Error::UnknownDevice(_))));
        assert!(matches!(
            parse_device("cuda:x"),
            Err(Error::UnknownDevice(_))
        ));
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), Cuda::is_available());
    }

    #[test]
    fn missing_cuda_device_is_an_error() {
        let err = parse_device("cuda:4096").unwrap_err();
        assert!(
            matches!(
                err,
                Error::CudaUnavailable {
                    requested: 4096,
                    ..
                }
            ),
            "{err}"
        );
    }
}
