//! Summaries an editor can trust (issue 10): grounded bullets that cover the whole story,
//! checked facts, no datelines, no boilerplate, and a failed summary that never costs the
//! translation.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tarjuma::eval::facts::FactSheet;
use tarjuma::pipeline::factcheck;

use crate::fixtures::{write_tiny_gguf, Variant};
use crate::util::{bin, model_path, records, stderr, stdout};

const SMOL: &str = "smollm2-135m-instruct";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/summary")
        .join(name)
}

/// Every bullet cites body paragraphs of the record, and every number, date and name it
/// states is in them.
pub fn assert_grounded(bullets: &[Value], paragraphs: &[Value], text_key: &str) {
    for b in bullets {
        let text = b["text"].as_str().unwrap();
        let cites: Vec<usize> = b["paragraphs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        assert!(!cites.is_empty(), "ungrounded bullet {b}");
        let mut support = String::new();
        for i in cites {
            let p = &paragraphs[i];
            assert_eq!(p["kind"], "body", "bullet {text:?} rests on {p}");
            support.push_str(p[text_key].as_str().unwrap());
            support.push('\n');
        }
        let missing = factcheck::unsupported(text, &support);
        assert!(
            missing.is_empty(),
            "{text:?}: {missing:?} not in {support:?}"
        );
    }
}

/// A summary stage that fails (here: a prompt set whose bullet prompt overflows the
/// context) keeps the translation, with `summary_error`; `--resummarize` fills the
/// summary in later, without translating again. Records name their prompt set.
#[test]
fn failed_summary_keeps_translation_and_resummarize_fills_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_gguf(&model, Variant::Ok);
    // English kept as it is (`--non-urdu pass`), so the summary has real sentences to
    // work on with the tiny models.
    let input = dir.path().join("talks.txt");
    std::fs::write(
        &input,
        "Russia and the United States will hold talks in Geneva next month.\n\nThe foreign minister said the talks would start after the New Year holidays.\n",
    )
    .unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    let builtin =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/tasks.toml"))
            .unwrap();
    let filler = "background ".repeat(6000);
    std::fs::write(
        prompts.join("tasks.toml"),
        builtin.replace(
            "Paragraph:\n{paragraph}",
            &format!("{filler}\n{{paragraph}}"),
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        bin()
            .args(["run", "--threads", "1", "--model"])
            .arg(&model)
            .args(["--prompt-family", "chatml", "--translator", "opus-mt-ur-en"])
            .arg("--model-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seq2seq/marian"))
            .args(["--beams", "1", "--non-urdu", "pass", "--out"])
            .arg(&out)
            .args(extra)
            .arg(&input)
            .output()
            .unwrap()
    };
    let o = run(&["--prompts", prompts.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "a summary failure is not an article failure: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains("no summary") && err.contains("--resummarize"),
        "{err}"
    );
    let r = &records(&out)[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(r["format"], 2);
    assert_eq!(r["summary"], serde_json::json!([]));
    let e = r["summary_error"].as_str().unwrap();
    assert!(e.contains("context"), "{e}");
    let translations: Vec<Value> = r["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["translation"].clone())
        .collect();
    assert_eq!(translations.len(), 2);
    assert!(translations.iter().all(|t| !t.as_str().unwrap().is_empty()));
    assert_eq!(r["prompts"]["name"], prompts.to_str().unwrap());
    let custom_sha = r["prompts"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(custom_sha.len(), 64);

    // Only the summaries are redone, from the kept translations.
    let o = run(&["--resummarize"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&out);
    assert_eq!(recs.len(), 1, "compacted: one record per article");
    let r = &recs[0];
    assert_eq!(r["summary_error"], Value::Null, "{r}");
    let bullets = r["summary"].as_array().unwrap();
    assert!(!bullets.is_empty(), "{r}");
    assert_eq!(r["prompts"]["name"], "built-in");
    assert_ne!(r["prompts"]["sha256"].as_str().unwrap(), custom_sha);
    let now: Vec<Value> = r["paragraphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["translation"].clone())
        .collect();
    assert_eq!(now, translations, "the translation is kept as it was");
    assert_grounded(bullets, r["paragraphs"].as_array().unwrap(), "translation");
    // The Markdown page cites paragraphs as footnotes.
    let md = std::fs::read_to_string(out.join("talks.md")).unwrap();
    assert!(
        md.contains("[^p1]") && md.contains("[^p1]: Paragraph 1:"),
        "{md}"
    );
}

/// An English news story of 18 paragraphs, written for the project (key facts in
/// flood-relief.facts.txt): the bullets cover the second half of the story, not only the
/// lead; each is grounded and checked; none is built on a read-more link, a caption or a
/// comment footer; the dateline goes into the record once.
#[test]
fn summary_covers_the_whole_story_with_a_real_model() {
    model_path(SMOL);
    let o = bin()
        .args([
            "summarize",
            "--json",
            "--quiet",
            "--threads",
            "2",
            "--model",
            SMOL,
        ])
        .arg(fixture("flood-relief.en.txt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let paras = v["paragraphs"].as_array().unwrap();
    let bullets = v["summary"].as_array().unwrap();
    assert_eq!(bullets.len(), 5, "the summary uses its room: {bullets:?}");
    assert_eq!(v["dateline"], "LAHORE, Sept 3 (APP)");
    assert_grounded(bullets, paras, "text");
    for b in bullets {
        let t = b["text"].as_str().unwrap();
        assert!(
            !t.starts_with("LAHORE") && !t.contains("Sept 3"),
            "dateline in {t:?}"
        );
        let lower = t.to_lowercase();
        assert!(
            !lower.contains("read more") && !lower.contains("photo") && !lower.contains("comments"),
            "boilerplate in {t:?}"
        );
    }
    // The first bullet is the lead.
    let first = bullets[0]["paragraphs"][0].as_u64().unwrap();
    assert!(first <= 1, "lead first: {bullets:?}");
    // Key facts: the bullets carry some from the second half of the story.
    let sheet = FactSheet::parse(
        &std::fs::read_to_string(fixture("flood-relief.facts.txt")).unwrap(),
        "flood-relief.facts.txt",
    )
    .unwrap();
    let text: Vec<&str> = bullets
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    let report = sheet.check([("flood", text.join(" ").as_str())]);
    let second_half = [
        "adb",
        "camps",
        "disease",
        "health-units",
        "breach",
        "inquiry",
        "federal",
        "schools",
    ];
    let found: Vec<&&str> = second_half
        .iter()
        .filter(|id| !report.articles[0].missed.iter().any(|m| m == **id))
        .collect();
    assert!(
        found.len() >= 2,
        "second-half facts covered: {found:?} in {text:?}"
    );
    let cited_late = bullets
        .iter()
        .any(|b| b["paragraphs"][0].as_u64().unwrap() >= 9);
    assert!(cited_late, "{bullets:?}");
}
