//! A padded `temper-data` batch as tensors on a device.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use temper_data::TokenizedSet;
use temper_data::batch::{Batch, collate_pairs, collate_sequences};

/// A batch's model inputs: token ids, attention mask (1 for tokens, 0 for padding) and
/// position ids, each `[rows, seq]`.
pub struct ModelInputs<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2>,
    pub position_ids: Tensor<B, 2, Int>,
}

/// The model's inputs and the loss mask of one padded batch, each `[rows, seq]`.
#[derive(Clone, Debug)]
pub struct DeviceBatch<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2>,
    pub position_ids: Tensor<B, 2, Int>,
    /// 1 for the tokens trained on (answers, completions).
    pub loss_mask: Tensor<B, 2>,
    /// KTO: whether each example's completion is desirable (the batch's first half of rows);
    /// empty for other data.
    pub desirable: Vec<bool>,
}

impl<B: Backend> DeviceBatch<B> {
    pub fn new(batch: &Batch, device: &B::Device) -> Self {
        let shape = [batch.rows, batch.seq_len];
        let ints = |values: &[u32]| {
            let values: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
            Tensor::from_data(TensorData::new(values, shape), device)
        };
        let floats = |values: &[u8]| {
            let values: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
            Tensor::from_data(TensorData::new(values, shape), device)
        };
        Self {
            input_ids: ints(&batch.input_ids),
            attention_mask: floats(&batch.attention_mask),
            position_ids: ints(&batch.position_ids),
            loss_mask: floats(&batch.loss_mask),
            desirable: Vec::new(),
        }
    }

    /// What the model reads of this batch.
    pub fn inputs(&self) -> ModelInputs<B> {
        ModelInputs {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            position_ids: self.position_ids.clone(),
        }
    }

    /// The examples at `indices` as one padded batch: pairs as chosen rows then rejected rows,
    /// unpaired examples as their completions' rows then their KL completions' rows,
    /// sequences as rows. A set of prompts gives an empty batch: no offline objective trains
    /// on prompts alone (`OfflineTrainer::new` refuses them).
    pub fn collate(
        examples: &TokenizedSet,
        indices: &[usize],
        pad_id: u32,
        device: &B::Device,
    ) -> Self {
        let mut desirable = Vec::new();
        let batch = match examples {
            TokenizedSet::Pairs(pairs) => {
                let chosen: Vec<_> = indices.iter().map(|&i| &pairs[i]).collect();
                collate_pairs(&chosen, pad_id)
            }
            TokenizedSet::Unpaired(all) => {
                let rows: Vec<_> = indices.iter().map(|&i| all[i].as_pair()).collect();
                desirable = indices.iter().map(|&i| all[i].desirable).collect();
                collate_pairs(&rows.iter().collect::<Vec<_>>(), pad_id)
            }
            TokenizedSet::Sequences(sequences) => {
                let chosen: Vec<_> = indices.iter().map(|&i| &sequences[i]).collect();
                collate_sequences(&chosen, pad_id)
            }
            TokenizedSet::Prompts(_) => collate_sequences(&[], pad_id),
        };
        Self {
            desirable,
            ..Self::new(&batch, device)
        }
    }
}
