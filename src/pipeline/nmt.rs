//! Translation with a dedicated encoder-decoder model (Marian, NLLB, MADLAD).
//!
//! Each paragraph is split into sentences; a sentence longer than the model's position
//! limit (or the configured cap) is split at clause commas, then at spaces, never
//! truncated. The sentences of many documents are sorted by length and packed into
//! token-budgeted batches (little padding, one model call for many sentences), then put
//! back in their original order; paragraphs keep their boundaries.

use anyhow::Result;

use super::guards::{check, Warning};
use super::translate::{romanize_arabic_runs, ParagraphOut};
use super::Usage;
use crate::backend::seq2seq::Nmt;
use crate::generate::seq2seq::{generate, GenOptions};
use crate::generate::StopReason;
use crate::text::script::{has_arabic_letters, romanize};
use crate::text::segment::sentences;
use crate::text::{Chunker, Paragraph};

/// A loaded translation model with its decoding settings.
pub struct NmtTranslator {
    pub nmt: Nmt,
    pub name: String,
    pub sha256: String,
    pub gen: GenOptions,
    /// Most padded source tokens (rows × longest row) per batch.
    pub batch_tokens: usize,
    /// Most source tokens per sentence piece.
    pub segment_tokens: usize,
}

/// One unit of translation: a sentence, or a piece of a long one.
struct Segment {
    doc: usize,
    paragraph: usize,
    ids: Vec<u32>,
}

/// A document's translation.
pub struct DocTranslation {
    pub paragraphs: Vec<ParagraphOut>,
    pub usage: Usage,
}

impl NmtTranslator {
    /// Source tokens allowed per segment: the configured cap, within the model's limit.
    pub fn segment_budget(&self) -> usize {
        let limit = self.nmt.model.cfg.max_positions.saturating_sub(2);
        self.segment_tokens.min(limit).max(8)
    }

    /// Splits a paragraph into segments that fit the model.
    fn segments(&self, text: &str) -> Vec<String> {
        let budget = self.segment_budget();
        let tok = &self.nmt.tokenizer;
        let chunker = Chunker::new(budget, |s: &str| tok.count(s));
        let mut out = Vec::new();
        for s in sentences(text) {
            if s.trim().is_empty() {
                continue;
            }
            for c in chunker.paragraph_chunks(0, s) {
                if !c.text.trim().is_empty() {
                    out.push(c.text.trim().to_string());
                }
            }
        }
        out
    }

    /// Translates the paragraphs of several documents together. A document whose text
    /// cannot be tokenized gets its own error; the others go on.
    pub fn translate_docs(&self, docs: &[&[Paragraph]]) -> Result<Vec<Result<DocTranslation>>> {
        let mut segs: Vec<Segment> = Vec::new();
        let mut doc_err: Vec<Option<anyhow::Error>> = docs.iter().map(|_| None).collect();
        for (d, paras) in docs.iter().enumerate() {
            for (p, para) in paras.iter().enumerate() {
                for text in self.segments(&para.text) {
                    match self.nmt.tokenizer.encode(&text) {
                        Ok(ids) => segs.push(Segment {
                            doc: d,
                            paragraph: p,
                            ids,
                        }),
                        Err(e) => {
                            doc_err[d].get_or_insert(
                                e.context(format!("paragraph {}: cannot tokenize", p + 1)),
                            );
                        }
                    }
                }
            }
        }
        segs.retain(|s| doc_err[s.doc].is_none());
        let outputs = self.generate_sorted(&segs)?;
        let mut results: Vec<Result<DocTranslation>> = Vec::with_capacity(docs.len());
        for (d, paras) in docs.iter().enumerate() {
            if let Some(e) = doc_err[d].take() {
                results.push(Err(e));
                continue;
            }
            let mut texts: Vec<Vec<String>> = vec![Vec::new(); paras.len()];
            let mut cut: Vec<bool> = vec![false; paras.len()];
            let mut usage = Usage::default();
            for (s, out) in segs.iter().zip(&outputs).filter(|(s, _)| s.doc == d) {
                usage.tokens_in += s.ids.len();
                usage.tokens_out += out.len();
                if out.last() != Some(&self.gen.eos) {
                    cut[s.paragraph] = true;
                }
                texts[s.paragraph].push(self.nmt.tokenizer.decode(out)?);
            }
            let paragraphs = paras
                .iter()
                .enumerate()
                .map(|(p, para)| finish(para, texts[p].join(" "), cut[p]))
                .collect();
            results.push(Ok(DocTranslation { paragraphs, usage }));
        }
        Ok(results)
    }

    /// Generates for every segment, in length-sorted, token-budgeted batches; returns
    /// the outputs in the segments' order.
    fn generate_sorted(&self, segs: &[Segment]) -> Result<Vec<Vec<u32>>> {
        let mut order: Vec<usize> = (0..segs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(segs[i].ids.len()));
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); segs.len()];
        let mut start = 0;
        while start < order.len() {
            // Sorted longest first, so the first row sets the padded width.
            let width = segs[order[start]].ids.len().max(1);
            let rows = (self.batch_tokens / width).clamp(1, 256);
            let end = (start + rows).min(order.len());
            let batch: Vec<Vec<u32>> = order[start..end]
                .iter()
                .map(|&i| segs[i].ids.clone())
                .collect();
            let gen = GenOptions {
                forced_bos: self.nmt.forced_bos.or(self.gen.forced_bos),
                ..self.gen.clone()
            };
            let res = generate(&self.nmt.model, &batch, &gen)?;
            for (k, r) in res.into_iter().enumerate() {
                out[order[start + k]] = r;
            }
            start = end;
        }
        Ok(out)
    }
}

/// Guards and last-resort fixes for a translated paragraph, as on the LLM path.
fn finish(para: &Paragraph, text: String, cut: bool) -> ParagraphOut {
    let stop = if cut {
        StopReason::MaxTokens
    } else {
        StopReason::Eos
    };
    let mut text = text.trim().to_string();
    let mut warnings = check(&para.text, &text, &stop);
    if has_arabic_letters(&text) {
        text = romanize_arabic_runs(&text);
        warnings.push(Warning::Romanized);
    }
    if text.is_empty() {
        text = format!("[untranslated: {}]", romanize(para.text.trim()));
        warnings.push(Warning::Fallback);
    }
    ParagraphOut {
        source: para.text.clone(),
        translation: text,
        kind: para.kind,
        warnings,
    }
}
