//! whatlang's answer for the scripts that several languages share (Latin, Cyrillic, Arabic,
//! Devanagari, Hebrew), computed faster than whatlang computes it.
//!
//! whatlang scores such a text by its letters (alphabet scores) and by its 600 most frequent
//! character trigrams against each language's profile of 300 (trigram distances), and blends
//! the two. It finds the distances with one hash lookup per profile trigram and language,
//! about 8,400 for the Latin languages langdetect knows, which is most of IFEval's time. Here
//! an inverted index from trigram to (language, rank) turns that into one lookup per distinct
//! trigram of the text. Everything else follows whatlang 0.18's code step by step (the
//! `combined`, `alphabets` and `trigrams` modules), down to the order in which scores are built
//! and sorted, so that ties are broken as there; `fast_detection_equals_whatlang` checks the
//! answers against the crate itself. The tables are whatlang's (MIT licence: see `NOTICE`
//! there), copied to `data/whatlang/` by `fixtures/gen/whatlang_profiles.py`.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use whatlang::{Lang, Script};

/// whatlang's `MAX_TRIGRAM_DISTANCE`: a profile holds 300 trigrams, and a trigram missing
/// from the text costs 300.
const MAX_TRIGRAM_DISTANCE: u32 = 300;
/// whatlang's `MAX_TOTAL_DISTANCE`.
const MAX_TOTAL_DISTANCE: u32 = MAX_TRIGRAM_DISTANCE * MAX_TRIGRAM_DISTANCE;
/// whatlang's `TEXT_TRIGRAMS_SIZE`: the text's most frequent trigrams that count.
const TEXT_TRIGRAMS_SIZE: usize = 600;

/// One of the scripts whatlang tells languages apart in, with its tables restricted to the
/// languages `allowed` (langdetect's).
pub(super) struct ScriptModel {
    script: Script,
    /// Letter → languages, for scripts with alphabets (Latin, Cyrillic); whatlang gives every
    /// language of the other scripts the same alphabet score.
    alphabets: Option<AlphabetIndex>,
    /// The allowed languages with a trigram profile, in whatlang's profile order.
    profile_langs: Vec<Lang>,
    /// Trigram → (position in `profile_langs`, rank in that language's profile).
    profile_index: TrigramMap<Vec<(u16, u16)>>,
    allowed: fn(Lang) -> bool,
}

/// whatlang's `build_inverted_map`: the letters of all alphabets, sorted, and for each the
/// languages whose alphabet holds it (once per occurrence, as there).
struct AlphabetIndex {
    letters: Vec<char>,
    langs: Vec<Vec<Lang>>,
}

/// A trigram packed into one integer (three code points of 21 bits), ordered as whatlang's
/// `Trigram(char, char, char)` is.
type TrigramKey = u64;

fn trigram_key(c1: char, c2: char, c3: char) -> TrigramKey {
    (u64::from(c1) << 42) | (u64::from(c2) << 21) | u64::from(c3)
}

/// A hash map keyed by trigrams: a multiply-and-fold hash, because SipHash would cost more than
/// the rest of the lookup.
type TrigramMap<V> = HashMap<TrigramKey, V, BuildHasherDefault<TrigramHasher>>;

#[derive(Default)]
struct TrigramHasher(u64);

impl Hasher for TrigramHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

const TRIGRAM_PROFILES: &str = include_str!("../../../data/whatlang/trigram_profiles.txt");
const ALPHABETS: &str = include_str!("../../../data/whatlang/alphabets.txt");

/// The lines of a `data/whatlang` table for `script`: (language, the rest of the line).
fn table_rows(table: &'static str, script: Script) -> impl Iterator<Item = (Lang, &'static str)> {
    table.lines().filter_map(move |line| {
        let mut fields = line.splitn(3, ' ');
        let (name, code, rest) = (fields.next()?, fields.next()?, fields.next()?);
        (name == script.name()).then(|| (Lang::from_code(code).expect("a whatlang code"), rest))
    })
}

impl ScriptModel {
    pub(super) fn new(script: Script, allowed: fn(Lang) -> bool) -> Self {
        let mut profile_langs = Vec::new();
        let mut profile_index: TrigramMap<Vec<(u16, u16)>> = TrigramMap::default();
        for (lang, trigrams) in table_rows(TRIGRAM_PROFILES, script).filter(|&(l, _)| allowed(l)) {
            let position = profile_langs.len() as u16;
            profile_langs.push(lang);
            for (rank, trigram) in trigrams.split(' ').enumerate() {
                let chars: Vec<char> = trigram
                    .chars()
                    .map(|c| if c == '_' { ' ' } else { c })
                    .collect();
                let [c1, c2, c3] = chars[..] else {
                    panic!("a trigram of three characters: {trigram:?}")
                };
                profile_index
                    .entry(trigram_key(c1, c2, c3))
                    .or_default()
                    .push((position, rank as u16));
            }
        }
        let alphabets: Vec<(Lang, &str)> = table_rows(ALPHABETS, script).collect();
        ScriptModel {
            script,
            alphabets: (!alphabets.is_empty()).then(|| AlphabetIndex::new(&alphabets)),
            profile_langs,
            profile_index,
            allowed,
        }
    }

    /// whatlang's `combined::detect` for a text whose main script is this one: the language
    /// with the best blend of alphabet and trigram scores.
    pub(super) fn detect(&self, text: &str) -> Option<Lang> {
        let lowercase = text.to_lowercase();
        let (alphabet_count, alphabet_scores) = self.alphabet_scores(&lowercase);
        let trigram_scores = self.trigram_scores(&lowercase);

        // Languages in whatlang's order (the alphabet's, then the trigrams' others), each
        // score looked up by language (whatlang searches the lists; each lists a language once).
        let mut all_langs: Vec<Lang> = Vec::with_capacity(alphabet_scores.len());
        let mut alphabet_score = vec![0.0; Lang::all().len()];
        let mut trigram_score = vec![0.0; Lang::all().len()];
        let mut listed = vec![false; Lang::all().len()];
        for (list, score_of) in [
            (&alphabet_scores, &mut alphabet_score),
            (&trigram_scores, &mut trigram_score),
        ] {
            for &(lang, score) in list {
                score_of[lang as usize] = score;
                if !listed[lang as usize] {
                    listed[lang as usize] = true;
                    all_langs.push(lang);
                }
            }
        }
        let alphabet_weight =
            (-(alphabet_count as f64 / 300.0) + 2.0 / 3.0).clamp(1.0 / 3.0, 2.0 / 3.0);
        let trigram_weight = 1.0 - alphabet_weight;
        let mut scores: Vec<(Lang, f64)> = Vec::with_capacity(all_langs.len());
        for lang in all_langs {
            let score = alphabet_score[lang as usize] * alphabet_weight
                + trigram_score[lang as usize] * trigram_weight;
            scores.push((lang, score));
        }
        scores.sort_unstable_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Less));
        scores.first().map(|&(lang, _)| lang)
    }

    /// whatlang's `alphabets::raw_detect`: (letters counted, score per language, best first).
    fn alphabet_scores(&self, lowercase: &str) -> (usize, Vec<(Lang, f64)>) {
        let script_langs = self.script.langs();
        let Some(AlphabetIndex { letters, langs }) = &self.alphabets else {
            // whatlang's `build_mock`: every language scores 1 on a count of 1, unsorted.
            let scores = script_langs
                .iter()
                .copied()
                .filter(|&l| (self.allowed)(l))
                .map(|l| (l, 1.0))
                .collect();
            return (1, scores);
        };
        let mut letter_scores = vec![0; letters.len()];
        let mut max_raw_score = 0;
        for c in lowercase.chars() {
            if is_stop_char(c) {
                continue;
            }
            max_raw_score += 1;
            if let Ok(position) = letters.binary_search(&c) {
                letter_scores[position] += 2;
            }
        }
        let mut lang_scores = vec![0; Lang::all().len()];
        let mut common_score: usize = 0;
        for (position, letter_score) in letter_scores.into_iter().enumerate() {
            if letter_score > 0 {
                let languages = &langs[position];
                if languages.len() == script_langs.len() {
                    common_score += letter_score;
                } else {
                    for &lang in languages {
                        lang_scores[lang as usize] += letter_score;
                    }
                }
            }
        }
        let mut raw_scores: Vec<(Lang, usize)> = script_langs
            .iter()
            .filter(|&&l| (self.allowed)(l))
            .map(|&l| {
                let score = (lang_scores[l as usize] + common_score).saturating_sub(max_raw_score);
                (l, score)
            })
            .collect();
        raw_scores.sort_unstable_by_key(|(_, score)| Reverse(*score));
        let scores = raw_scores
            .iter()
            .map(|&(lang, raw_score)| (lang, raw_score as f64 / max_raw_score as f64))
            .collect();
        (max_raw_score, scores)
    }

    /// whatlang's `trigrams::raw_detect`: score per language, best first. The distance of a
    /// language sums, over its profile, how far each trigram's rank in the text is from its
    /// rank in the profile (300 when the text lacks it); the index visits only the profile
    /// trigrams the text has.
    fn trigram_scores(&self, lowercase: &str) -> Vec<(Lang, f64)> {
        let ranked = ranked_trigrams(lowercase);
        let mut found = vec![0u32; self.profile_langs.len()];
        let mut found_distance = vec![0u32; self.profile_langs.len()];
        for (text_rank, key) in ranked.iter().enumerate() {
            for &(lang, profile_rank) in self.profile_index.get(key).into_iter().flatten() {
                found[lang as usize] += 1;
                found_distance[lang as usize] +=
                    (text_rank as u32).abs_diff(u32::from(profile_rank));
            }
        }
        let count = ranked.len() as u32;
        let mut lang_distances: Vec<(Lang, u32)> = Vec::with_capacity(self.profile_langs.len());
        for (i, &lang) in self.profile_langs.iter().enumerate() {
            let mut total_dist =
                found_distance[i] + (MAX_TRIGRAM_DISTANCE - found[i]) * MAX_TRIGRAM_DISTANCE;
            if MAX_TRIGRAM_DISTANCE > count {
                let delta = MAX_TRIGRAM_DISTANCE - count;
                total_dist -= delta * MAX_TRIGRAM_DISTANCE;
            }
            lang_distances.push((lang, total_dist.clamp(0, MAX_TOTAL_DISTANCE)));
        }
        lang_distances.sort_unstable_by_key(|(_, dist)| *dist);
        let max_dist = count * MAX_TRIGRAM_DISTANCE;
        lang_distances
            .iter()
            .map(|&(lang, distance)| {
                (
                    lang,
                    max_dist.saturating_sub(distance) as f64 / max_dist as f64,
                )
            })
            .collect()
    }
}

impl AlphabetIndex {
    fn new(alphabets: &[(Lang, &str)]) -> Self {
        let mut map: HashMap<char, Vec<Lang>> = HashMap::new();
        for &(lang, alphabet) in alphabets {
            for c in alphabet.chars() {
                map.entry(c).or_default().push(lang);
            }
        }
        let mut letter_langs: Vec<(char, Vec<Lang>)> = map.into_iter().collect();
        letter_langs.sort_unstable_by_key(|(c, _)| *c);
        let (letters, langs) = letter_langs.into_iter().unzip();
        AlphabetIndex { letters, langs }
    }
}

/// whatlang's `is_stop_char`: ASCII punctuation, digits and whitespace, which carry no
/// language.
fn is_stop_char(c: char) -> bool {
    matches!(c, '\u{0000}'..='\u{0040}' | '\u{005B}'..='\u{0060}' | '\u{007B}'..='\u{007E}')
}

/// whatlang's `get_trigrams_with_positions`: the text's trigrams (stop characters read as
/// spaces, no trigram of a lone space between spaces) by falling count, ties by falling
/// trigram, the first 600.
fn ranked_trigrams(lowercase: &str) -> Vec<TrigramKey> {
    let mut keys: Vec<TrigramKey> = Vec::with_capacity(lowercase.len() + 1);
    let mut chars = lowercase
        .chars()
        .map(|c| if is_stop_char(c) { ' ' } else { c })
        .chain(Some(' '));
    let mut c1 = ' ';
    let mut c2 = chars.next().expect("a space is chained on");
    for c3 in chars {
        if !(c2 == ' ' && (c1 == ' ' || c3 == ' ')) {
            keys.push(trigram_key(c1, c2, c3));
        }
        c1 = c2;
        c2 = c3;
    }
    keys.sort_unstable();
    let mut counted: Vec<(u32, TrigramKey)> = Vec::with_capacity(keys.len());
    for key in keys {
        match counted.last_mut() {
            Some((count, last)) if *last == key => *count += 1,
            _ => counted.push((1, key)),
        }
    }
    counted.sort_unstable_by(|a, b| b.cmp(a));
    counted.truncate(TEXT_TRIGRAMS_SIZE);
    counted.into_iter().map(|(_, key)| key).collect()
}
