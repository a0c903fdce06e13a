//! SFT packing: several examples share one row of at most `max_length` tokens, placed by
//! best-fit-decreasing (as TRL's `bfd` strategy) so that no example is split. Each example
//! keeps its own position ids and its boundaries, so attention never crosses examples.

use std::collections::BTreeSet;

use crate::tokenize::TokenizedSequence;

/// One packed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedSequence {
    pub input_ids: Vec<u32>,
    pub loss_mask: Vec<bool>,
    pub position_ids: Vec<u32>,
    /// Start offset of each example in the row, then the row's length (`cu_seqlens`).
    pub boundaries: Vec<usize>,
    /// Which input example each segment holds.
    pub examples: Vec<usize>,
}

impl PackedSequence {
    /// 1, 2, ... for the tokens of the first, second, ... example of the row.
    pub fn segment_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.boundaries
            .windows(2)
            .enumerate()
            .flat_map(|(segment, bounds)| {
                std::iter::repeat_n(segment as u32 + 1, bounds[1] - bounds[0])
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packing {
    pub rows: Vec<PackedSequence>,
    /// Examples longer than `max_length`, cut to fit (their ends dropped).
    pub truncated: usize,
}

/// Packs `sequences` into rows of at most `max_length` tokens.
pub fn pack(sequences: &[TokenizedSequence], max_length: usize) -> Packing {
    let max_length = max_length.max(1);
    let mut order: Vec<usize> = (0..sequences.len())
        .filter(|&i| !sequences[i].input_ids.is_empty())
        .collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(sequences[i].input_ids.len().min(max_length)),
            i,
        )
    });
    let mut rows: Vec<PackedSequence> = Vec::new();
    // (room left, row index): the best fit is the first row with enough room.
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut truncated = 0;
    for index in order {
        let sequence = &sequences[index];
        let len = sequence.input_ids.len().min(max_length);
        if len < sequence.input_ids.len() {
            truncated += 1;
        }
        let row = match room.range((len, 0)..).next().copied() {
            Some(slot) => {
                room.remove(&slot);
                slot.1
            }
            None => {
                rows.push(PackedSequence {
                    input_ids: Vec::new(),
                    loss_mask: Vec::new(),
                    position_ids: Vec::new(),
                    boundaries: vec![0],
                    examples: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let packed = &mut rows[row];
        packed
            .input_ids
            .extend_from_slice(&sequence.input_ids[..len]);
        packed
            .loss_mask
            .extend_from_slice(&sequence.loss_mask[..len]);
        packed.position_ids.extend(0..len as u32);
        packed.boundaries.push(packed.input_ids.len());
        packed.examples.push(index);
        let left = max_length - packed.input_ids.len();
        if left > 0 {
            room.insert((left, row));
        }
    }
    Packing { rows, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(len: usize, first: u32) -> TokenizedSequence {
        TokenizedSequence {
            input_ids: (first..first + len as u32).collect(),
            loss_mask: vec![true; len],
            prompt_len: 0,
        }
    }

    #[test]
    fn best_fit_decreasing_fills_rows() {
        let sequences = vec![
            seq(6, 0),
            seq(4, 100),
            seq(3, 200),
            seq(2, 300),
            seq(5, 400),
        ];
        let packing = pack(&sequences, 8);
        let mut sizes: Vec<usize> = packing.rows.iter().map(|r| r.input_ids.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![4, 8, 8]);
        let row = packing
            .rows
            .iter()
            .find(|r| r.examples == vec![0, 3])
            .expect("6 + 2 share a row");
        assert_eq!(row.position_ids, vec![0, 1, 2, 3, 4, 5, 0, 1]);
        assert_eq!(row.boundaries, vec![0, 6, 8]);
        assert_eq!(
            row.segment_ids().collect::<Vec<_>>(),
            vec![1, 1, 1, 1, 1, 1, 2, 2]
        );
        assert_eq!(packing.truncated, 0);
    }

    #[test]
    fn over_long_examples_are_cut_and_counted() {
        let packing = pack(&[seq(10, 0)], 4);
        assert_eq!(packing.truncated, 1);
        assert_eq!(packing.rows[0].input_ids, vec![0, 1, 2, 3]);
    }
}
