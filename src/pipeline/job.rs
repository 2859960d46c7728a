//! One article through the whole data path (the batch around it is in `batch`).

use std::time::Instant;

use anyhow::Result;

use super::nmt::NmtTranslator;
use super::summarize::SummaryOut;
use super::translate::{ChunkDone, ParagraphOut, TranslateOptions};
use super::{Lm, Usage};
use crate::io::write::{ModelInfo, Timings};
use crate::text::{normalize, paragraphs, tag_paragraphs, Kind, Paragraph};

/// The paragraphs of a raw article, normalized and tagged.
pub fn prepare(raw: &str) -> Vec<Paragraph> {
    let doc = normalize(raw);
    tag_paragraphs(&doc, paragraphs(&doc))
}

/// The translations a summary is built from: body paragraphs whose translation is
/// usable, and (second) the flagged ones (commentary, copies, Urdu script), which only
/// count for the minimum and for an extractive fill. Fallbacks are never used.
pub fn summary_input(outs: &[ParagraphOut]) -> (Vec<String>, Vec<String>) {
    use super::guards::Warning::*;
    let (mut usable, mut flagged) = (Vec::new(), Vec::new());
    for p in outs
        .iter()
        .filter(|p| p.kind == Kind::Body && !p.warnings.contains(&Fallback))
    {
        let bad = p
            .warnings
            .iter()
            .any(|w| matches!(w, Commentary | CopiedContext | Empty | UntranslatedScript));
        if bad { &mut flagged } else { &mut usable }.push(p.translation.clone());
    }
    if usable.is_empty() {
        // Flagged body text is better than no summary at all.
        return (flagged, Vec::new());
    }
    (usable, flagged)
}

/// A finished article.
pub struct Processed {
    pub paragraphs: Vec<ParagraphOut>,
    pub summary: SummaryOut,
    pub timings: Timings,
}

/// The models of a run: the instruction model (summaries, and translation unless a
/// dedicated translator is loaded) and the optional translator.
pub struct Engines {
    /// Absent only when nothing needs it (`translate` with a translator).
    pub lm: Option<Lm>,
    pub nmt: Option<NmtTranslator>,
}

impl Engines {
    /// The instruction model.
    pub fn lm(&mut self) -> Result<&mut Lm> {
        self.lm
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("no instruction model was loaded"))
    }

    /// The translator as recorded in results.jsonl (`None`: the instruction model).
    pub fn translator_info(&self) -> Option<ModelInfo> {
        self.nmt.as_ref().map(|t| ModelInfo {
            name: t.name.clone(),
            sha256: t.sha256.clone(),
        })
    }

    /// Translates one text's paragraphs, reporting each piece as it is done. The
    /// translator works through windows of paragraphs, so output streams.
    pub fn translate(
        &mut self,
        paras: &[Paragraph],
        topts: &TranslateOptions,
        on_chunk: &mut dyn FnMut(ChunkDone),
    ) -> Result<(Vec<ParagraphOut>, Usage)> {
        let Some(nmt) = &self.nmt else {
            return self.lm()?.translate_paragraphs(paras, topts, on_chunk);
        };
        let mut outs = Vec::with_capacity(paras.len());
        let mut usage = Usage::default();
        for window in paras.chunks(16) {
            let r = nmt.translate_docs(&[window])?.remove(0)?;
            usage += r.usage;
            for p in r.paragraphs {
                on_chunk(ChunkDone {
                    paragraph: outs.len(),
                    last_in_paragraph: true,
                    translation: &p.translation,
                });
                outs.push(p);
            }
        }
        Ok((outs, usage))
    }
}

/// Summarises a translated article and assembles the result (no bullets when
/// `max_bullets` is 0).
pub fn finish(
    lm: &mut Lm,
    paras: &[Paragraph],
    outs: Vec<ParagraphOut>,
    mut usage: Usage,
    translate_seconds: f64,
    max_bullets: usize,
) -> Result<Processed> {
    let t1 = Instant::now();
    let (body, reserve) = summary_input(&outs);
    let source: String = paras
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let summary = if max_bullets == 0 {
        SummaryOut {
            bullets: Vec::new(),
            warnings: Vec::new(),
        }
    } else {
        let (summary, u) = lm.summarize(&body, &reserve, &source, max_bullets)?;
        usage += u;
        summary
    };
    let summarize_seconds = t1.elapsed().as_secs_f64();
    Ok(Processed {
        paragraphs: outs,
        summary,
        timings: Timings {
            seconds: translate_seconds + summarize_seconds,
            translate_seconds,
            summarize_seconds,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
        },
    })
}

pub fn non_empty(raw: &str) -> Result<Vec<Paragraph>> {
    let paras = prepare(raw);
    anyhow::ensure!(
        !paras.is_empty(),
        "the article is empty (no text after normalization)"
    );
    Ok(paras)
}

/// Translates and summarises one article. `Err` is for failures of this article only.
pub fn process(
    engines: &mut Engines,
    raw: &str,
    max_bullets: usize,
    topts: &TranslateOptions,
    on_chunk: &mut dyn FnMut(ChunkDone),
) -> Result<Processed> {
    let paras = non_empty(raw)?;
    let t0 = Instant::now();
    let (outs, usage) = engines.translate(&paras, topts, on_chunk)?;
    let secs = t0.elapsed().as_secs_f64();
    finish(engines.lm()?, &paras, outs, usage, secs, max_bullets)
}

/// An article's paragraphs, their translations, usage and share of the group's time.
pub type Pretranslated = (Vec<Paragraph>, Vec<ParagraphOut>, Usage, f64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::guards::Warning;

    fn para(t: &str, kind: Kind, warnings: Vec<Warning>) -> ParagraphOut {
        ParagraphOut {
            source: String::new(),
            translation: t.into(),
            kind,
            warnings,
        }
    }

    #[test]
    fn summaries_skip_boilerplate_and_unusable_translations() {
        let outs = vec![
            para("Russia will talk.", Kind::Body, vec![]),
            para("Read more: other story.", Kind::Boilerplate, vec![]),
            para(
                "The Urdu text is already in English.",
                Kind::Body,
                vec![Warning::Commentary],
            ),
            para("Prices rose.", Kind::Body, vec![Warning::TooShort]),
        ];
        let (usable, reserve) = summary_input(&outs);
        assert_eq!(usable, vec!["Russia will talk.", "Prices rose."]);
        assert_eq!(reserve, vec!["The Urdu text is already in English."]);
        // With nothing usable, flagged body text is better than no summary.
        let flagged = vec![
            para("Odd text.", Kind::Body, vec![Warning::Commentary]),
            para("[untranslated: x]", Kind::Body, vec![Warning::Fallback]),
        ];
        assert_eq!(
            summary_input(&flagged),
            (vec!["Odd text.".to_string()], vec![])
        );
    }
}
