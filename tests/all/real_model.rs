//! End to end with real pip-carried models (fetched once into the tarjuma cache).
//! SmolLM2-135M is English only: these tests check the pipeline and its guards, not
//! translation quality (see ARCHITECTURE.md).

use serde_json::Value;
use tarjuma::pipeline::job::prepare;
use tarjuma::text::script::has_arabic_letters;

use crate::util::{bin, model_path, records, run_with_stdin, seed_path, stderr, stdout};

const SMOL: &str = "smollm2-135m-instruct";

#[test]
fn seed_article_record() {
    model_path(SMOL);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .args(["run", "--quiet", "--threads", "2", "--model", SMOL, "--out"])
        .arg(&out)
        .arg(seed_path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["id"], "russia-us-talks-2021-12-28.ur");
    assert_eq!(r["model"]["name"], SMOL);
    assert_eq!(r["model"]["sha256"].as_str().unwrap().len(), 64);
    assert!(r["timings"]["tokens_in"].as_u64().unwrap() > 0);
    assert!(r["timings"]["tokens_out"].as_u64().unwrap() > 0);

    let source = prepare(&std::fs::read_to_string(seed_path()).unwrap());
    let paras = r["paragraphs"].as_array().unwrap();
    assert_eq!(paras.len(), source.len(), "1:1 with source paragraphs");
    for (p, s) in paras.iter().zip(&source) {
        assert_eq!(p["source"], s.text.as_str());
        let t = p["translation"].as_str().unwrap();
        assert!(!t.trim().is_empty(), "empty translation for {}", s.text);
        assert!(!has_arabic_letters(t), "Urdu script left in: {t}");
        let src = s.text.as_str();
        let boiler = src.starts_with("مزید پڑھیں")
            || src.starts_with("یہ بھی پڑھیں")
            || src.contains("فوٹو:")
            || src.starts_with("تبصرے");
        let want = if boiler { "boilerplate" } else { "body" };
        assert_eq!(p["kind"], want, "{src}");
    }
    assert_eq!(
        paras.iter().filter(|p| p["kind"] == "boilerplate").count(),
        5
    );
    // Bullets (issue 10): grounded in body paragraphs, checked against their
    // translation, never headed by the dateline; every rejected one has its reason.
    let bullets = r["summary"].as_array().unwrap();
    assert!(bullets.len() <= 5, "{bullets:?}");
    assert!(
        !bullets.is_empty() || r["summary_error"].is_string(),
        "no bullets and no reason: {r}"
    );
    crate::summary::assert_grounded(bullets, paras, "translation");
    for b in bullets {
        let t = b["text"].as_str().unwrap();
        assert!(!t.trim().is_empty() && !t.starts_with("28 December"), "{b}");
    }
    for d in r["dropped_bullets"].as_array().unwrap() {
        assert!(!d["reason"].as_str().unwrap().is_empty(), "{d}");
    }
    assert_eq!(r["format"], 2);

    let md = std::fs::read_to_string(out.join("russia-us-talks-2021-12-28.ur.md")).unwrap();
    assert!(md.contains("## Translation") && md.contains("## Summary"));
    assert_eq!(
        md.lines().filter(|l| l.starts_with("- ")).count(),
        bullets.len()
    );
}

#[test]
fn bad_articles_fail_alone_and_runs_resume() {
    model_path(SMOL);
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in");
    std::fs::create_dir(&inp).unwrap();
    std::fs::write(
        inp.join("good.txt"),
        "روس نے کہا کہ مذاکرات اگلے ماہ ہوں گے۔",
    )
    .unwrap();
    std::fs::write(inp.join("latin1.txt"), b"caf\xe9 \xff\xfe").unwrap();
    std::fs::write(inp.join("blank.md"), "\u{FEFF}  \n\n").unwrap();
    let jsonl = dir.path().join("feed.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": \"wire-1\", \"text\": \"یوکرین کے صدر نے بات کی۔\"}\nnot json\n{\"id\": \"wire-3\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        bin()
            .args([
                "run",
                "--threads",
                "2",
                "--model",
                SMOL,
                "--max-bullets",
                "3",
                "--out",
            ])
            .arg(&out)
            .arg(&inp)
            .arg(&jsonl)
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(1), "some failed: {}", stderr(&o));
    let err = stderr(&o);
    let recs = records(&out);
    let by_id = |id: &str| {
        recs.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {recs:?}"))
            .clone()
    };
    assert_eq!(by_id("good")["status"], "ok");
    assert_eq!(by_id("wire-1")["status"], "ok");
    for (id, why) in [
        ("latin1", "UTF-8"),
        ("blank", "empty"),
        ("feed-2", "JSON"),
        ("wire-3", "text"),
    ] {
        let r = by_id(id);
        assert_eq!(r["status"], "error", "{id}");
        assert!(r["error"].as_str().unwrap().contains(why), "{id}: {r}");
        assert!(err.contains(&format!("`{id}`")), "stderr names {id}: {err}");
    }
    assert!(out.join("good.md").exists() && out.join("wire-1.md").exists());
    assert!(!out.join("latin1.md").exists());

    // A rerun skips what is done, retries what failed, and keeps one record per id.
    let o = run();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("4 failed, 2 already done"),
        "{}",
        stderr(&o)
    );
    let again = records(&out);
    assert_eq!(again.len(), 6);
    assert_eq!(
        again.iter().find(|r| r["id"] == "good").unwrap()["timings"],
        by_id("good")["timings"]
    );
}

#[test]
fn translate_streams_and_summarize_prints_bullets() {
    model_path(SMOL);
    let mut c = bin();
    c.args(["translate", "--quiet", "--model", SMOL, "-"]);
    let o = run_with_stdin(c, "روس نے کہا کہ مذاکرات ہوں گے۔\n\nیوکرین نے انکار کیا۔");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.trim_end().split("\n\n").count(), 2, "{text}");
    assert!(!has_arabic_letters(&text));

    let mut c = bin();
    c.args([
        "summarize",
        "--quiet",
        "--model",
        SMOL,
        "--max-bullets",
        "4",
        "-",
    ]);
    let english = "Russia will hold security talks with the United States next month. \
        Foreign Minister Sergei Lavrov said the talks would start right after the new year holidays. \
        NATO has proposed to begin on 12 January. Ukraine says more than 14,000 people have died in Donbas.";
    let o = run_with_stdin(c, english);
    assert!(o.status.success(), "{}", stderr(&o));
    let bullets: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert!((3..=4).contains(&bullets.len()), "{bullets:?}");
    assert!(bullets.iter().all(|b| b.starts_with("- ") && b.len() > 6));
}

/// The qwen2 and gemma3 (SentencePiece) paths run end to end on one sentence.
#[test]
fn qwen2_and_gemma3_models_run() {
    for model in ["qwen2.5-coder-0.5b-instruct", "gemma-3-270m"] {
        model_path(model);
        let mut c = bin();
        c.args([
            "translate",
            "--quiet",
            "--threads",
            "2",
            "--model",
            model,
            "-",
        ]);
        let o = run_with_stdin(c, "روس کے وزیر خارجہ نے کہا کہ مذاکرات اگلے ماہ ہوں گے۔");
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(
            !text.trim().is_empty() && !has_arabic_letters(&text),
            "{model}: {text}"
        );
    }
}

/// A text too long for one prompt is summarised in groups, then merged.
#[test]
fn long_text_is_summarised_by_map_reduce() {
    model_path(SMOL);
    let facts = [
        "Russia will hold security talks with the United States in January.",
        "The talks will take place in Geneva after the new year holidays.",
        "Foreign Minister Sergei Lavrov announced the talks in an interview.",
        "NATO proposed that the talks begin on 12 January.",
        "Russia has moved additional troops to the border with Ukraine.",
        "Western countries have warned Russia of severe economic sanctions.",
        "Russia annexed Crimea in 2014 and backed separatists in the east.",
        "Ukraine says more than 14,000 people have died in the Donbas fighting.",
    ];
    let text = facts
        .iter()
        .cycle()
        .take(40)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut c = bin();
    c.args([
        "summarize",
        "--quiet",
        "--threads",
        "2",
        "--model",
        SMOL,
        "--context",
        "512",
        "--max-bullets",
        "4",
        "-",
    ]);
    let o = run_with_stdin(c, &text);
    assert!(o.status.success(), "{}", stderr(&o));
    let bullets: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert!((3..=4).contains(&bullets.len()), "{bullets:?}");
}
