//! Token-budgeted chunking.
//!
//! [`Chunker::chunks`] is a lazy iterator over a document's paragraphs that packs whole
//! sentences into windows of at most `budget` tokens. Chunks never cross a paragraph
//! boundary, so translations stay 1:1 with source paragraphs. A sentence longer than the
//! budget is split after `،`/`؛`, then at whitespace, then (for a run with no spaces at
//! all) at character boundaries. Nothing is dropped: the chunks of a paragraph
//! concatenate to the paragraph's text, byte for byte.
//!
//! Token counts are summed per piece. Byte-level BPE almost never gives the
//! concatenation more tokens than its parts, and callers keep a margin for the rest.

use super::segment::{sentences, Paragraph};

/// One window of source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the paragraph this chunk belongs to.
    pub paragraph: usize,
    /// Position of the chunk inside its paragraph.
    pub index: usize,
    /// Whether this is the last chunk of its paragraph.
    pub last: bool,
    pub text: String,
    /// Sum of the token counts of the pieces.
    pub tokens: usize,
}

/// Packs sentences into token-budgeted chunks; `count` returns a string's token count.
pub struct Chunker<F: Fn(&str) -> usize> {
    count: F,
    budget: usize,
}

impl<F: Fn(&str) -> usize> Chunker<F> {
    /// `budget` is clamped to at least 1 token.
    pub fn new(budget: usize, count: F) -> Self {
        Self {
            count,
            budget: budget.max(1),
        }
    }

    /// Lazily chunks the paragraphs, in order.
    pub fn chunks<'a>(&'a self, paragraphs: &'a [Paragraph]) -> impl Iterator<Item = Chunk> + 'a {
        paragraphs
            .iter()
            .enumerate()
            .flat_map(move |(i, p)| self.paragraph_chunks(i, &p.text))
    }

    /// The chunks of one paragraph's text.
    pub fn paragraph_chunks(&self, paragraph: usize, text: &str) -> Vec<Chunk> {
        let mut pieces: Vec<(&str, usize)> = Vec::new();
        for s in sentences(text) {
            self.split_to_fit(s, &mut pieces);
        }
        let mut out: Vec<Chunk> = Vec::new();
        let mut cur = String::new();
        let mut cur_tokens = 0;
        for (piece, n) in pieces {
            if !cur.is_empty() && cur_tokens + n > self.budget {
                out.push(self.chunk(paragraph, out.len(), std::mem::take(&mut cur), cur_tokens));
                cur_tokens = 0;
            }
            cur.push_str(piece);
            cur_tokens += n;
        }
        if !cur.is_empty() {
            out.push(self.chunk(paragraph, out.len(), cur, cur_tokens));
        }
        if let Some(last) = out.last_mut() {
            last.last = true;
        }
        out
    }

    fn chunk(&self, paragraph: usize, index: usize, text: String, tokens: usize) -> Chunk {
        Chunk {
            paragraph,
            index,
            last: false,
            text,
            tokens,
        }
    }

    /// Pushes `s` as pieces that each fit the budget (except single characters, which
    /// cannot be split further).
    fn split_to_fit<'s>(&self, s: &'s str, out: &mut Vec<(&'s str, usize)>) {
        let n = (self.count)(s);
        if n <= self.budget {
            out.push((s, n));
            return;
        }
        let clauses = split_after(s, |c| matches!(c, '،' | '؛' | ',' | ';'));
        if clauses.len() > 1 {
            for c in clauses {
                self.split_to_fit(c, out);
            }
            return;
        }
        let words = split_after_whitespace(s);
        if words.len() > 1 {
            // Pack words greedily rather than recursing word by word, so a long
            // unpunctuated sentence becomes budget-sized pieces, not thousands.
            let mut start = 0;
            let mut end = 0;
            let mut acc = 0;
            for w in words {
                let wn = (self.count)(w);
                if end > start && acc + wn > self.budget {
                    out.push((&s[start..end], acc));
                    start = end;
                    acc = 0;
                }
                if wn > self.budget {
                    self.split_chars(&s[end..end + w.len()], out);
                    end += w.len();
                    start = end;
                    continue;
                }
                end += w.len();
                acc += wn;
            }
            if end > start {
                out.push((&s[start..end], acc));
            }
            return;
        }
        self.split_chars(s, out);
    }

    /// Last resort for a run with no spaces: cut at character boundaries.
    fn split_chars<'s>(&self, s: &'s str, out: &mut Vec<(&'s str, usize)>) {
        let mut rest = s;
        while !rest.is_empty() {
            let total = rest.chars().count();
            let mut take = total.min(self.budget.max(1));
            loop {
                let end = rest.char_indices().nth(take).map_or(rest.len(), |(b, _)| b);
                let n = (self.count)(&rest[..end]);
                if n <= self.budget || take == 1 {
                    out.push((&rest[..end], n));
                    rest = &rest[end..];
                    break;
                }
                take = (take * self.budget / n).clamp(1, take - 1);
            }
        }
    }
}

/// Splits after each char matching `is_sep`, keeping the separator and the whitespace
/// that follows it on the left piece.
fn split_after(s: &str, is_sep: impl Fn(char) -> bool) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if is_sep(c) {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                if !d.is_whitespace() {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            if end < s.len() {
                out.push(&s[start..end]);
                start = end;
            }
        }
    }
    out.push(&s[start..]);
    out
}

fn split_after_whitespace(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = false;
    for (i, c) in s.char_indices() {
        let ws = c.is_whitespace();
        if prev_ws && !ws {
            out.push(&s[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::segment::paragraphs;

    fn words(s: &str) -> usize {
        s.split_whitespace().count().max(1)
    }

    #[test]
    fn packs_whole_sentences_under_budget() {
        let c = Chunker::new(6, words);
        let ch = c.paragraph_chunks(0, "ایک دو تین۔ چار پانچ۔ چھ سات آٹھ نو۔");
        let texts: Vec<_> = ch.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["ایک دو تین۔ چار پانچ۔ ", "چھ سات آٹھ نو۔"]);
        assert!(ch.iter().all(|c| c.tokens <= 6));
        assert!(ch[1].last && !ch[0].last);
    }

    #[test]
    fn long_sentence_splits_at_comma_then_space() {
        let c = Chunker::new(3, words);
        let t = "ایک دو، تین چار پانچ چھ سات";
        let ch = c.paragraph_chunks(0, t);
        assert_eq!(ch[0].text, "ایک دو، ");
        assert!(ch.iter().all(|c| c.tokens <= 3), "{ch:?}");
        assert_eq!(ch.iter().map(|c| c.text.as_str()).collect::<String>(), t);
    }

    #[test]
    fn no_space_run_splits_at_chars() {
        let c = Chunker::new(10, |s: &str| s.chars().count());
        let t = "ب".repeat(95);
        let ch = c.paragraph_chunks(0, &t);
        assert_eq!(ch.len(), 10);
        assert_eq!(ch.iter().map(|c| c.text.as_str()).collect::<String>(), t);
    }

    #[test]
    fn chunks_stay_in_paragraphs() {
        let doc = "ایک۔ دو۔\n\nتین۔";
        let ps = paragraphs(doc);
        let c = Chunker::new(100, words);
        let ch: Vec<_> = c.chunks(&ps).collect();
        assert_eq!(ch.len(), 2);
        assert_eq!((ch[0].paragraph, ch[1].paragraph), (0, 1));
    }
}
