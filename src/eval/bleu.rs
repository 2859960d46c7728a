//! Corpus BLEU as sacrebleu 2.6 computes it with its defaults (Papineni et al. 2002;
//! Post 2018): the `13a` tokenizer of mteval-v13a.pl, mixed case, one reference, n-grams
//! up to 4, brevity penalty over the corpus, and `exp` smoothing (an order with no match
//! gets precision 100 / (2^k · total) for the k-th such order).

use std::collections::HashMap;

use super::text::{py_rstrip, py_split};

pub const MAX_ORDER: usize = 4;

/// sacrebleu's `13a` tokenizer (after its `rstrip`).
pub fn tokenize_13a(line: &str) -> String {
    let mut line = py_rstrip(line)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let s: Vec<char> = format!(" {line} ").chars().collect();

    // 1: pad the punctuation and symbols of the ASCII table.
    let mut a = Vec::with_capacity(s.len() * 2);
    for &c in &s {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            a.extend([' ', c, ' ']);
        } else {
            a.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let dot = |c: char| c == '.' || c == ',';
    // 2: a period or comma after a non-digit; 3: before a non-digit; 4: a dash after a
    // digit. Each is a regex substitution over non-overlapping pairs, left to right.
    let b = pairs(&a, |x, y| !digit(x) && dot(y), |x, y| vec![x, ' ', y, ' ']);
    let c = pairs(&b, |x, y| dot(x) && !digit(y), |x, y| vec![' ', x, ' ', y]);
    let d = pairs(&c, |x, y| digit(x) && y == '-', |x, y| vec![x, ' ', y, ' ']);
    let out: String = d.into_iter().collect();
    py_split(&out).collect::<Vec<_>>().join(" ")
}

fn pairs(
    s: &[char],
    hit: impl Fn(char, char) -> bool,
    rep: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && hit(s[i], s[i + 1]) {
            out.extend(rep(s[i], s[i + 1]));
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Sufficient statistics of a corpus: lengths and per-order matches and totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub sys_len: u64,
    pub ref_len: u64,
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
}

fn ngrams(tokens: &[&str]) -> HashMap<Vec<String>, u64> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    m
}

impl Stats {
    /// Adds one hypothesis and its reference (both untokenized).
    pub fn add(&mut self, hyp: &str, reference: &str) {
        let h = tokenize_13a(hyp);
        let r = tokenize_13a(reference);
        let ht: Vec<&str> = py_split(&h).collect();
        let rt: Vec<&str> = py_split(&r).collect();
        self.sys_len += ht.len() as u64;
        self.ref_len += rt.len() as u64;
        let rn = ngrams(&rt);
        for (g, c) in ngrams(&ht) {
            let n = g.len() - 1;
            self.total[n] += c;
            if let Some(rc) = rn.get(&g) {
                self.correct[n] += c.min(*rc);
            }
        }
    }

    /// The BLEU score (0–100) with exp smoothing.
    pub fn score(&self) -> f64 {
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 {
                (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; MAX_ORDER];
        let mut smooth = 1.0;
        for (p, (&correct, &total)) in precisions
            .iter_mut()
            .zip(self.correct.iter().zip(&self.total))
        {
            if total == 0 {
                break;
            }
            if correct == 0 {
                smooth *= 2.0;
                *p = 100.0 / (smooth * total as f64);
            } else {
                *p = 100.0 * correct as f64 / total as f64;
            }
        }
        // sacrebleu floors log(0) at -9999999999.
        let logs: f64 = precisions
            .iter()
            .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
            .sum();
        bp * (logs / MAX_ORDER as f64).exp()
    }
}

/// Corpus BLEU of aligned segments.
pub fn corpus_bleu(hyps: &[&str], refs: &[&str]) -> f64 {
    assert_eq!(hyps.len(), refs.len(), "aligned segments");
    let mut s = Stats::default();
    for (h, r) in hyps.iter().zip(refs) {
        s.add(h, r);
    }
    s.score()
}

/// sacrebleu's signature for these settings.
pub const SIGNATURE: &str = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a() {
        assert_eq!(
            tokenize_13a("He said: \"14,000 died\" (in 2014-2022)."),
            "He said : \" 14,000 died \" ( in 2014 - 2022 ) ."
        );
        assert_eq!(tokenize_13a("a &amp; b, c.d 3.5"), "a & b , c . d 3.5");
    }

    #[test]
    fn perfect_and_empty() {
        let s = "The talks will open in Geneva on 10 January .";
        assert!((corpus_bleu(&[s], &[s]) - 100.0).abs() < 1e-9);
        assert_eq!(corpus_bleu(&[""], &[s]), 0.0);
    }
}
