//! `tarjuma report` in a real browser: Debian's Chromium, headless, loads the page from
//! disk and dumps the DOM after the page's script ran; the assertions read that DOM.
//! Chromium is required (scripts/test.sh installs it): the point is that the escaping,
//! the Content Security Policy and the script hold in a browser, not in our own parser.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scraper::{ElementRef, Html, Selector};
use serde_json::{json, Value};

use crate::util::{bin, stderr};

const SCRIPT: &str = "<script>window.__pwned=1</script>";
const IMG: &str = "<img src=x onerror=\"window.__pwned=1\">";
const LINK: &str = "<a href=\"javascript:window.__pwned=1\">x</a>";

fn paragraph(source: &str, translation: &str, kind: &str, warnings: &[&str]) -> Value {
    json!({"source": source, "translation": translation, "kind": kind, "warnings": warnings})
}

/// Two articles as one run has them. `tuned` differs from `base` in paragraph 1 of the
/// first article (completely), in its warnings, and in the bullets' format.
fn records(tuned: bool) -> Vec<Value> {
    let flood = "Heavy rain flooded the roads of Karachi on Tuesday.";
    let (p1, p1_warnings) = if tuned {
        (
            "Officials announced a cricket schedule for next week.",
            vec!["repetition"],
        )
    } else {
        (
            "The Met Office says the rain will continue tomorrow.",
            vec![],
        )
    };
    let footer = if tuned {
        "For more news, visit our website."
    } else {
        "For more news visit our website."
    };
    let summary = if tuned {
        json!([
            "Heavy rain flooded Karachi.",
            "A cricket schedule was announced."
        ])
    } else {
        json!([
            {"text": "Heavy rain flooded Karachi's roads.", "paragraphs": [0]},
            {"text": "More rain is expected tomorrow.", "paragraphs": [1]}
        ])
    };
    let timings = |seconds: f64, tokens_out: usize| {
        json!({"seconds": seconds, "translate_seconds": seconds * 0.8,
               "summarize_seconds": seconds * 0.2, "tokens_in": 300, "tokens_out": tokens_out})
    };
    let model = json!({"name": if tuned { "qwen2.5-3b-instruct-q4" } else { "qwen2.5-1.5b-instruct-q4" }, "sha256": "00"});
    let hostile_en = format!("An article with markup: {SCRIPT} {IMG} {LINK}");
    vec![
        json!({
            "id": "rain-karachi", "source": "rain-karachi.txt", "status": "ok", "error": null,
            "paragraphs": [
                paragraph("منگل کو کراچی میں شدید بارش سے سڑکیں زیر آب آ گئیں۔", flood, "body", &[]),
                paragraph("محکمہ موسمیات کے مطابق بارش کل بھی جاری رہے گی۔", p1, "body", &p1_warnings),
                paragraph("مزید خبروں کے لیے ہماری ویب سائٹ دیکھیں۔", footer, "boilerplate", &[]),
            ],
            "summary": summary,
            "summary_warnings": [],
            "model": model,
            "timings": if tuned { timings(10.0, 300) } else { timings(8.0, 160) },
        }),
        json!({
            "id": "hostile", "source": "hostile.html", "status": "ok", "error": null,
            "paragraphs": [
                paragraph(&format!("یہ ایک مضمون ہے {SCRIPT} {IMG} {LINK}"),
                          if tuned { &hostile_en } else { "This is an article." }, "body", &[]),
            ],
            "summary": [{"text": format!("Markup: {LINK}"), "paragraphs": [0]}],
            "summary_warnings": [],
            "model": model,
            "timings": if tuned { timings(2.0, 100) } else { timings(2.0, 40) },
        }),
    ]
}

fn write_run(dir: &Path, tuned: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let lines: Vec<String> = records(tuned).iter().map(|r| r.to_string()).collect();
    std::fs::write(dir.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn chromium() -> PathBuf {
    let found = std::iter::once(PathBuf::from("/usr/bin/chromium"))
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("chromium")),
        )
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "Chromium is required for the report test and was not found (/usr/bin/chromium or \
             `chromium` on PATH): scripts/test.sh installs it (`apt-get install chromium`)"
        )
    })
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout.
fn chromium_run(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // A hung browser must fail the test, not stall the suite.
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "chromium failed on {url}: {}",
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn dump(url: &str) -> Html {
    let dom = chromium_run(url, &["--dump-dom"]);
    assert!(
        dom.contains("</html>"),
        "no DOM from chromium for {url}:\n{dom}"
    );
    Html::parse_document(&dom)
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn all<'a>(doc: &'a Html, s: &str) -> Vec<ElementRef<'a>> {
    doc.select(&sel(s)).collect()
}

fn article<'a>(doc: &'a Html, id: &str) -> ElementRef<'a> {
    all(doc, "section.article")
        .into_iter()
        .find(|a| a.value().attr("data-id") == Some(id))
        .unwrap_or_else(|| panic!("no article {id}"))
}

fn hidden(e: ElementRef) -> bool {
    e.value().attr("hidden").is_some()
}

fn row_ids(art: ElementRef) -> Vec<String> {
    art.select(&sel("tbody.paras > tr"))
        .map(|r| r.value().attr("id").unwrap().to_string())
        .collect()
}

/// The page's own script ran (data-ready), and no content script did (data-pwned is
/// set from a timer after load, so it is "false" only if the script ran to the end).
fn assert_script_ran_alone(doc: &Html) {
    let html = doc.root_element();
    assert_eq!(
        html.value().attr("data-ready"),
        Some("1"),
        "the page's script did not run"
    );
    assert_eq!(
        html.value().attr("data-pwned"),
        Some("false"),
        "content ran as script"
    );
}

#[test]
fn report_in_chromium_shows_runs_side_by_side_and_runs_no_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, tuned) = (tmp.path().join("base"), tmp.path().join("tuned"));
    write_run(&base, false);
    write_run(&tuned, true);
    let facts = tmp.path().join("facts.txt");
    std::fs::write(
        &facts,
        "[rain-karachi]\nrain | rain ; karachi\ntomorrow | tomorrow\n[hostile]\narticle | article\n",
    )
    .unwrap();
    let out = tmp.path().join("report.html");
    let o = bin()
        .arg("report")
        .args([&base, &tuned])
        .arg("--out")
        .arg(&out)
        .arg("--facts")
        .arg(&facts)
        .output()
        .unwrap();
    assert!(o.status.success(), "tarjuma report failed: {}", stderr(&o));
    let url = format!("file://{}", out.display());

    let doc = dump(&url);
    assert_script_ran_alone(&doc);

    // Urdu cells are right-to-left Urdu; one translation cell per run in every row.
    let ur = all(&doc, "td.ur");
    assert_eq!(ur.len(), 4, "one Urdu cell per paragraph");
    for td in &ur {
        assert_eq!(td.value().attr("dir"), Some("rtl"));
        assert_eq!(td.value().attr("lang"), Some("ur"));
    }
    let rows = all(&doc, "tbody.paras > tr");
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.select(&sel("td.tr")).count(), 2, "{}", r.html());
        for td in r.select(&sel("td.tr")) {
            assert_eq!(td.value().attr("lang"), Some("en"));
        }
    }
    let run_headers: Vec<String> = all(&doc, "thead th.run")
        .iter()
        .take(2)
        .map(|th| th.text().collect::<String>())
        .collect();
    assert_eq!(run_headers, ["base", "tuned"]);

    // Boilerplate marked; the warning shown in tuned's cell only.
    let rain = article(&doc, "rain-karachi");
    let footer = rain.select(&sel("tr#p-0-2")).next().unwrap();
    assert!(footer.value().classes().any(|c| c == "boilerplate"));
    let warned: Vec<String> = rain
        .select(&sel("tr#p-0-1 td.tr"))
        .map(|td| {
            td.select(&sel(".badge"))
                .map(|b| b.text().collect::<String>())
                .collect()
        })
        .collect();
    assert_eq!(warned, ["", "repetition"]);
    // Grounded bullets link to their paragraph rows; plain bullets have no links.
    let grounds: Vec<&str> = rain
        .select(&sel("a.ground"))
        .map(|a| a.value().attr("href").unwrap())
        .collect();
    assert_eq!(grounds, ["#p-0-0", "#p-0-1"]);

    // The chart: one labelled point per run, on fact recall.
    let svg = doc
        .select(&sel("#chart svg"))
        .next()
        .expect("the chart's svg");
    let labels: Vec<String> = svg
        .select(&sel("g.point text"))
        .map(|t| t.text().collect())
        .collect();
    assert_eq!(labels, ["base", "tuned"]);
    assert_eq!(svg.select(&sel("circle")).count(), 2);
    assert!(svg.html().contains("fact recall"));

    // The metrics table: a row per run with its speed.
    let metrics: Vec<String> = all(&doc, "table.metrics tbody tr")
        .iter()
        .map(|r| r.text().collect())
        .collect();
    assert_eq!(metrics.len(), 2);
    assert!(
        metrics[0].contains("20.0"),
        "base: 200 tokens in 10 s: {}",
        metrics[0]
    );

    // Hostile content is text: visible as written, and not a single element or URL.
    let hostile = article(&doc, "hostile");
    let text: String = hostile.text().collect();
    for payload in [SCRIPT, IMG, LINK] {
        assert!(text.contains(payload), "{payload} not shown as text");
    }
    assert_eq!(
        all(&doc, "script").len(),
        1,
        "a content <script> became an element"
    );
    assert!(
        all(&doc, "img").is_empty(),
        "a content <img> became an element"
    );
    for a in all(&doc, "a[href]") {
        let href = a.value().attr("href").unwrap();
        assert!(href.starts_with("#p-"), "unexpected link {href}");
    }
    for e in doc
        .root_element()
        .descendants()
        .filter_map(ElementRef::wrap)
    {
        assert!(
            !e.value().attrs().any(|(k, _)| k.starts_with("on")),
            "an event handler attribute in {}",
            e.value().name()
        );
    }

    // Views from the hash: one article.
    let doc = dump(&format!("{url}#article=hostile"));
    assert_script_ran_alone(&doc);
    assert!(hidden(article(&doc, "rain-karachi")));
    assert!(!hidden(article(&doc, "hostile")));

    // One warning: only the article and row that have it.
    let doc = dump(&format!("{url}#warning=repetition"));
    assert!(hidden(article(&doc, "hostile")));
    let rain = article(&doc, "rain-karachi");
    assert!(!hidden(rain));
    let shown: Vec<String> = rain
        .select(&sel("tbody.paras > tr"))
        .filter(|r| !hidden(*r))
        .map(|r| r.value().attr("id").unwrap().to_string())
        .collect();
    assert_eq!(shown, ["p-0-1"]);

    // Disagreement first: the row the runs translate differently, then the near-equal
    // footer, then the identical one; articles by their highest disagreement.
    let doc = dump(&format!("{url}#sort=disagreement"));
    let rain = article(&doc, "rain-karachi");
    assert_eq!(row_ids(rain), ["p-0-1", "p-0-2", "p-0-0"]);
    let order: Vec<f64> = all(&doc, "section.article")
        .iter()
        .map(|a| {
            a.value()
                .attr("data-disagreement")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{order:?}");
    // Document order is back without the hash.
    assert_eq!(
        row_ids(article(&dump(&url), "rain-karachi")),
        ["p-0-0", "p-0-1", "p-0-2"]
    );

    // A screenshot to look at, kept under target/.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("report-two-runs.png");
    let _ = std::fs::remove_file(&png);
    chromium_run(
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1800",
        ],
    );
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 1800));
    assert!(
        bytes.len() > 30_000,
        "a near-empty screenshot: {} bytes",
        bytes.len()
    );
}
