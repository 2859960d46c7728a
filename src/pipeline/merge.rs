//! `tarjuma merge`: joins the output directories of shards into one `results.jsonl`
//! plus the per-article Markdown pages, and checks that no article is missing (against
//! the input list, when given) or done by two shards.
//!
//! Records are copied as they are, line by line, with only offsets kept in memory, so a
//! merge of 20,000 articles needs no more memory than one of 20.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::io::read::articles;
use crate::io::write::{last_spans_by_id, lock_dir, new_temp, write_atomic};

#[derive(Debug, Default)]
pub struct MergeOutcome {
    pub records: usize,
    pub errors: usize,
    /// Ids of the input list that no shard wrote.
    pub missing: Vec<String>,
    /// Ids written by more than one shard, with the directories.
    pub duplicated: Vec<(String, Vec<PathBuf>)>,
    /// Ids that no input produces (only checked with an input list).
    pub unexpected: Vec<String>,
}

#[derive(Deserialize)]
struct Slim {
    status: String,
}

/// Fails when another process still writes `dir` (a shard that has not finished).
fn check_finished(dir: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let lock = dir.join(".tarjuma.lock");
    let Ok(f) = File::open(&lock) else {
        return Ok(());
    };
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if r != 0 {
        let who = std::fs::read_to_string(&lock).unwrap_or_default();
        bail!(
            "{} is still being written ({}); merge when every shard has finished",
            dir.display(),
            who.trim()
        );
    }
    Ok(())
}

/// Merges shard directories into `out`. `inputs`: the batch's INPUT list, to check
/// that every article was done.
pub fn merge(dirs: &[PathBuf], out: &Path, inputs: Option<&[String]>) -> Result<MergeOutcome> {
    let out_abs = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    // Where each id's record is: (dir index, offset, length).
    let mut at: HashMap<String, (usize, u64, usize)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut dup: HashMap<String, Vec<usize>> = HashMap::new();
    for (d, dir) in dirs.iter().enumerate() {
        if dir.canonicalize().is_ok_and(|p| p == out_abs) {
            bail!("--out {} is one of the shard directories", out.display());
        }
        let file = dir.join("results.jsonl");
        if !file.is_file() {
            bail!(
                "{}: no results.jsonl (is it a shard's --out directory?)",
                dir.display()
            );
        }
        check_finished(dir)?;
        for (id, off, len) in
            last_spans_by_id(&file).with_context(|| format!("cannot read {}", file.display()))?
        {
            match at.get(&id) {
                Some(&(first, _, _)) => dup.entry(id).or_insert_with(|| vec![first]).push(d),
                None => {
                    at.insert(id.clone(), (d, off, len));
                    order.push(id);
                }
            }
        }
    }
    let mut outcome = MergeOutcome::default();
    if let Some(inputs) = inputs {
        let list = articles(inputs).map_err(|e| crate::config::config_error(e.to_string()))?;
        let mut expected: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in list.ids() {
            if !at.contains_key(&id) {
                outcome.missing.push(id.clone());
            }
            seen.insert(id.clone());
            expected.push(id);
        }
        outcome.unexpected = order
            .iter()
            .filter(|i| !seen.contains(*i))
            .cloned()
            .collect();
        // Input order first, then whatever no input produced.
        let extra = std::mem::take(&mut outcome.unexpected);
        order = expected
            .into_iter()
            .filter(|i| at.contains_key(i))
            .chain(extra.iter().cloned())
            .collect();
        outcome.unexpected = extra;
    }
    let mut dups: Vec<(String, Vec<PathBuf>)> = dup
        .into_iter()
        .map(|(id, ds)| (id, ds.into_iter().map(|d| dirs[d].clone()).collect()))
        .collect();
    dups.sort();
    outcome.duplicated = dups;

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let _lock = lock_dir(out)?;
    let mut tmp = new_temp(out)?;
    {
        let mut files: Vec<File> = dirs
            .iter()
            .map(|d| File::open(d.join("results.jsonl")))
            .collect::<std::io::Result<_>>()?;
        let mut w = BufWriter::new(tmp.as_file_mut());
        let mut buf = Vec::new();
        for id in &order {
            let (d, off, len) = at[id];
            buf.resize(len, 0);
            files[d].seek(SeekFrom::Start(off))?;
            files[d].read_exact(&mut buf)?;
            w.write_all(&buf)?;
            outcome.records += 1;
            let ok = serde_json::from_slice::<Slim>(&buf).is_ok_and(|s| s.status == "ok");
            if !ok {
                outcome.errors += 1;
                continue;
            }
            let md = dirs[d].join(format!("{id}.md"));
            if md.is_file() {
                let text = std::fs::read_to_string(&md)
                    .with_context(|| format!("cannot read {}", md.display()))?;
                write_atomic(&out.join(format!("{id}.md")), &text)?;
            }
        }
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out.join("results.jsonl"))
        .map_err(|e| e.error)?;
    let shards: Vec<serde_json::Value> = dirs
        .iter()
        .map(|d| {
            let run = std::fs::read_to_string(d.join("run.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            json!({"dir": d, "run": run})
        })
        .collect();
    let v = json!({
        "tarjuma": env!("CARGO_PKG_VERSION"),
        "status": if outcome.missing.is_empty() && outcome.duplicated.is_empty() { "complete" } else { "incomplete" },
        "merged": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "counts": {"records": outcome.records, "errors": outcome.errors},
        "missing": outcome.missing,
        "duplicated": outcome.duplicated.iter().map(|(i, d)| json!({"id": i, "dirs": d})).collect::<Vec<_>>(),
        "unexpected": outcome.unexpected,
        "shards": shards,
    });
    write_atomic(
        &out.join("run.json"),
        &(serde_json::to_string_pretty(&v)? + "\n"),
    )?;
    Ok(outcome)
}
