//! Helpers: run the real executable, find the seed article, fetch test models once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tarjuma"));
    c.env_remove("TARJUMA_MODEL")
        .env_remove("TARJUMA_OUT")
        .stdin(Stdio::null());
    c
}

/// Runs with the given stdin text.
pub fn run_with_stdin(mut c: Command, input: &str) -> Output {
    use std::io::Write;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn tarjuma");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The seed article in ../shared/corpus (never copied into the repo).
pub fn seed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/russia-us-talks-2021-12-28.ur.txt")
}

pub fn seed() -> String {
    std::fs::read_to_string(seed_path()).expect("the seed article in ../shared/corpus")
}

static FETCH: Mutex<()> = Mutex::new(());

/// The cached path of a built-in model, fetched once through `tarjuma models fetch`.
pub fn model_path(name: &str) -> PathBuf {
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let o = bin().args(["models", "path", name]).output().unwrap();
    if o.status.success() {
        return PathBuf::from(stdout(&o).trim());
    }
    let o = bin()
        .args(["models", "fetch", "--quiet", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "fetching {name} failed: {}", stderr(&o));
    let o = bin().args(["models", "path", name]).output().unwrap();
    PathBuf::from(stdout(&o).trim())
}

/// A JSON array of token ids (fixture files).
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A JSON array of numbers as f32 (fixture logits).
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Largest absolute difference of two equally long vectors.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The records of a run's `results.jsonl` (none when the file is missing); a line that
/// is not JSON fails the test, naming it.
pub fn records(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
