//! Peak memory of `tarjuma run` against the number of articles (not a test: a
//! measurement). Articles are streamed, so 2,000 short articles must peak within 10 % of
//! 10 (issue 12).
//!
//! It cuts short Urdu articles from the seed article in ../shared/corpus, runs the real
//! executable with the tiny Marian fixture as translator and a tiny random llama GGUF as
//! summarizer, and reads the child's peak RSS from `wait4`.
//!
//!     bash scripts/batch-rss.sh        # or: cargo bench --bench batch_rss -- 10 2000

#[path = "../tests/all/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn peak_rss_kib(mut cmd: Command) -> (i64, i32, f64) {
    let t0 = Instant::now();
    // Reaped by wait4 below, which also gives the child's own peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn tarjuma");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child; status and rusage point to live locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as i32, "wait4");
    (
        ru.ru_maxrss,
        libc::WEXITSTATUS(status),
        t0.elapsed().as_secs_f64(),
    )
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![10, 2000]
    } else {
        counts
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed =
        std::fs::read_to_string(root.join("../shared/corpus/russia-us-talks-2021-12-28.ur.txt"))
            .expect("the seed article in ../shared/corpus");
    let paras: Vec<&str> = seed
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.chars().count() > 40)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.gguf");
    fixtures::write_tiny_gguf(&model, fixtures::Variant::Ok);
    println!("| articles | peak RSS (MiB) | seconds | exit |");
    println!("|---|---|---|---|");
    for n in counts {
        let dir = tmp.path().join(format!("in-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let a = paras[i % paras.len()];
            let b = paras[(i * 7 + 3) % paras.len()];
            std::fs::write(dir.join(format!("a{i:05}.txt")), format!("{a}\n\n{b}\n")).unwrap();
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_tarjuma"));
        c.args(["run", "--quiet", "--threads", "1", "--model"])
            .arg(&model)
            .args(["--prompt-family", "chatml", "--translator", "opus-mt-ur-en"])
            .arg("--model-dir")
            .arg(root.join("tests/fixtures/seq2seq/marian"))
            .args(["--beams", "1", "--max-bullets", "3", "--out"])
            .arg(tmp.path().join(format!("out-{n}")))
            .arg(&dir);
        let (kib, code, secs) = peak_rss_kib(c);
        println!("| {n} | {:.1} | {secs:.1} | {code} |", kib as f64 / 1024.0);
    }
}
