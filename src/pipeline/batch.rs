//! A batch over many articles (`tarjuma run`): streaming input, resumable and crash-safe
//! output, shards, signals and progress.
//!
//! - Inputs are enumerated lazily and each text is read when its turn comes; a dedicated
//!   translator takes windows of up to [`NMT_GROUP`] articles, so memory does not grow
//!   with the batch.
//! - `--parallel N` workers take articles in turn, each with its own client of the
//!   instruction model's decoding pool (`generate::pool`), so their model calls share
//!   forward passes (issue 13).
//! - `results.jsonl` gets one appended, fsynced line per article, as each is done. A
//!   crash loses at most the articles in flight; a torn last line is dropped on resume
//!   (`io::write`). The final compaction puts this run's articles in input order.
//! - `run.json` records the settings, the models' sha256, the counts and the start and
//!   end times; it is rewritten atomically at the start, on every signal and at the end.
//! - SIGINT/SIGTERM finish the articles in flight, or abandon them after the grace
//!   period (at once on a second signal), write `run.json` and exit 130/143, which is
//!   what Kubernetes and Slurm send before their SIGKILL.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::job::{finish, non_empty, process, Engines, Pretranslated};
use super::shard::Shard;
use super::translate::{ParagraphOut, TranslateOptions};
use super::Usage;
use crate::io::read::{articles, Article};
use crate::io::write::{
    markdown, read_record, write_atomic, Done, ModelInfo, PromptInfo, Record, ResultsFile, Status,
    Timings, FORMAT,
};
use crate::text::script::{detect_language, Language};
use crate::text::Paragraph;

/// Articles translated together by a dedicated translator (their sentences share
/// batches). A crash loses at most one group's translations.
pub const NMT_GROUP: usize = 16;

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar with articles, tokens/s and ETA (on a terminal).
    Bar,
    /// One line every so often (a pod log, a Slurm output file).
    Lines(Duration),
    Off,
}

/// What to do with an article that is not Urdu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NonUrdu {
    /// An error record: "not Urdu: looks like English".
    Error,
    /// Keep the text as it is (no translation) and summarise it when it is English.
    Pass,
}

pub struct BatchConfig {
    pub inputs: Vec<String>,
    pub out: PathBuf,
    pub force: bool,
    pub max_bullets: usize,
    pub translate: TranslateOptions,
    pub progress: ProgressMode,
    pub shard: Option<Shard>,
    pub non_urdu: NonUrdu,
    /// How long a signalled run may take to finish its article in flight.
    pub grace: Duration,
    /// Redo the summaries of articles already done, from their translations.
    pub resummarize: bool,
    /// The run's settings, as recorded in `run.json`.
    pub settings: serde_json::Value,
    /// Articles worked on at once; their model calls decode together.
    pub parallel: usize,
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub ok: usize,
    pub failed: usize,
    /// Ok articles without a summary (`summary_error`).
    pub summary_failed: usize,
    pub skipped: usize,
    /// Articles left to other shards.
    pub other_shards: usize,
    /// The signal that stopped the run early (SIGINT 2, SIGTERM 15).
    pub signal: Option<i32>,
}

/// State shared with the signal and progress threads.
struct Shared {
    /// Held while an article's outputs are written, so an abandoning signal never
    /// tears a record.
    gate: Mutex<()>,
    finished: AtomicBool,
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Ok articles whose summary stage failed (translation kept).
    summary_failed: AtomicUsize,
    skipped: AtomicUsize,
    other: AtomicUsize,
    /// Articles of this shard in all (`usize::MAX` until counted).
    total: AtomicUsize,
    tokens_out: AtomicUsize,
    signal: AtomicI32,
    /// Ids of the articles being worked on.
    in_flight: Mutex<Vec<String>>,
    run_json: PathBuf,
    started_at: SystemTime,
    started: Instant,
    settings: serde_json::Value,
    models: serde_json::Value,
    shard: Option<Shard>,
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Shared {
    fn counts(&self) -> serde_json::Value {
        let total = self.total.load(SeqCst);
        json!({
            "ok": self.ok.load(SeqCst),
            "failed": self.failed.load(SeqCst),
            "summary_failed": self.summary_failed.load(SeqCst),
            "skipped": self.skipped.load(SeqCst),
            "other_shards": self.other.load(SeqCst),
            "total": (total != usize::MAX).then_some(total),
            "tokens_out": self.tokens_out.load(SeqCst),
        })
    }

    /// Rewrites `run.json` atomically. `status`: running, complete, interrupted, failed.
    fn write_run_json(&self, status: &str, abandoned: &[String], error: Option<&str>) {
        let ended = (status != "running").then(|| rfc3339(SystemTime::now()));
        let sig = self.signal.load(SeqCst);
        let v = json!({
            "tarjuma": env!("CARGO_PKG_VERSION"),
            "status": status,
            "started": rfc3339(self.started_at),
            "ended": ended,
            "seconds": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "signal": (sig != 0).then(|| signal_name(sig)),
            "abandoned": (!abandoned.is_empty()).then_some(abandoned),
            "error": error,
            "host": hostname(),
            "pid": std::process::id(),
            "shard": self.shard,
            "settings": self.settings,
            "models": self.models,
            "counts": self.counts(),
        });
        let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
        if let Err(e) = write_atomic(&self.run_json, &text) {
            eprintln!(
                "tarjuma: warning: cannot write {}: {e:#}",
                self.run_json.display()
            );
        }
    }

    /// Gives up the article in flight: waits for any record being written, records the
    /// run as interrupted and exits 128 + signal. Does nothing once the batch has ended
    /// by itself (the caller then exits with the same code).
    fn abandon(&self, sig: i32) {
        let _g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if self.finished.load(SeqCst) {
            return;
        }
        let ids = self.in_flight_ids();
        self.write_run_json("interrupted", &ids, None);
        match ids.len() {
            0 => eprintln!("tarjuma: {}: stopped", signal_name(sig)),
            1 => eprintln!(
                "tarjuma: {}: abandoned article `{}` (it will be done again on resume)",
                signal_name(sig),
                ids[0]
            ),
            _ => eprintln!(
                "tarjuma: {}: abandoned articles {} (they will be done again on resume)",
                signal_name(sig),
                quoted(&ids)
            ),
        }
        std::process::exit(128 + sig);
    }

    fn in_flight_ids(&self) -> Vec<String> {
        self.in_flight.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn done(&self) -> usize {
        self.ok.load(SeqCst) + self.failed.load(SeqCst) + self.skipped.load(SeqCst)
    }

    /// "12/40 articles (1 failed, 3 already done), 85.1 tok/s, 4m10s elapsed, eta 9m"
    fn status_line(&self) -> String {
        let total = self.total.load(SeqCst);
        let done = self.done();
        let worked = self.ok.load(SeqCst) + self.failed.load(SeqCst);
        let secs = self.started.elapsed().as_secs_f64();
        let tps = self.tokens_out.load(SeqCst) as f64 / secs.max(1e-9);
        let of = if total == usize::MAX {
            String::new()
        } else {
            format!("/{total}")
        };
        let mut s = format!(
            "{done}{of} articles ({} failed, {} already done), {tps:.1} tok/s, {} elapsed",
            self.failed.load(SeqCst),
            self.skipped.load(SeqCst),
            short_duration(secs)
        );
        if total != usize::MAX && worked > 0 && total > done {
            let eta = secs / worked as f64 * (total - done) as f64;
            s.push_str(&format!(", eta {}", short_duration(eta)));
        }
        s
    }
}

/// "`a`, `b`"
fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn short_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Starts the thread that turns SIGINT/SIGTERM into a graceful stop.
fn watch_signals(shared: Arc<Shared>, grace: Duration) -> Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if shared.signal.swap(sig, SeqCst) != 0 {
                shared.abandon(sig);
            }
            let ids = shared.in_flight_ids();
            eprintln!(
                "tarjuma: {} received: finishing {} (at most {}s), then stopping; send it \
                 again to stop at once",
                signal_name(sig),
                match ids.len() {
                    0 => "the article in flight".into(),
                    _ => quoted(&ids),
                },
                grace.as_secs()
            );
            let s = shared.clone();
            std::thread::spawn(move || {
                std::thread::sleep(grace);
                s.abandon(sig);
            });
        }
    });
    Ok(handle)
}

/// Counts the shard's articles in the background, for the ETA. No text is read: a
/// file's id is its name, and a JSONL line is parsed for its id.
fn count_in_background(inputs: Vec<String>, shard: Option<Shard>, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        let Ok(list) = articles(&inputs) else { return };
        let n = list
            .ids()
            .filter(|id| shard.is_none_or(|s| s.contains(id)))
            .count();
        shared.total.store(n, SeqCst);
    });
}

/// Prints a progress line every `every` until the batch ends.
fn progress_lines(shared: Arc<Shared>, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let step = Duration::from_millis(200);
        let mut next = Instant::now() + every;
        while !shared.finished.load(SeqCst) {
            std::thread::sleep(step);
            if Instant::now() >= next {
                eprintln!("tarjuma: progress: {}", shared.status_line());
                next += every;
            }
        }
    })
}

/// What happened to an article whose text is not Urdu.
fn language_gate(raw: &str, mode: NonUrdu) -> Result<Option<&'static str>> {
    match detect_language(raw) {
        Language::Urdu => Ok(None),
        Language::Other(name) if mode == NonUrdu::Error => anyhow::bail!(
            "not Urdu: looks like {name} (use --non-urdu pass to keep such articles as \
             they are)"
        ),
        Language::Other(name) => Ok(Some(name)),
    }
}

/// A text kept as it is: its paragraphs are their own "translation".
fn passed_through(paras: &[Paragraph]) -> Vec<ParagraphOut> {
    paras
        .iter()
        .map(|p| ParagraphOut {
            source: p.text.clone(),
            translation: p.text.clone(),
            kind: p.kind,
            warnings: Vec::new(),
        })
        .collect()
}

/// Runs a batch. Per-article failures are recorded and counted, never fatal; an `Err`
/// means the output itself could not be written.
pub fn run_batch(engines: &mut Engines, cfg: &BatchConfig) -> Result<BatchOutcome> {
    let list = articles(&cfg.inputs).map_err(|e| crate::config::config_error(e.to_string()))?;
    let mut results = ResultsFile::open(&cfg.out)?;
    let done = if cfg.force {
        Default::default()
    } else {
        results.existing()
    };
    let lm = engines.lm()?;
    let model = ModelInfo {
        name: lm.name.clone(),
        sha256: lm.sha256.clone(),
    };
    let translator = engines.translator_info();
    let shared = Arc::new(Shared {
        gate: Mutex::new(()),
        finished: AtomicBool::new(false),
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        summary_failed: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
        other: AtomicUsize::new(0),
        total: AtomicUsize::new(usize::MAX),
        tokens_out: AtomicUsize::new(0),
        signal: AtomicI32::new(0),
        in_flight: Mutex::new(Vec::new()),
        run_json: cfg.out.join("run.json"),
        started_at: SystemTime::now(),
        started: Instant::now(),
        settings: cfg.settings.clone(),
        models: json!({"model": model, "translator": translator}),
        shard: cfg.shard,
    });
    shared.write_run_json("running", &[], None);
    let signals = watch_signals(shared.clone(), cfg.grace)?;
    if cfg.progress != ProgressMode::Off {
        count_in_background(cfg.inputs.clone(), cfg.shard, shared.clone());
    }
    let bar = if cfg.progress == ProgressMode::Bar && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} articles · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(500));
        b
    } else {
        ProgressBar::hidden()
    };
    let lines = match cfg.progress {
        ProgressMode::Lines(every) => Some(progress_lines(shared.clone(), every)),
        _ => None,
    };
    let done = Arc::new(done);
    let prompts = engines.lm()?.prompts.clone();
    let ctx = Ctx {
        cfg,
        results: results.path().to_path_buf(),
        done: done.clone(),
        prompts,
        shared: shared.clone(),
        bar: &bar,
        model,
        translator,
        taken: Mutex::new(Vec::new()),
    };
    // Other shards' articles and those already done are passed over unread.
    let (s, shard, resummarize, done) = (shared.clone(), cfg.shard, cfg.resummarize, done.clone());
    let (model_sha, translator_sha) = (
        ctx.model.sha256.clone(),
        ctx.translator.as_ref().map(|t| t.sha256.clone()),
    );
    let list = list.select(move |id, source| {
        if shard.is_some_and(|sh| !sh.contains(id)) {
            s.other.fetch_add(1, SeqCst);
            return false;
        }
        let up_to_date = done.get(id).is_some_and(|prev| {
            prev.ok
                && prev.model_sha256 == model_sha
                && prev.translator_sha256 == translator_sha
                && prev.source == source
        });
        if up_to_date && !resummarize {
            s.skipped.fetch_add(1, SeqCst);
            return false;
        }
        true
    });
    // Two instruction models (a translating one beside the summarizer) would each wait
    // for workers busy with the other: one worker then.
    let workers = if engines.tlm.is_some() {
        1
    } else {
        cfg.parallel.max(1)
    };
    let outcome = if engines.nmt.is_some() {
        let mut outcome = Ok(());
        let mut list = list.peekable();
        while outcome.is_ok() && list.peek().is_some() && shared.signal.load(SeqCst) == 0 {
            let chunk: Vec<Article> = list.by_ref().take(NMT_GROUP).collect();
            let pre = pretranslate(&ctx, engines, &chunk);
            let jobs = chunk.into_iter().zip(pre);
            outcome = drive(&ctx, engines, &mut results, jobs, workers);
        }
        outcome
    } else {
        drive(
            &ctx,
            engines,
            &mut results,
            list.map(|a| (a, None)),
            workers,
        )
    };
    bar.finish_and_clear();
    // Records went in as articles finished; the compacted file lists this run's
    // articles in input order, after any done before.
    let taken = std::mem::take(&mut *ctx.taken.lock().unwrap_or_else(|e| e.into_inner()));
    let compacted = outcome.and_then(|_| results.compact_ordered(&taken));
    signals.close();
    let _g = shared.gate.lock().unwrap_or_else(|e| e.into_inner());
    shared.finished.store(true, SeqCst);
    let sig = shared.signal.load(SeqCst);
    let status = match (&compacted, sig) {
        (Err(_), _) => "failed",
        (Ok(_), 0) => "complete",
        _ => "interrupted",
    };
    let err = compacted.as_ref().err().map(|e| format!("{e:#}"));
    shared.write_run_json(status, &[], err.as_deref());
    drop(_g);
    if let Some(t) = lines {
        let _ = t.join();
    }
    compacted?;
    Ok(BatchOutcome {
        ok: shared.ok.load(SeqCst),
        failed: shared.failed.load(SeqCst),
        summary_failed: shared.summary_failed.load(SeqCst),
        skipped: shared.skipped.load(SeqCst),
        other_shards: shared.other.load(SeqCst),
        signal: (sig != 0).then_some(sig),
    })
}

/// What every worker shares: the settings and where records go.
struct Ctx<'a> {
    cfg: &'a BatchConfig,
    /// results.jsonl, for reading back earlier records (`--resummarize`).
    results: PathBuf,
    done: Arc<HashMap<String, Done>>,
    prompts: PromptInfo,
    shared: Arc<Shared>,
    bar: &'a ProgressBar,
    model: ModelInfo,
    translator: Option<ModelInfo>,
    /// Ids of this run's articles, in the order workers took them (the input order).
    taken: Mutex<Vec<String>>,
}

/// An article ready for its summary, or why it failed.
type Prepared = Option<Result<(Pretranslated, Option<&'static str>)>>;

/// Works through `jobs` with `workers` threads, each with its own handle on the
/// instruction model, whose replies decode together (`generate::pool`); records are
/// written here, as each article is done. A worker takes the next article when it has
/// finished one, so the batch stays full until the input runs out. `Err` only when the
/// output cannot be written (or read back): the workers then stop taking articles.
fn drive(
    ctx: &Ctx,
    engines: &mut Engines,
    results: &mut ResultsFile,
    jobs: impl Iterator<Item = (Article, Prepared)> + Send,
    workers: usize,
) -> Result<()> {
    // Workers are made here, before their threads start, so they join in a fixed order.
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        handles.push(Engines {
            lm: Some(engines.lm()?.worker()?),
            nmt: None,
            tlm: engines.tlm.as_mut().map(|t| t.worker()).transpose()?,
        });
    }
    let jobs = Mutex::new(jobs);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<Result<Record>>();
    std::thread::scope(|scope| {
        for mut e in handles {
            let (tx, jobs, stop) = (tx.clone(), &jobs, &stop);
            scope.spawn(move || loop {
                if stop.load(SeqCst) || ctx.shared.signal.load(SeqCst) != 0 {
                    break;
                }
                let next = {
                    let mut jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
                    let next = jobs.next();
                    if let Some((a, _)) = &next {
                        // Under the same lock: the input order, for the final compaction.
                        ctx.taken
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(a.id.clone());
                    }
                    next
                };
                let Some((a, pre)) = next else { break };
                ctx.shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(a.id.clone());
                ctx.bar
                    .set_message(format!("{} · {}", a.id, ctx.shared.status_line()));
                let r = ctx.record(&mut e, &a, pre);
                if tx.send(r).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut outcome = Ok(());
        for r in rx {
            if outcome.is_err() {
                continue;
            }
            if let Err(e) = r.and_then(|rec| ctx.write(results, rec)) {
                stop.store(true, SeqCst);
                outcome = Err(e);
            }
        }
        outcome
    })
}

/// The group's Urdu articles through the translator in shared batches.
fn pretranslate(ctx: &Ctx, engines: &Engines, chunk: &[Article]) -> Vec<Prepared> {
    let mut pre: Vec<Prepared> = chunk.iter().map(|_| None).collect();
    let Some(nmt) = &engines.nmt else {
        return pre;
    };
    let mut todo: Vec<(usize, Vec<Paragraph>)> = Vec::new();
    for (i, a) in chunk.iter().enumerate() {
        if ctx.resummarize_at(a).is_some() {
            continue;
        }
        let gated = match &a.text {
            Err(e) => Err(anyhow::anyhow!("{e}")),
            Ok(t) => {
                non_empty(t).and_then(|p| language_gate(t, ctx.cfg.non_urdu).map(|lang| (p, lang)))
            }
        };
        match gated {
            Err(e) => pre[i] = Some(Err(e)),
            Ok((paras, Some(lang))) => {
                let outs = passed_through(&paras);
                pre[i] = Some(Ok(((paras, outs, Usage::default(), 0.0), Some(lang))));
            }
            Ok((paras, None)) => todo.push((i, paras)),
        }
    }
    if todo.is_empty() {
        return pre;
    }
    ctx.bar
        .set_message(format!("translating {} articles", todo.len()));
    let refs: Vec<&[Paragraph]> = todo.iter().map(|(_, p)| p.as_slice()).collect();
    let t0 = Instant::now();
    let translated = nmt.translate_docs(&refs);
    let secs = t0.elapsed().as_secs_f64();
    match translated {
        Ok(v) => {
            let total_in: usize = v.iter().flatten().map(|d| d.usage.tokens_in).sum();
            for ((i, paras), r) in todo.into_iter().zip(v) {
                pre[i] = Some(r.map(|d| {
                    // The group's time, shared by source tokens.
                    let share = d.usage.tokens_in as f64 / total_in.max(1) as f64;
                    ((paras, d.paragraphs, d.usage, secs * share), None)
                }));
            }
        }
        Err(e) => {
            for (i, _) in todo {
                pre[i] = Some(Err(anyhow::anyhow!("translator failed: {e:#}")));
            }
        }
    }
    pre
}

impl Ctx<'_> {
    /// One article's record, made on a worker. `Err` only when an earlier record
    /// cannot be read back (`--resummarize`); the article's own failures are records.
    fn record(&self, engines: &mut Engines, a: &Article, pre: Prepared) -> Result<Record> {
        if let Some(at) = self.resummarize_at(a) {
            return self.resummarized(engines, a, at);
        }
        let result = match (pre, &a.text) {
            (Some(Ok(((_, outs, usage, secs), lang))), _) => {
                summarize(self.cfg, engines, outs, usage, secs, lang).map(|p| (p, lang))
            }
            (Some(Err(e)), _) => Err(e),
            (None, Err(e)) => Err(anyhow::anyhow!("{e}")),
            (None, Ok(text)) => self.one(engines, text),
        };
        Ok(self.outcome_record(a, result))
    }

    /// One article through the instruction model (no dedicated translator).
    fn one(
        &self,
        engines: &mut Engines,
        text: &str,
    ) -> Result<(super::job::Processed, Option<&'static str>)> {
        non_empty(text)?;
        match language_gate(text, self.cfg.non_urdu)? {
            None => process(
                engines,
                text,
                self.cfg.max_bullets,
                &self.cfg.translate,
                &mut |_| {},
            )
            .map(|p| (p, None)),
            Some(lang) => {
                let outs = passed_through(&non_empty(text)?);
                summarize(self.cfg, engines, outs, Usage::default(), 0.0, Some(lang))
                    .map(|p| (p, Some(lang)))
            }
        }
    }

    /// With `--resummarize`, where the article's ok record is (same source).
    fn resummarize_at(&self, a: &Article) -> Option<(u64, usize)> {
        if !self.cfg.resummarize {
            return None;
        }
        self.done
            .get(&a.id)
            .filter(|d| d.ok && d.source == a.source)
            .map(|d| d.at)
    }

    /// The record of an article done before, with its summary made again from the
    /// translation it holds (nothing is translated again).
    fn resummarized(&self, engines: &mut Engines, a: &Article, at: (u64, usize)) -> Result<Record> {
        let old = read_record(&self.results, at)?;
        let outs: Vec<ParagraphOut> = old
            .paragraphs
            .iter()
            .map(|p| ParagraphOut {
                source: p.source.clone(),
                translation: p.translation.clone(),
                kind: p.kind,
                warnings: p.warnings.clone(),
            })
            .collect();
        let lang = old.language.clone();
        let max = match lang.as_deref() {
            Some(l) if l != "Urdu" && !l.contains("English") && !l.contains("Latin") => 0,
            _ => self.cfg.max_bullets,
        };
        let p = finish(engines.lm()?, outs, Usage::default(), 0.0, max);
        // The translation keeps its provenance: without a dedicated translator it came
        // from the instruction model of the old record.
        let translator = old
            .translator
            .clone()
            .or_else(|| (old.model.sha256 != self.model.sha256).then(|| old.model.clone()));
        let mut r = self.ok_record(a, p, None);
        r.timings.translate_seconds = old.timings.translate_seconds;
        r.timings.seconds = old.timings.translate_seconds + r.timings.summarize_seconds;
        r.timings.tokens_in += old.timings.tokens_in;
        r.timings.tokens_out += old.timings.tokens_out;
        r.language = lang;
        r.translator = translator;
        r.shard = self.cfg.shard.or(old.shard);
        Ok(r)
    }

    /// The record of an article that went through (`language`: what it looked like).
    fn ok_record(&self, a: &Article, p: super::job::Processed, language: Option<String>) -> Record {
        Record {
            format: FORMAT,
            id: a.id.clone(),
            source: a.source.clone(),
            status: Status::Ok,
            error: None,
            language,
            paragraphs: p.paragraphs.into_iter().map(Into::into).collect(),
            dateline: p.summary.dateline,
            summary: p.summary.bullets,
            summary_warnings: p.summary.warnings,
            dropped_bullets: p.summary.dropped,
            summary_error: p.summary_error,
            prompts: Some(self.prompts.clone()),
            model: self.model.clone(),
            translator: self.translator.clone(),
            shard: self.cfg.shard,
            timings: p.timings,
        }
    }

    /// An article's record: ok, or an error naming why.
    fn outcome_record(
        &self,
        a: &Article,
        result: Result<(super::job::Processed, Option<&'static str>)>,
    ) -> Record {
        match result {
            Ok((p, lang)) => self.ok_record(a, p, Some(lang.unwrap_or("Urdu").to_string())),
            Err(e) => Record {
                format: FORMAT,
                id: a.id.clone(),
                source: a.source.clone(),
                status: Status::Error,
                error: Some(format!("{e:#}")),
                language: None,
                paragraphs: vec![],
                dateline: None,
                summary: vec![],
                summary_warnings: vec![],
                dropped_bullets: vec![],
                summary_error: None,
                prompts: Some(self.prompts.clone()),
                model: self.model.clone(),
                translator: self.translator.clone(),
                shard: self.cfg.shard,
                timings: Timings::default(),
            },
        }
    }

    /// Appends a record (and writes its Markdown page), under the gate.
    fn write(&self, results: &mut ResultsFile, record: Record) -> Result<()> {
        let _g = self.shared.gate.lock().unwrap_or_else(|e| e.into_inner());
        if record.status == Status::Ok {
            write_atomic(
                &self.cfg.out.join(format!("{}.md", record.id)),
                &markdown(&record),
            )?;
        }
        results.append(&record)?;
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| *id != record.id);
        self.shared
            .tokens_out
            .fetch_add(record.timings.tokens_out, SeqCst);
        if record.status == Status::Ok {
            self.shared.ok.fetch_add(1, SeqCst);
            if let Some(e) = &record.summary_error {
                self.shared.summary_failed.fetch_add(1, SeqCst);
                self.bar.suspend(|| {
                    eprintln!(
                        "tarjuma: article `{}`: no summary ({e}); the translation is kept, \
                         and a rerun with --resummarize redoes the summaries",
                        record.id
                    )
                });
            }
        } else {
            self.shared.failed.fetch_add(1, SeqCst);
            self.bar.suspend(|| {
                eprintln!(
                    "tarjuma: article `{}` ({}) failed: {}",
                    record.id,
                    record.source,
                    record.error.as_deref().unwrap_or("")
                )
            });
        }
        let total = self.shared.total.load(SeqCst);
        if total != usize::MAX {
            self.bar.set_length(total as u64);
        }
        self.bar.set_position(self.shared.done() as u64);
        Ok(())
    }
}

/// Summarises translated (or passed-through) paragraphs. A passed-through text is
/// summarised only when it is in the Latin script (the models summarise English).
fn summarize(
    cfg: &BatchConfig,
    engines: &mut Engines,
    outs: Vec<ParagraphOut>,
    usage: Usage,
    secs: f64,
    lang: Option<&'static str>,
) -> Result<super::job::Processed> {
    let max = match lang {
        Some(l) if !l.contains("English") && !l.contains("Latin") => 0,
        _ => cfg.max_bullets,
    };
    Ok(finish(engines.lm()?, outs, usage, secs, max))
}
