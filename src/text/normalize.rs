//! Normalization of Urdu wire copy before anything else looks at it.
//!
//! Web and wire copy mixes Arabic and Urdu code points for the same letter (Arabic yeh
//! U+064A for Urdu farsi yeh U+06CC, Arabic kaf U+0643 for keheh U+06A9, heh U+0647 for
//! heh goal U+06C1). Models and the boilerplate rules see one spelling only if we fold
//! them first. Invisible characters (BOM, zero-width joiners, bidi marks) are dropped:
//! they split tokens and words without changing what a reader sees.

use unicode_normalization::UnicodeNormalization;

/// Characters that render as nothing and carry no meaning for translation.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{FEFF}' // BOM / zero-width no-break space
            | '\u{200B}' // zero-width space
            | '\u{200C}' // zero-width non-joiner
            | '\u{200D}' // zero-width joiner
            | '\u{2060}' // word joiner
            | '\u{200E}' // left-to-right mark
            | '\u{200F}' // right-to-left mark
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{061C}' // Arabic letter mark
            | '\u{00AD}' // soft hyphen
    )
}

/// Arabic letter forms that Urdu writes with its own code points.
fn urdu_form(c: char) -> char {
    match c {
        'ي' | 'ى' => 'ی', // Arabic yeh / alef maksura → farsi yeh
        'ك' => 'ک',       // Arabic kaf → keheh
        'ه' => 'ہ',       // Arabic heh → heh goal (do-chashmi ھ is left alone)
        'ۀ' => 'ۂ',       // heh with yeh above → heh goal with hamza
        // Arabic-Indic digits → the extended (Urdu) digits.
        '\u{0660}'..='\u{0669}' => char::from_u32(c as u32 - 0x0660 + 0x06F0).unwrap_or(c),
        '\u{00A0}' | '\u{2007}' | '\u{202F}' => ' ', // no-break spaces
        _ => c,
    }
}

/// Normalizes a document: NFC, Urdu letter forms, no invisible characters, `\n` line ends.
/// Latin and Urdu digits are kept as they are.
pub fn normalize(text: &str) -> String {
    let unix = text.replace("\r\n", "\n").replace('\r', "\n");
    let folded: String = unix
        .chars()
        .filter(|c| !is_invisible(*c))
        .map(urdu_form)
        .collect();
    // NFC last: folding can create sequences (e.g. ہ + hamza) that compose.
    folded.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_arabic_letter_forms() {
        assert_eq!(normalize("كيا"), "کیا");
        assert_eq!(normalize("مدرسه"), "مدرسہ");
        assert_eq!(normalize("علي"), "علی");
    }

    #[test]
    fn strips_invisible_and_bom() {
        assert_eq!(normalize("\u{FEFF}روس\u{200C}ی\u{200F}"), "روسی");
    }

    #[test]
    fn keeps_digits() {
        assert_eq!(
            normalize("14,000 اور ۱۴۰۰۰ اور 3.5"),
            "14,000 اور ۱۴۰۰۰ اور 3.5"
        );
        assert_eq!(normalize("٢٠٢١"), "۲۰۲۱");
    }

    #[test]
    fn line_ends_and_nfc() {
        assert_eq!(normalize("a\r\nb\rc"), "a\nb\nc");
        // alef + combining madda above composes to آ
        assert_eq!(normalize("\u{0627}\u{0653}"), "\u{0622}");
    }

    #[test]
    fn idempotent() {
        let s = "\u{FEFF}كيا ه ۀ ٣\r\n";
        assert_eq!(normalize(&normalize(s)), normalize(s));
    }
}
