//! Outputs: `results.jsonl` (one record per article) and `<id>.md`.
//!
//! Records are appended and synced one by one, so a crash loses at most the article in
//! flight. A rerun over the same output directory skips articles already `ok` with the
//! same model, and the file is compacted (last record per id) by an atomic rewrite at the
//! end. Markdown files are written to a temp file and renamed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::guards::Warning;
use crate::pipeline::translate::ParagraphOut;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Timings {
    pub seconds: f64,
    pub translate_seconds: f64,
    pub summarize_seconds: f64,
    pub tokens_in: usize,
    pub tokens_out: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParagraphRecord {
    pub source: String,
    pub translation: String,
    pub kind: crate::text::Kind,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

impl From<ParagraphOut> for ParagraphRecord {
    fn from(p: ParagraphOut) -> Self {
        Self {
            source: p.source,
            translation: p.translation,
            kind: p.kind,
            warnings: p.warnings,
        }
    }
}

/// One line of `results.jsonl`. See README.md for the schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub source: String,
    pub status: Status,
    pub error: Option<String>,
    pub paragraphs: Vec<ParagraphRecord>,
    pub summary: Vec<String>,
    #[serde(default)]
    pub summary_warnings: Vec<Warning>,
    /// The instruction model (summaries; translation too when `translator` is absent).
    pub model: ModelInfo,
    /// The dedicated translation model, when one translated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translator: Option<ModelInfo>,
    pub timings: Timings,
}

pub struct ResultsFile {
    path: PathBuf,
    file: File,
}

impl ResultsFile {
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output dir {}", dir.display()))?;
        let path = dir.join("results.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { path, file })
    }

    /// The last record per id already in the file (unreadable lines are skipped).
    pub fn existing(&self) -> HashMap<String, Record> {
        let mut out = HashMap::new();
        if let Ok(f) = File::open(&self.path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(r) = serde_json::from_str::<Record>(&line) {
                    out.insert(r.id.clone(), r);
                }
            }
        }
        out
    }

    pub fn append(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Rewrites the file with the last record of each id, in first-seen order.
    pub fn compact(&self) -> Result<()> {
        let f = File::open(&self.path)?;
        let mut order: Vec<String> = Vec::new();
        let mut last: HashMap<String, String> = HashMap::new();
        for line in BufReader::new(f).lines() {
            let line = line?;
            let Ok(r) = serde_json::from_str::<Record>(&line) else {
                continue;
            };
            if !last.contains_key(&r.id) {
                order.push(r.id.clone());
            }
            last.insert(r.id, line);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        for id in order {
            writeln!(tmp, "{}", last[&id])?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Writes `text` to `path` atomically.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The Markdown page of one article: the translation, then the bullets.
pub fn markdown(r: &Record) -> String {
    let mut s = format!("# {}\n\n", r.id);
    let models = match &r.translator {
        Some(t) => format!("translator: {} · summarizer: {}", t.name, r.model.name),
        None => format!("model: {}", r.model.name),
    };
    s.push_str(&format!(
        "Source: `{}` · {models}\n\n## Translation\n\n",
        r.source
    ));
    for p in &r.paragraphs {
        match p.kind {
            crate::text::Kind::Body => s.push_str(&p.translation),
            crate::text::Kind::Boilerplate => {
                s.push_str(&format!("> *[boilerplate]* {}", p.translation))
            }
        }
        if !p.warnings.is_empty() {
            let w: Vec<String> = p.warnings.iter().map(|w| format!("{w:?}")).collect();
            s.push_str(&format!(" <!-- warnings: {} -->", w.join(", ")));
        }
        s.push_str("\n\n");
    }
    s.push_str("## Summary\n\n");
    for b in &r.summary {
        s.push_str(&format!("- {b}\n"));
    }
    s
}
