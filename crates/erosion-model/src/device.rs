//! Devices and dtypes by name, as the CLI and study files spell them.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

/// `cpu`, `cuda`, `cuda:N` or `metal` (the GPU ones need the matching cargo feature).
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, n)) => (
            k,
            n.parse::<usize>()
                .with_context(|| format!("device `{name}`: bad ordinal"))?,
        ),
        None => (name, 0),
    };
    // candle's own error ("not compiled with cuda support") does not say what to do.
    let built = |feature: &str, on: bool| -> Result<()> {
        if !on {
            bail!(
                "device `{name}`: this erosion was built without {feature} support; rebuild it with \
                 `cargo build --release -p erosion-cli --features {feature}`"
            );
        }
        Ok(())
    };
    Ok(match kind {
        "cpu" => Device::Cpu,
        "cuda" => {
            built("cuda", cfg!(feature = "cuda"))?;
            Device::new_cuda(ordinal)?
        }
        "metal" => {
            built("metal", cfg!(feature = "metal"))?;
            Device::new_metal(ordinal)?
        }
        other => bail!("unknown device `{other}` (cpu, cuda[:N], metal)"),
    })
}

/// `f32` or `bf16`: the dtypes the transformer is tested in.
pub fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        other => bail!("unsupported dtype `{other}` (f32, bf16)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_are_explained() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("cpu, cuda[:N], metal"));
        assert!(parse_device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let err = parse_device("cuda:1").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("f16")
            .unwrap_err()
            .to_string()
            .contains("f32, bf16"));
    }
}
