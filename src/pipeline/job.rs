//! One article through the whole data path, and a batch of them with resumable output.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::nmt::NmtTranslator;
use super::summarize::SummaryOut;
use super::translate::{ChunkDone, ParagraphOut, TranslateOptions};
use super::{Lm, Usage};
use crate::io::read::{articles, Article};
use crate::io::write::{markdown, write_atomic, ModelInfo, Record, ResultsFile, Status, Timings};
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

/// Summarises a translated article and assembles the result.
fn finish(
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
    let (summary, u) = lm.summarize(&body, &reserve, &source, max_bullets)?;
    usage += u;
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

fn non_empty(raw: &str) -> Result<Vec<Paragraph>> {
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

pub struct BatchConfig {
    pub inputs: Vec<String>,
    pub out: PathBuf,
    pub force: bool,
    pub max_bullets: usize,
    pub translate: TranslateOptions,
    pub progress: bool,
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// An article's paragraphs, their translations, usage and share of the group's time.
type Pretranslated = (Vec<Paragraph>, Vec<ParagraphOut>, Usage, f64);

/// Articles translated together by a dedicated translator (their sentences share
/// batches). A crash loses at most one group's work.
const NMT_GROUP: usize = 16;

/// Runs a batch. Per-article failures are recorded and counted, never fatal; an `Err`
/// means the output itself could not be written.
pub fn run_batch(engines: &mut Engines, cfg: &BatchConfig) -> Result<BatchOutcome> {
    let list: Vec<Article> = articles(&cfg.inputs)
        .map_err(|e| crate::config::config_error(e.to_string()))?
        .collect();
    let mut results = ResultsFile::open(&cfg.out)?;
    let done = if cfg.force {
        Default::default()
    } else {
        results.existing()
    };
    let bar = if cfg.progress && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(list.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} articles, {elapsed} elapsed, eta {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let lm = engines.lm()?;
    let model = ModelInfo {
        name: lm.name.clone(),
        sha256: lm.sha256.clone(),
    };
    let translator = engines.translator_info();
    let mut outcome = BatchOutcome::default();
    let mut todo: Vec<Article> = Vec::new();
    for a in list {
        let up_to_date = done.get(&a.id).is_some_and(|prev| {
            prev.status == Status::Ok
                && prev.model.sha256 == model.sha256
                && prev.translator.as_ref().map(|t| &t.sha256)
                    == translator.as_ref().map(|t| &t.sha256)
                && prev.source == a.source
        });
        if up_to_date {
            outcome.skipped += 1;
            bar.inc(1);
        } else {
            todo.push(a);
        }
    }
    let group = if engines.nmt.is_some() { NMT_GROUP } else { 1 };
    for chunk in todo.chunks(group) {
        // Dedicated translator: all articles of the group in shared batches first.
        let mut pre: Vec<Option<Result<Pretranslated>>> = chunk.iter().map(|_| None).collect();
        if let Some(nmt) = &engines.nmt {
            let paras: Vec<Result<Vec<Paragraph>>> = chunk
                .iter()
                .map(|a| match &a.text {
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                    Ok(t) => non_empty(t),
                })
                .collect();
            let ok: Vec<usize> = (0..chunk.len()).filter(|&i| paras[i].is_ok()).collect();
            let refs: Vec<&[Paragraph]> = ok
                .iter()
                .map(|&i| paras[i].as_ref().map(Vec::as_slice).unwrap_or(&[]))
                .collect();
            bar.set_message(format!("translating {} articles", refs.len()));
            let t0 = Instant::now();
            let translated = nmt.translate_docs(&refs);
            let secs = t0.elapsed().as_secs_f64();
            let total_in: usize = match &translated {
                Ok(v) => v.iter().flatten().map(|d| d.usage.tokens_in).sum(),
                Err(_) => 0,
            };
            match translated {
                Ok(v) => {
                    for (&i, r) in ok.iter().zip(v) {
                        pre[i] = Some(r.map(|d| {
                            // The group's time, shared by source tokens.
                            let share = d.usage.tokens_in as f64 / total_in.max(1) as f64;
                            let p = paras[i].as_ref().map(Clone::clone).unwrap_or_default();
                            (p, d.paragraphs, d.usage, secs * share)
                        }));
                    }
                }
                Err(e) => {
                    for &i in &ok {
                        pre[i] = Some(Err(anyhow::anyhow!("translator failed: {e:#}")));
                    }
                }
            }
            for (i, p) in paras.into_iter().enumerate() {
                if let Err(e) = p {
                    pre[i] = Some(Err(e));
                }
            }
        }
        for (a, pre) in chunk.iter().zip(pre) {
            bar.set_message(a.id.clone());
            let result = match (pre, &a.text) {
                (Some(Ok((paras, outs, usage, secs))), _) => engines
                    .lm()
                    .and_then(|lm| finish(lm, &paras, outs, usage, secs, cfg.max_bullets)),
                (Some(Err(e)), _) => Err(e),
                (None, Err(e)) => Err(anyhow::anyhow!("{e}")),
                (None, Ok(text)) => {
                    process(engines, text, cfg.max_bullets, &cfg.translate, &mut |_| {})
                }
            };
            let record = match result {
                Ok(p) => Record {
                    id: a.id.clone(),
                    source: a.source.clone(),
                    status: Status::Ok,
                    error: None,
                    paragraphs: p.paragraphs.into_iter().map(Into::into).collect(),
                    summary: p.summary.bullets,
                    summary_warnings: p.summary.warnings,
                    model: model.clone(),
                    translator: translator.clone(),
                    timings: p.timings,
                },
                Err(e) => Record {
                    id: a.id.clone(),
                    source: a.source.clone(),
                    status: Status::Error,
                    error: Some(format!("{e:#}")),
                    paragraphs: vec![],
                    summary: vec![],
                    summary_warnings: vec![],
                    model: model.clone(),
                    translator: translator.clone(),
                    timings: Timings::default(),
                },
            };
            if record.status == Status::Ok {
                write_atomic(
                    &cfg.out.join(format!("{}.md", record.id)),
                    &markdown(&record),
                )?;
                outcome.ok += 1;
            } else {
                bar.suspend(|| {
                    eprintln!(
                        "tarjuma: article `{}` ({}) failed: {}",
                        record.id,
                        record.source,
                        record.error.as_deref().unwrap_or("")
                    )
                });
                outcome.failed += 1;
            }
            results.append(&record)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    results.compact()?;
    Ok(outcome)
}

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
