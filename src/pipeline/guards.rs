//! Checks for the ways small models fail at translation, and cleanup of harmless noise.
//!
//! Each check names a [`Warning`]; the translator retries once with a stricter prompt
//! when any fires, and records what still fails in the paragraph's `warnings`.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::generate::StopReason;
use crate::text::script::{arabic_letter_ratio, has_arabic_letters, latin_digits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Warning {
    /// The model looped; the loop was cut.
    Repetition,
    /// The output still held Urdu (Arabic-script) letters.
    UntranslatedScript,
    /// The output was empty.
    Empty,
    /// Far shorter than the source warrants: content is probably missing.
    TooShort,
    /// Far longer than the source warrants, or cut by the token budget.
    TooLong,
    /// The reply commented on the text instead of translating it.
    Commentary,
    /// The reply copied the example or the previous chunk's translation.
    CopiedContext,
    /// The translation holds a number that the source does not.
    InventedNumber,
    /// Residual Urdu letters were romanized so the translation stays English.
    Romanized,
    /// Nothing usable came back: the paragraph holds a romanization of the source.
    Fallback,
    /// A bullet holds a number that is not in the article.
    UngroundedNumber,
    /// The model gave too few bullets; lead sentences of the translation fill in.
    ExtractiveFill,
}

impl Warning {
    /// Whether a retry could help (the last two are outcomes, not failures).
    pub fn retryable(self) -> bool {
        !matches!(
            self,
            Warning::Romanized
                | Warning::Fallback
                | Warning::UngroundedNumber
                | Warning::ExtractiveFill
        )
    }
}

/// Labels small models put before a translation ("The English translation is:").
fn labels() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)^\s*(?:",
            r"here(?:'s| is| are) (?:the |an? )?(?:english )?translation[^:\n]*:",
            r"|(?:the |this )?(?:[a-z]+ )?translation(?: of (?:the|this) (?:urdu )?(?:text|sentence|passage))?(?: (?:is|reads|would be))?\s*:",
            r"|(?:the |this )?urdu (?:text|sentence|passage) (?:translates|is translated|can be translated) (?:in)?to english(?: as)?\s*:",
            r"|(?:this |it )?translates to\s*:",
            r"|(?:in )?english(?: translation)?\s*:",
            r"|answer\s*:|output\s*:",
            r")\s*"
        ))
        .unwrap()
    })
}

fn commentary() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)^\s*(?:sure\b|certainly\b|of course\b|i(?:'m| am) sorry|i can(?:not|'t)|as an ai\b",
            r"|the (?:given |following |above )?(?:urdu |original )?(?:text|passage|article|sentence|paragraph)\b",
            r"|this (?:text|passage|article|sentence|paragraph)\b|it seems\b|note:)",
            r"|\b(?:urdu (?:text|sentence|passage)|translated (?:from|into) english|in urdu)\b",
            // An echo of the prompt's own labels.
            r"|\b(?:urdu\s*:|english translation\b|translate (?:this|the following|into english))"
        ))
        .unwrap()
    })
}

/// Removes labels ("Translation:"), wrapping quotes, Urdu digits and punctuation, and
/// extra whitespace. Never removes content.
pub fn clean(output: &str) -> String {
    let mut s = labels().replace(output.trim(), "").into_owned();
    s = latin_digits(&s);
    let t = s.trim();
    // Wrapping quotes, also when the model stopped before the closing one.
    let unquoted = match t.strip_prefix(['"', '“']) {
        Some(inner) => {
            let inner = inner.strip_suffix(['"', '”']).unwrap_or(inner);
            if inner.contains(['"', '“', '”']) {
                t
            } else {
                inner
            }
        }
        None => t,
    };
    unquoted.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(s: &str) -> std::collections::HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Jaccard overlap of the word sets of two texts (0 when both are empty).
pub fn overlap(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    let inter = a.intersection(&b).count() as f64;
    let union = a.union(&b).count() as f64;
    if union == 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Whether `output` repeats the instructions it was given.
pub fn echoes_instructions(output: &str, instructions: &[&str]) -> bool {
    instructions.iter().any(|i| overlap(output, i) > 0.4)
}

/// Whether `output` is a copy of the context translation shown to the model, for a
/// source that is not a copy of the context source.
pub fn copied_context(source: &str, output: &str, context: Option<(&str, &str)>) -> bool {
    match context {
        Some((ctx_src, ctx_out)) => {
            overlap(output, ctx_out) > 0.6 && overlap(source, ctx_src) < 0.6
        }
        None => false,
    }
}

/// Sentences of at least 4 words that occur 3 or more times.
fn repeated_sentences(s: &str) -> bool {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for sent in s.split(['.', '!', '?', ';', '\n']) {
        let key = sent.trim().to_lowercase();
        if key.split_whitespace().count() >= 4 {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.values().any(|&c| c >= 3)
}

/// The problems with `output` as a translation of `source`.
pub fn check(source: &str, output: &str, stop: &StopReason) -> Vec<Warning> {
    let mut w = Vec::new();
    let src_chars = source.chars().filter(|c| !c.is_whitespace()).count();
    let out_chars = output.chars().filter(|c| !c.is_whitespace()).count();
    if output.trim().is_empty() {
        w.push(Warning::Empty);
        return w;
    }
    if *stop == StopReason::Loop || repeated_sentences(output) {
        w.push(Warning::Repetition);
    }
    if has_arabic_letters(output) || arabic_letter_ratio(output) > 0.0 {
        w.push(Warning::UntranslatedScript);
    }
    // English runs about 0.9–1.4 letters per Urdu letter; allow a wide band.
    if src_chars >= 20 && (out_chars as f64) < 0.3 * src_chars as f64 {
        w.push(Warning::TooShort);
    }
    if *stop == StopReason::MaxTokens || (out_chars as f64) > 3.5 * src_chars as f64 + 40.0 {
        w.push(Warning::TooLong);
    }
    if commentary().is_match(output) && !source.contains("اردو") {
        w.push(Warning::Commentary);
    }
    if !ungrounded_numbers(output, &latin_digits(source)).is_empty() {
        w.push(Warning::InventedNumber);
    }
    w
}

fn numbers() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"\d[\d,]*(?:\.\d+)?").unwrap())
}

/// Numbers in `text` (digits only, separators dropped) that `grounding` does not
/// support. A number is supported when a grounding number is a prefix of its digits,
/// so "14 ہزار" (14 thousand) supports "14,000" and "3.5" supports "3.5".
pub fn ungrounded_numbers(text: &str, grounding: &str) -> Vec<String> {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let known: Vec<String> = numbers()
        .find_iter(grounding)
        .map(|m| digits(m.as_str()))
        .collect();
    numbers()
        .find_iter(text)
        .map(|m| digits(m.as_str()))
        .filter(|n| !known.iter().any(|k| n.starts_with(k.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "روس کے سفارت کار اگلے ماہ امریکا کے ساتھ مذاکرات کریں گے۔";

    #[test]
    fn clean_strips_the_labels_small_models_write() {
        for (raw, want) in [
            (
                "The translation is: \"Russia will talk.\"",
                "Russia will talk.",
            ),
            (
                "The English translation is: \"Russia will talk.",
                "Russia will talk.",
            ),
            (
                "The Urdu text translates to English as: Russia will talk.",
                "Russia will talk.",
            ),
            ("The Urdu text translates to English as:", ""),
            ("In English: Russia will talk.", "Russia will talk."),
            (
                "The Portuguese translation is: Russia will talk.",
                "Russia will talk.",
            ),
        ] {
            assert_eq!(clean(raw), want, "{raw}");
        }
        assert!(check(
            SRC,
            "The Urdu text is already in English.",
            &StopReason::Eos
        )
        .contains(&Warning::Commentary));
    }

    #[test]
    fn instruction_echo_is_caught() {
        let sys = "Reply with the English translation only: no notes, no explanations, no Urdu script, and never repeat a sentence. Keep every name, number and date exactly.";
        assert!(echoes_instructions("No notes, no explanations, no Urdu script, and never repeat a sentence. Keep every name, number and date exactly.", &[sys]));
        assert!(!echoes_instructions(
            "Russian diplomats will hold talks next month.",
            &[sys]
        ));
    }

    #[test]
    fn clean_strips_labels_and_quotes() {
        assert_eq!(
            clean("Translation: \"Russia will talk.\""),
            "Russia will talk."
        );
        assert_eq!(
            clean("Here is the English translation:\nRussia  will\ntalk."),
            "Russia will talk."
        );
        assert_eq!(clean("In ۲۰۱۴، Russia"), "In 2014, Russia");
    }

    #[test]
    fn copying_the_context_is_caught() {
        let ctx = (
            "روس کے وزیر خارجہ نے کہا",
            "Russia's foreign minister said the talks will be held.",
        );
        assert!(copied_context(
            SRC,
            "Russia's foreign minister said the talks will be held.",
            Some(ctx)
        ));
        assert!(!copied_context(
            SRC,
            "Russian diplomats will hold talks next month.",
            Some(ctx)
        ));
        assert!(!copied_context(SRC, "anything", None));
    }

    #[test]
    fn numbers_must_come_from_the_source() {
        let src = "یوکرین میں 14 ہزار سے زائد افراد ۲۰۱۴ سے اب تک ہلاک ہوئے۔";
        let g = latin_digits(src);
        assert!(ungrounded_numbers("More than 14,000 people have died since 2014.", &g).is_empty());
        assert_eq!(
            ungrounded_numbers("Over 15,000 films since 2014.", &g),
            vec!["15000"]
        );
        assert!(check(
            src,
            "The movie industry has produced over 1,500 films since 1980.",
            &StopReason::Eos
        )
        .contains(&Warning::InventedNumber));
    }

    #[test]
    fn prompt_echo_is_commentary() {
        assert!(check(
            SRC,
            "Urdu: Rukh-e Amani English translation only:",
            &StopReason::Eos
        )
        .contains(&Warning::Commentary));
    }

    #[test]
    fn good_translation_passes() {
        let out = "Russian diplomats will hold talks with the United States next month.";
        assert!(check(SRC, out, &StopReason::Eos).is_empty());
    }

    #[test]
    fn each_failure_is_named() {
        let eos = StopReason::Eos;
        assert_eq!(check(SRC, "  ", &eos), vec![Warning::Empty]);
        assert!(check(SRC, "روس کے سفارت کار", &eos).contains(&Warning::UntranslatedScript));
        assert!(check(SRC, "Russia.", &eos).contains(&Warning::TooShort));
        let long = "Russian diplomats will hold talks. ".repeat(12);
        let w = check(SRC, &long, &eos);
        assert!(
            w.contains(&Warning::TooLong) && w.contains(&Warning::Repetition),
            "{w:?}"
        );
        assert!(check(
            SRC,
            "The text is about talks between Russia and America.",
            &eos
        )
        .contains(&Warning::Commentary));
        assert!(check(
            SRC,
            "Sure! Russian diplomats will hold talks next month.",
            &eos
        )
        .contains(&Warning::Commentary));
        assert!(check(
            SRC,
            "Russian diplomats will talk to the US.",
            &StopReason::Loop
        )
        .contains(&Warning::Repetition));
    }
}
