//! Tags the lines news sites add around a story: read-more links to other stories
//! ("مزید پڑھیں:", "یہ بھی پڑھیں:"), photo captions ("---فوٹو: اے پی") and their
//! duplicates, and comment counters ("تبصرے (0) بند ہیں").
//!
//! Boilerplate is still translated and kept in the output, but never summarised. A block
//! that mixes story lines and boilerplate lines (a dateline followed by two captions, as
//! in the seed article) is split into runs of the same kind, so tagging is per line.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::segment::{push_trimmed, Paragraph};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Body,
    Boilerplate,
}

/// Why a line is boilerplate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ReadMore,
    Caption,
    Comments,
    Duplicate,
}

fn rules() -> &'static [(Reason, Regex)] {
    static RULES: OnceLock<Vec<(Reason, Regex)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let r = |s: &str| Regex::new(s).expect("boilerplate regex");
        vec![
            (
                Reason::ReadMore,
                r(r"^(?:مزید\s+پڑھ(?:یں|یے|ئیے)|یہ\s+بھی\s+(?:پڑھ(?:یں|یے|ئیے)|دیکھیں)|مزید\s+دیکھیں|متعلقہ\s+(?:خبر|خبریں))\s*[:：]?"),
            ),
            (Reason::ReadMore, r(r"(?i)^(?:read\s+more|also\s+read|read\s+also|related)\s*:")),
            (
                Reason::Caption,
                r(r"(?:-{2,}|—|–)\s*(?:فائل\s+)?(?:فوٹو|تصویر|اسکرین\s*شاٹ|ویڈیو)\s*(?:[:：]|بشکریہ)"),
            ),
            (Reason::Caption, r(r"^(?:فائل\s+)?(?:فوٹو|تصویر)\s*(?:[:：]|بشکریہ)")),
            (Reason::Caption, r(r"(?i)(?:^|-{2,}|—|–)\s*(?:file\s+)?photo\s*:")),
            (Reason::Comments, r(r"^تبصرے\s*(?:\(\s*[0-9۰-۹]+\s*\))?\s*(?:بند\s+ہیں)?$")),
            (Reason::Comments, r(r"(?i)^comments\s*\(\s*\d+\s*\)(?:\s*(?:are\s+)?closed)?$")),
        ]
    })
}

/// Classifies one trimmed line; `seen` holds the lines met before it in the document.
pub fn line_reason(line: &str, seen: &HashSet<String>) -> Option<Reason> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    for (reason, re) in rules() {
        if re.is_match(line) {
            return Some(*reason);
        }
    }
    // A repeated line (a caption printed twice, a repeated teaser) is page furniture.
    (seen.contains(line) && line.chars().count() > 3).then_some(Reason::Duplicate)
}

/// Splits blocks into runs of same-kind lines and tags each run.
pub fn tag_paragraphs(doc: &str, blocks: Vec<Paragraph>) -> Vec<Paragraph> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let mut runs: Vec<(Kind, usize, usize)> = Vec::new();
        let mut pos = block.start;
        for line in block.text.split_inclusive('\n') {
            let (s, e) = (pos, pos + line.len());
            pos = e;
            let kind = match line_reason(line, &seen) {
                Some(_) => Kind::Boilerplate,
                None => Kind::Body,
            };
            seen.insert(line.trim().to_string());
            match runs.last_mut() {
                Some(last) if last.0 == kind => last.2 = e,
                _ => runs.push((kind, s, e)),
            }
        }
        for (kind, s, e) in runs {
            push_trimmed(doc, s, e, kind, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(l: &str) -> Option<Reason> {
        line_reason(l, &HashSet::new())
    }

    #[test]
    fn read_more_lines() {
        assert_eq!(reason("مزید پڑھیں: امریکا اور روس"), Some(Reason::ReadMore));
        assert_eq!(
            reason("یہ بھی پڑھیں: جی۔سیون کا انتباہ"),
            Some(Reason::ReadMore)
        );
        assert_eq!(reason("Read more: the talks"), Some(Reason::ReadMore));
        // The words inside a sentence are not a read-more line.
        assert_eq!(reason("انہوں نے کہا کہ مزید پڑھیں گے۔"), None);
    }

    #[test]
    fn captions_and_comments() {
        assert_eq!(
            reason("لاروف نے بات کی---فوٹو: اے پی"),
            Some(Reason::Caption)
        );
        assert_eq!(reason("فائل فوٹو: رائٹرز"), Some(Reason::Caption));
        assert_eq!(reason("تبصرے (0) بند ہیں"), Some(Reason::Comments));
        assert_eq!(reason("تبصرے (۱۲)"), Some(Reason::Comments));
        assert_eq!(reason("تبصرے کرنے والوں نے کہا۔"), None);
    }

    #[test]
    fn duplicates_after_first() {
        let mut seen = HashSet::new();
        assert_eq!(line_reason("ایک جملہ", &seen), None);
        seen.insert("ایک جملہ".to_string());
        assert_eq!(line_reason("ایک جملہ", &seen), Some(Reason::Duplicate));
    }
}
