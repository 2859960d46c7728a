//! Bullet summaries that cover the whole story and rest on their paragraphs (issue 10).
//!
//! A mixed design, so that a small model can only make a summary better, never wrong:
//!
//! 1. **Map**: the body paragraphs are taken in chunks; each sentence of each chunk is an
//!    extractive candidate, scored on its names and numbers (from [`factcheck::claims`]),
//!    its position (the lead counts most, but a later paragraph with a new actor, number
//!    or event is a candidate as much as the lead) and its length. Each chunk keeps its
//!    best candidates, however short the article.
//! 2. **Reduce**: candidates are chosen greedily for importance and coverage (maximal
//!    marginal relevance, Carbonell & Goldstein 1998): a candidate is worth its score,
//!    scaled by how much of its names and numbers is new; near-duplicates are dropped.
//!    The lead comes first, then the rest in order of choice, up to `--max-bullets`.
//! 3. **Rewrite**: the model turns each chosen sentence into a short bullet. The bullet
//!    must pass the fact check against its paragraph (every number, date and name found
//!    there) and a few sanity checks; a failing bullet is regenerated once with a
//!    stricter prompt, then replaced by its extractive candidate. Every rejected bullet
//!    is recorded with the reason, so nothing unverified is kept silently.
//!
//! Datelines never head a bullet: a date line is left out of the candidates (it goes
//! once into the record) and a dateline prefix is cut from sentences and bullets.

use std::collections::HashSet;

use anyhow::Result;

use serde::{Deserialize, Serialize};

use super::factcheck::{self, Claim};
use super::guards::{overlap, Warning};
use super::{Lm, Usage};
use crate::prompt::{fill, Message, Role};
use crate::text::dateline::{is_dateline, split_prefix};
use crate::text::script::has_arabic_letters;
use crate::text::segment::sentences;
use crate::text::Kind;

/// Most bullets `--max-bullets` allows.
pub const MAX_BULLETS: usize = 10;
const BULLET_TOKENS: usize = 64;
/// Words of body text per map chunk.
const CHUNK_WORDS: usize = 400;

/// A bullet and the 0-based indexes of the record's paragraphs that support it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bullet {
    pub text: String,
    pub paragraphs: Vec<usize>,
}

/// Format-1 records hold bullets as bare strings; they read as bullets without grounding.
impl<'de> Deserialize<'de> for Bullet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Grounded {
                text: String,
                #[serde(default)]
                paragraphs: Vec<usize>,
            },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Plain(text) => Bullet {
                text,
                paragraphs: Vec::new(),
            },
            Raw::Grounded { text, paragraphs } => Bullet { text, paragraphs },
        })
    }
}

/// A bullet the checks rejected, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub text: String,
    pub paragraphs: Vec<usize>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct SummaryOut {
    pub bullets: Vec<Bullet>,
    pub warnings: Vec<Warning>,
    pub dropped: Vec<Dropped>,
    /// The article's dateline, when it has one.
    pub dateline: Option<String>,
}

/// One paragraph of the article as the summarizer sees it.
#[derive(Debug, Clone)]
pub struct SumPara {
    /// Index into the record's `paragraphs`.
    pub index: usize,
    /// The English text (the translation, or the text itself for English input).
    pub english: String,
    /// The original (Urdu) text, for recognising a dateline line.
    pub source: String,
    pub kind: Kind,
    /// False for a flagged translation (commentary, a copy, Urdu script left): such a
    /// paragraph is used only when nothing else is.
    pub usable: bool,
}

/// An extractive candidate: one sentence of one paragraph.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub text: String,
    pub paragraph: usize,
    pub score: f64,
    /// Lowercased names and normalised numbers it states.
    facts: HashSet<String>,
}

fn fact_keys(text: &str) -> HashSet<String> {
    factcheck::claims(text)
        .into_iter()
        .map(|c| match c {
            Claim::Number { value, .. } => format!("#{value}"),
            Claim::Name(n) => n.to_lowercase(),
        })
        .collect()
}

/// The dateline of an article: a paragraph that is only a date (its English when that
/// reads as a date, else the original), or a prefix of the first body paragraph.
pub fn find_dateline(paras: &[SumPara]) -> (Option<String>, Option<usize>) {
    for p in paras.iter().filter(|p| p.kind == Kind::Body).take(4) {
        if is_dateline(&p.english) {
            return (Some(p.english.trim().to_string()), Some(p.index));
        }
        if is_dateline(&p.source) {
            return (Some(p.source.trim().to_string()), Some(p.index));
        }
    }
    // A prefix on one of the first paragraphs (the first is often the headline).
    let prefix = paras
        .iter()
        .filter(|p| p.kind == Kind::Body)
        .take(3)
        .find_map(|p| split_prefix(&p.english).0.map(str::to_string));
    (prefix, None)
}

/// Cuts list markers, dateline prefixes and stray whitespace; `None` when what is left
/// is not a sentence (fewer than three real words).
pub fn clean_bullet(s: &str) -> Option<String> {
    let t = s
        .trim()
        .trim_start_matches(|c: char| matches!(c, '-' | '*' | '•' | '–') || c.is_whitespace());
    // "1." or "2)" list numbering, not a leading year or figure.
    let t = match t.split_once(['.', ')']) {
        Some((n, rest))
            if (1..=2).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_digit())
                && rest.starts_with(' ') =>
        {
            rest.trim()
        }
        _ => t.trim(),
    };
    let t = split_prefix(t).1;
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    let words = t
        .split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .count();
    (words >= 3).then_some(t)
}

/// Map: each chunk's best candidates. Chunks are runs of body paragraphs of about
/// [`CHUNK_WORDS`] words; each keeps up to `keep` candidates.
pub fn candidates(paras: &[SumPara], skip: Option<usize>, keep: usize) -> Vec<Candidate> {
    let body: Vec<&SumPara> = paras
        .iter()
        .filter(|p| p.kind == Kind::Body && Some(p.index) != skip && !p.english.trim().is_empty())
        .collect();
    let any_usable = body.iter().any(|p| p.usable);
    let body: Vec<&SumPara> = body
        .into_iter()
        .filter(|p| p.usable || !any_usable)
        .collect();
    let n = body.len().max(1) as f64;
    let mut out = Vec::new();
    let mut chunk: Vec<Candidate> = Vec::new();
    let mut words = 0;
    for (rank, p) in body.iter().enumerate() {
        for (k, s) in sentences(&p.english).into_iter().enumerate() {
            let Some(text) = clean_bullet(s) else {
                continue;
            };
            let facts = fact_keys(&text);
            let w = text.split_whitespace().count();
            // Position: the lead most, then a gentle decay, so that late paragraphs
            // with new facts still win against a fact-free early one.
            let position = 1.0 + 1.0 / (1.0 + rank as f64) + 0.3 * (1.0 - rank as f64 / n);
            let first = if k == 0 { 0.2 } else { 0.0 };
            let informative = 0.35 * (facts.len().min(6) as f64);
            let length = match w {
                0..=4 => 0.3,
                5..=45 => 1.0,
                46..=70 => 0.7,
                _ => 0.4,
            };
            let usable = if p.usable { 1.0 } else { 0.5 };
            chunk.push(Candidate {
                text,
                paragraph: p.index,
                score: (position + first + informative) * length * usable,
                facts,
            });
        }
        words += p.english.split_whitespace().count();
        if words >= CHUNK_WORDS {
            out.extend(best(std::mem::take(&mut chunk), keep));
            words = 0;
        }
    }
    out.extend(best(chunk, keep));
    out
}

fn best(mut c: Vec<Candidate>, keep: usize) -> Vec<Candidate> {
    c.sort_by(|a, b| b.score.total_cmp(&a.score));
    c.truncate(keep);
    c
}

/// Reduce: up to `max` candidates chosen for importance and coverage, the lead first.
pub fn choose(mut cands: Vec<Candidate>, max: usize) -> Vec<Candidate> {
    let mut chosen: Vec<Candidate> = Vec::new();
    let mut covered: HashSet<String> = HashSet::new();
    // The lead: the best candidate of the first paragraph that has one.
    if let Some(first_para) = cands.iter().map(|c| c.paragraph).min() {
        if let Some(i) = cands
            .iter()
            .enumerate()
            .filter(|(_, c)| c.paragraph == first_para)
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(i, _)| i)
        {
            let c = cands.remove(i);
            covered.extend(c.facts.iter().cloned());
            chosen.push(c);
        }
    }
    while chosen.len() < max {
        let pick = cands
            .iter()
            .enumerate()
            .filter(|(_, c)| !chosen.iter().any(|s| overlap(&s.text, &c.text) > 0.5))
            .map(|(i, c)| {
                let new = c.facts.iter().filter(|f| !covered.contains(*f)).count();
                let novelty = (new as f64 + 1.0) / (c.facts.len() as f64 + 1.0);
                (i, c.score * (0.35 + 0.65 * novelty))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, _)) = pick else { break };
        let c = cands.remove(i);
        covered.extend(c.facts.iter().cloned());
        chosen.push(c);
    }
    chosen
}

/// Why a rewritten bullet is not kept, or `None` when it passes every check.
pub fn check_bullet(bullet: &str, candidate: &str, support: &str) -> Option<String> {
    if has_arabic_letters(bullet) {
        return Some("Urdu script in the bullet".into());
    }
    let lower = bullet.to_lowercase();
    let commentary = [
        "here is",
        "here's",
        "sure,",
        "the sentence",
        "this sentence",
        "bullet point",
        "the paragraph",
        "the article",
        "i cannot",
        "i can't",
    ];
    if let Some(c) = commentary.iter().find(|c| lower.contains(*c)) {
        return Some(format!("commentary (\"{c}\") instead of a bullet"));
    }
    let missing = factcheck::unsupported(bullet, support);
    if !missing.is_empty() {
        return Some(format!("{} not in its paragraph", missing.join(", ")));
    }
    if bullet.split_whitespace().count() > 40 {
        return Some("longer than 40 words".into());
    }
    if overlap(bullet, candidate) < 0.2 {
        return Some("unrelated to the sentence it rewrites".into());
    }
    None
}

/// What turns a chosen sentence into a bullet: the model, or a stand-in in tests.
pub trait Rewrite {
    /// A bullet for `sentence` from `paragraph`; `strict` after a failed first try.
    fn rewrite(&mut self, sentence: &str, paragraph: &str, strict: bool) -> Result<String>;
}

/// The summary of `paras` in up to `max_bullets` bullets.
pub fn summarize_with(
    paras: &[SumPara],
    max_bullets: usize,
    rw: &mut dyn Rewrite,
) -> Result<SummaryOut> {
    let max = max_bullets.clamp(1, MAX_BULLETS);
    let (dateline, date_para) = find_dateline(paras);
    let chosen = choose(candidates(paras, date_para, max), max);
    let mut out = SummaryOut {
        dateline,
        ..Default::default()
    };
    for c in chosen {
        let para = paras
            .iter()
            .find(|p| p.index == c.paragraph)
            .map(|p| p.english.as_str())
            .unwrap_or(&c.text);
        let mut kept = None;
        for strict in [false, true] {
            let raw = rw.rewrite(&c.text, para, strict)?;
            let Some(b) = clean_bullet(raw.lines().next().unwrap_or("")) else {
                out.dropped.push(Dropped {
                    text: raw.trim().to_string(),
                    paragraphs: vec![c.paragraph],
                    reason: "not a sentence".into(),
                });
                continue;
            };
            match check_bullet(&b, &c.text, para) {
                None => {
                    kept = Some(b);
                    break;
                }
                Some(reason) => out.dropped.push(Dropped {
                    text: b,
                    paragraphs: vec![c.paragraph],
                    reason,
                }),
            }
        }
        let text = match kept {
            Some(b) => b,
            None => {
                if !out.warnings.contains(&Warning::ExtractiveFill) {
                    out.warnings.push(Warning::ExtractiveFill);
                }
                c.text.clone()
            }
        };
        if let Some(prev) = out
            .bullets
            .iter()
            .position(|b| overlap(&b.text, &text) > 0.7)
        {
            out.dropped.push(Dropped {
                text,
                paragraphs: vec![c.paragraph],
                reason: format!("repeats bullet {}", prev + 1),
            });
            continue;
        }
        out.bullets.push(Bullet {
            text,
            paragraphs: vec![c.paragraph],
        });
    }
    Ok(out)
}

/// The model as a [`Rewrite`]: one short decode per bullet.
struct ModelRewrite<'a> {
    lm: &'a mut Lm,
    usage: Usage,
}

impl Rewrite for ModelRewrite<'_> {
    fn rewrite(&mut self, sentence: &str, paragraph: &str, strict: bool) -> Result<String> {
        let lm = &mut *self.lm;
        let task = if strict {
            lm.tasks.bullet_strict.clone()
        } else {
            lm.tasks.bullet.clone()
        };
        // The paragraph is context; when it does not fit, the sentence alone is.
        let room = lm.context.saturating_sub(BULLET_TOKENS + 160);
        let paragraph = if lm.count(paragraph) <= room {
            paragraph
        } else {
            sentence
        };
        let msgs = vec![
            Message::new(Role::System, task.system.clone()),
            Message::new(
                Role::User,
                fill(
                    &task.user,
                    &[("paragraph", paragraph), ("sentence", sentence)],
                ),
            ),
        ];
        let prompt = lm.render(&msgs, "- ")?;
        anyhow::ensure!(
            prompt.len() + BULLET_TOKENS <= lm.context,
            "a bullet prompt of {} tokens does not fit the {}-token context (raise --context)",
            prompt.len(),
            lm.context
        );
        let mut opts = lm.english_options(BULLET_TOKENS);
        opts.stop_texts = vec!["\n".into()];
        let keep = lm.shared_prefix(&msgs[..1], &prompt);
        let o = lm.run_keeping(&prompt, keep, &opts)?;
        self.usage.tokens_in += prompt.len();
        self.usage.tokens_out += o.ids.len();
        Ok(o.text)
    }
}

impl Lm {
    /// Summarises an article's paragraphs into up to `max_bullets` grounded bullets.
    pub fn summarize(
        &mut self,
        paras: &[SumPara],
        max_bullets: usize,
    ) -> Result<(SummaryOut, Usage)> {
        let mut rw = ModelRewrite {
            lm: self,
            usage: Usage::default(),
        };
        let out = summarize_with(paras, max_bullets, &mut rw)?;
        Ok((out, rw.usage))
    }
}

/// A lead-N extract: the first `n` sentences of the body (what the bullets must beat).
pub fn lead(paras: &[SumPara], n: usize) -> Vec<String> {
    let (_, date_para) = find_dateline(paras);
    paras
        .iter()
        .filter(|p| p.kind == Kind::Body && Some(p.index) != date_para)
        .flat_map(|p| sentences(&p.english))
        .filter_map(clean_bullet)
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paras(texts: &[&str]) -> Vec<SumPara> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| SumPara {
                index: i,
                english: t.to_string(),
                source: t.to_string(),
                kind: if t.starts_with("Read more:") || t.contains("Photo:") {
                    Kind::Boilerplate
                } else {
                    Kind::Body
                },
                usable: true,
            })
            .collect()
    }

    /// Rewrites by copying, or by a fixed reply for one sentence.
    struct Fake {
        copy: bool,
        invent: Option<(&'static str, &'static str)>,
        calls: usize,
    }

    impl Rewrite for Fake {
        fn rewrite(&mut self, sentence: &str, _: &str, strict: bool) -> Result<String> {
            self.calls += 1;
            if let Some((needle, reply)) = self.invent {
                if sentence.contains(needle) {
                    return Ok(if strict {
                        format!("{reply} (strict)")
                    } else {
                        reply.to_string()
                    });
                }
            }
            Ok(if self.copy {
                sentence.to_string()
            } else {
                String::new()
            })
        }
    }

    const STORY: &[&str] = &[
        "Russia to hold security talks with US next month",
        "28 December 2021",
        "Russian diplomats and military officials will hold talks with the United States next month on Ukraine and other security issues.",
        "Foreign Minister Sergei Lavrov told a state website that the talks would start soon after the New Year holidays.",
        "Read more: Western countries must stop their aggressive behaviour, says Putin",
        "Russia has deployed extra troops on the border with Ukraine, and Western powers see it as a sign of plans to intervene.",
        "Moscow denies these claims.",
        "It says NATO's eastward expansion threatens Russia's security.",
        "Talks are expected in Geneva on 10 January, followed by a NATO-Russia meeting on 12 January.",
        "More than 14,000 people have died in the conflict in Donbas since 2014, according to Kyiv.",
        "--- Photo: AP",
    ];

    #[test]
    fn bullets_cover_the_whole_story_lead_first_and_skip_boilerplate_and_dateline() {
        let p = paras(STORY);
        let mut fake = Fake {
            copy: true,
            invent: None,
            calls: 0,
        };
        let s = summarize_with(&p, 5, &mut fake).unwrap();
        assert_eq!(s.bullets.len(), 5, "{:?}", s.bullets);
        assert_eq!(s.bullets[0].paragraphs, vec![0], "the lead first");
        assert_eq!(s.dateline.as_deref(), Some("28 December 2021"));
        for b in &s.bullets {
            assert_eq!(b.paragraphs.len(), 1);
            let i = b.paragraphs[0];
            assert!(
                i != 1 && i != 4 && i != 10,
                "dateline or boilerplate: {b:?}"
            );
            assert_eq!(p[i].kind, Kind::Body);
            assert!(!b.text.starts_with("28 December"), "{b:?}");
        }
        // The second half (Geneva dates, the death toll) is covered, not only the lead.
        assert!(
            s.bullets.iter().any(|b| b.paragraphs[0] >= 8),
            "{:?}",
            s.bullets
        );
        // With more room, more of the story.
        let s10 = summarize_with(&p, 10, &mut fake).unwrap();
        assert!(s10.bullets.len() > 5, "{:?}", s10.bullets);
    }

    #[test]
    fn an_invented_number_is_dropped_and_recorded() {
        let p = paras(STORY);
        let mut fake = Fake {
            copy: true,
            invent: Some((
                "14,000",
                "More than 15,000 people have died in Donbas since 2014.",
            )),
            calls: 0,
        };
        let s = summarize_with(&p, 10, &mut fake).unwrap();
        let d: Vec<&Dropped> = s
            .dropped
            .iter()
            .filter(|d| d.text.contains("15,000"))
            .collect();
        assert_eq!(d.len(), 2, "first try and strict retry: {:?}", s.dropped);
        assert!(d[0].reason.contains("number 15,000"), "{:?}", d[0]);
        assert_eq!(d[0].paragraphs, vec![9]);
        // The extract replaces it, and nothing kept holds the invented figure.
        assert!(s.bullets.iter().all(|b| !b.text.contains("15,000")));
        assert!(s.bullets.iter().any(|b| b.text.contains("14,000")));
        assert!(s.warnings.contains(&Warning::ExtractiveFill));
    }

    #[test]
    fn dateline_prefixes_never_head_a_bullet() {
        let p = paras(&[
            "KARACHI, Dec 28 (AP) — Heavy rain flooded roads across the city on Tuesday.",
            "The Met Office recorded 85 millimetres of rain and expects more.",
            "Two people died when a wall collapsed in Korangi.",
        ]);
        let mut fake = Fake {
            copy: false,
            invent: Some((
                "Heavy rain",
                "28 December 2021: Heavy rain flooded roads across the city on Tuesday.",
            )),
            calls: 0,
        };
        let s = summarize_with(&p, 3, &mut fake).unwrap();
        assert_eq!(s.dateline.as_deref(), Some("KARACHI, Dec 28 (AP)"));
        assert_eq!(
            s.bullets[0].text,
            "Heavy rain flooded roads across the city on Tuesday."
        );
        for b in &s.bullets {
            assert!(
                !b.text.contains("Dec 28") && !b.text.contains("KARACHI"),
                "{b:?}"
            );
        }
    }

    #[test]
    fn english_boilerplate_is_never_a_candidate() {
        let p = paras(&[
            "Metro fares rise in Lahore",
            "Read more: Green Line bus service launched in Karachi with 80 buses",
            "The provincial government raised the fare from 30 to 40 rupees.",
            "--- Photo: AP",
        ]);
        let c = candidates(&p, None, 10);
        assert!(
            c.iter().all(|c| c.paragraph == 0 || c.paragraph == 2),
            "{c:?}"
        );
    }

    #[test]
    fn checks_catch_what_small_models_do() {
        let para = "Russia will hold talks with the US in Geneva on 10 January.";
        let s = "Russia will hold talks with the US in Geneva on 10 January.";
        assert_eq!(
            check_bullet("Russia and the US meet in Geneva on January 10.", s, para),
            None
        );
        assert!(check_bullet("Here is the bullet: Russia talks.", s, para).is_some());
        assert!(check_bullet("Talks open in Vienna.", s, para)
            .unwrap()
            .contains("name Vienna"));
        assert!(check_bullet("روس talks in Geneva.", s, para).is_some());
        assert!(check_bullet(
            "The weather was fine and everyone was happy today.",
            s,
            para
        )
        .unwrap()
        .contains("unrelated"));
    }
}
