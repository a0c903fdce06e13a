//! Padded batches and the order examples are batched in.
//!
//! Batches are right-padded to their longest row. Preference batches hold `2B` rows: the `B`
//! chosen sequences, then the `B` rejected ones, as TRL concatenates them for one forward pass.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::packing::PackedSequence;
use crate::tokenize::{TokenizedPair, TokenizedSequence};

/// A padded batch, every field row-major `[rows, seq_len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub rows: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u8>,
    /// 1 for trained tokens.
    pub loss_mask: Vec<u8>,
    /// Positions restart at 0 for every example, also inside packed rows.
    pub position_ids: Vec<u32>,
    /// Which example of its row a token belongs to (1, 2, ...; 0 for padding). Tokens attend
    /// only within their own segment, so packed examples never see each other.
    pub segment_ids: Vec<u32>,
}

/// One row before padding.
struct Row<'a> {
    ids: &'a [u32],
    loss: Box<dyn Iterator<Item = bool> + 'a>,
    positions: Box<dyn Iterator<Item = u32> + 'a>,
    segments: Box<dyn Iterator<Item = u32> + 'a>,
}

fn single_segment<'a>(
    len: usize,
) -> (
    Box<dyn Iterator<Item = u32> + 'a>,
    Box<dyn Iterator<Item = u32> + 'a>,
) {
    (
        Box::new(0..len as u32),
        Box::new(std::iter::repeat_n(1, len)),
    )
}

fn pad(rows: Vec<Row<'_>>, pad_id: u32) -> Batch {
    let seq_len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let count = rows.len();
    let mut batch = Batch {
        rows: count,
        seq_len,
        input_ids: Vec::with_capacity(count * seq_len),
        attention_mask: Vec::with_capacity(count * seq_len),
        loss_mask: Vec::with_capacity(count * seq_len),
        position_ids: Vec::with_capacity(count * seq_len),
        segment_ids: Vec::with_capacity(count * seq_len),
    };
    for row in rows {
        let padding = seq_len - row.ids.len();
        batch.input_ids.extend_from_slice(row.ids);
        batch.input_ids.extend(std::iter::repeat_n(pad_id, padding));
        batch
            .attention_mask
            .extend(std::iter::repeat_n(1, row.ids.len()));
        batch.attention_mask.extend(std::iter::repeat_n(0, padding));
        batch.loss_mask.extend(row.loss.map(u8::from));
        batch.loss_mask.extend(std::iter::repeat_n(0, padding));
        batch.position_ids.extend(row.positions);
        batch.position_ids.extend(std::iter::repeat_n(0, padding));
        batch.segment_ids.extend(row.segments);
        batch.segment_ids.extend(std::iter::repeat_n(0, padding));
    }
    batch
}

/// SFT sequences, one per row.
pub fn collate_sequences(sequences: &[&TokenizedSequence], pad_id: u32) -> Batch {
    let rows = sequences
        .iter()
        .map(|s| {
            let (positions, segments) = single_segment(s.input_ids.len());
            Row {
                ids: &s.input_ids,
                loss: Box::new(s.loss_mask.iter().copied()),
                positions,
                segments,
            }
        })
        .collect();
    pad(rows, pad_id)
}

/// Preference pairs as `2B` rows: prompt + chosen for each pair, then prompt + rejected; the
/// loss mask covers the answers.
pub fn collate_pairs(pairs: &[&TokenizedPair], pad_id: u32) -> Batch {
    let joined: Vec<Vec<u32>> = [true, false]
        .iter()
        .flat_map(|&chosen| {
            pairs.iter().map(move |p| {
                let answer = if chosen {
                    &p.chosen_ids
                } else {
                    &p.rejected_ids
                };
                p.prompt_ids.iter().chain(answer).copied().collect()
            })
        })
        .collect();
    let prompt_lens: Vec<usize> = [0, 1]
        .iter()
        .flat_map(|_| pairs.iter().map(|p| p.prompt_ids.len()))
        .collect();
    let rows = joined
        .iter()
        .zip(prompt_lens)
        .map(|(ids, prompt_len)| {
            let (positions, segments) = single_segment(ids.len());
            Row {
                ids,
                loss: Box::new((0..ids.len()).map(move |i| i >= prompt_len)),
                positions,
                segments,
            }
        })
        .collect();
    pad(rows, pad_id)
}

/// Packed rows (see [`crate::packing`]).
pub fn collate_packed(rows: &[&PackedSequence], pad_id: u32) -> Batch {
    let rows = rows
        .iter()
        .map(|r| Row {
            ids: &r.input_ids,
            loss: Box::new(r.loss_mask.iter().copied()),
            positions: Box::new(r.position_ids.iter().copied()),
            segments: Box::new(r.segment_ids()),
        })
        .collect();
    pad(rows, pad_id)
}

/// The order examples are batched in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchOrder {
    /// As in the file.
    Sequential,
    /// A seeded shuffle, new for every epoch.
    #[default]
    Shuffled,
    /// Shuffled, then sorted by length within groups of 50 batches so that batches hold
    /// similar lengths (less padding), as transformers' `LengthGroupedSampler` does; the
    /// batch holding the longest example comes first, so memory limits show at once.
    GroupedByLength,
}

/// Splits example indices into batches. `lengths[i]` is example `i`'s length in tokens. The
/// same seed and epoch always give the same batches.
pub fn batch_indices(
    lengths: &[usize],
    batch_size: usize,
    order: BatchOrder,
    seed: u64,
    epoch: u64,
    drop_last: bool,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut indices: Vec<usize> = (0..lengths.len()).collect();
    if order != BatchOrder::Sequential {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        indices.shuffle(&mut rng);
    }
    if order == BatchOrder::GroupedByLength {
        for group in indices.chunks_mut(batch_size * 50) {
            group.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
    }
    let mut batches: Vec<Vec<usize>> = indices.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if drop_last && batches.last().is_some_and(|b| b.len() < batch_size) {
        batches.pop();
    }
    if order == BatchOrder::GroupedByLength
        && let Some(longest) = (0..batches.len()).max_by_key(|&b| {
            (
                batches[b].iter().map(|&i| lengths[i]).max(),
                std::cmp::Reverse(b),
            )
        })
    {
        batches.swap(0, longest);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_chosen_rows_then_rejected_rows() {
        let pair = TokenizedPair {
            prompt_ids: vec![1, 2],
            chosen_ids: vec![3],
            rejected_ids: vec![4, 5],
        };
        let batch = collate_pairs(&[&pair], 0);
        assert_eq!((batch.rows, batch.seq_len), (2, 4));
        assert_eq!(batch.input_ids, vec![1, 2, 3, 0, 1, 2, 4, 5]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 0, 1, 1, 1, 1]);
        assert_eq!(batch.loss_mask, vec![0, 0, 1, 0, 0, 0, 1, 1]);
        assert_eq!(batch.position_ids, vec![0, 1, 2, 0, 0, 1, 2, 3]);
    }

    #[test]
    fn batches_cover_every_index_once_and_are_seeded() {
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 91).collect();
        for order in [
            BatchOrder::Sequential,
            BatchOrder::Shuffled,
            BatchOrder::GroupedByLength,
        ] {
            let batches = batch_indices(&lengths, 8, order, 7, 0, false);
            let mut all: Vec<usize> = batches.concat();
            all.sort();
            assert_eq!(all, (0..103).collect::<Vec<_>>());
            assert_eq!(batches, batch_indices(&lengths, 8, order, 7, 0, false));
        }
        assert_ne!(
            batch_indices(&lengths, 8, BatchOrder::Shuffled, 7, 0, false),
            batch_indices(&lengths, 8, BatchOrder::Shuffled, 7, 1, false)
        );
        assert_eq!(
            batch_indices(&lengths, 8, BatchOrder::Shuffled, 7, 0, true).len(),
            12
        );
    }

    #[test]
    fn length_grouping_puts_the_longest_batch_first() {
        let lengths: Vec<usize> = (0..400).map(|i| (i * 7919) % 1000).collect();
        let batches = batch_indices(&lengths, 4, BatchOrder::GroupedByLength, 1, 0, false);
        let longest = *lengths.iter().max().unwrap();
        assert!(batches[0].iter().any(|&i| lengths[i] == longest));
    }
}
