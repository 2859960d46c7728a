//! Key-fact recall (`tarjuma eval --facts FILE`).
//!
//! The format, one fact per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! [article-id]                  facts below apply to this article (until the next header)
//! talks | talks ; geneva        a fact: id, then groups split by `;`, alternatives by `|`
//! x-moscow | moscow ; summit    a trap (id starts with `x-`): must NOT appear
//! ```
//!
//! A fact is found when every group has at least one alternative in the text. Matching is
//! case-insensitive on whole words: an alternative is a word sequence that must occur as
//! consecutive words of the text (`14,000` matches `14,000` and `14 000`, never `140`).
//! Facts before the first header apply to every article.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;

/// One fact or trap: groups of alternatives, each alternative a word sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub id: String,
    pub groups: Vec<Vec<Vec<String>>>,
}

impl Fact {
    pub fn is_trap(&self) -> bool {
        self.id.starts_with("x-")
    }

    /// Whether every group has an alternative among `words` (from [`words`]).
    pub fn found_in(&self, words: &[String]) -> bool {
        self.groups
            .iter()
            .all(|g| g.iter().any(|alt| contains_seq(words, alt)))
    }
}

/// The facts of a file: those for every article, and those per article id.
#[derive(Debug, Clone, Default)]
pub struct FactSheet {
    pub all: Vec<Fact>,
    pub per_article: BTreeMap<String, Vec<Fact>>,
}

/// Lowercased words: maximal runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

fn contains_seq(words: &[String], seq: &[String]) -> bool {
    !seq.is_empty() && words.windows(seq.len()).any(|w| w == seq)
}

impl FactSheet {
    /// Parses the format above; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<FactSheet> {
        let mut sheet = FactSheet::default();
        let mut current: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(h) = line.strip_prefix('[') {
                let Some(id) = h.strip_suffix(']').map(str::trim).filter(|s| !s.is_empty()) else {
                    bail!("{name}:{}: a header is `[article-id]`", n + 1);
                };
                sheet.per_article.entry(id.to_string()).or_default();
                current = Some(id.to_string());
                continue;
            }
            let Some((id, rest)) = line.split_once('|') else {
                bail!(
                    "{name}:{}: a fact is `id | alternative | … ; alternative | …`, got `{line}`",
                    n + 1
                );
            };
            let id = id.trim();
            if id.is_empty() || id.contains(char::is_whitespace) {
                bail!("{name}:{}: a fact id is one word, got `{id}`", n + 1);
            }
            let mut groups = Vec::new();
            for g in rest.split(';') {
                let alts: Vec<Vec<String>> =
                    g.split('|').map(words).filter(|w| !w.is_empty()).collect();
                if alts.is_empty() {
                    bail!("{name}:{}: fact `{id}` has an empty group", n + 1);
                }
                groups.push(alts);
            }
            let fact = Fact {
                id: id.to_string(),
                groups,
            };
            let list = match &current {
                Some(a) => sheet.per_article.get_mut(a).expect("header inserted"),
                None => &mut sheet.all,
            };
            if list.iter().any(|f| f.id == fact.id) {
                bail!("{name}:{}: fact id `{id}` appears twice", n + 1);
            }
            list.push(fact);
        }
        if sheet.all.is_empty() && sheet.per_article.values().all(Vec::is_empty) {
            bail!("{name}: no facts in the file");
        }
        Ok(sheet)
    }

    /// The facts that apply to one article.
    pub fn for_article(&self, id: &str) -> impl Iterator<Item = &Fact> {
        self.all
            .iter()
            .chain(self.per_article.get(id).into_iter().flatten())
    }

    /// Checks the texts (article id, text) and reports recall and traps.
    pub fn check<'a>(&self, texts: impl IntoIterator<Item = (&'a str, &'a str)>) -> FactReport {
        let mut articles = Vec::new();
        let (mut found_all, mut total_all) = (0, 0);
        for (id, text) in texts {
            let w = words(text);
            let mut a = ArticleFacts {
                id: id.to_string(),
                ..Default::default()
            };
            for f in self.for_article(id) {
                let hit = f.found_in(&w);
                if f.is_trap() {
                    if hit {
                        a.traps_hit.push(f.id.clone());
                    }
                } else {
                    a.total += 1;
                    if hit {
                        a.found += 1;
                    } else {
                        a.missed.push(f.id.clone());
                    }
                }
            }
            a.recall = (a.total > 0).then(|| a.found as f64 / a.total as f64);
            found_all += a.found;
            total_all += a.total;
            articles.push(a);
        }
        let traps_hit = articles.iter().map(|a| a.traps_hit.len()).sum();
        FactReport {
            recall: (total_all > 0).then(|| found_all as f64 / total_all as f64),
            found: found_all,
            total: total_all,
            traps_hit,
            articles,
        }
    }

    /// Article ids named by headers that are not among `ids` (a typo in the sheet).
    pub fn unknown_articles<'a>(&'a self, ids: &[&str]) -> Vec<&'a str> {
        self.per_article
            .keys()
            .map(String::as_str)
            .filter(|k| !ids.contains(k))
            .collect()
    }
}

/// Key-fact recall of one article.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ArticleFacts {
    pub id: String,
    /// found / total, or None when no fact applies to this article.
    pub recall: Option<f64>,
    pub found: usize,
    pub total: usize,
    /// Ids of facts not found.
    pub missed: Vec<String>,
    /// Ids of traps that appeared.
    pub traps_hit: Vec<String>,
}

/// Key-fact recall over a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FactReport {
    /// Facts found over all articles / facts listed (None when no fact applied).
    pub recall: Option<f64>,
    pub found: usize,
    pub total: usize,
    /// Number of traps that appeared, over all articles.
    pub traps_hit: usize,
    pub articles: Vec<ArticleFacts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = "\
# facts of two articles
[talks]
geneva | geneva
date | january 10 | 10 january ; 2022
deaths | 14,000 | fourteen thousand
x-war | declared war
[rain]
rain | rain | downpour ; karachi
";

    #[test]
    fn recall_traps_and_missed_ids() {
        let s = FactSheet::parse(SHEET, "facts.txt").unwrap();
        let r = s.check([
            (
                "talks",
                "Talks in GENEVA open on 10 January 2022; Russia has not declared war.",
            ),
            ("rain", "Heavy rain hit Lahore."),
        ]);
        assert_eq!(r.total, 4);
        assert_eq!(r.found, 2);
        assert_eq!(r.recall, Some(0.5));
        assert_eq!(r.traps_hit, 1);
        assert_eq!(r.articles[0].missed, ["deaths"]);
        assert_eq!(r.articles[0].traps_hit, ["x-war"]);
        assert_eq!(r.articles[1].missed, ["rain"]);
        assert_eq!(r.articles[1].recall, Some(0.0));
    }

    #[test]
    fn words_not_substrings_and_number_separators() {
        let f = FactSheet::parse("n | 14,000", "f").unwrap();
        let hit = |t: &str| f.check([("a", t)]).found == 1;
        assert!(hit("about 14,000 people"));
        assert!(hit("about 14 000 people"));
        assert!(!hit("about 140 00 people"));
        assert!(!hit("about 114,000 people"));
        let f = FactSheet::parse("n | geneva", "f").unwrap();
        assert_eq!(f.check([("a", "Genevan talks")]).found, 0);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = FactSheet::parse("ok | a\nno separator here", "f.txt").unwrap_err();
        assert!(e.to_string().contains("f.txt:2"), "{e}");
        let e = FactSheet::parse("a | x ; ", "f.txt").unwrap_err();
        assert!(e.to_string().contains("empty group"), "{e}");
        let e = FactSheet::parse("a | x\na | y", "f.txt").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
