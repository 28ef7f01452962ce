//! Device and dtype selection shared by every command.

use anyhow::Result;
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
        erosion_model::device::parse_device(&self.device)
    }

    pub fn dtype(&self) -> Result<DType> {
        erosion_model::device::parse_dtype(&self.dtype)
    }
}
