//! One article through the whole data path, and a batch of them with resumable output.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use super::summarize::SummaryOut;
use super::translate::{ChunkDone, ParagraphOut, TranslateOptions};
use super::Lm;
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

/// Translates and summarises one article. `Err` is for failures of this article only.
pub fn process(
    lm: &mut Lm,
    raw: &str,
    max_bullets: usize,
    topts: &TranslateOptions,
    on_chunk: &mut dyn FnMut(ChunkDone),
) -> Result<Processed> {
    let paras = prepare(raw);
    anyhow::ensure!(
        !paras.is_empty(),
        "the article is empty (no text after normalization)"
    );
    let t0 = Instant::now();
    let (outs, mut usage) = lm.translate_paragraphs(&paras, topts, on_chunk)?;
    let t1 = Instant::now();
    let (body, reserve) = summary_input(&outs);
    let source: String = paras
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let (summary, u) = lm.summarize(&body, &reserve, &source, max_bullets)?;
    usage += u;
    let t2 = Instant::now();
    Ok(Processed {
        paragraphs: outs,
        summary,
        timings: Timings {
            seconds: (t2 - t0).as_secs_f64(),
            translate_seconds: (t1 - t0).as_secs_f64(),
            summarize_seconds: (t2 - t1).as_secs_f64(),
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
        },
    })
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

/// Runs a batch. Per-article failures are recorded and counted, never fatal; an `Err`
/// means the output itself could not be written.
pub fn run_batch(lm: &mut Lm, cfg: &BatchConfig) -> Result<BatchOutcome> {
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
    let mut outcome = BatchOutcome::default();
    for a in list {
        bar.set_message(a.id.clone());
        if let Some(prev) = done.get(&a.id) {
            if prev.status == Status::Ok
                && prev.model.sha256 == lm.sha256
                && prev.source == a.source
            {
                outcome.skipped += 1;
                bar.inc(1);
                continue;
            }
        }
        let model = ModelInfo {
            name: lm.name.clone(),
            sha256: lm.sha256.clone(),
        };
        let result = match &a.text {
            Err(e) => Err(anyhow::anyhow!("{e}")),
            Ok(text) => process(lm, text, cfg.max_bullets, &cfg.translate, &mut |_| {}),
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
                model,
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
                model,
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
