//! Device and dtype, chosen once from user-facing strings.

use candle_core::{DType, Device};

use super::error::{EngineError, Result};

/// `cpu` or `cuda:N` (`cuda` means `cuda:0`); CUDA needs the `cuda` feature.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        EngineError::Request(format!("bad device `{s}` (expected cpu or cuda:N)"))
                    })?,
                None => {
                    return Err(EngineError::Request(format!(
                        "bad device `{s}` (expected cpu or cuda:N)"
                    )))
                }
            };
            Device::new_cuda(ordinal)
                .map_err(|e| EngineError::Request(format!("device `{s}`: {e}")))
        }
    }
}

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(EngineError::Request(format!(
            "bad dtype `{other}` (expected f32, f16 or bf16)"
        ))),
    }
}

/// Rejects combinations candle cannot run, before any weights are read.
pub fn check(device: &Device, dtype: DType) -> Result<()> {
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(EngineError::Request(
            "bf16 needs a CUDA device (candle's CPU matmul has no bf16 kernel); use f32 or f16 on the CPU".into(),
        ));
    }
    Ok(())
}
