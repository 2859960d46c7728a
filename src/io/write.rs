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
use crate::pipeline::summarize::{Bullet, Dropped};
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

/// The record format: 2 has grounded bullets (`{"text", "paragraphs"}`), `dateline`,
/// `dropped_bullets`, `summary_error` and `prompts`; 1 had bullets as strings.
pub const FORMAT: u32 = 2;

fn format_1() -> u32 {
    1
}

/// The prompt set that wrote a record: `built-in` or the `--prompts` directory, and the
/// sha256 of its files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptInfo {
    pub name: String,
    pub sha256: String,
}

/// One line of `results.jsonl`. See README.md for the schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(default = "format_1")]
    pub format: u32,
    pub id: String,
    pub source: String,
    pub status: Status,
    pub error: Option<String>,
    /// What the text looked like: `Urdu`, or (kept as it is with `--non-urdu pass`)
    /// e.g. `English`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub paragraphs: Vec<ParagraphRecord>,
    /// The date line of the article, once (never at the head of a bullet).
    #[serde(default)]
    pub dateline: Option<String>,
    pub summary: Vec<Bullet>,
    #[serde(default)]
    pub summary_warnings: Vec<Warning>,
    /// Bullets the checks rejected, with the reason.
    #[serde(default)]
    pub dropped_bullets: Vec<Dropped>,
    /// Why the summary is empty when its stage failed (the translation is kept).
    #[serde(default)]
    pub summary_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptInfo>,
    /// The instruction model (summaries; translation too when `translator` is absent).
    pub model: ModelInfo,
    /// The dedicated translation model, when one translated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translator: Option<ModelInfo>,
    /// The shard that wrote the record (`--shard`, or the scheduler's index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::pipeline::shard::Shard>,
    pub timings: Timings,
}

/// What a rerun needs to know of an article already in `results.jsonl` (kept small: a
/// resumed batch of 20,000 articles must not hold their texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub ok: bool,
    pub model_sha256: String,
    pub translator_sha256: Option<String>,
    pub source: String,
    /// Where its last record is in the file: (offset, length).
    pub at: (u64, usize),
}

/// `DIR/results.jsonl`, owned by one process at a time (an advisory lock on
/// `DIR/.tarjuma.lock`, released by the kernel even on SIGKILL).
pub struct ResultsFile {
    path: PathBuf,
    file: File,
    _lock: File,
}

/// Takes the output directory's lock, or says who holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join(".tarjuma.lock");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let holder = fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "another tarjuma process ({}) is writing {}; give each run (and each shard) its \
             own --out directory",
            holder
                .trim()
                .strip_prefix("pid ")
                .map_or("pid unknown".into(), |p| format!("pid {p}")),
            dir.display()
        );
    }
    f.set_len(0)?;
    write!(f, "pid {}", std::process::id())?;
    Ok(f)
}

/// Drops a torn last line (a crash mid-write leaves a line without its newline) and
/// says how many bytes went. Complete lines are never touched.
fn drop_torn_tail(path: &Path, file: &File) -> Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut f = File::open(path)?;
    // Walk back from the end to the last newline, in blocks.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep == len {
                return Ok(None);
            }
            file.set_len(keep)?;
            file.sync_all()?;
            return Ok(Some(len - keep));
        }
        if start == 0 {
            file.set_len(0)?;
            file.sync_all()?;
            return Ok(Some(len));
        }
        end = start;
    }
}

impl ResultsFile {
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output dir {}", dir.display()))?;
        let lock = lock_dir(dir)?;
        let path = dir.join("results.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if let Some(n) = drop_torn_tail(&path, &file)
            .with_context(|| format!("cannot check {}", path.display()))?
        {
            tracing::warn!(
                "{}: dropped a torn last line ({n} bytes) left by an interrupted run; that \
                 article will be done again",
                path.display()
            );
            eprintln!(
                "tarjuma: warning: {}: dropped a torn last line ({n} bytes) left by an \
                 interrupted run; that article will be done again",
                path.display()
            );
        }
        Ok(Self {
            path,
            file,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record per id already in the file. Lines that are not records are
    /// skipped with a warning naming them.
    pub fn existing(&self) -> HashMap<String, Done> {
        let mut out = HashMap::new();
        let Ok(f) = File::open(&self.path) else {
            return out;
        };
        #[derive(Deserialize)]
        struct Slim {
            id: String,
            source: String,
            status: Status,
            model: ModelInfo,
            translator: Option<ModelInfo>,
        }
        let mut r = BufReader::new(f);
        let (mut line, mut offset, mut n) = (String::new(), 0u64, 0usize);
        loop {
            line.clear();
            let Ok(len) = r.read_line(&mut line) else {
                break;
            };
            if len == 0 {
                break;
            }
            n += 1;
            match serde_json::from_str::<Slim>(&line) {
                Ok(rec) => {
                    out.insert(
                        rec.id,
                        Done {
                            ok: rec.status == Status::Ok,
                            model_sha256: rec.model.sha256,
                            translator_sha256: rec.translator.map(|t| t.sha256),
                            source: rec.source,
                            at: (offset, len),
                        },
                    );
                }
                Err(e) if !line.trim().is_empty() => eprintln!(
                    "tarjuma: warning: {}:{n}: not a record, ignored ({e})",
                    self.path.display(),
                ),
                Err(_) => {}
            }
            offset += len as u64;
        }
        out
    }

    /// The record at `at` (from [`Done::at`]).
    pub fn read_record(&self, at: (u64, usize)) -> Result<Record> {
        read_record(&self.path, at)
    }

    pub fn append(&mut self, r: &Record) -> Result<()> {
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        // One write per record: with O_APPEND a crash leaves at most a torn last line.
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Rewrites the file with the last record of each id, in first-seen order. It keeps
    /// only offsets in memory and copies each record from the file, so memory does not
    /// grow with the records' text.
    pub fn compact(&self) -> Result<()> {
        self.compact_ordered(&[])
    }

    /// [`ResultsFile::compact`], with the ids of `last` (this run's articles, in input
    /// order: workers finish them in another order) after all others, in that order.
    pub fn compact_ordered(&self, last: &[String]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let (ids, spans) = spans(&self.path)?;
        let rank: HashMap<&str, usize> = last
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        // Stable: ids not in `last` keep their first-seen order, ahead of the others.
        order.sort_by_key(|&i| rank.get(ids[i].as_str()).map_or((0, 0), |&r| (1, r)));
        let spans: Vec<(u64, usize)> = order.into_iter().map(|i| spans[i]).collect();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = new_temp(dir)?;
        {
            let mut src = File::open(&self.path)?;
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            let mut buf = Vec::new();
            for (offset, len) in spans {
                buf.resize(len, 0);
                src.seek(SeekFrom::Start(offset))?;
                src.read_exact(&mut buf)?;
                w.write_all(&buf)?;
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The (offset, length with newline) of the last record of each id, in the order the
/// ids first appear.
pub(crate) fn last_spans_by_id(path: &Path) -> Result<Vec<(String, u64, usize)>> {
    let (ids, spans) = spans(path)?;
    Ok(ids
        .into_iter()
        .zip(spans)
        .map(|(id, (o, l))| (id, o, l))
        .collect())
}

/// Ids in first-seen order and where each one's last record is: (offset, length).
type Spans = (Vec<String>, Vec<(u64, usize)>);

/// Ids in first-seen order, and the (offset, length with newline) of each one's last
/// complete record line.
fn spans(path: &Path) -> Result<Spans> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut first: Vec<String> = Vec::new();
    let mut last: HashMap<String, (u64, usize)> = HashMap::new();
    let mut r = BufReader::new(File::open(path)?);
    let mut line = String::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        if line.ends_with('\n') {
            if let Ok(rec) = serde_json::from_str::<IdOnly>(&line) {
                if last.insert(rec.id.clone(), (offset, n)).is_none() {
                    first.push(rec.id);
                }
            }
        }
        offset += n as u64;
    }
    let spans = first.iter().map(|id| last[id]).collect();
    Ok((first, spans))
}

/// A temporary file in `dir` created with mode 0666 less the process umask (as any
/// other output file), not tempfile's private 0600: colleagues must be able to read
/// what a job wrote.
/// The record at `at` (from [`Done::at`]) of the results file at `path`.
pub fn read_record(path: &Path, at: (u64, usize)) -> Result<Record> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(at.0))?;
    let mut buf = vec![0u8; at.1];
    f.read_exact(&mut buf)?;
    serde_json::from_slice(&buf).with_context(|| {
        format!(
            "{}: the record at byte {} cannot be read back",
            path.display(),
            at.0
        )
    })
}

pub fn new_temp(dir: &Path) -> Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".tarjuma-")
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))
}

/// Writes `text` to `path` atomically.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut tmp = new_temp(dir.unwrap_or(Path::new(".")))?;
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
    s.push_str(&format!("Source: `{}` · {models}\n\n", r.source));
    if let Some(d) = &r.dateline {
        s.push_str(&format!("Dateline: {d}\n\n"));
    }
    s.push_str("## Summary\n\n");
    for b in &r.summary {
        let refs: String = b
            .paragraphs
            .iter()
            .map(|i| format!("[^p{}]", i + 1))
            .collect();
        s.push_str(&format!("- {}{refs}\n", b.text));
    }
    if let Some(e) = &r.summary_error {
        s.push_str(&format!("*No summary: {e}.*\n"));
    }
    s.push_str("\n## Translation\n\n");
    for (i, p) in r.paragraphs.iter().enumerate() {
        s.push_str(&format!("**{}.** ", i + 1));
        match p.kind {
            crate::text::Kind::Body => s.push_str(&p.translation),
            crate::text::Kind::Boilerplate => {
                s.push_str(&format!("*[boilerplate]* {}", p.translation))
            }
        }
        if !p.warnings.is_empty() {
            let w: Vec<String> = p.warnings.iter().map(|w| format!("{w:?}")).collect();
            s.push_str(&format!(" <!-- warnings: {} -->", w.join(", ")));
        }
        s.push_str("\n\n");
    }
    // Footnotes: each cited paragraph, quoted, so a reader sees what grounds a bullet.
    let mut cited: Vec<usize> = r
        .summary
        .iter()
        .flat_map(|b| b.paragraphs.clone())
        .collect();
    cited.sort_unstable();
    cited.dedup();
    for i in cited {
        if let Some(p) = r.paragraphs.get(i) {
            let quote: String = p.translation.chars().take(160).collect();
            let more = if p.translation.chars().count() > 160 {
                "…"
            } else {
                ""
            };
            s.push_str(&format!(
                "[^p{}]: Paragraph {}: \"{quote}{more}\"\n",
                i + 1,
                i + 1
            ));
        }
    }
    s
}
