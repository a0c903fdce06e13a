//! Language identification for `language:response_language` and the English checks of
//! `change_case`. IFEval calls `langdetect.detect` (a Java port of naive Bayes over character
//! n-grams); Temper uses `whatlang` (trigrams, maintained, no model download) and reports
//! langdetect's codes: ISO 639-1, with `zh-cn` for Mandarin. The two agree on the conformance
//! fixtures (ordinary paragraphs in 20 languages); on very short or mixed-language text they
//! may not, and langdetect itself is random there unless seeded (docs/verifiers.md).

use std::sync::LazyLock;

use whatlang::{Detector, Lang};

/// whatlang restricted to the languages langdetect knows: langdetect can only answer one of
/// those, and fewer candidates make detection faster.
static DETECTOR: LazyLock<Detector> = LazyLock::new(|| {
    Detector::with_allowlist(
        Lang::all()
            .iter()
            .copied()
            .filter(|&l| langdetect_code(l).len() != 3)
            .collect(),
    )
});

/// What langdetect would answer: `Some(code)`, or `None` where it raises "no features in
/// text" (nothing alphabetic), which IFEval counts as instruction followed.
pub fn detect(text: &str) -> Option<&'static str> {
    let info = DETECTOR.detect(text)?;
    Some(langdetect_code(info.lang()))
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
}
