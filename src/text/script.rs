//! Script checks: is a string (still) Urdu/Arabic script, and Urdu → Latin digits.

/// True for letters of the Arabic script blocks (Urdu included). Digits and
/// punctuation are not letters.
pub fn is_arabic_letter(c: char) -> bool {
    let cp = c as u32;
    let in_block = matches!(cp,
        0x0600..=0x06FF | 0x0750..=0x077F | 0x0870..=0x089F | 0x08A0..=0x08FF
        | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF);
    in_block && c.is_alphabetic()
}

/// Any code point of the Arabic script blocks (letters, digits, marks, punctuation).
pub fn is_arabic_script(c: char) -> bool {
    let cp = c as u32;
    matches!(cp,
        0x0600..=0x06FF | 0x0750..=0x077F | 0x0870..=0x089F | 0x08A0..=0x08FF
        | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF)
}

pub fn has_arabic_letters(s: &str) -> bool {
    s.chars().any(is_arabic_letter)
}

/// Share of letters that are Arabic-script letters (0 when there are no letters).
pub fn arabic_letter_ratio(s: &str) -> f64 {
    let (mut letters, mut arabic) = (0usize, 0usize);
    for c in s.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        if is_arabic_letter(c) {
            arabic += 1;
        }
    }
    if letters == 0 {
        0.0
    } else {
        arabic as f64 / letters as f64
    }
}

/// Urdu and Arabic-Indic digits and separators to their Latin forms, for English output.
pub fn latin_digits(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{06F0}'..='\u{06F9}' => char::from_u32(c as u32 - 0x06F0 + '0' as u32).unwrap(),
            '\u{0660}'..='\u{0669}' => char::from_u32(c as u32 - 0x0660 + '0' as u32).unwrap(),
            '\u{066B}' => '.', // Arabic decimal separator
            '\u{066C}' => ',', // Arabic thousands separator
            '،' => ',',
            '۔' => '.',
            '؟' => '?',
            '؛' => ';',
            _ => c,
        })
        .collect()
}

/// Romanizes Urdu script letter by letter, for names and words a model left
/// untranslated. It is a fallback that keeps the reader informed, not a translation.
pub fn romanize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in latin_digits(s).chars() {
        let r = match c {
            'ا' | 'آ' | 'أ' | 'إ' => "a",
            'ب' => "b",
            'پ' => "p",
            'ت' | 'ط' | 'ۃ' | 'ة' => "t",
            'ٹ' => "t",
            'ث' | 'س' | 'ص' => "s",
            'ج' => "j",
            'چ' => "ch",
            'ح' | 'ہ' | 'ھ' | 'ه' | 'ۂ' => "h",
            'خ' => "kh",
            'د' | 'ڈ' => "d",
            'ذ' | 'ز' | 'ض' | 'ظ' => "z",
            'ر' | 'ڑ' => "r",
            'ژ' => "zh",
            'ش' => "sh",
            'ع' => "'",
            'غ' => "gh",
            'ف' => "f",
            'ق' => "q",
            'ک' | 'ك' => "k",
            'گ' => "g",
            'ل' => "l",
            'م' => "m",
            'ن' | 'ں' => "n",
            'و' | 'ؤ' => "o",
            'ی' | 'ي' | 'ى' | 'ئ' => "i",
            'ے' | 'ۓ' => "e",
            'ء' => "'",
            c if is_arabic_script(c) && !c.is_alphabetic() => "",
            c if is_arabic_letter(c) => "",
            c => {
                out.push(c);
                continue;
            }
        };
        out.push_str(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_urdu_letters_not_digits() {
        assert!(has_arabic_letters("Moscow روس"));
        assert!(!has_arabic_letters("in ۲۰۱۴ and 2014."));
        assert!(arabic_letter_ratio("روس ab") > 0.5);
    }

    #[test]
    fn romanizes_without_arabic_letters() {
        let r = romanize("سرگئی لاروف ۱۲");
        assert!(!has_arabic_letters(&r));
        assert_eq!(r, "srgii larof 12");
    }

    #[test]
    fn latin_digits_maps_separators() {
        assert_eq!(latin_digits("۱۴٬۰۰۰ اور ۳٫۵"), "14,000 اور 3.5");
    }
}
