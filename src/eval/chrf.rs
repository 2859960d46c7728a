//! chrF and chrF++ as sacrebleu 2.6 computes them (Popović 2015, 2017): character
//! n-grams up to 6 with whitespace removed, plus word uni- and bigrams for chrF++, beta 2,
//! and sacrebleu's default "effective order" averaging (`eps_smoothing=False`): orders
//! that neither side has are left out of the average.
//!
//! A corpus score sums the per-segment statistics, then computes one F-score.

use std::collections::HashMap;
use std::hash::Hash;

use super::text::py_split;

pub const CHAR_ORDER: usize = 6;
pub const BETA: f64 = 2.0;

/// `[hyp, ref, match]` counts for each order (characters first, then words).
pub type Stats = Vec<[u64; 3]>;

const PUNCTS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

fn counts<K: Hash + Eq>(items: impl Iterator<Item = K>) -> HashMap<K, u64> {
    let mut m = HashMap::new();
    for k in items {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn match_stats<K: Hash + Eq>(hyp: &HashMap<K, u64>, refs: &HashMap<K, u64>) -> [u64; 3] {
    let mut m = 0;
    let mut h = 0;
    for (k, c) in hyp {
        h += c;
        if let Some(r) = refs.get(k) {
            m += (*c).min(*r);
        }
    }
    let r: u64 = refs.values().sum();
    // sacrebleu counts the hypothesis n-grams only where the reference has some.
    [if refs.is_empty() { 0 } else { h }, r, m]
}

/// Words with one leading or trailing punctuation mark split off, as chrF++ does.
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in py_split(s) {
        let mut chars = w.chars();
        let first = chars.next().expect("split gives non-empty words");
        let last = w.chars().next_back().expect("non-empty");
        if w.chars().count() == 1 {
            out.push(w);
        } else if PUNCTS.contains(last) {
            let cut = w.len() - last.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else if PUNCTS.contains(first) {
            let cut = first.len_utf8();
            out.push(&w[..cut]);
            out.push(&w[cut..]);
        } else {
            out.push(w);
        }
    }
    out
}

/// The statistics of one hypothesis against one reference.
pub fn segment_stats(hyp: &str, reference: &str, word_order: usize) -> Stats {
    let hc: Vec<char> = py_split(hyp).flat_map(str::chars).collect();
    let rc: Vec<char> = py_split(reference).flat_map(str::chars).collect();
    let mut stats = Vec::with_capacity(CHAR_ORDER + word_order);
    for n in 1..=CHAR_ORDER {
        let h = counts(hc.windows(n));
        let r = counts(rc.windows(n));
        stats.push(match_stats(&h, &r));
    }
    if word_order > 0 {
        let hw = words(hyp);
        let rw = words(reference);
        for n in 1..=word_order {
            let h = counts(hw.windows(n));
            let r = counts(rw.windows(n));
            stats.push(match_stats(&h, &r));
        }
    }
    stats
}

/// The F-score (0–100) of summed statistics.
pub fn f_score(stats: &[[u64; 3]]) -> f64 {
    let factor = BETA * BETA;
    let (mut avg_p, mut avg_r, mut eff) = (0.0, 0.0, 0usize);
    for &[h, r, m] in stats {
        if h > 0 && r > 0 {
            avg_p += m as f64 / h as f64;
            avg_r += m as f64 / r as f64;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    avg_p /= eff as f64;
    avg_r /= eff as f64;
    if avg_p + avg_r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
}

/// Corpus chrF (`word_order` 0) or chrF++ (`word_order` 2) of aligned segments.
pub fn corpus_chrf(hyps: &[&str], refs: &[&str], word_order: usize) -> f64 {
    assert_eq!(hyps.len(), refs.len(), "aligned segments");
    let mut total: Stats = vec![[0; 3]; CHAR_ORDER + word_order];
    for (h, r) in hyps.iter().zip(refs) {
        for (t, s) in total.iter_mut().zip(segment_stats(h, r, word_order)) {
            for k in 0..3 {
                t[k] += s[k];
            }
        }
    }
    f_score(&total)
}

/// Sentence-level chrF (as `CHRF().sentence_score`), 0–100.
pub fn sentence_chrf(hyp: &str, reference: &str, word_order: usize) -> f64 {
    f_score(&segment_stats(hyp, reference, word_order))
}

/// sacrebleu's signature for these settings.
pub fn signature(word_order: usize) -> String {
    format!("nrefs:1|case:mixed|eff:yes|nc:6|nw:{word_order}|space:no|version:2.6.0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_and_disjoint_is_0() {
        assert!((sentence_chrf("The talks open.", "The talks open.", 2) - 100.0).abs() < 1e-9);
        assert_eq!(sentence_chrf("abc", "xyz", 0), 0.0);
        assert_eq!(sentence_chrf("", "", 2), 0.0);
    }

    #[test]
    fn punctuation_split_like_chrf_pp() {
        assert_eq!(
            words("\"Hello, world!\" x"),
            ["\"Hello", ",", "world!", "\"", "x"]
        );
    }
}
