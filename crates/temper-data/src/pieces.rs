//! Encoding rendered chats piece by piece. `tokenizers` first splits text at its added tokens
//! and then normalises, pre-tokenises and encodes each piece between them on its own; the
//! renders of one example (prompt; prompt + chosen; prompt + rejected) share most pieces, so
//! each distinct piece is encoded once. This is exact only when the split is plain matching of
//! the added tokens' text (none normalised, stripped or single-word); otherwise whole texts
//! are encoded as usual.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::Tokenizer;

/// The added tokens of a tokenizer, when splitting at them reproduces its own first step.
pub(crate) struct AddedTokenSplitter {
    matcher: AhoCorasick,
    ids: Vec<u32>,
}

impl AddedTokenSplitter {
    pub(crate) fn new(tokenizer: &Tokenizer) -> Option<Self> {
        let added = tokenizer.get_added_tokens_decoder();
        let plain = added.values().all(|t| {
            !t.normalized && !t.lstrip && !t.rstrip && !t.single_word && !t.content.is_empty()
        });
        if !plain || added.is_empty() || tokenizer.get_encode_special_tokens() {
            return None;
        }
        let mut tokens: Vec<(u32, String)> =
            added.into_iter().map(|(id, t)| (id, t.content)).collect();
        tokens.sort();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|(_, content)| content))
            .ok()?;
        Some(AddedTokenSplitter {
            matcher,
            ids: tokens.into_iter().map(|(id, _)| id).collect(),
        })
    }

    /// Appends the ids of `text` to `out`: added tokens by id, the text between them through
    /// `encode_piece`, memoised in `memo`.
    pub(crate) fn encode_into<E>(
        &self,
        text: &str,
        memo: &mut PieceMemo,
        out: &mut Vec<u32>,
        encode_piece: impl Fn(&str) -> Result<Vec<u32>, E>,
    ) -> Result<(), E> {
        let mut start = 0;
        for found in self.matcher.find_iter(text) {
            memo.encode_piece(&text[start..found.start()], out, &encode_piece)?;
            out.push(self.ids[found.pattern().as_usize()]);
            start = found.end();
        }
        memo.encode_piece(&text[start..], out, &encode_piece)
    }
}

/// Pieces already encoded for the example at hand.
#[derive(Default)]
pub struct PieceMemo {
    pieces: HashMap<String, Vec<u32>>,
}

impl PieceMemo {
    fn encode_piece<E>(
        &mut self,
        piece: &str,
        out: &mut Vec<u32>,
        encode_piece: &impl Fn(&str) -> Result<Vec<u32>, E>,
    ) -> Result<(), E> {
        if piece.is_empty() {
            return Ok(());
        }
        if let Some(ids) = self.pieces.get(piece) {
            out.extend_from_slice(ids);
            return Ok(());
        }
        let ids = encode_piece(piece)?;
        out.extend_from_slice(&ids);
        self.pieces.insert(piece.to_string(), ids);
        Ok(())
    }
}
