//! ROUGE-1, ROUGE-2 and ROUGE-L (Lin 2004) as Google's rouge-score computes them with
//! `RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)`: lowercase, anything
//! but `[a-z0-9]` becomes a space, tokens longer than 3 letters are Porter-stemmed (NLTK's
//! variant, see [`super::porter`]), then n-gram overlap or the longest common subsequence.
//! Each segment gets an F-measure; a corpus figure is their plain mean.

use std::collections::HashMap;

use super::porter;

/// rouge-score's tokenizer with the stemmer on.
pub fn tokenize(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.len() > 3 {
                porter::stem(t)
            } else {
                t.to_string()
            }
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// F-measures of one prediction against one target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RougeF {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

fn fmeasure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

fn count(t: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m: HashMap<&[String], usize> = HashMap::new();
    for w in t.windows(n) {
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

fn ngram_f(target: &[String], pred: &[String], n: usize) -> f64 {
    let (tc, pc) = (count(target, n), count(pred, n));
    let inter: usize = tc
        .iter()
        .map(|(g, c)| (*c).min(pc.get(g).copied().unwrap_or(0)))
        .sum();
    let t_total: usize = tc.values().sum();
    let p_total: usize = pc.values().sum();
    let precision = inter as f64 / p_total.max(1) as f64;
    let recall = inter as f64 / t_total.max(1) as f64;
    fmeasure(precision, recall)
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE F-measures of `prediction` against `target`.
pub fn score(target: &str, prediction: &str) -> RougeF {
    let t = tokenize(target);
    let p = tokenize(prediction);
    let rouge_l = if t.is_empty() || p.is_empty() {
        0.0
    } else {
        let l = lcs_len(&t, &p) as f64;
        fmeasure(l / p.len() as f64, l / t.len() as f64)
    };
    RougeF {
        rouge1: ngram_f(&t, &p, 1),
        rouge2: ngram_f(&t, &p, 2),
        rouge_l,
    }
}

/// Mean F-measures over aligned (prediction, target) pairs.
pub fn mean(preds: &[&str], targets: &[&str]) -> RougeF {
    assert_eq!(preds.len(), targets.len(), "aligned segments");
    let mut sum = RougeF::default();
    for (p, t) in preds.iter().zip(targets) {
        let s = score(t, p);
        sum.rouge1 += s.rouge1;
        sum.rouge2 += s.rouge2;
        sum.rouge_l += s.rouge_l;
    }
    let n = preds.len().max(1) as f64;
    RougeF {
        rouge1: sum.rouge1 / n,
        rouge2: sum.rouge2 / n,
        rouge_l: sum.rouge_l / n,
    }
}

/// How the figures were made, for tables and JSON.
pub const SIGNATURE: &str = "rouge-score RougeScorer(use_stemmer=True), F-measure, mean";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_and_scores() {
        assert_eq!(
            tokenize("The Talks' 14,000 participants—ran!"),
            ["the", "talk", "14", "000", "particip", "ran"]
        );
        let s = score("the cat sat on the mat", "the cat sat on the mat");
        assert_eq!((s.rouge1, s.rouge2, s.rouge_l), (1.0, 1.0, 1.0));
        let s = score("the cat", "");
        assert_eq!((s.rouge1, s.rouge2, s.rouge_l), (0.0, 0.0, 0.0));
    }
}
