//! `tarjuma eval`: reads a hypothesis (a run's `results.jsonl` or plain lines) and a
//! reference (plain lines, or JSONL of `{id, translation, summary}`), aligns them, and
//! computes the metrics. Misaligned inputs are an error naming the first mismatch: a
//! silently truncated corpus gives a score nobody can reproduce.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::facts::FactSheet;
use super::runs::Run;
use super::{bleu, chrf, rouge, Scores};

/// What is scored.
#[derive(Debug, Clone)]
pub enum Hyp {
    /// A run's records (translations paragraph by paragraph, summaries as joined bullets).
    Run(Run),
    /// A plain text file, one segment per line.
    Lines { path: PathBuf, lines: Vec<String> },
}

/// One reference article of a JSONL reference file.
#[derive(Debug, Clone, Default)]
pub struct RefArticle {
    /// Reference paragraphs (a string is split into its non-blank lines).
    pub translation: Option<Vec<String>>,
    /// Reference summary (bullets joined by spaces).
    pub summary: Option<String>,
}

/// What it is scored against.
#[derive(Debug, Clone)]
pub enum Ref {
    Lines {
        path: PathBuf,
        lines: Vec<String>,
    },
    Articles {
        path: PathBuf,
        order: Vec<String>,
        by_id: HashMap<String, RefArticle>,
    },
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not valid UTF-8 ({e})", path.display()))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

/// Lines as sacrebleu's command line reads them: split at `\n`, one trailing newline
/// ignored, a `\r` before it dropped.
fn lines(text: &str) -> Vec<String> {
    let t = text.strip_suffix('\n').unwrap_or(text);
    if t.is_empty() && text.is_empty() {
        return Vec::new();
    }
    t.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

fn first_line(path: &Path) -> Option<String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty())
}

fn looks_like_record(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .is_some_and(|v| v.get("paragraphs").is_some() && v.get("id").is_some())
}

impl Hyp {
    /// A run directory, a `results.jsonl`, or a plain text file.
    pub fn load(path: &Path) -> Result<Hyp> {
        if path.is_dir() || first_line(path).is_some_and(|l| looks_like_record(&l)) {
            return Ok(Hyp::Run(Run::load(path)?));
        }
        Ok(Hyp::Lines {
            path: path.to_path_buf(),
            lines: lines(&read_text(path)?),
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TextOrList {
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct RefLine {
    id: serde_json::Value,
    translation: Option<TextOrList>,
    summary: Option<TextOrList>,
}

impl Ref {
    /// A JSONL file of `{id, translation, summary}` (by its first line), or plain lines.
    pub fn load(path: &Path) -> Result<Ref> {
        let text = read_text(path)?;
        let jsonl = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .is_some_and(|v| v.get("id").is_some())
            });
        if !jsonl {
            return Ok(Ref::Lines {
                path: path.to_path_buf(),
                lines: lines(&text),
            });
        }
        let mut order = Vec::new();
        let mut by_id = HashMap::new();
        for (n, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let r: RefLine = serde_json::from_str(l).with_context(|| {
                format!(
                    "{}:{}: a reference line is {{\"id\", \"translation\", \"summary\"}}",
                    path.display(),
                    n + 1
                )
            })?;
            let id = match r.id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let translation = r.translation.map(|t| match t {
                TextOrList::List(v) => v,
                TextOrList::Text(s) => s
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect(),
            });
            let summary = r.summary.map(|s| match s {
                TextOrList::List(v) => v.join(" "),
                TextOrList::Text(s) => s,
            });
            if by_id
                .insert(
                    id.clone(),
                    RefArticle {
                        translation,
                        summary,
                    },
                )
                .is_some()
            {
                bail!("{}:{}: id `{id}` appears twice", path.display(), n + 1);
            }
            order.push(id);
        }
        Ok(Ref::Articles {
            path: path.to_path_buf(),
            order,
            by_id,
        })
    }
}

/// Which text `--facts` is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsIn {
    Summary,
    Translation,
}

/// Aligned segments: (hypothesis, reference) pairs for translation and for summaries.
#[derive(Debug, Default)]
struct Aligned {
    trans: Vec<(String, String)>,
    summ: Vec<(String, String)>,
}

fn align(hyp: &Hyp, reference: &Ref) -> Result<Aligned> {
    let mut a = Aligned::default();
    match (hyp, reference) {
        (Hyp::Lines { path: hp, lines: h }, Ref::Lines { path: rp, lines: r }) => {
            check_counts(h.len(), r.len(), hp, rp, |i| format!("line {}", i + 1))?;
            a.trans = h.iter().cloned().zip(r.iter().cloned()).collect();
            a.summ = a.trans.clone();
        }
        (Hyp::Lines { path, .. }, Ref::Articles { .. }) => bail!(
            "{}: a plain-text HYP needs a plain-text REF (one reference per line); a JSONL \
             REF matches the records of a run by id",
            path.display()
        ),
        (Hyp::Run(run), Ref::Lines { path: rp, lines: r }) => {
            let segs: Vec<(String, usize, &str)> = run
                .records
                .iter()
                .flat_map(|rec| {
                    rec.paragraphs
                        .iter()
                        .enumerate()
                        .map(move |(i, p)| (rec.id.clone(), i, p.translation.as_str()))
                })
                .collect();
            check_counts(segs.len(), r.len(), &run.path, rp, |i| {
                let (id, p, _) = &segs[i];
                format!("segment {} (article `{id}`, paragraph {})", i + 1, p + 1)
            })?;
            a.trans = segs
                .iter()
                .map(|(_, _, t)| t.to_string())
                .zip(r.iter().cloned())
                .collect();
        }
        (
            Hyp::Run(run),
            Ref::Articles {
                path: rp,
                order,
                by_id,
            },
        ) => {
            for rec in &run.records {
                let Some(r) = by_id.get(&rec.id) else {
                    bail!(
                        "article `{}` of {} has no reference in {}",
                        rec.id,
                        run.path.display(),
                        rp.display()
                    );
                };
                if let Some(rt) = &r.translation {
                    if rt.len() != rec.paragraphs.len() {
                        bail!(
                            "article `{}`: {} paragraphs in {} but {} in the reference {}; \
                             references are aligned paragraph by paragraph",
                            rec.id,
                            rec.paragraphs.len(),
                            run.path.display(),
                            rt.len(),
                            rp.display()
                        );
                    }
                    for (p, t) in rec.paragraphs.iter().zip(rt) {
                        a.trans.push((p.translation.clone(), t.clone()));
                    }
                }
                if let Some(s) = &r.summary {
                    a.summ.push((rec.summary_text(), s.clone()));
                }
            }
            if let Some(missing) = order
                .iter()
                .find(|id| !run.records.iter().any(|r| &r.id == *id))
            {
                bail!(
                    "reference article `{missing}` in {} is not in {}",
                    rp.display(),
                    run.path.display()
                );
            }
        }
    }
    Ok(a)
}

fn check_counts(
    h: usize,
    r: usize,
    hp: &Path,
    rp: &Path,
    name: impl Fn(usize) -> String,
) -> Result<()> {
    if h == r {
        return Ok(());
    }
    if h > r {
        bail!(
            "{} has {h} segments but {} has {r}: {} of the hypothesis has no reference",
            hp.display(),
            rp.display(),
            name(r)
        );
    }
    bail!(
        "{} has {h} segments but {} has {r}: reference line {} has no hypothesis",
        hp.display(),
        rp.display(),
        h + 1
    )
}

/// Scores a hypothesis against a reference and/or a fact sheet.
pub fn score(
    hyp: &Hyp,
    reference: Option<&Ref>,
    facts: Option<&FactSheet>,
    facts_in: FactsIn,
) -> Result<Scores> {
    let mut s = Scores::default();
    if let Some(r) = reference {
        let a = align(hyp, r)?;
        if !a.trans.is_empty() {
            let h: Vec<&str> = a.trans.iter().map(|(h, _)| h.as_str()).collect();
            let r: Vec<&str> = a.trans.iter().map(|(_, r)| r.as_str()).collect();
            s.bleu = Some(bleu::corpus_bleu(&h, &r));
            s.chrf = Some(chrf::corpus_chrf(&h, &r, 0));
            s.chrf_pp = Some(chrf::corpus_chrf(&h, &r, 2));
            s.segments = a.trans.len();
        }
        if !a.summ.is_empty() {
            let h: Vec<&str> = a.summ.iter().map(|(h, _)| h.as_str()).collect();
            let r: Vec<&str> = a.summ.iter().map(|(_, r)| r.as_str()).collect();
            let m = rouge::mean(&h, &r);
            s.rouge1 = Some(m.rouge1);
            s.rouge2 = Some(m.rouge2);
            s.rouge_l = Some(m.rouge_l);
            s.summaries = a.summ.len();
        }
        if a.trans.is_empty() && a.summ.is_empty() {
            bail!("nothing to score: the reference has neither translations nor summaries");
        }
    }
    if let Some(sheet) = facts {
        let texts: Vec<(String, String)> = match hyp {
            Hyp::Run(run) => run
                .records
                .iter()
                .map(|r| {
                    let t = match facts_in {
                        FactsIn::Summary => r.summary_text(),
                        FactsIn::Translation => r.translation(),
                    };
                    (r.id.clone(), t)
                })
                .collect(),
            Hyp::Lines { lines, .. } => lines
                .iter()
                .enumerate()
                .map(|(i, l)| ((i + 1).to_string(), l.clone()))
                .collect(),
        };
        let ids: Vec<&str> = texts.iter().map(|(i, _)| i.as_str()).collect();
        if let Some(u) = sheet.unknown_articles(&ids).first() {
            bail!("the facts name article `{u}`, which the hypothesis does not have");
        }
        s.facts = Some(sheet.check(texts.iter().map(|(i, t)| (i.as_str(), t.as_str()))));
    }
    Ok(s)
}

/// The signatures of the metrics, for the table and `--json`.
pub fn signatures() -> serde_json::Value {
    serde_json::json!({
        "bleu": bleu::SIGNATURE,
        "chrf": chrf::signature(0),
        "chrf_pp": chrf::signature(2),
        "rouge": rouge::SIGNATURE,
    })
}
