//! The command line contract: help, usage errors, exit codes. No model is loaded.

use crate::util::{bin, stderr, stdout};

#[test]
fn every_subcommand_documents_its_flags() {
    let expect: &[(&[&str], &[&str])] = &[
        (
            &["run", "--help"],
            &[
                "--out",
                "--model",
                "--threads",
                "--device",
                "--max-bullets",
                "--temperature",
                "--seed",
                "--force",
                "--offline",
                "--cache-dir",
                "[env: TARJUMA_MODEL=",
                "[env: TARJUMA_THREADS=",
                "[env: TARJUMA_DEVICE=",
            ],
        ),
        (
            &["translate", "--help"],
            &[
                "--model",
                "--threads",
                "--device",
                "--temperature",
                "--chunk-tokens",
            ],
        ),
        (
            &["summarize", "--help"],
            &["--model", "--max-bullets", "--seed"],
        ),
        (
            &["generate", "--help"],
            &[
                "--model",
                "--prompt",
                "--prompt-file",
                "--max-tokens",
                "--raw",
                "--timing",
            ],
        ),
        (&["models", "--help"], &["list", "fetch", "verify", "path"]),
        (&["models", "fetch", "--help"], &["--cache-dir", "--quiet"]),
    ];
    for (args, needles) in expect {
        let o = bin().args(*args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        let help = stdout(&o);
        for n in *needles {
            assert!(
                help.contains(n),
                "`tarjuma {}` lacks {n}:\n{help}",
                args.join(" ")
            );
        }
        // Every option carries a description: on its line, or on the next one.
        let lines: Vec<&str> = help.lines().collect();
        let start = lines.iter().position(|l| *l == "Options:").unwrap_or(0);
        for (i, line) in lines.iter().enumerate().skip(start) {
            if !line.trim_start().starts_with('-') {
                continue;
            }
            let inline = line.trim().contains("  ");
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            assert!(
                inline || (!next.is_empty() && !next.starts_with('-')),
                "undocumented option in {args:?}: {line}"
            );
        }
    }
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one line expected for {args:?}: {err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    let seed = crate::util::seed_path();
    let seed = seed.to_str().unwrap();
    assert_usage_error(&["run", "--bogus", seed, "--out", "x"], "--bogus");
    assert_usage_error(
        &["run", "/no/such/article.txt", "--out", "x"],
        "/no/such/article.txt",
    );
    assert_usage_error(
        &["run", seed, "--out", "x", "--model", "no-such-model"],
        "no-such-model",
    );
    assert_usage_error(
        &["run", seed, "--out", "x", "--model", "/no/such/model.gguf"],
        "/no/such/model.gguf",
    );
    assert_usage_error(&["translate", "/no/such/file.txt"], "/no/such/file.txt");
    assert_usage_error(&["translate", "--device", "tpu", seed], "tpu");
    assert_usage_error(&["summarize", "--max-bullets", "0", seed], "--max-bullets");
    assert_usage_error(
        &["run", seed, "--out", "x", "--temperature=-1"],
        "--temperature",
    );
    assert_usage_error(&["run", seed], "--out");
}

#[test]
fn models_list_shows_every_manifest() {
    let cache = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["models", "list", "--cache-dir"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = stdout(&o);
    for m in [
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        "smollm2-135m-instruct",
        "gemma-3-270m",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(m))
            .unwrap_or_else(|| panic!("{m} missing:\n{out}"));
        assert!(line.contains("not cached"), "{line}");
    }
    assert!(out.contains("(default)"));
    // The Hub models a newsroom would run, each pinned to a commit.
    for m in [
        "translategemma-4b-it",
        "gemma-3-4b-it",
        "qwen2.5-3b-instruct",
        "qwen2.5-7b-instruct",
        "llama-3.2-3b-instruct",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{m} ")))
            .unwrap_or_else(|| panic!("{m} missing:\n{out}"));
        assert!(line.contains(" @ "), "no pinned revision: {line}");
        assert_eq!(
            line.contains("ur→en"),
            m == "translategemma-4b-it",
            "{line}"
        );
    }
}

/// When the model that translates is not known to translate Urdu, `translate` and
/// `run` say so in one line, naming the models that do; a translator that cannot
/// translate Urdu is refused.
#[test]
fn a_model_that_cannot_translate_urdu_is_named_with_the_ones_that_can() {
    let cache = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_path();
    let o = bin()
        .args([
            "translate",
            "--offline",
            "--model",
            "smollm2-135m-instruct",
            "--cache-dir",
        ])
        .arg(cache.path())
        .arg(&seed)
        .output()
        .unwrap();
    let err = stderr(&o);
    let note: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not known to translate Urdu"))
        .collect();
    assert_eq!(note.len(), 1, "{err}");
    for name in [
        "smollm2-135m-instruct",
        "translategemma-4b-it",
        "nllb-200-distilled-600m",
        "opus-mt-ur-en",
    ] {
        assert!(note[0].contains(name), "{}", note[0]);
    }
    // A dedicated translator, or an instruction model that translates: no note.
    for t in ["opus-mt-ur-en", "translategemma-4b-it"] {
        let o = bin()
            .args(["translate", "--offline", "--translator", t, "--cache-dir"])
            .arg(cache.path())
            .arg(&seed)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "offline and not cached");
        assert!(
            !stderr(&o).contains("not known to translate"),
            "{t}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains(t), "{t}: {}", stderr(&o));
    }
    assert_usage_error(
        &[
            "translate",
            "--translator",
            "qwen2.5-3b-instruct",
            seed.to_str().unwrap(),
        ],
        "not known to translate Urdu",
    );
}

#[test]
fn offline_mode_names_the_missing_model() {
    let cache = tempfile::tempdir().unwrap();
    let seed = crate::util::seed_path();
    let o = bin()
        .args(["run", "--offline", "--out"])
        .arg(cache.path().join("out"))
        .arg("--cache-dir")
        .arg(cache.path())
        .arg(&seed)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("qwen2.5-coder-0.5b-instruct") && err.contains("offline"),
        "{err}"
    );
}

#[test]
fn a_broken_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 not really").unwrap();
    let seed = crate::util::seed_path();
    let o = bin()
        .args(["translate", "--model"])
        .arg(&bad)
        .arg(&seed)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("broken.gguf"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
