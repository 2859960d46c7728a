//! The side-by-side HTML report of several runs (`tarjuma report`).
//!
//! One self-contained page for comparing runs (models, prompts, settings) over the same
//! articles: every Urdu paragraph next to each run's translation, with guard warnings,
//! grounded bullets and a per-paragraph disagreement score (mean over pairs of runs of
//! 100 − sentence chrF++), then a metrics table and a speed/quality chart across runs.
//! A small inline script filters by article or warning and sorts by disagreement; its
//! state lives in `location.hash` (`#article=ID&warning=NAME&sort=disagreement`) so that
//! views can be linked.
//!
//! The page loads nothing from the network, and content is data, never markup: every
//! string is HTML-escaped, the only URLs are generated anchors, and a Content Security
//! Policy allows exactly the one script and the one style block (by SHA-256 hash), so
//! an article holding `<script>` shows as text and runs nothing.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::chrf::sentence_chrf;
use super::runs::{Paragraph, Record, Run};
use super::Scores;

/// Run colours (Okabe–Ito, told apart with colour-blindness), cycled past eight runs.
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#6b6b6b", "#8c564b",
];

/// A "with any warning" filter value; warning names are snake_case words, never `*`.
const ANY_WARNING: &str = "*";

const STYLE: &str = r#"
:root {
  --fg: #1c2127; --muted: #5f6b78; --line: #dde2e8; --bg: #fff; --soft: #f4f6f8;
  --link: #1f5fbf; --warn: #8a4600; --warn-bg: #fff2e0; --warn-line: #efc48f;
  --err: #a4161a; --err-bg: #fdecec;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans",
    "Liberation Sans", Arial, sans-serif;
  color: var(--fg); background: var(--bg); line-height: 1.5; font-size: 15px;
}
body { margin: 0 auto; max-width: 1680px; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.55rem; margin: 0 0 .2rem; font-weight: 650; }
h2 { font-size: 1.15rem; margin: 2.2rem 0 .6rem; font-weight: 650; }
a { color: var(--link); }
.sub, .muted, .note { color: var(--muted); }
.sub { margin: 0 0 1.4rem; }
.note { font-size: .85rem; max-width: 60rem; }
.num { font-variant-numeric: tabular-nums; }
.lbl { unicode-bidi: isolate; font-weight: 600; }
.sw { display: inline-block; width: .7rem; height: .7rem; border-radius: 50%; margin-right: .4rem; vertical-align: baseline; }
table { border-collapse: collapse; }
.scroll { overflow-x: auto; }
.metrics { width: 100%; font-size: .9rem; }
.metrics th, .metrics td { padding: .4rem .6rem; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.metrics thead th { border-bottom: 2px solid var(--fg); font-weight: 600; vertical-align: bottom; }
.metrics tr > :nth-child(-n+2) { text-align: left; }
.metrics td.models { white-space: normal; color: var(--muted); font-size: .82rem; min-width: 12rem; }
.chart { margin: 1rem 0 0; }
.chart svg { width: 100%; max-width: 760px; height: auto; display: block; }
.chart figcaption { font-size: .85rem; color: var(--muted); }
.controls { display: flex; flex-wrap: wrap; gap: .6rem 1.4rem; align-items: center; padding: .7rem 0; border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); margin: 2rem 0 0; font-size: .9rem; }
.controls label { display: inline-flex; gap: .4rem; align-items: center; }
.controls select { font: inherit; padding: .15rem .3rem; max-width: 22rem; }
.article { margin: 0 0 2.5rem; }
.article h2 { display: flex; flex-wrap: wrap; gap: .3rem 1rem; align-items: baseline; }
.article h2 .from { font-size: .8rem; font-weight: 400; color: var(--muted); unicode-bidi: isolate; }
.side { width: 100%; table-layout: fixed; }
.side col.n { width: 3.6rem; }
.side th, .side td { vertical-align: top; text-align: left; padding: .55rem .7rem; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
.side thead th { position: sticky; top: 0; z-index: 1; background: var(--bg); border-bottom: 2px solid var(--fg); font-size: .85rem; font-weight: 600; }
.side tbody.status td, .side tbody.status th { font-size: .8rem; color: var(--muted); background: var(--soft); }
.side td.tr { white-space: pre-line; }
.side td.none { color: var(--muted); }
.side th.n, .side td.n { font-size: .75rem; color: var(--muted); padding-left: .3rem; padding-right: .3rem; }
.side td.n a { color: inherit; font-weight: 600; font-size: .85rem; text-decoration: none; }
.dis { display: block; margin-top: .2rem; font-variant-numeric: tabular-nums; }
.dis.mid { color: var(--warn); }
.dis.hi { color: var(--err); font-weight: 600; }
.ur {
  font-family: "Noto Nastaliq Urdu", "Jameel Noori Nastaleeq", "Urdu Typesetting", "Nafees Nastaleeq",
    "Awami Nastaliq", "Noto Naskh Arabic", serif;
  font-size: 1.12rem; line-height: 2.4; text-align: right;
}
tr.row:target td { background: #fff8d6; }
tr.boilerplate td { color: var(--muted); background: var(--soft); }
.badge { display: inline-block; font-size: .72rem; line-height: 1.5; padding: 0 .45rem; margin: .3rem .3rem 0 0; border-radius: .7rem; border: 1px solid var(--warn-line); background: var(--warn-bg); color: var(--warn); white-space: nowrap; font-family: system-ui, sans-serif; }
.badge.bp { border-color: var(--line); background: var(--soft); color: var(--muted); }
.badge.trap, .err { color: var(--err); }
.badge.trap { border-color: #e3a0a2; background: var(--err-bg); }
.errmsg { display: block; white-space: pre-wrap; color: var(--err); }
.bullets { margin: 0; padding-left: 1.1rem; }
.bullets li { margin: 0 0 .35rem; }
.ground { font-size: .78rem; text-decoration: none; margin-left: .15rem; font-variant-numeric: tabular-nums; }
.ground.bad { color: var(--err); }
#nothing { padding: 1rem 0; color: var(--muted); }
@media (max-width: 820px) {
  body { padding: 1rem .6rem 3rem; }
  .side { table-layout: auto; }
  .side th, .side td { padding: .4rem; }
}
@media print {
  html { font-size: 11px; }
  body { max-width: none; padding: 0; }
  .controls { display: none; }
  .side thead th { position: static; }
  tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  tr.row:target td { background: none; }
}
"#;

const SCRIPT: &str = r#"
(() => {
  'use strict';
  const root = document.documentElement;
  const byId = (id) => document.getElementById(id);
  const main = byId('articles');
  const selA = byId('f-article'), selW = byId('f-warning'), selS = byId('f-sort');
  const articles = Array.from(main.querySelectorAll('section.article'));
  const DEFAULT = { article: '', warning: '', sort: '' };
  let current = Object.assign({}, DEFAULT);

  const num = (el, k) => { const v = parseFloat(el.dataset[k]); return Number.isFinite(v) ? v : -1; };
  const dec = (s) => { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (e) { return s; } };

  // The view a hash asks for, or null when it names an element (a paragraph link).
  function parse(hash) {
    const h = hash.replace(/^#/, '');
    const s = Object.assign({}, DEFAULT);
    if (h === '') return s;
    if (!h.includes('=')) return null;
    for (const kv of h.split('&')) {
      const i = kv.indexOf('=');
      if (i < 0) continue;
      const k = dec(kv.slice(0, i));
      if (Object.prototype.hasOwnProperty.call(s, k)) s[k] = dec(kv.slice(i + 1));
    }
    return s;
  }

  // Warnings are numbered in data-w; the select's options carry name and number.
  function matcher(w) {
    if (w === '') return () => true;
    if (w === '*') return (el) => (el.dataset.w || '') !== '';
    const opt = Array.from(selW.options).find((o) => o.value === w);
    const k = opt ? opt.dataset.k : null;
    return (el) => k !== null && (el.dataset.w || '').split(' ').includes(k);
  }

  const byOrder = (a, b) => num(a, 'order') - num(b, 'order');
  const byDisagreement = (a, b) => num(b, 'disagreement') - num(a, 'disagreement') || byOrder(a, b);

  function apply(s) {
    current = s;
    selA.value = s.article;
    selW.value = s.warning;
    selS.value = s.sort === 'disagreement' ? 'disagreement' : '';
    const match = matcher(s.warning);
    const cmp = s.sort === 'disagreement' ? byDisagreement : byOrder;
    let shown = 0;
    for (const art of articles) {
      const on = (s.article === '' || art.dataset.id === s.article) && match(art);
      art.hidden = !on;
      shown += on ? 1 : 0;
      for (const tr of art.querySelectorAll('tr.row')) tr.hidden = !match(tr);
      const body = art.querySelector('tbody.paras');
      if (body) Array.from(body.rows).sort(cmp).forEach((tr) => body.appendChild(tr));
    }
    articles.slice().sort(cmp).forEach((art) => main.appendChild(art));
    byId('nothing').hidden = shown > 0;
  }

  function write() {
    const parts = [];
    if (selA.value) parts.push('article=' + encodeURIComponent(selA.value));
    if (selW.value) parts.push('warning=' + encodeURIComponent(selW.value));
    if (selS.value) parts.push('sort=' + encodeURIComponent(selS.value));
    const h = parts.join('&');
    if (h) {
      location.hash = h;
    } else if (location.hash) {
      try { history.replaceState(null, '', location.pathname + location.search); } catch (e) { location.hash = ''; }
    }
    apply(parse(h));
  }

  function route() {
    const s = parse(location.hash);
    if (s) { apply(s); return; }
    // A paragraph link: keep the view, unless it hides the target.
    const t = byId(dec(location.hash.slice(1)));
    if (t && t.closest('[hidden]')) {
      apply(Object.assign({}, current, { article: '', warning: '' }));
      t.scrollIntoView({ block: 'center' });
    }
  }

  for (const sel of [selA, selW, selS]) sel.addEventListener('change', write);
  window.addEventListener('hashchange', route);
  byId('controls').hidden = false;
  route();
  root.dataset.ready = '1';
  // For tests: proves after load that no content script ran.
  window.addEventListener('load', () => setTimeout(() => { root.dataset.pwned = String(!!window.__pwned); }, 500));
})();
"#;

/// The report page; `scores[i]` belongs to `runs[i]`.
pub fn render(runs: &[Run], scores: &[Scores], title: &str) -> String {
    assert_eq!(runs.len(), scores.len(), "one Scores per run");
    let style = style();
    let articles = collect_articles(runs);
    let warnings = warning_names(runs);
    let windex: HashMap<&str, usize> = warnings
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_str(), i))
        .collect();

    let mut h = String::with_capacity(64 * 1024);
    let t = esc(title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         script-src '{}'; style-src '{}'; img-src data:; base-uri 'none'; \
         form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"tarjuma {}\">\n<title>{t}</title>\n<style>{style}</style>\n\
         </head>\n<body>\n<header>\n<h1>{t}</h1>\n",
        csp_hash(SCRIPT),
        csp_hash(&style),
        env!("CARGO_PKG_VERSION"),
    );
    let _ = writeln!(
        h,
        "<p class=\"sub\">{} run{} · {} article{} · written by tarjuma {}</p>\n</header>",
        runs.len(),
        plural(runs.len()),
        articles.len(),
        plural(articles.len()),
        env!("CARGO_PKG_VERSION"),
    );

    h.push_str("<section id=\"runs\">\n<h2>Runs</h2>\n");
    metrics_table(&mut h, runs, scores);
    chart(&mut h, runs, scores);
    h.push_str("</section>\n");

    controls(&mut h, &articles, &warnings);
    h.push_str(
        "<p class=\"note\">Rows are aligned by paragraph index. Δ is the disagreement of \
         the runs on a paragraph: 100 − sentence chrF++ between two runs' translations \
         (both directions averaged), averaged over all pairs of runs; 0 means identical. \
         Bracketed numbers after a bullet link to the paragraphs that ground it.</p>\n",
    );
    h.push_str("<main id=\"articles\">\n");
    for (ai, a) in articles.iter().enumerate() {
        article(&mut h, ai, a, runs, scores, &windex);
    }
    h.push_str("</main>\n<p id=\"nothing\" hidden>Nothing matches this filter.</p>\n<script>");
    h.push_str(SCRIPT);
    h.push_str("</script>\n</body>\n</html>\n");
    h
}

/// The style block: the fixed rules plus one colour class per palette entry.
fn style() -> String {
    let mut s = STYLE.to_string();
    for (i, c) in PALETTE.iter().enumerate() {
        let _ = writeln!(s, ".c{i} {{ background: {c}; }}");
    }
    s
}

/// `'sha256-…'` source for the CSP: base64 of the SHA-256 of the exact element text.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Escapes text for element content and quoted attribute values alike.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "–".into(),
    }
}

/// One article as the runs have it: a record per run, or None when absent from a run.
struct Article<'a> {
    id: &'a str,
    records: Vec<Option<&'a Record>>,
}

/// The union of article ids over the runs, in first-seen order.
fn collect_articles(runs: &[Run]) -> Vec<Article<'_>> {
    let mut order: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in runs.iter().flat_map(|run| &run.records) {
        if seen.insert(r.id.as_str()) {
            order.push(r.id.as_str());
        }
    }
    let maps: Vec<HashMap<&str, &Record>> = runs
        .iter()
        .map(|run| run.records.iter().map(|r| (r.id.as_str(), r)).collect())
        .collect();
    order
        .into_iter()
        .map(|id| Article {
            id,
            records: maps.iter().map(|m| m.get(id).copied()).collect(),
        })
        .collect()
}

/// Every warning name in the runs (paragraphs and summaries), sorted.
fn warning_names(runs: &[Run]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for r in runs.iter().flat_map(|run| &run.records) {
        for w in r
            .paragraphs
            .iter()
            .flat_map(|p| &p.warnings)
            .chain(&r.summary_warnings)
        {
            set.insert(w.clone());
        }
    }
    set.into_iter().collect()
}

/// Mean over pairs of translations of 100 − sentence chrF++; chrF weighs recall over
/// precision, so each pair is scored both ways and averaged to make it symmetric. None
/// with fewer than two translations.
fn disagreement(translations: &[&str]) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for (i, a) in translations.iter().enumerate() {
        for b in &translations[i + 1..] {
            let d = if a.trim() == b.trim() {
                0.0
            } else {
                100.0 - (sentence_chrf(a, b, 2) + sentence_chrf(b, a, 2)) / 2.0
            };
            sum += d.clamp(0.0, 100.0);
            pairs += 1;
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

fn metrics_table(h: &mut String, runs: &[Run], scores: &[Scores]) {
    h.push_str(
        "<div class=\"scroll\"><table class=\"metrics\">\n<thead><tr><th scope=\"col\">Run</th>\
         <th scope=\"col\">Models</th><th scope=\"col\">Articles ok</th>\
         <th scope=\"col\">Errors</th><th scope=\"col\">Generated tok/s</th>\
         <th scope=\"col\">BLEU</th><th scope=\"col\">chrF</th><th scope=\"col\">chrF++</th>\
         <th scope=\"col\">ROUGE-1</th><th scope=\"col\">ROUGE-2</th>\
         <th scope=\"col\">ROUGE-L</th><th scope=\"col\">Fact recall</th>\
         <th scope=\"col\">Traps hit</th></tr></thead>\n<tbody>\n",
    );
    for (i, (run, s)) in runs.iter().zip(scores).enumerate() {
        let ok = run.records.iter().filter(|r| r.ok()).count();
        let rouge = |v: Option<f64>| fmt(v.map(|v| v * 100.0), 1);
        let (recall, traps) = match &s.facts {
            Some(f) => (
                match f.recall {
                    Some(r) => format!("{:.1}% ({}/{})", r * 100.0, f.found, f.total),
                    None => "–".into(),
                },
                f.traps_hit.to_string(),
            ),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            h,
            "<tr class=\"run\"><th scope=\"row\" title=\"{path}\"><span class=\"sw c{c}\"></span>\
             <span class=\"lbl\">{label}</span></th><td class=\"models\">{models}</td>\
             <td>{ok}</td><td>{err}</td><td>{tps}</td><td>{bleu}</td><td>{chrf}</td>\
             <td>{chrf_pp}</td><td>{r1}</td><td>{r2}</td><td>{rl}</td><td>{recall}</td>\
             <td>{traps}</td></tr>",
            path = esc(&run.path.display().to_string()),
            c = i % PALETTE.len(),
            label = esc(&run.label),
            models = esc(&run.models()),
            err = run.records.len() - ok,
            tps = fmt(run.tokens_per_second(), 1),
            bleu = fmt(s.bleu, 1),
            chrf = fmt(s.chrf, 1),
            chrf_pp = fmt(s.chrf_pp, 1),
            r1 = rouge(s.rouge1),
            r2 = rouge(s.rouge2),
            rl = rouge(s.rouge_l),
        );
    }
    h.push_str(
        "</tbody>\n</table></div>\n<p class=\"note\">BLEU and chrF/chrF++ are sacrebleu corpus \
         scores; ROUGE is the rouge-score F-measure averaged over summaries, ×100; \
         tok/s counts generated tokens over the seconds of the run's ok articles. \
         – means not measured (no <code>--ref</code> or <code>--facts</code>).</p>\n",
    );
}

/// Axis bounds and tick step covering `lo..=hi`, at round numbers (1, 2, 5 × 10^k).
fn nice_axis(lo: f64, hi: f64, floor_zero: bool) -> (f64, f64, f64) {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.12
    } else {
        (hi.abs() * 0.1).max(1.0)
    };
    lo -= pad;
    hi += pad;
    if floor_zero && lo < 0.0 {
        lo = 0.0;
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// Speed (x) against quality (y) as inline SVG, one labelled point per run.
fn chart(h: &mut String, runs: &[Run], scores: &[Scores]) {
    // y_name names the score in sentences; the axis adds the unit.
    let (quality, y_name): (Vec<Option<f64>>, &str) = if scores.iter().any(|s| s.chrf_pp.is_some())
    {
        (scores.iter().map(|s| s.chrf_pp).collect(), "chrF++")
    } else if scores
        .iter()
        .any(|s| s.facts.as_ref().and_then(|f| f.recall).is_some())
    {
        (
            scores
                .iter()
                .map(|s| s.facts.as_ref().and_then(|f| f.recall).map(|r| r * 100.0))
                .collect(),
            "fact recall",
        )
    } else {
        h.push_str(
            "<p class=\"chart note\" id=\"chart\">No speed/quality chart: no quality \
                 score. Give <code>--ref REF</code> (chrF++) or <code>--facts FILE</code> \
                 (fact recall) to plot speed against quality.</p>\n",
        );
        return;
    };
    let points: Vec<(usize, f64, f64)> = runs
        .iter()
        .zip(&quality)
        .enumerate()
        .filter_map(|(i, (run, q))| Some((i, run.tokens_per_second()?, (*q)?)))
        .collect();
    let missing: Vec<String> = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| !points.iter().any(|p| p.0 == *i))
        .map(|(_, r)| esc(&r.label))
        .collect();
    if points.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"chart note\" id=\"chart\">No speed/quality chart: no run has both \
             timings and {y_name}.</p>"
        );
        return;
    }

    let (w, ht) = (720.0, 380.0);
    let (ml, mr, mt, mb) = (64.0, 28.0, 18.0, 56.0);
    let (pw, ph) = (w - ml - mr, ht - mt - mb);
    let xs = points.iter().map(|p| p.1);
    let ys = points.iter().map(|p| p.2);
    let (x0, x1, xstep) = nice_axis(
        xs.clone().fold(f64::INFINITY, f64::min),
        xs.fold(f64::NEG_INFINITY, f64::max),
        true,
    );
    let (mut y0, mut y1, ystep) = nice_axis(
        ys.clone().fold(f64::INFINITY, f64::min),
        ys.fold(f64::NEG_INFINITY, f64::max),
        true,
    );
    if y1 > 100.0 && y0 < 100.0 {
        y1 = (100.0 / ystep).ceil() * ystep;
    }
    if y0 >= y1 {
        y0 = y1 - ystep;
    }
    let sx = |v: f64| ml + (v - x0) / (x1 - x0) * pw;
    let sy = |v: f64| mt + ph - (v - y0) / (y1 - y0) * ph;

    let _ = write!(
        h,
        "<figure class=\"chart\" id=\"chart\">\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-labelledby=\"chart-title\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\" fill=\"#1c2127\">\n\
         <title id=\"chart-title\">Generated tokens per second against {y_name}, one point \
         per run</title>\n"
    );
    // Grid and ticks.
    let mut v = x0;
    while v <= x1 + xstep * 1e-6 {
        let x = sx(v);
        let _ = writeln!(
            h,
            "<line x1=\"{x:.1}\" y1=\"{mt}\" x2=\"{x:.1}\" y2=\"{b:.1}\" stroke=\"#e6e9ed\"/>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" fill=\"#5f6b78\">{l}</text>",
            b = mt + ph,
            ty = mt + ph + 18.0,
            l = tick_label(v, xstep)
        );
        v += xstep;
    }
    let mut v = y0;
    while v <= y1 + ystep * 1e-6 {
        let y = sy(v);
        let _ = writeln!(
            h,
            "<line x1=\"{ml}\" y1=\"{y:.1}\" x2=\"{r:.1}\" y2=\"{y:.1}\" stroke=\"#e6e9ed\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#5f6b78\">{l}</text>",
            r = ml + pw,
            tx = ml - 8.0,
            ty = y + 4.0,
            l = tick_label(v, ystep)
        );
        v += ystep;
    }
    // Axes and their names.
    let _ = writeln!(
        h,
        "<line x1=\"{ml}\" y1=\"{b:.1}\" x2=\"{r:.1}\" y2=\"{b:.1}\" stroke=\"#1c2127\"/>\
         <line x1=\"{ml}\" y1=\"{mt}\" x2=\"{ml}\" y2=\"{b:.1}\" stroke=\"#1c2127\"/>\n\
         <text x=\"{cx:.1}\" y=\"{xy:.1}\" text-anchor=\"middle\">generated tokens / s</text>\n\
         <text transform=\"translate(16 {cy:.1}) rotate(-90)\" text-anchor=\"middle\">{y_axis}</text>",
        b = mt + ph,
        r = ml + pw,
        cx = ml + pw / 2.0,
        xy = ht - 12.0,
        cy = mt + ph / 2.0,
        y_axis = if y_name == "chrF++" { "chrF++" } else { "fact recall (%)" },
    );
    for &(i, tps, q) in &points {
        let (x, y) = (sx(tps), sy(q));
        // Labels go left of points in the right third, so that they stay inside.
        let (lx, anchor) = if x > ml + pw * 0.66 {
            (x - 9.0, "end")
        } else {
            (x + 9.0, "start")
        };
        let label = esc(&runs[i].label);
        let _ = writeln!(
            h,
            "<g class=\"point\" data-run=\"{i}\"><title>{label}: {tps:.1} tok/s, {y_name} \
             {q:.1}</title><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"{c}\" \
             stroke=\"#fff\" stroke-width=\"1.5\"/><text x=\"{lx:.1}\" y=\"{ly:.1}\" \
             text-anchor=\"{anchor}\" font-weight=\"600\">{label}</text></g>",
            c = PALETTE[i % PALETTE.len()],
            ly = y + 4.0,
        );
    }
    h.push_str("</svg>\n");
    let _ = write!(
        h,
        "<figcaption>Speed against quality ({y_name}); up and to the right is better."
    );
    if !missing.is_empty() {
        let _ = write!(
            h,
            " Not plotted (no timings or no {y_name}): {}.",
            missing.join(", ")
        );
    }
    h.push_str("</figcaption>\n</figure>\n");
}

fn controls(h: &mut String, articles: &[Article], warnings: &[String]) {
    // Hidden until the script runs: without it the controls would do nothing.
    h.push_str(
        "<div class=\"controls\" id=\"controls\" hidden>\n<label>Article \
         <select id=\"f-article\"><option value=\"\">all</option>",
    );
    for a in articles {
        let id = esc(a.id);
        let _ = write!(h, "<option value=\"{id}\">{id}</option>");
    }
    let _ = write!(
        h,
        "</select></label>\n<label>Warning <select id=\"f-warning\">\
         <option value=\"\">any</option><option value=\"{ANY_WARNING}\">with warnings</option>"
    );
    for (k, w) in warnings.iter().enumerate() {
        let w = esc(w);
        let _ = write!(h, "<option value=\"{w}\" data-k=\"{k}\">{w}</option>");
    }
    h.push_str(
        "</select></label>\n<label>Order <select id=\"f-sort\">\
         <option value=\"\">document</option>\
         <option value=\"disagreement\">disagreement first</option></select></label>\n</div>\n",
    );
}

/// Space-separated warning numbers, for the data-w attributes the filter reads.
fn warning_attr<'a>(
    names: impl IntoIterator<Item = &'a String>,
    windex: &HashMap<&str, usize>,
) -> String {
    let set: BTreeSet<usize> = names
        .into_iter()
        .filter_map(|w| windex.get(w.as_str()).copied())
        .collect();
    let v: Vec<String> = set.iter().map(usize::to_string).collect();
    v.join(" ")
}

fn dis_class(d: f64) -> &'static str {
    if d >= 50.0 {
        "dis hi"
    } else if d >= 20.0 {
        "dis mid"
    } else {
        "dis"
    }
}

fn article(
    h: &mut String,
    ai: usize,
    a: &Article,
    runs: &[Run],
    scores: &[Scores],
    windex: &HashMap<&str, usize>,
) {
    let present = || a.records.iter().flatten().copied();
    let n_rows = present().map(|r| r.paragraphs.len()).max().unwrap_or(0);

    // Rows first: the article's attributes summarise them.
    let mut rows = String::new();
    let mut max_dis: Option<f64> = None;
    for pi in 0..n_rows {
        let cells: Vec<Option<&Paragraph>> = a
            .records
            .iter()
            .map(|r| r.and_then(|r| r.paragraphs.get(pi)))
            .collect();
        let given: Vec<&Paragraph> = cells.iter().flatten().copied().collect();
        let source = given.first().map(|p| p.source.as_str()).unwrap_or("");
        let differs = given.iter().any(|p| p.source.trim() != source.trim());
        let texts: Vec<&str> = given.iter().map(|p| p.translation.as_str()).collect();
        let dis = disagreement(&texts);
        if let Some(d) = dis {
            max_dis = Some(max_dis.map_or(d, |m: f64| m.max(d)));
        }
        let boilerplate = given.iter().any(|p| p.kind == "boilerplate");
        let w = warning_attr(given.iter().copied().flat_map(|p| &p.warnings), windex);
        let _ = write!(
            rows,
            "<tr class=\"row para{bp}\" id=\"p-{ai}-{pi}\" data-order=\"{pi}\" data-w=\"{w}\"",
            bp = if boilerplate { " boilerplate" } else { "" },
        );
        if let Some(d) = dis {
            let _ = write!(rows, " data-disagreement=\"{d:.2}\"");
        }
        let _ = write!(
            rows,
            "><td class=\"n\"><a href=\"#p-{ai}-{pi}\" title=\"link to this paragraph\">{n}</a>",
            n = pi + 1
        );
        match dis {
            Some(d) => {
                let _ = write!(
                    rows,
                    "<span class=\"{}\" title=\"disagreement between runs: mean of 100 − chrF++ \
                     over pairs\">Δ {d:.0}</span>",
                    dis_class(d)
                );
            }
            None => rows.push_str("<span class=\"dis\" title=\"fewer than two runs\">Δ –</span>"),
        }
        rows.push_str("</td><td class=\"ur\" dir=\"rtl\" lang=\"ur\">");
        rows.push_str(&esc(source));
        if differs {
            rows.push_str(
                " <span class=\"badge\" dir=\"ltr\" lang=\"en\" title=\"the runs split this \
                 article differently: rows may not line up\">source differs between runs</span>",
            );
        }
        rows.push_str("</td>");
        for (ri, cell) in cells.iter().enumerate() {
            match cell {
                Some(p) => {
                    let _ = write!(rows, "<td class=\"tr\" lang=\"en\" data-run=\"{ri}\">");
                    if p.translation.trim().is_empty() {
                        rows.push_str("<span class=\"muted\">(empty)</span>");
                    } else {
                        rows.push_str(&esc(p.translation.trim()));
                    }
                    badges(&mut rows, p);
                    rows.push_str("</td>");
                }
                None => {
                    let _ = write!(rows, "<td class=\"tr none\" data-run=\"{ri}\">–</td>");
                }
            }
        }
        rows.push_str("</tr>\n");
    }
    if n_rows == 0 {
        // Records keep no source text beside paragraphs (`source` is the input's name).
        let _ = writeln!(
            rows,
            "<tr class=\"empty\"><td class=\"none\" colspan=\"{}\">No paragraphs: no run \
             translated this article.</td></tr>",
            runs.len() + 2
        );
    }

    let art_w = warning_attr(
        present().flat_map(|r| {
            r.paragraphs
                .iter()
                .flat_map(|p| &p.warnings)
                .chain(&r.summary_warnings)
        }),
        windex,
    );
    let id = esc(a.id);
    let _ = write!(
        h,
        "<section class=\"article\" id=\"a-{ai}\" data-id=\"{id}\" data-order=\"{ai}\" \
         data-w=\"{art_w}\""
    );
    if let Some(d) = max_dis {
        let _ = write!(h, " data-disagreement=\"{d:.2}\"");
    }
    let _ = write!(h, ">\n<h2><span class=\"aid\">{id}</span>");
    if let Some(src) = present().map(|r| r.source.as_str()).find(|s| !s.is_empty()) {
        let _ = write!(h, "<span class=\"from\">{}</span>", esc(src));
    }
    if let Some(d) = max_dis {
        let _ = write!(
            h,
            "<span class=\"{}\" title=\"highest paragraph disagreement\">max Δ {d:.0}</span>",
            dis_class(d)
        );
    }
    h.push_str("</h2>\n<table class=\"side\">\n<colgroup><col class=\"n\"><col class=\"src\">");
    for _ in runs {
        h.push_str("<col class=\"run\">");
    }
    h.push_str(
        "</colgroup>\n<thead><tr><th scope=\"col\" class=\"n\">¶</th>\
         <th scope=\"col\">Urdu source</th>",
    );
    for (ri, run) in runs.iter().enumerate() {
        let _ = write!(
            h,
            "<th scope=\"col\" class=\"run\"><span class=\"sw c{c}\"></span>\
             <span class=\"lbl\">{l}</span></th>",
            c = ri % PALETTE.len(),
            l = esc(&run.label)
        );
    }
    h.push_str(
        "</tr></thead>\n<tbody class=\"status\"><tr><th scope=\"row\" colspan=\"2\">Status</th>",
    );
    for (ri, rec) in a.records.iter().enumerate() {
        h.push_str("<td>");
        status(h, *rec, scores[ri].facts.as_ref(), a.id);
        h.push_str("</td>");
    }
    h.push_str("</tr></tbody>\n<tbody class=\"paras\">\n");
    h.push_str(&rows);
    h.push_str("</tbody>\n");

    // Summaries, one cell per run under its translations.
    let sum_w = warning_attr(present().flat_map(|r| &r.summary_warnings), windex);
    let _ = write!(
        h,
        "<tbody class=\"summary\"><tr class=\"row summary\" data-w=\"{sum_w}\">\
         <th scope=\"row\" colspan=\"2\">Summary</th>"
    );
    for rec in &a.records {
        h.push_str("<td lang=\"en\">");
        match rec {
            Some(r) if r.ok() => bullets(h, ai, r, n_rows),
            _ => h.push_str("<span class=\"muted\">–</span>"),
        }
        h.push_str("</td>");
    }
    h.push_str("</tr></tbody>\n</table>\n</section>\n");
}

fn badges(h: &mut String, p: &Paragraph) {
    if p.kind == "boilerplate" {
        h.push_str("<span class=\"badge bp\" title=\"kept out of the summary\">boilerplate</span>");
    }
    for w in &p.warnings {
        let _ = write!(h, "<span class=\"badge warn\">{}</span>", esc(w));
    }
}

fn status(
    h: &mut String,
    rec: Option<&Record>,
    facts: Option<&super::facts::FactReport>,
    id: &str,
) {
    let Some(r) = rec else {
        h.push_str("<span class=\"muted\">not in this run</span>");
        return;
    };
    if !r.ok() {
        let _ = write!(
            h,
            "<span class=\"err\">{}</span><span class=\"errmsg\">{}</span>",
            if r.status.is_empty() {
                "no status".to_string()
            } else {
                esc(&r.status)
            },
            esc(r.error.as_deref().unwrap_or("(no error message)"))
        );
        return;
    }
    let t = &r.timings;
    let _ = write!(
        h,
        "ok · <span class=\"num\">{:.1}</span> s · <span class=\"num\">{}</span> tokens out",
        t.seconds, t.tokens_out
    );
    if let Some(af) = facts.and_then(|f| f.articles.iter().find(|a| a.id == id)) {
        if af.total > 0 {
            let _ = write!(h, " · facts {}/{}", af.found, af.total);
            if !af.missed.is_empty() {
                let missed: Vec<String> = af.missed.iter().map(|m| esc(m)).collect();
                let _ = write!(h, " (missed: {})", missed.join(", "));
            }
        }
        for trap in &af.traps_hit {
            let _ = write!(h, " <span class=\"badge trap\">trap: {}</span>", esc(trap));
        }
    }
}

fn bullets(h: &mut String, ai: usize, r: &Record, n_rows: usize) {
    if r.summary.is_empty() {
        h.push_str("<span class=\"muted\">no summary</span>");
    } else {
        h.push_str("<ul class=\"bullets\">");
        for b in &r.summary {
            h.push_str("<li>");
            h.push_str(&esc(&b.text));
            for &pi in &b.paragraphs {
                if pi < n_rows {
                    let _ = write!(
                        h,
                        " <a class=\"ground\" href=\"#p-{ai}-{pi}\" \
                         title=\"grounded in paragraph {n}\">[{n}]</a>",
                        n = pi + 1
                    );
                } else {
                    let _ = write!(
                        h,
                        " <span class=\"ground bad\" title=\"no such paragraph\">[{}]</span>",
                        pi + 1
                    );
                }
            }
            h.push_str("</li>");
        }
        h.push_str("</ul>");
    }
    for w in &r.summary_warnings {
        let _ = write!(h, "<span class=\"badge warn\">{}</span>", esc(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::runs::{Bullet, Model, Timings};
    use std::path::PathBuf;

    const SCRIPT_PAYLOAD: &str = "<script>window.__pwned=1</script>";
    const IMG_PAYLOAD: &str = "<img src=x onerror=\"window.__pwned=1\">";
    const LINK_PAYLOAD: &str = "<a href=\"javascript:window.__pwned=1\">x</a>";

    fn para(source: &str, translation: &str, warnings: &[&str]) -> Paragraph {
        Paragraph {
            source: source.into(),
            translation: translation.into(),
            kind: "body".into(),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }
    }

    fn record(id: &str, paragraphs: Vec<Paragraph>, summary: Vec<Bullet>) -> Record {
        Record {
            id: id.into(),
            source: format!("{id}.txt"),
            status: "ok".into(),
            error: None,
            paragraphs,
            summary,
            summary_warnings: vec![],
            model: Model {
                name: "model-a".into(),
                sha256: String::new(),
            },
            translator: None,
            timings: Timings {
                seconds: 2.0,
                tokens_in: 10,
                tokens_out: 40,
            },
        }
    }

    fn run(label: &str, records: Vec<Record>) -> Run {
        Run {
            path: PathBuf::from(label),
            label: label.into(),
            records,
        }
    }

    /// The text between the first `open` tag and the next `close`.
    fn between<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find(close).unwrap();
        &html[start..end]
    }

    #[test]
    fn hostile_content_is_escaped_everywhere() {
        let hostile = format!("{SCRIPT_PAYLOAD} {IMG_PAYLOAD} {LINK_PAYLOAD} 'q' & more");
        let mut r = record(
            &format!("id-{SCRIPT_PAYLOAD}"),
            vec![para(&hostile, &hostile, &[IMG_PAYLOAD])],
            vec![Bullet {
                text: LINK_PAYLOAD.into(),
                paragraphs: vec![0],
            }],
        );
        r.summary_warnings = vec![SCRIPT_PAYLOAD.into()];
        r.model.name = IMG_PAYLOAD.into();
        let mut failed = record("failed", vec![], vec![]);
        failed.status = "error".into();
        failed.error = Some(SCRIPT_PAYLOAD.into());
        let runs = vec![
            run(LINK_PAYLOAD, vec![r.clone(), failed]),
            run("two", vec![r]),
        ];
        let scores = vec![Scores::default(), Scores::default()];
        let html = render(&runs, &scores, SCRIPT_PAYLOAD);
        for raw in [SCRIPT_PAYLOAD, IMG_PAYLOAD, LINK_PAYLOAD, "'q'"] {
            assert!(!html.contains(raw), "unescaped {raw}");
        }
        assert_eq!(html.matches("<script").count(), 1);
        assert!(!html.contains("<img"));
        assert!(!html.contains("href=\"javascript"));
        assert!(html.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
        assert!(html.contains(
            "&lt;a href=&quot;javascript:window.__pwned=1&quot;&gt;x&lt;/a&gt; &#39;q&#39; &amp; more"
        ));
        // Anchors come from indexes, never from the article id.
        assert!(html.contains("id=\"p-0-0\"") && html.contains("href=\"#p-0-0\""));
        // The error record and the article missing from run two.
        assert!(html.contains("<span class=\"errmsg\">&lt;script&gt;"));
        assert!(html.contains("not in this run"));
    }

    #[test]
    fn csp_hashes_match_the_emitted_script_and_style() {
        let runs = vec![run(
            "a",
            vec![record("x", vec![para("ا", "a", &[])], vec![])],
        )];
        let html = render(&runs, &[Scores::default()], "t");
        let script = between(&html, "<script>", "</script>");
        let style = between(&html, "<style>", "</style>");
        let csp = between(
            &html,
            "http-equiv=\"Content-Security-Policy\" content=\"",
            "\"",
        );
        assert!(
            csp.contains(&format!("script-src '{}'", csp_hash(script))),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("style-src '{}'", csp_hash(style))),
            "{csp}"
        );
        for part in [
            "default-src 'none'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(csp.contains(part), "{csp}");
        }
        assert_eq!(html.matches("<style").count(), 1);
        assert!(
            !html.contains(" style="),
            "a style attribute would need unsafe-inline"
        );
        // A known value: base64 of SHA-256 of the empty string (as Python hashlib gives it).
        assert_eq!(
            csp_hash(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn disagreement_is_zero_when_identical_and_grows_with_difference() {
        let same = "The talks will be held in Geneva on Monday.";
        assert_eq!(disagreement(&[same, same, same]), Some(0.0));
        assert_eq!(disagreement(&[same]), None);
        assert_eq!(disagreement(&[]), None);
        let close =
            disagreement(&[same, "The talks will take place in Geneva on Monday."]).unwrap();
        let far = disagreement(&[same, "Heavy rain flooded Karachi streets."]).unwrap();
        assert!(0.0 < close && close < far && far <= 100.0, "{close} {far}");
        // Symmetric, and a mean over pairs.
        let ab = disagreement(&[same, "Heavy rain."]).unwrap();
        assert_eq!(ab, disagreement(&["Heavy rain.", same]).unwrap());
        let three = disagreement(&[same, same, "Heavy rain."]).unwrap();
        assert!((three - 2.0 * ab / 3.0).abs() < 1e-9);
    }

    #[test]
    fn rows_and_articles_carry_the_order_and_disagreement_the_script_sorts_by() {
        let a1 = |t2: &str| {
            record(
                "calm",
                vec![
                    para("ایک", "Same text.", &[]),
                    para("دو", t2, &["repetition"]),
                ],
                vec![Bullet {
                    text: "b".into(),
                    paragraphs: vec![1, 7],
                }],
            )
        };
        let runs = vec![
            run(
                "a",
                vec![a1("Talks in Geneva."), record("b", vec![], vec![])],
            ),
            run("b", vec![a1("Rain in Karachi flooded roads.")]),
        ];
        let html = render(&runs, &[Scores::default(), Scores::default()], "t");
        let row0 = between(&html, "id=\"p-0-0\"", ">");
        assert!(row0.contains("data-order=\"0\"") && row0.contains("data-disagreement=\"0.00\""));
        let row1 = between(&html, "id=\"p-0-1\"", ">");
        let d1: f64 = between(row1, "data-disagreement=\"", "\"").parse().unwrap();
        assert!(d1 > 30.0, "{row1}");
        // The warning is numbered in data-w, and the select names it with that number.
        assert!(row1.contains("data-w=\"0\""), "{row1}");
        assert!(html.contains("<option value=\"repetition\" data-k=\"0\">repetition</option>"));
        let art0 = between(&html, "id=\"a-0\"", ">");
        assert!(
            art0.contains(&format!("data-disagreement=\"{d1:.2}\"")),
            "{art0}"
        );
        // Article b: one run only, so no disagreement at all.
        let art1 = between(&html, "id=\"a-1\"", ">");
        assert!(!art1.contains("data-disagreement"), "{art1}");
        // Grounding links are 1-based; an index past the paragraphs is not a link.
        assert!(html.contains("href=\"#p-0-1\" title=\"grounded in paragraph 2\">[2]</a>"));
        assert!(html.contains("title=\"no such paragraph\">[8]</span>"));
        // Each paragraph row has one translation cell per run.
        let body = between(&html, "<tbody class=\"paras\">", "</tbody>");
        for row in body.split("</tr>").filter(|r| r.contains("<tr")) {
            assert_eq!(row.matches("<td class=\"tr").count(), 2, "{row}");
        }
    }

    #[test]
    fn chart_uses_chrf_pp_then_fact_recall_and_says_which_flags_give_quality() {
        let runs = vec![
            run("fast", vec![record("x", vec![para("ا", "a", &[])], vec![])]),
            run("slow", vec![record("x", vec![para("ا", "b", &[])], vec![])]),
        ];
        let html = render(&runs, &[Scores::default(), Scores::default()], "t");
        assert!(
            !html.contains("<svg") && html.contains("--ref REF") && html.contains("--facts FILE")
        );
        let facts = |r: f64| Scores {
            facts: Some(crate::eval::facts::FactReport {
                recall: Some(r),
                ..Default::default()
            }),
            ..Default::default()
        };
        let html = render(&runs, &[facts(0.5), facts(0.75)], "t");
        assert!(html.contains("<svg") && html.contains("fact recall (%)"));
        assert_eq!(html.matches("<g class=\"point\"").count(), 2);
        let chrf = |v: f64| Scores {
            chrf_pp: Some(v),
            ..facts(0.5)
        };
        let html = render(&runs, &[chrf(40.0), chrf(52.5)], "t");
        assert!(html.contains(">chrF++</text>") && html.contains("chrF++ 52.5"));
        assert_eq!(html.matches("<circle").count(), 2);
    }

    #[test]
    fn axes_round_to_nice_steps() {
        let (lo, hi, step) = nice_axis(12.3, 48.9, true);
        assert_eq!(step, 10.0);
        assert!(lo <= 12.3 && hi >= 48.9 && lo >= 0.0);
        let (lo, hi, step) = nice_axis(5.0, 5.0, true);
        assert!(lo < 5.0 && hi > 5.0 && step > 0.0);
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(20.0, 10.0), "20");
    }
}
