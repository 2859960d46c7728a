//! Reading the output of `tarjuma run` for `eval` and `report`.
//!
//! Records are read leniently, as data rather than as the writer's own types, so that
//! reports and scores still work on results written by older or newer versions: a bullet
//! is either a plain string (format 1) or `{"text", "paragraphs"}` (grounded bullets).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One paragraph of a record: the Urdu source and its translation.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Paragraph {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub translation: String,
    /// `body` or `boilerplate`.
    #[serde(default = "body")]
    pub kind: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

fn body() -> String {
    "body".into()
}

/// A summary bullet with the paragraphs that ground it (a format-1 string reads as a
/// bullet without grounding).
pub use crate::pipeline::summarize::Bullet;

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Model {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Timings {
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub tokens_in: usize,
    #[serde(default)]
    pub tokens_out: usize,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub source: String,
    /// `ok` or `error`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub paragraphs: Vec<Paragraph>,
    #[serde(default)]
    pub summary: Vec<Bullet>,
    #[serde(default)]
    pub summary_warnings: Vec<String>,
    #[serde(default)]
    pub model: Model,
    #[serde(default)]
    pub translator: Option<Model>,
    #[serde(default)]
    pub timings: Timings,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.status == "ok"
    }

    /// The translation of the whole article, paragraph by paragraph (one per line).
    pub fn translation(&self) -> String {
        let t: Vec<&str> = self
            .paragraphs
            .iter()
            .map(|p| p.translation.as_str())
            .collect();
        t.join("\n")
    }

    /// The bullets joined by spaces: the summary as ROUGE sees it.
    pub fn summary_text(&self) -> String {
        let b: Vec<&str> = self.summary.iter().map(|b| b.text.as_str()).collect();
        b.join(" ")
    }
}

/// The records of one run directory (or one `results.jsonl`), last record per id, in
/// first-seen order, as `tarjuma run` compacts them.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory (or file) it was read from.
    pub path: PathBuf,
    /// A short name for tables and the report: the directory name.
    pub label: String,
    pub records: Vec<Record>,
}

impl Run {
    /// Reads `DIR/results.jsonl`, or the file itself when `path` is a file.
    pub fn load(path: &Path) -> Result<Run> {
        let file = if path.is_dir() {
            path.join("results.jsonl")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            bail!(
                "{}: no results.jsonl here (give the --out directory of a `tarjuma run`)",
                path.display()
            );
        }
        let f = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
        let mut records: Vec<Record> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a tarjuma record", file.display(), n + 1))?;
            match index.get(&r.id) {
                Some(&i) => records[i] = r,
                None => {
                    index.insert(r.id.clone(), records.len());
                    records.push(r);
                }
            }
        }
        let label = path
            .canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .components()
            .rev()
            .find_map(|c| match c {
                std::path::Component::Normal(s) if s != "results.jsonl" => {
                    Some(s.to_string_lossy().into_owned())
                }
                _ => None,
            })
            .unwrap_or_else(|| path.display().to_string());
        Ok(Run {
            path: path.to_path_buf(),
            label,
            records,
        })
    }

    /// The models that wrote this run, e.g. `nllb-200-distilled-600m + qwen2.5-…` or the
    /// instruction model alone.
    pub fn models(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for r in &self.records {
            let n = match &r.translator {
                Some(t) => format!("{} + {}", t.name, r.model.name),
                None => r.model.name.clone(),
            };
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        names.join(", ")
    }

    /// Generated tokens per second over the run's ok records (None when nothing timed).
    pub fn tokens_per_second(&self) -> Option<f64> {
        let (mut toks, mut secs) = (0usize, 0f64);
        for r in self.records.iter().filter(|r| r.ok()) {
            toks += r.timings.tokens_out;
            secs += r.timings.seconds;
        }
        (secs > 0.0 && toks > 0).then(|| toks as f64 / secs)
    }
}
