//! Bullet summaries of the English body paragraphs, map-reduce when they are long.
//!
//! Bullets are decoded in one structured session: the reply is opened with `- `, each
//! bullet ends at a newline, and the next `- ` is fed by us. End-of-turn is suppressed
//! until the minimum count is reached, duplicates are dropped, and a bullet whose
//! numbers appear nowhere in the article is flagged (small models invent figures; see
//! ARCHITECTURE.md). This makes "3 to 7 bullets" a property of the decoder, not a hope.

use anyhow::Result;

use super::guards::{overlap, ungrounded_numbers, Warning};
use super::{Lm, Usage};
use crate::generate::{Session, StopReason};
use crate::prompt::{fill, Message, Role, Task};
use crate::text::script::latin_digits;
use crate::text::segment::sentences;

/// Fewest bullets a summary has (when the article has that many sentences).
pub const MIN_BULLETS: usize = 3;
const BULLET_TOKENS: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct SummaryOut {
    pub bullets: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// Word overlap above 0.7 counts as the same bullet.
fn similar(a: &str, b: &str) -> bool {
    overlap(a, b) > 0.7
}

/// Strips list markers and whitespace; `None` if nothing worth a bullet is left.
fn clean_bullet(s: &str) -> Option<String> {
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
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    // A bullet is a sentence: three or more real words.
    let words = t
        .split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .count();
    (words >= 3).then_some(t)
}

impl Lm {
    /// Summarises English `paragraphs` into `min(MIN_BULLETS, …)..=max_bullets` bullets.
    /// `reserve` holds further body text (flagged translations) that only counts for the
    /// minimum and for an extractive fill. `grounding` is the text numbers are checked
    /// against (translation and source).
    pub fn summarize(
        &mut self,
        paragraphs: &[String],
        reserve: &[String],
        grounding: &str,
        max_bullets: usize,
    ) -> Result<(SummaryOut, Usage)> {
        let mut usage = Usage::default();
        let max_bullets = max_bullets.max(1);
        let body: Vec<&str> = paragraphs
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        let spare: Vec<&str> = reserve
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        let n_sentences: usize = body.iter().chain(&spare).map(|p| sentences(p).len()).sum();
        let min = MIN_BULLETS.min(max_bullets).min(n_sentences);
        if body.is_empty() {
            return Ok((SummaryOut::default(), usage));
        }
        // Room for the text: context less instructions and the bullets themselves.
        let room = self
            .context
            .saturating_sub(200 + max_bullets * (BULLET_TOKENS + 4))
            .clamp(64, 1536);
        let mut notes: Vec<String> = body.iter().map(|s| s.to_string()).collect();
        let mut merged = false;
        // Map: summarise groups that fit, for at most three rounds.
        for _round in 0..3 {
            if notes.iter().map(|n| self.count(n) + 1).sum::<usize>() <= room {
                break;
            }
            let task = if merged {
                self.tasks.merge.clone()
            } else {
                self.tasks.summarize.clone()
            };
            let mut next = Vec::new();
            for g in pack(&notes, room, |s| self.count(s)) {
                // Merging must shrink the notes: fewer bullets out than notes in.
                let n = if merged { (g.len() / 2).clamp(1, 3) } else { 3 };
                let (b, u) = self.bullets(&task, &g.join("\n\n"), n, 1)?;
                usage += u;
                next.extend(b.into_iter().map(|b| format!("- {b}")));
            }
            notes = next;
            merged = true;
        }
        // Still too long (pathological input): keep the leading notes that fit.
        let mut used = 0;
        let counts: Vec<usize> = notes.iter().map(|n| self.count(n) + 1).collect();
        let keep = counts.iter().take_while(|&&c| {
            used += c;
            used <= room
        });
        let keep = keep.count().max(1);
        notes.truncate(keep);
        let (task, sep) = if merged {
            (self.tasks.merge.clone(), "\n")
        } else {
            (self.tasks.summarize.clone(), "\n\n")
        };
        let (mut bullets, u) = self.bullets(&task, &notes.join(sep), max_bullets, min)?;
        usage += u;

        let mut warnings = Vec::new();
        if bullets.len() < min {
            for s in body.iter().chain(&spare).flat_map(|p| sentences(p)) {
                if bullets.len() >= min {
                    break;
                }
                if let Some(s) = clean_bullet(s) {
                    if !bullets.iter().any(|b| similar(b, &s)) {
                        bullets.push(s);
                    }
                }
            }
            warnings.push(Warning::ExtractiveFill);
        }
        let grounding = format!("{}\n{}", body.join("\n"), latin_digits(grounding));
        if bullets
            .iter()
            .any(|b| !ungrounded_numbers(b, &grounding).is_empty())
        {
            warnings.push(Warning::UngroundedNumber);
        }
        Ok((SummaryOut { bullets, warnings }, usage))
    }

    /// Decodes up to `max` bullets (at least `min` unless the model cannot) for `text`.
    fn bullets(
        &mut self,
        task: &Task,
        text: &str,
        max: usize,
        min: usize,
    ) -> Result<(Vec<String>, Usage)> {
        let n = max.to_string();
        let msgs = vec![
            Message::new(Role::System, task.system.clone()),
            Message::new(Role::User, fill(&task.user, &[("text", text), ("n", &n)])),
        ];
        let prompt = self.render(&msgs, "- ")?;
        let dash = self.loaded.tokenizer.encode("- ")?;
        let mut opts = self.english_options(BULLET_TOKENS);
        opts.stop_texts = vec!["\n".into()];
        let mut usage = Usage {
            tokens_in: prompt.len(),
            tokens_out: 0,
        };
        let mut session = Session::new(&mut self.loaded.lm, &prompt)?;
        let tok = &self.loaded.tokenizer;
        let mut out: Vec<String> = Vec::new();
        for _attempt in 0..max + 4 {
            if session.remaining() < BULLET_TOKENS + dash.len() {
                break;
            }
            opts.suppress = if out.len() < min {
                opts.stop_ids.clone()
            } else {
                vec![]
            };
            // Vary nothing between attempts but the context: greedy stays reproducible.
            let o = session.generate(tok, &opts)?;
            usage.tokens_out += o.ids.len();
            if let Some(b) = clean_bullet(&o.text) {
                if !out.iter().any(|x| similar(x, &b)) {
                    out.push(b);
                }
            }
            if out.len() >= max
                || (o.stop == StopReason::Eos && out.len() >= min)
                || o.stop == StopReason::ContextFull
            {
                break;
            }
            if o.stop != StopReason::StopText {
                session.feed(&tok.encode("\n")?)?;
            }
            session.feed(&dash)?;
            usage.tokens_in += dash.len();
        }
        Ok((out, usage))
    }
}

/// Packs strings into groups of at most `room` tokens (a longer string is its own group).
fn pack(items: &[String], room: usize, count: impl Fn(&str) -> usize) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut cur_n = 0;
    for it in items {
        let n = count(it) + 1;
        if !cur.is_empty() && cur_n + n > room {
            groups.push(std::mem::take(&mut cur));
            cur_n = 0;
        }
        cur.push(it.clone());
        cur_n += n;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bullet_cleanup() {
        assert_eq!(
            clean_bullet("- Russia will hold talks.").unwrap(),
            "Russia will hold talks."
        );
        assert_eq!(
            clean_bullet("2. Russia will hold talks.").unwrap(),
            "Russia will hold talks."
        );
        assert!(clean_bullet("- ok").is_none());
        assert!(clean_bullet("345kgs - 12.345kgs").is_none());
        assert_eq!(
            clean_bullet("- 2014: Russia annexed Crimea.").unwrap(),
            "2014: Russia annexed Crimea."
        );
        assert_eq!(
            clean_bullet("- 3.5 million people voted.").unwrap(),
            "3.5 million people voted."
        );
    }

    #[test]
    fn numbers_must_be_in_the_article() {
        let g = "More than 14,000 people died in Donbas since 2014.";
        assert!(ungrounded_numbers("14,000 people died.", g).is_empty());
        assert!(ungrounded_numbers("14000 died since 2014.", g).is_empty());
        assert_eq!(
            ungrounded_numbers("The industry made 15,000 films.", g),
            vec!["15000"]
        );
    }

    #[test]
    fn similarity_catches_rephrased_duplicates() {
        assert!(similar(
            "Russia will hold talks with the US.",
            "Russia will hold talks with the US"
        ));
        assert!(!similar(
            "Russia will hold talks.",
            "Ukraine says 14,000 died."
        ));
    }

    #[test]
    fn pack_respects_room() {
        let items: Vec<String> = ["a b", "c d", "e f g"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let g = pack(&items, 6, |s| s.split_whitespace().count());
        assert_eq!(
            g,
            vec![
                vec!["a b".to_string(), "c d".to_string()],
                vec!["e f g".to_string()]
            ]
        );
    }
}
