//! Which Burn backend and float type the model commands compute with. The CPU build has burn-ndarray
//! in f32; the `cuda` build has burn-cuda in f32, bf16 or f16.

use clap::{Args, ValueEnum};

/// The float type of weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    #[default]
    F32,
    /// bfloat16 (CUDA build only): norms and attention softmax still reduce in f32.
    Bf16,
    /// float16 (CUDA build only): as bf16.
    F16,
}

#[derive(Args, Clone, Copy, Debug)]
pub struct BackendArgs {
    /// Float type to compute in; bf16 and f16 need the CUDA build (`--features cuda`).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// Evaluates `$body` with the type alias `$backend` naming the backend for `$dtype`; a dtype the
/// build lacks is a usage error (exit 2).
macro_rules! with_backend {
    ($dtype:expr, $backend:ident => $body:expr) => {
        match $dtype {
            #[cfg(not(feature = "cuda"))]
            $crate::backend::Dtype::F32 => {
                type $backend = burn::backend::NdArray<f32>;
                $body
            }
            #[cfg(not(feature = "cuda"))]
            other @ ($crate::backend::Dtype::Bf16 | $crate::backend::Dtype::F16) => {
                eprintln!(
                    "error: --dtype {} needs the CUDA build of temper (cargo build --features cuda)",
                    clap::ValueEnum::to_possible_value(&other)
                        .map_or_else(String::new, |value| value.get_name().to_string())
                );
                $crate::Outcome::Failure
            }
            #[cfg(feature = "cuda")]
            $crate::backend::Dtype::F32 => {
                type $backend = burn::backend::Cuda<f32, i32>;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::Dtype::Bf16 => {
                type $backend = burn::backend::Cuda<burn::tensor::bf16, i32>;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::Dtype::F16 => {
                type $backend = burn::backend::Cuda<burn::tensor::f16, i32>;
                $body
            }
        }
    };
}
pub(crate) use with_backend;
