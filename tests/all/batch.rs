//! Overnight batches: inputs that slip through (non-Urdu, mixed, UTF-16, a file that
//! disappears), output permissions, torn last lines, SIGKILL at random points, SIGTERM,
//! shards (flag and Slurm variables) and `merge`.
//!
//! They run the real executable with the tiny Marian fixture as translator and a tiny
//! random llama GGUF as summarizer, so a batch of articles takes about a second and
//! decoding is greedy (deterministic).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::{write_tiny_gguf, Variant};
use crate::util::{bin, records, seed, stderr};

/// A work dir with the tiny summarizer and a set of Urdu articles cut from the seed
/// article.
struct Env {
    dir: tempfile::TempDir,
    model: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny.gguf");
        write_tiny_gguf(&model, Variant::Ok);
        Env { dir, model }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `n` Urdu articles of two or three paragraphs each, in `DIR/name/`.
    fn articles(&self, name: &str, n: usize) -> PathBuf {
        let d = self.path(name);
        std::fs::create_dir_all(&d).unwrap();
        let text = seed();
        let paras: Vec<&str> = text
            .split("\n\n")
            .map(str::trim)
            .filter(|p| p.chars().count() > 40)
            .collect();
        assert!(paras.len() >= 8);
        for i in 0..n {
            let a = paras[i % paras.len()];
            let b = paras[(i * 3 + 1) % paras.len()];
            std::fs::write(d.join(format!("a{i:02}.txt")), format!("{a}\n\n{b}\n")).unwrap();
        }
        d
    }

    /// `tarjuma run` with the tiny models, quiet, into `out`.
    fn run(&self, out: &Path, inputs: &[&Path]) -> Command {
        let mut c = bin();
        c.env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_COUNT")
            .env_remove("JOB_COMPLETION_INDEX")
            .args(["run", "--threads", "1", "--model"])
            .arg(&self.model)
            .args(["--prompt-family", "chatml", "--translator", "opus-mt-ur-en"])
            .arg("--model-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq2seq/marian"))
            .args(["--beams", "1", "--max-bullets", "3", "--out"])
            .arg(out)
            .args(inputs);
        c
    }
}

/// id → (status, translations, bullets): what must not depend on how a run went.
fn essence(out: &Path) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for r in records(out) {
        let id = r["id"].as_str().unwrap().to_string();
        let trans: Vec<Value> = r["paragraphs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["translation"].clone())
            .collect();
        let prev = m.insert(
            id.clone(),
            serde_json::json!([r["status"], trans, r["summary"], r["error"]]),
        );
        assert!(prev.is_none(), "`{id}` appears twice in {}", out.display());
    }
    m
}

fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(o));
}

fn by_id(out: &Path) -> BTreeMap<String, Value> {
    records(out)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn batch_inputs_that_slip_through() {
    let env = Env::new();
    let d = env.path("in");
    std::fs::create_dir_all(&d).unwrap();
    let urdu = "لاہور میں میٹرو بس کے کرایوں میں اضافہ۔\n\nحکام کے مطابق نیا کرایہ یکم جولائی سے نافذ ہوگا۔\n";
    std::fs::write(d.join("urdu.txt"), urdu).unwrap();
    std::fs::write(
        d.join("english.txt"),
        "Metro fares rise in Lahore.\n\nThe provincial government raised the fare from 30 \
         to 40 rupees, and the new fare applies from the first of July.\n",
    )
    .unwrap();
    std::fs::write(
        d.join("mixed.txt"),
        "وزیر اعلیٰ نے کہا کہ \"We will not raise fares again this year\" اور عوام کو \
         ریلیف دیا جائے گا۔\n\nحکام کے مطابق نیا کرایہ یکم جولائی سے نافذ ہوگا۔\n",
    )
    .unwrap();
    let utf16 = |be: bool| -> Vec<u8> {
        let mut b = if be {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in urdu.encode_utf16() {
            b.extend(if be { u.to_be_bytes() } else { u.to_le_bytes() });
        }
        b
    };
    std::fs::write(d.join("utf16le.txt"), utf16(false)).unwrap();
    std::fs::write(d.join("utf16be.txt"), utf16(true)).unwrap();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(urdu.as_bytes());
    std::fs::write(d.join("utf8bom.txt"), bom).unwrap();
    // Directories are walked for .jsonl too.
    std::fs::write(
        d.join("wire.jsonl"),
        format!("{}\n", serde_json::json!({"id": "wire-1", "text": urdu})),
    )
    .unwrap();

    let out = env.path("out");
    let o = env.run(&out, &[&d]).arg("--quiet").output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "one article fails: {}",
        stderr(&o)
    );
    let r = by_id(&out);
    assert_eq!(r.len(), 7, "{:?}", r.keys());
    assert_eq!(r["english"]["status"], "error");
    let e = r["english"]["error"].as_str().unwrap();
    assert!(e.contains("not Urdu: looks like English"), "{e}");
    assert!(stderr(&o).contains("english") && stderr(&o).contains("not Urdu"));
    for id in ["urdu", "mixed", "utf16le", "utf16be", "utf8bom", "wire-1"] {
        assert_eq!(r[id]["status"], "ok", "{id}: {}", r[id]);
        assert_eq!(r[id]["language"], "Urdu", "{id}");
    }
    // The decoded texts are the same article: the same translation.
    assert_eq!(r["utf16le"]["paragraphs"], r["urdu"]["paragraphs"]);
    assert_eq!(r["utf16be"]["paragraphs"], r["urdu"]["paragraphs"]);
    assert_eq!(r["utf8bom"]["paragraphs"], r["urdu"]["paragraphs"]);

    // `--non-urdu pass` keeps the English text as it is and summarises it.
    let o = env
        .run(&out, &[&d])
        .args(["--quiet", "--non-urdu", "pass"])
        .output()
        .unwrap();
    ok(&o);
    let r = by_id(&out);
    let en = &r["english"];
    assert_eq!(en["status"], "ok", "{en}");
    assert_eq!(en["language"], "English");
    assert_eq!(
        en["paragraphs"][0]["translation"], "Metro fares rise in Lahore.",
        "kept as it is"
    );
    assert_eq!(
        en["paragraphs"][0]["source"],
        en["paragraphs"][0]["translation"]
    );
}

/// A file that disappears after the batch started gets an error record that names it;
/// the batch goes on. The first input is a FIFO, so the run waits on it, and the test
/// deletes the third file meanwhile.
#[test]
fn batch_file_that_disappears_mid_run() {
    let env = Env::new();
    let d = env.articles("in", 3);
    let gate = env.path("gate.txt");
    let c = std::ffi::CString::new(gate.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let doomed = d.join("a02.txt");
    let out = env.path("out");
    let child = env
        .run(&out, &[&gate, &d.join("a00.txt"), &doomed])
        .args(["--progress-every", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run is blocked reading the FIFO: progress lines still come, off a terminal.
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_file(&doomed).unwrap();
    std::fs::write(&gate, "روس اور امریکا کے مذاکرات اگلے ماہ ہوں گے۔\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("progress: 0/3 articles"),
        "a progress line: {err}"
    );
    let r = by_id(&out);
    assert_eq!(r["gate"]["status"], "ok");
    assert_eq!(r["a00"]["status"], "ok");
    let e = r["a02"]["error"].as_str().unwrap();
    assert!(
        e.contains("cannot read") && e.contains("No such file"),
        "{e}"
    );
    assert!(r["a02"]["source"].as_str().unwrap().ends_with("a02.txt"));
}

/// Output files are created with the process umask, like any other program's.
#[test]
fn batch_outputs_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let d = env.articles("in", 1);
    for (mask, want) in [(0o022, 0o644), (0o002, 0o664)] {
        let out = env.path(&format!("out-{mask:o}"));
        let mut c = env.run(&out, &[&d]);
        c.arg("--quiet");
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
        ok(&c.output().unwrap());
        for f in ["results.jsonl", "a00.md", "run.json"] {
            let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, want, "{f} under umask {mask:03o}: {mode:o}");
        }
    }
}

/// A record torn by a crash mid-write is dropped on resume with a warning, and only
/// that article is done again.
#[test]
fn batch_torn_last_line_is_dropped_on_resume() {
    let env = Env::new();
    let d = env.articles("in", 3);
    let out = env.path("out");
    ok(&env.run(&out, &[&d]).arg("--quiet").output().unwrap());
    let before = essence(&out);
    let file = out.join("results.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let last = text.trim_end().rfind('\n').unwrap() + 1;
    std::fs::write(&file, &text[..last + (text.len() - last) / 2]).unwrap();
    let o = env.run(&out, &[&d]).output().unwrap();
    ok(&o);
    let err = stderr(&o);
    assert!(err.contains("torn last line"), "{err}");
    assert!(err.contains("1 ok, 0 failed, 2 already done"), "{err}");
    assert_eq!(essence(&out), before);
}

/// A tiny deterministic generator for the kill points.
struct Lcg(u64);
impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SIGKILL at 10 random points, resuming each time: the final results equal an
/// uninterrupted run, with no record missing or duplicated.
#[test]
fn batch_survives_sigkill_at_random_points() {
    let env = Env::new();
    // Three translator groups, so that kills land between records.
    let d = env.articles("in", 40);
    let clean = env.path("clean");
    let t0 = Instant::now();
    ok(&env.run(&clean, &[&d]).arg("--quiet").output().unwrap());
    let full = t0.elapsed();
    let want = essence(&clean);
    assert_eq!(want.len(), 40);

    let out = env.path("killed");
    let mut rng = Lcg(20261201);
    let mut partial = 0;
    for i in 0..10 {
        let mut child = env
            .run(&out, &[&d])
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i == 0 {
            // One kill surely mid-batch, whatever the machine's load: right after the
            // first record lands. The others fall at random points of a clean run.
            wait_for_records(&out, 1, full * 4 + Duration::from_secs(60));
        } else {
            std::thread::sleep(full.mul_f64(0.1 + 0.9 * rng.next_f64()));
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Whatever is on disk now must be whole records (or one torn line at the end).
        let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap_or_default();
        let complete = text.lines().filter(|l| l.ends_with('}')).count();
        if complete > 0 && complete < 40 {
            partial += 1;
        }
    }
    assert!(partial > 0, "some kill landed mid-batch");
    let o = env.run(&out, &[&d]).output().unwrap();
    ok(&o);
    assert_eq!(essence(&out), want);
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "complete");
}

fn wait_for_records(out: &Path, n: usize, limit: Duration) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let have = std::fs::read_to_string(out.join("results.jsonl"))
            .unwrap_or_default()
            .lines()
            .count();
        if have >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {n} records in {} after {limit:?}", out.display());
}

/// SIGTERM finishes the article in flight, writes a complete run.json and exits 143;
/// with no grace period the article is abandoned at once, cleanly. A rerun finishes.
#[test]
fn batch_sigterm_exits_143_with_run_json() {
    let env = Env::new();
    let d = env.articles("in", 40);
    let clean = env.path("clean");
    ok(&env.run(&clean, &[&d]).arg("--quiet").output().unwrap());
    for grace in ["30", "0"] {
        let out = env.path(&format!("out-{grace}"));
        let child = env
            .run(&out, &[&d])
            .args(["--quiet", "--grace-period", grace])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_records(&out, 1, Duration::from_secs(120));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(143), "grace {grace}: {}", stderr(&o));
        let run: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["status"], "interrupted", "{run}");
        assert_eq!(run["signal"], "SIGTERM");
        assert!(
            run["ended"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{run}"
        );
        assert!(run["started"].as_str().is_some());
        assert_eq!(run["models"]["model"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(
            run["models"]["translator"]["name"].as_str().unwrap(),
            "opus-mt-ur-en"
        );
        let n = records(&out).len();
        assert!((1..40).contains(&n), "grace {grace}: {n} records");
        assert_eq!(run["counts"]["ok"], n, "{run}");
        assert_eq!(run["settings"]["max_bullets"], 3);
        // Resume completes the batch with the same results.
        ok(&env.run(&out, &[&d]).arg("--quiet").output().unwrap());
        assert_eq!(essence(&out), essence(&clean), "grace {grace}");
    }
}

/// 4 shards merged equal the unsharded run, by flag and by Slurm's variables; merge
/// names a missing and a duplicated id.
#[test]
fn batch_shards_merge_to_the_unsharded_run() {
    let env = Env::new();
    let d = env.articles("in", 12);
    let d_str = d.to_str().unwrap().to_string();
    let whole = env.path("whole");
    ok(&env.run(&whole, &[&d]).arg("--quiet").output().unwrap());
    let want = essence(&whole);
    for how in ["flag", "slurm"] {
        let mut dirs = Vec::new();
        for i in 0..4 {
            let out = env.path(&format!("{how}-{i}"));
            let mut c = env.run(&out, &[&d]);
            c.arg("--quiet");
            if how == "flag" {
                c.arg("--shard").arg(format!("{i}/4"));
            } else {
                c.env("SLURM_ARRAY_TASK_ID", (i + 1).to_string())
                    .env("SLURM_ARRAY_TASK_COUNT", "4")
                    .env("SLURM_ARRAY_TASK_MIN", "1");
            }
            ok(&c.output().unwrap());
            for r in records(&out) {
                assert_eq!(r["shard"], serde_json::json!({"index": i, "count": 4}));
            }
            dirs.push(out);
        }
        let merged = env.path(&format!("{how}-merged"));
        let o = bin()
            .arg("merge")
            .args(&dirs)
            .arg("--out")
            .arg(&merged)
            .args(["--inputs", &d_str])
            .output()
            .unwrap();
        ok(&o);
        assert_eq!(essence(&merged), want, "{how}");
        // In input order, with every page.
        let ids: Vec<String> = records(&merged)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        for id in &ids {
            assert!(merged.join(format!("{id}.md")).is_file(), "{id}.md");
        }
    }
    // A missing and a duplicated id.
    let dirs: Vec<PathBuf> = (0..4).map(|i| env.path(&format!("flag-{i}"))).collect();
    let first = std::fs::read_to_string(dirs[0].join("results.jsonl")).unwrap();
    let mut lines: Vec<&str> = first.lines().collect();
    let gone: Value = serde_json::from_str(lines.remove(0)).unwrap();
    std::fs::write(dirs[0].join("results.jsonl"), lines.join("\n") + "\n").unwrap();
    let second = std::fs::read_to_string(dirs[1].join("results.jsonl")).unwrap();
    let twice: Value = serde_json::from_str(second.lines().next().unwrap()).unwrap();
    let mut third = std::fs::read_to_string(dirs[2].join("results.jsonl")).unwrap();
    third.push_str(second.lines().next().unwrap());
    third.push('\n');
    std::fs::write(dirs[2].join("results.jsonl"), third).unwrap();
    let o = bin()
        .arg("merge")
        .args(&dirs)
        .arg("--out")
        .arg(env.path("bad-merge"))
        .args(["--inputs", &d_str])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("missing") && err.contains(gone["id"].as_str().unwrap()),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`{}` was done by more than one shard",
            twice["id"].as_str().unwrap()
        )),
        "{err}"
    );
}

/// A shard index from Kubernetes' Indexed Job variable takes the same articles as the
/// flag; a wrong spec is a one-line usage error.
#[test]
fn batch_shard_from_kubernetes_index_and_bad_specs() {
    let env = Env::new();
    let d = env.articles("in", 6);
    let a = env.path("flag");
    ok(&env
        .run(&a, &[&d])
        .args(["--quiet", "--shard", "1/3"])
        .output()
        .unwrap());
    let b = env.path("k8s");
    ok(&env
        .run(&b, &[&d])
        .args(["--quiet", "--shards", "3"])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap());
    assert_eq!(essence(&a), essence(&b));
    for (args, msg) in [
        (vec!["--shard", "3/3"], "out of range"),
        (vec!["--shard", "x"], "expected I/N"),
        (vec!["--shards", "3"], "JOB_COMPLETION_INDEX"),
    ] {
        let o = env
            .run(&env.path("bad"), &[&d])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(msg) && e.lines().count() == 1, "{args:?}: {e}");
    }
    // Two processes never write one directory.
    let gate = env.path("gate.txt");
    let c = std::ffi::CString::new(gate.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let out = env.path("shared");
    let child = env.run(&out, &[&gate]).arg("--quiet").spawn().unwrap();
    wait_for_file(&out.join("run.json"));
    let o = env.run(&out, &[&d]).arg("--quiet").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("another tarjuma process"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&gate, "روس اور امریکا کے مذاکرات اگلے ماہ ہوں گے۔\n").unwrap();
    let o = child.wait_with_output().unwrap();
    ok(&o);
}

fn wait_for_file(p: &Path) {
    let t0 = Instant::now();
    while !p.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--parallel`: workers whose model calls decode together give the same records as one
/// article at a time, whether the instruction model translates or a translator does,
/// and the final results.jsonl lists the articles in input order.
#[test]
fn batch_parallel_workers_match_one_at_a_time_in_input_order() {
    let env = Env::new();
    let d = env.articles("in", 10);
    let llm = |out: &Path, parallel: &str| {
        let mut c = bin();
        c.args(["run", "--threads", "1", "--model"])
            .arg(&env.model)
            .args(["--prompt-family", "chatml", "--translator", "llm"])
            .args([
                "--max-bullets",
                "2",
                "--quiet",
                "--parallel",
                parallel,
                "--out",
            ])
            .arg(out)
            .arg(&d);
        c
    };
    let order = |out: &Path| -> Vec<String> {
        records(out)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let want: Vec<String> = (0..10).map(|i| format!("a{i:02}")).collect();
    let (one, four) = (env.path("llm-1"), env.path("llm-4"));
    ok(&llm(&one, "1").output().unwrap());
    ok(&llm(&four, "4").output().unwrap());
    assert_eq!(essence(&four), essence(&one));
    assert_eq!(order(&four), want);
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(four.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["settings"]["parallel"], 4);
    assert_eq!(run["counts"]["ok"], 10, "{run}");
    // Chunks were translated: the model's output, not the source, fills the records.
    let recs = records(&four);
    assert!(recs
        .iter()
        .all(|r| r["timings"]["tokens_out"].as_u64().unwrap() > 0));

    let (one, four) = (env.path("nmt-1"), env.path("nmt-4"));
    ok(&env
        .run(&one, &[&d])
        .args(["--quiet", "--parallel", "1"])
        .output()
        .unwrap());
    ok(&env
        .run(&four, &[&d])
        .args(["--quiet", "--parallel", "4"])
        .output()
        .unwrap());
    assert_eq!(essence(&four), essence(&one));
    assert_eq!(order(&four), want);
}
