//! Evaluation for researchers: corpus BLEU, chrF and chrF++ equal to sacrebleu 2.6,
//! ROUGE-1/2/L equal to rouge-score (`RougeScorer(..., use_stemmer=True)`), key-fact
//! recall, and the side-by-side HTML report of several runs.
//!
//! The metrics follow the reference implementations step for step (tokenizer, n-gram
//! statistics, smoothing), and `scripts/make-eval-fixtures.py` records the packages' own
//! numbers on adversarial corpora so that the tests hold us to them (issue 11).

pub mod bleu;
pub mod chrf;
pub mod facts;
pub mod porter;
pub mod report;
pub mod rouge;
pub mod runs;
pub mod score;
mod text;

/// The scores of one run; each is `None` when its inputs were not given (no `--ref`,
/// no reference summaries, no `--facts`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Scores {
    /// sacrebleu corpus BLEU, 0–100.
    pub bleu: Option<f64>,
    /// sacrebleu chrF (character 6-grams, beta 2), 0–100.
    pub chrf: Option<f64>,
    /// sacrebleu chrF++ (chrF plus word uni- and bigrams), 0–100.
    pub chrf_pp: Option<f64>,
    /// rouge-score F-measures, averaged over segments, 0–1.
    pub rouge1: Option<f64>,
    pub rouge2: Option<f64>,
    #[serde(rename = "rougeL")]
    pub rouge_l: Option<f64>,
    /// Translation segments scored.
    pub segments: usize,
    /// Summaries scored with ROUGE.
    pub summaries: usize,
    /// Key-fact recall, when `--facts` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<facts::FactReport>,
}
