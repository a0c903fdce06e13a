//! Named scalar metrics reported beside each loss, with TRL's names (`rewards/chosen`, ...).
//!
//! Values stay on the device as detached `[1]` tensors until a trainer logs them; `to_f64` reads
//! them all back in one transfer.

use burn::tensor::{Tensor, backend::Backend};

/// Metrics in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct Metrics<B: Backend> {
    entries: Vec<(&'static str, Tensor<B, 1>)>,
}

impl<B: Backend> Metrics<B> {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds `name`; the value is detached and reduced to its mean, so any shape may be passed.
    pub fn push(&mut self, name: &'static str, value: Tensor<B, 1>) {
        self.entries.push((name, value.detach().mean()));
    }

    /// The value of `name`, if reported.
    pub fn get(&self, name: &str) -> Option<&Tensor<B, 1>> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|(n, _)| *n)
    }

    /// Appends another set (e.g. token statistics beside a loss's own metrics).
    pub fn extend(&mut self, other: Metrics<B>) {
        self.entries.extend(other.entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every metric as `f64`, read from the device in one transfer.
    pub fn to_f64(&self) -> Vec<(&'static str, f64)> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let values = Tensor::cat(self.entries.iter().map(|(_, v)| v.clone()).collect(), 0);
        let data = values.into_data().convert::<f64>();
        let numbers = data.as_slice::<f64>().unwrap_or(&[]).to_vec();
        self.names().zip(numbers).collect()
    }
}

/// A loss with the metrics computed beside it.
#[derive(Clone, Debug)]
pub struct LossOutput<B: Backend> {
    /// The scalar to differentiate, shape `[1]`.
    pub loss: Tensor<B, 1>,
    pub metrics: Metrics<B>,
}
