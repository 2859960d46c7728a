//! Paragraphs and sentences.
//!
//! Paragraphs are blocks separated by blank lines. Sentences end at `۔ ؟ ! . ?` and at
//! line ends. A terminator only ends a sentence when whitespace (or the end) follows
//! it, possibly after closing quotes: that one rule keeps `3.5`, `example.com`,
//! `a.b@c.org` and wire spellings such as `جی۔سیون` (G-7) whole. `،` is a comma and
//! never ends a sentence.
//!
//! Sentences are returned as contiguous slices that include their trailing whitespace,
//! so concatenating them gives back the paragraph exactly.

use super::boilerplate::Kind;

/// A paragraph of a normalized document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    /// Byte range of `text` in the normalized document.
    pub start: usize,
    pub end: usize,
    /// The paragraph with its surrounding whitespace trimmed.
    pub text: String,
    pub kind: Kind,
}

/// Splits a normalized document into blank-line separated blocks, all tagged `Body`.
/// Boilerplate tagging (which may split a block further) is done by
/// [`super::boilerplate::tag_paragraphs`].
pub fn paragraphs(doc: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut block_start: Option<usize> = None;
    let mut block_end = 0;
    let mut pos = 0;
    for line in doc.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        if line.trim().is_empty() {
            if let Some(s) = block_start.take() {
                push_trimmed(doc, s, block_end, Kind::Body, &mut out);
            }
        } else {
            block_start.get_or_insert(line_start);
            block_end = pos;
        }
    }
    if let Some(s) = block_start {
        push_trimmed(doc, s, block_end, Kind::Body, &mut out);
    }
    out
}

/// Pushes `doc[start..end]`, trimmed, as a paragraph of `kind` (nothing if blank).
pub(crate) fn push_trimmed(
    doc: &str,
    start: usize,
    end: usize,
    kind: Kind,
    out: &mut Vec<Paragraph>,
) {
    let raw = &doc[start..end];
    let lead = raw.len() - raw.trim_start().len();
    let text = raw.trim();
    if text.is_empty() {
        return;
    }
    out.push(Paragraph {
        start: start + lead,
        end: start + lead + text.len(),
        text: text.to_string(),
        kind,
    });
}

fn is_terminator(c: char) -> bool {
    matches!(c, '۔' | '؟' | '!' | '.' | '?' | '…')
}

/// Whether the `.` ending `before` belongs to an abbreviation ("U.S.", "J.", "Mr.").
fn is_abbreviation(before: &str) -> bool {
    const TITLES: &[&str] = &[
        "Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Gen", "Lt", "Col", "Capt", "Sr", "Jr", "No", "vs",
        "etc", "Inc", "Ltd", "Co",
    ];
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    let last = word.rsplit('.').next().unwrap_or("");
    let mut chars = last.chars();
    let single_letter =
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_uppercase());
    single_letter || TITLES.contains(&last)
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '»' | '›' | '﴿')
}

/// Splits a paragraph into sentences; the slices cover `text` exactly.
pub fn sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let mut boundary = false;
        let mut j = i + 1;
        if c == '\n' {
            boundary = true;
        } else if is_terminator(c) {
            while j < chars.len() && (is_terminator(chars[j].1) || is_closer(chars[j].1)) {
                j += 1;
            }
            boundary = j == chars.len() || chars[j].1.is_whitespace();
            if boundary
                && c == '.'
                && j == i + 1
                && j < chars.len()
                && is_abbreviation(&text[start..chars[i].0])
            {
                boundary = false;
            }
        }
        if boundary {
            while j < chars.len() && chars[j].1.is_whitespace() {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |(b, _)| *b);
            out.push(&text[start..end]);
            start = end;
        }
        i = j;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_urdu_terminators_not_comma() {
        let s = sentences("پہلا جملہ، جاری ہے۔ دوسرا؟ تیسرا! چوتھا");
        assert_eq!(
            s,
            vec!["پہلا جملہ، جاری ہے۔ ", "دوسرا؟ ", "تیسرا! ", "چوتھا"]
        );
    }

    #[test]
    fn keeps_numbers_urls_emails() {
        let t = "قیمت 3.5 ڈالر اور 14,000 افراد۔ دیکھیں www.dawnnews.tv/news یا a.b@c.org پر۔";
        let s = sentences(t);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s.concat(), t);
    }

    #[test]
    fn wire_spelling_g7_is_one_word() {
        assert_eq!(sentences("جی۔سیون کا انتباہ").len(), 1);
    }

    #[test]
    fn line_ends_split() {
        assert_eq!(sentences("سطر ایک\nسطر دو"), vec!["سطر ایک\n", "سطر دو"]);
    }

    #[test]
    fn paragraphs_on_blank_lines() {
        let doc = "ایک\n\n  \nدو\nتین\n\n\nچار\n";
        let p = paragraphs(doc);
        let texts: Vec<_> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, vec!["ایک", "دو\nتین", "چار"]);
        for p in &p {
            assert_eq!(&doc[p.start..p.end], p.text);
        }
    }

    #[test]
    fn empty_input_has_no_paragraphs() {
        assert!(paragraphs("").is_empty());
        assert!(paragraphs(" \n\n\t\n").is_empty());
        assert!(sentences("").is_empty());
    }
}
