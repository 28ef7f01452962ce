//! Device and dtype selection shared by every command.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, cuda[:N] or metal (cuda/metal need the matching cargo feature)
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 or bf16
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    pub fn device(&self) -> Result<Device> {
        let (kind, ordinal) = match self.device.split_once(':') {
            Some((k, n)) => (k, n.parse::<usize>()?),
            None => (self.device.as_str(), 0),
        };
        Ok(match kind {
            "cpu" => Device::Cpu,
            "cuda" => Device::new_cuda(ordinal)?,
            "metal" => Device::new_metal(ordinal)?,
            other => bail!("unknown device `{other}` (cpu, cuda[:N], metal)"),
        })
    }

    pub fn dtype(&self) -> Result<DType> {
        Ok(match self.dtype.as_str() {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            other => bail!("unsupported dtype `{other}` (f32, bf16)"),
        })
    }
}
