//! Where the native CLI trains and runs, by name (`--device`): `cpu` (burn-flex, threaded),
//! `wgpu` (the adapter wgpu prefers: Vulkan, Metal or DX12), `cuda[:N]` (a build with the
//! `cuda` feature). Every model is generic over burn's runtime [`Device`]; this only names
//! and starts one. A backend this build lacks, or that the machine cannot start, is an
//! error that says so — never a quiet fall back to the CPU.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

use crate::Error;

/// A device named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Wgpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Options(format!("device {s:?}: one of cpu, wgpu, cuda, cuda:N"));
        Ok(match s {
            "cpu" => Self::Cpu,
            "wgpu" => Self::Wgpu,
            "cuda" => Self::Cuda(0),
            _ => match s.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    Self::Cuda(n.parse().map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            },
        })
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Wgpu => f.write_str("wgpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// burn's name for this backend, as its `BURN_DEVICE` takes it: the device burn makes
    /// tensors on where a caller gives none (burn 0.22's optimizer restores its state there).
    pub fn burn_name(self) -> &'static str {
        match self {
            Self::Cpu => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda(_) => "cuda",
        }
    }

    /// Starts the device; returns it with a line that says what it is (for wgpu, the adapter
    /// and its graphics API). Call once per process: burn's wgpu runtime starts only once.
    pub fn init(self) -> Result<(Device, String), Error> {
        match self {
            Self::Cpu => Ok((crate::cpu(), "cpu (burn-flex)".into())),
            Self::Wgpu => init_wgpu(),
            Self::Cuda(n) => init_cuda(n),
        }
    }
}

#[cfg(feature = "wgpu")]
fn init_wgpu() -> Result<(Device, String), Error> {
    let (device, setup) = Device::wgpu_options()
        .init_with_setup()
        .map_err(|e| Error::Options(format!("device wgpu: no adapter could be started: {e}")))?;
    let info = setup.adapter.get_info();
    Ok((
        device,
        format!(
            "wgpu: {} ({:?}, {:?}, driver {} {})",
            info.name, info.backend, info.device_type, info.driver, info.driver_info
        ),
    ))
}

#[cfg(not(feature = "wgpu"))]
fn init_wgpu() -> Result<(Device, String), Error> {
    Err(Error::Options("device wgpu: this build has no wgpu backend (build mxq with the `wgpu` feature)".into()))
}

#[cfg(feature = "cuda")]
fn init_cuda(index: usize) -> Result<(Device, String), Error> {
    let device = Device::cuda(index);
    // burn starts CUDA lazily and panics where no driver or no such device exists: one small
    // tensor, caught, turns that into an error here instead of in the middle of a run
    let probe = std::panic::catch_unwind(|| burn::tensor::Tensor::<1>::zeros([1], &device).into_data());
    match probe {
        Ok(_) => Ok((device, format!("cuda:{index}"))),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it could not be started".into());
            Err(Error::Options(format!("device cuda:{index}: {why}")))
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn init_cuda(index: usize) -> Result<(Device, String), Error> {
    Err(Error::Options(format!(
        "device cuda:{index}: this build has no CUDA backend (build the trainer with `--features cuda`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for (text, choice) in
            [("cpu", DeviceChoice::Cpu), ("wgpu", DeviceChoice::Wgpu), ("cuda:3", DeviceChoice::Cuda(3))]
        {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
            assert_eq!(choice.to_string(), text);
        }
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        for bad in ["", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:99999999999999999999999"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(err.contains("cpu, wgpu, cuda"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_cpu_starts() {
        let (device, what) = DeviceChoice::Cpu.init().unwrap();
        assert_eq!(device, crate::cpu());
        assert!(what.starts_with("cpu"));
    }
}
