//! Language identification for `language:response_language` and the English checks of
//! `change_case`. IFEval calls `langdetect.detect` (a Java port of naive Bayes over character
//! n-grams); Temper uses `whatlang` (trigrams, maintained, no model download) and reports
//! langdetect's codes: ISO 639-1, with `zh-cn` for Mandarin. The two agree on the conformance
//! fixtures (ordinary paragraphs in 20 languages); on very short or mixed-language text they
//! may not, and langdetect itself is random there unless seeded (docs/verifiers.md).
//!
//! Detection is most of IFEval's time, so for the scripts that several languages share
//! (Latin, Cyrillic, Arabic, Devanagari, Hebrew) whatlang's answer is computed here, from its
//! own tables, several times faster than whatlang computes it ([`multi_script`]); the other
//! scripts go to whatlang itself.

mod multi_script;

use std::sync::LazyLock;

use whatlang::{Detector, Lang, Script};

use multi_script::ScriptModel;

/// The languages langdetect knows: it can only answer one of those, and fewer candidates make
/// detection faster.
fn langdetect_knows(lang: Lang) -> bool {
    langdetect_code(lang).len() != 3
}

/// whatlang restricted to langdetect's languages, for the scripts that [`ScriptModel`] does
/// not cover (one language each, or Mandarin and Japanese: no trigrams to score).
static DETECTOR: LazyLock<Detector> = LazyLock::new(|| {
    Detector::with_allowlist(
        Lang::all()
            .iter()
            .copied()
            .filter(|&l| langdetect_knows(l))
            .collect(),
    )
});

static LATIN: LazyLock<ScriptModel> =
    LazyLock::new(|| ScriptModel::new(Script::Latin, langdetect_knows));
static CYRILLIC: LazyLock<ScriptModel> =
    LazyLock::new(|| ScriptModel::new(Script::Cyrillic, langdetect_knows));
static ARABIC: LazyLock<ScriptModel> =
    LazyLock::new(|| ScriptModel::new(Script::Arabic, langdetect_knows));
static DEVANAGARI: LazyLock<ScriptModel> =
    LazyLock::new(|| ScriptModel::new(Script::Devanagari, langdetect_knows));
static HEBREW: LazyLock<ScriptModel> =
    LazyLock::new(|| ScriptModel::new(Script::Hebrew, langdetect_knows));

/// What langdetect would answer: `Some(code)`, or `None` where it raises "no features in
/// text" (nothing alphabetic), which IFEval counts as instruction followed.
pub fn detect(text: &str) -> Option<&'static str> {
    whatlang_detect(text).map(langdetect_code)
}

/// `DETECTOR.detect_lang(text)`, answer for answer: the text's main script decides, as in
/// whatlang, and the scripts several languages share go to their [`ScriptModel`].
fn whatlang_detect(text: &str) -> Option<Lang> {
    let model = match whatlang::detect_script(text)? {
        Script::Latin => &LATIN,
        Script::Cyrillic => &CYRILLIC,
        Script::Arabic => &ARABIC,
        Script::Devanagari => &DEVANAGARI,
        Script::Hebrew => &HEBREW,
        _ => return DETECTOR.detect_lang(text),
    };
    model.detect(text)
}

/// langdetect's code for a whatlang language; the ISO 639-3 code where langdetect has none.
fn langdetect_code(lang: Lang) -> &'static str {
    match lang {
        Lang::Afr => "af",
        Lang::Ara => "ar",
        Lang::Bul => "bg",
        Lang::Ben => "bn",
        Lang::Cat => "ca",
        Lang::Ces => "cs",
        Lang::Cym => "cy",
        Lang::Dan => "da",
        Lang::Deu => "de",
        Lang::Ell => "el",
        Lang::Eng => "en",
        Lang::Spa => "es",
        Lang::Est => "et",
        Lang::Pes => "fa",
        Lang::Fin => "fi",
        Lang::Fra => "fr",
        Lang::Guj => "gu",
        Lang::Heb => "he",
        Lang::Hin => "hi",
        Lang::Hrv => "hr",
        Lang::Hun => "hu",
        Lang::Ind => "id",
        Lang::Ita => "it",
        Lang::Jpn => "ja",
        Lang::Kan => "kn",
        Lang::Kor => "ko",
        Lang::Lit => "lt",
        Lang::Lav => "lv",
        Lang::Mkd => "mk",
        Lang::Mal => "ml",
        Lang::Mar => "mr",
        Lang::Nep => "ne",
        Lang::Nld => "nl",
        Lang::Nob => "no",
        Lang::Pan => "pa",
        Lang::Pol => "pl",
        Lang::Por => "pt",
        Lang::Ron => "ro",
        Lang::Rus => "ru",
        Lang::Slk => "sk",
        Lang::Slv => "sl",
        Lang::Swe => "sv",
        Lang::Tam => "ta",
        Lang::Tel => "te",
        Lang::Tha => "th",
        Lang::Tgl => "tl",
        Lang::Tur => "tr",
        Lang::Ukr => "uk",
        Lang::Urd => "ur",
        Lang::Vie => "vi",
        Lang::Cmn => "zh-cn",
        other => other.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_langdetect_codes() {
        assert_eq!(
            detect("This is a perfectly ordinary English sentence about the weather."),
            Some("en")
        );
        assert_eq!(
            detect("Ceci est une phrase tout à fait ordinaire sur le temps qu'il fait."),
            Some("fr")
        );
        assert_eq!(detect("12345 !!!"), None);
    }

    /// whatlang's own answer, which [`whatlang_detect`] reproduces.
    fn reference(text: &str) -> Option<Lang> {
        DETECTOR.detect_lang(text)
    }

    /// Every response of the verifier fixtures, each of its lines, and its prefixes (short
    /// texts, where scores tie most often).
    fn fixture_texts() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/verifiers");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(dir).expect("the fixtures directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            for line in std::fs::read_to_string(&path).expect("a fixture").lines() {
                let row: serde_json::Value = serde_json::from_str(line).expect("JSON rows");
                let Some(response) = row["response"].as_str() else {
                    continue;
                };
                texts.push(response.to_string());
                texts.extend(response.lines().map(str::to_string));
                let boundaries: Vec<usize> = response.char_indices().map(|(i, _)| i).collect();
                texts.extend(
                    boundaries
                        .iter()
                        .step_by(5)
                        .map(|&i| response[..i].to_string()),
                );
            }
        }
        texts
    }

    #[test]
    fn fast_detection_equals_whatlang() {
        let samples = [
            "Die Ordnung muss für immer in diesem Codebase bleiben",
            "Та нічого, все нормально. А в тебе як?",
            "Мы хотим видеть дальше, чем окна дома напротив",
            "Дуже цікаво",
            " ككل حوالي 1.6، ومعظم الناس ",
            "हिमालयी वन चिड़िया (जूथेरा सालिमअली) चिड़िया की एक प्रजाति है",
            "היסטוריה והתפתחות של האלפבית העברי",
            "Russian word любовь means love.",
            "Can you tell me where is Schönheitstraße?",
            "Façade",
            "I am begging pardon",
            "水",
            "İSTANBUL ŞEHRİ",
            "a",
            "-a-",
            // No profile trigram and letters every alphabet has: languages tie, and the order
            // of whatlang's sorts decides.
            "zzz",
            "qqq xxx",
            "kkkk wwww",
            "ЖЖЖ",
            "ثثث",
            "ऋऋऋ",
            "קקק",
        ];
        let texts = fixture_texts();
        assert!(texts.len() > 10_000, "{} texts", texts.len());
        for text in samples.iter().map(|s| s.to_string()).chain(texts) {
            assert_eq!(whatlang_detect(&text), reference(&text), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_detection_equals_whatlang_on_mixed_scripts(
            text in "[a-zA-Zàéöüßçñøåæœıİšžčćđłąę ,.!?0-9\\n'_*абвгдежзиклмнопрстуфхцчшщыьэюяєіїґёјљњ\
                      ابتثجحخدذرسشصضطظعغفقكلمنهوي ک گ ںے हिमालयीवनचड़ אבגדהוזחטיכלמנסעפצקרשת水か]{0,40}"
        ) {
            proptest::prop_assert_eq!(whatlang_detect(&text), reference(&text));
        }
    }
}
