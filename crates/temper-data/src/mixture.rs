//! Dataset mixtures as open-instruct's `dataset_mixer_list` takes a file: a number of examples,
//! as whole passes over the file first, then a seeded sample without replacement for the rest.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The indices of `target` examples from a file of `available`: every index `target /
/// available` times in order, then `target % available` distinct ones drawn with `seed`.
/// open-instruct draws that rest with numpy's generator, so the counts agree and the drawn
/// examples differ.
pub fn mixture_indices(available: usize, target: usize, seed: u64) -> Vec<usize> {
    if available == 0 {
        return Vec::new();
    }
    let (repeats, rest) = (target / available, target % available);
    let mut indices = Vec::with_capacity(target);
    for _ in 0..repeats {
        indices.extend(0..available);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    indices.extend(rand::seq::index::sample(&mut rng, available, rest).iter());
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_then_a_seeded_sample_without_replacement() {
        assert_eq!(mixture_indices(3, 3, 1), vec![0, 1, 2]);
        let upsampled = mixture_indices(3, 7, 1);
        assert_eq!(&upsampled[..6], &[0, 1, 2, 0, 1, 2]);
        assert!(upsampled[6] < 3);
        let part = mixture_indices(100, 10, 5);
        let mut distinct = part.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 10);
        assert_eq!(part, mixture_indices(100, 10, 5), "seeded");
        assert_ne!(part, mixture_indices(100, 10, 6));
        assert!(mixture_indices(0, 5, 1).is_empty());
    }
}
