//! Which Burn backend and float type the model commands compute with. The CPU build has burn-flex
//! (the default: temper-kernels' fused kernels) and burn-ndarray, in f32; the `cuda` build adds
//! burn-cuda in f32, bf16 or f16. The backend is the training key's type
//! ([`ComputeBackend`]), so that `--backend` reads alike on every command.

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

pub use temper_train::config::ComputeBackend;

#[derive(Args, Clone, Copy, Debug)]
pub struct BackendArgs {
    /// Compute backend; cuda needs the CUDA build (`--features cuda`).
    #[arg(long, value_enum, default_value_t)]
    pub backend: ComputeBackend,
    /// Float type to compute in; bf16 and f16 need the CUDA build.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// Evaluates `$body` with the type alias `$backend` naming the backend for `$args` (a
/// [`BackendArgs`]); a backend or dtype the build lacks is a usage error (exit 2).
macro_rules! with_backend {
    ($args:expr, $backend:ident => $body:expr) => {{
        use $crate::backend::{ComputeBackend, Dtype};
        match ($args.backend, $args.dtype) {
            (ComputeBackend::Flex, Dtype::F32) => {
                type $backend = burn::backend::Flex;
                $body
            }
            (ComputeBackend::Ndarray, Dtype::F32) => {
                type $backend = burn::backend::NdArray<f32>;
                $body
            }
            #[cfg(feature = "cuda")]
            (ComputeBackend::Cuda, Dtype::F32) => {
                type $backend = burn::backend::Cuda<f32, i32>;
                $body
            }
            #[cfg(feature = "cuda")]
            (ComputeBackend::Cuda, Dtype::Bf16) => {
                type $backend = burn::backend::Cuda<burn::tensor::bf16, i32>;
                $body
            }
            #[cfg(feature = "cuda")]
            (ComputeBackend::Cuda, Dtype::F16) => {
                type $backend = burn::backend::Cuda<burn::tensor::f16, i32>;
                $body
            }
            #[cfg(not(feature = "cuda"))]
            (ComputeBackend::Cuda, _) => {
                eprintln!("error: --backend cuda needs the CUDA build of temper (cargo build --features cuda)");
                $crate::Outcome::Failure
            }
            (_, other) => {
                eprintln!(
                    "error: --dtype {} needs --backend cuda (the CUDA build of temper)",
                    clap::ValueEnum::to_possible_value(&other)
                        .map_or_else(String::new, |value| value.get_name().to_string())
                );
                $crate::Outcome::Failure
            }
        }
    }};
}
pub(crate) use with_backend;
