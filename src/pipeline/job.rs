//! One article through the whole data path (the batch around it is in `batch`).

use std::time::Instant;

use anyhow::Result;

use super::nmt::NmtTranslator;
use super::summarize::{SumPara, SummaryOut};
use super::translate::{ChunkDone, ParagraphOut, TranslateOptions};
use super::{Lm, Usage};
use crate::io::write::{ModelInfo, Timings};
use crate::text::{normalize, paragraphs, tag_paragraphs, Kind, Paragraph};

/// The paragraphs of a raw article, normalized and tagged.
pub fn prepare(raw: &str) -> Vec<Paragraph> {
    let doc = normalize(raw);
    tag_paragraphs(&doc, paragraphs(&doc))
}

/// What the summary is built from: every paragraph with its English, its kind, and
/// whether its translation is usable. Flagged translations (commentary, copies, Urdu
/// script left, empty) are used only when nothing else is; fallbacks (a romanized
/// source) never.
pub fn summary_input(outs: &[ParagraphOut]) -> Vec<SumPara> {
    use super::guards::Warning::*;
    outs.iter()
        .enumerate()
        .filter(|(_, p)| !p.warnings.contains(&Fallback))
        .map(|(i, p)| SumPara {
            index: i,
            english: p.translation.clone(),
            source: p.source.clone(),
            kind: p.kind,
            usable: !p
                .warnings
                .iter()
                .any(|w| matches!(w, Commentary | CopiedContext | Empty | UntranslatedScript)),
        })
        .collect()
}

/// A finished article.
pub struct Processed {
    pub paragraphs: Vec<ParagraphOut>,
    pub summary: SummaryOut,
    /// Why there is no summary, when the summary stage failed (the translation is kept).
    pub summary_error: Option<String>,
    pub timings: Timings,
}

/// The models of a run: the instruction model (summaries, and translation unless a
/// dedicated translator is loaded) and the optional translator.
pub struct Engines {
    /// Absent only when nothing needs it (`translate` with a translator).
    pub lm: Option<Lm>,
    pub nmt: Option<NmtTranslator>,
    /// An instruction model that translates (`--translator translategemma-4b-it`);
    /// summaries still come from `lm`.
    pub tlm: Option<Lm>,
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
        if let Some(t) = &self.tlm {
            return Some(ModelInfo {
                name: t.name.clone(),
                sha256: t.sha256.clone(),
            });
        }
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
        if let Some(t) = &mut self.tlm {
            return t.translate_paragraphs(paras, topts, on_chunk);
        }
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
/// `max_bullets` is 0). A failing summary never costs the translation: the article is
/// kept with `summary_error` naming the cause.
pub fn finish(
    lm: &mut Lm,
    outs: Vec<ParagraphOut>,
    mut usage: Usage,
    translate_seconds: f64,
    max_bullets: usize,
) -> Processed {
    let t1 = Instant::now();
    let (summary, summary_error) = if max_bullets == 0 {
        (SummaryOut::default(), None)
    } else {
        let input = summary_input(&outs);
        match lm.summarize(&input, max_bullets) {
            Ok((s, u)) => {
                usage += u;
                let err = summary_gap(&input, &s);
                (s, err)
            }
            Err(e) => (
                SummaryOut::default(),
                Some(format!("the summary failed: {e:#}")),
            ),
        }
    };
    let summarize_seconds = t1.elapsed().as_secs_f64();
    Processed {
        paragraphs: outs,
        summary,
        summary_error,
        timings: Timings {
            seconds: translate_seconds + summarize_seconds,
            translate_seconds,
            summarize_seconds,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
        },
    }
}

/// Why a summary came out empty, if it did.
pub fn summary_gap(input: &[SumPara], s: &SummaryOut) -> Option<String> {
    if !s.bullets.is_empty() {
        return None;
    }
    let body = input
        .iter()
        .filter(|p| p.kind == Kind::Body && !p.english.trim().is_empty())
        .count();
    Some(if body == 0 {
        "no body text to summarise (every paragraph is boilerplate or untranslated)".into()
    } else if !s.dropped.is_empty() {
        format!("every bullet was dropped ({} rejected)", s.dropped.len())
    } else {
        "no sentence of the body can make a bullet".into()
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
    Ok(finish(engines.lm()?, outs, usage, secs, max_bullets))
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
        let input = summary_input(&outs);
        let usable: Vec<(usize, bool)> = input.iter().map(|p| (p.index, p.usable)).collect();
        assert_eq!(usable, vec![(0, true), (1, true), (2, false), (3, true)]);
        assert_eq!(input[1].kind, Kind::Boilerplate);
        // Fallbacks (romanized sources) never reach the summary.
        let fallback = vec![
            para("Odd text.", Kind::Body, vec![Warning::Commentary]),
            para("[untranslated: x]", Kind::Body, vec![Warning::Fallback]),
        ];
        let input = summary_input(&fallback);
        assert_eq!(input.len(), 1);
        assert_eq!(input[0].index, 0);
    }
}
