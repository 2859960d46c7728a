//! Chunk-by-chunk translation with context carry, guards and one stricter retry.
//!
//! Each chunk is translated in a short conversation: the previous chunk and its
//! translation (or, for the first chunk, a fixed example) form one exchange before the
//! chunk itself, so names stay consistent without letting errors snowball (a chunk that
//! drew warnings is not carried). Output paragraphs are 1:1 with source paragraphs.

use anyhow::Result;
use serde::Serialize;

use super::guards::{check, clean, copied_context, echoes_instructions, Warning};
use super::{Lm, Usage};
use crate::generate::{DecodeOptions, StopReason};
use crate::prompt::{fill, Message, Role, Task};
use crate::text::script::{has_arabic_letters, is_arabic_letter, romanize};
use crate::text::{Chunker, Kind, Paragraph};

#[derive(Debug, Clone, Serialize)]
pub struct ParagraphOut {
    pub source: String,
    pub translation: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// A translated chunk, reported as soon as it is done (for streaming).
pub struct ChunkDone<'a> {
    pub paragraph: usize,
    pub last_in_paragraph: bool,
    pub translation: &'a str,
}

#[derive(Debug, Clone)]
pub struct TranslateOptions {
    /// Upper bound on source tokens per chunk.
    pub chunk_tokens: usize,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        Self { chunk_tokens: 160 }
    }
}

/// Reply budget for a source of `n` tokens: English needs fewer tokens than Urdu in
/// every tokenizer we ship, so 1.5x plus slack never cuts a faithful translation.
pub fn reply_budget(n: usize) -> usize {
    n * 3 / 2 + 24
}

impl Lm {
    /// Source tokens per chunk that fit the context with prompt, carry and reply.
    pub fn chunk_budget(&self, opts: &TranslateOptions) -> usize {
        // Instructions and template ≈ 160 tokens; carry ≤ budget + its reply; the chunk
        // and its reply: about 5 budgets in all.
        let fit = self.context.saturating_sub(200) / 5;
        // A model with an input limit (TranslateGemma: 2K tokens) gets chunks under it,
        // leaving room for its fixed instruction.
        let input = match self.max_input_tokens {
            0 => usize::MAX,
            n => n.saturating_sub(128),
        };
        opts.chunk_tokens.min(fit).min(input).max(16)
    }

    pub fn translate_paragraphs(
        &mut self,
        paragraphs: &[Paragraph],
        opts: &TranslateOptions,
        on_chunk: &mut dyn FnMut(ChunkDone),
    ) -> Result<(Vec<ParagraphOut>, Usage)> {
        let budget = self.chunk_budget(opts);
        let tok = &self.loaded.tokenizer;
        let chunker = Chunker::new(budget, |s: &str| tok.count(s));
        let chunks: Vec<_> = chunker.chunks(paragraphs).collect();
        let mut out: Vec<ParagraphOut> = paragraphs
            .iter()
            .map(|p| ParagraphOut {
                source: p.text.clone(),
                translation: String::new(),
                kind: p.kind,
                warnings: vec![],
            })
            .collect();
        let mut usage = Usage::default();
        let mut carry: Option<(String, String)> = None;
        for chunk in chunks {
            let (text, warnings, u) =
                self.translate_chunk(&chunk.text, chunk.tokens, carry.as_ref())?;
            usage += u;
            carry = warnings
                .is_empty()
                .then(|| (chunk.text.clone(), text.clone()));
            let p = &mut out[chunk.paragraph];
            if !p.translation.is_empty() {
                p.translation.push(' ');
            }
            p.translation.push_str(&text);
            for w in warnings {
                if !p.warnings.contains(&w) {
                    p.warnings.push(w);
                }
            }
            on_chunk(ChunkDone {
                paragraph: chunk.paragraph,
                last_in_paragraph: chunk.last,
                translation: &text,
            });
        }
        Ok((out, usage))
    }

    /// Translates one chunk; returns the text and the warnings that remain.
    pub fn translate_chunk(
        &mut self,
        source: &str,
        source_tokens: usize,
        carry: Option<&(String, String)>,
    ) -> Result<(String, Vec<Warning>, Usage)> {
        let first = self.attempt(source, source_tokens, carry, false)?;
        let mut usage = first.usage;
        let mut warnings = self.judge(source, &first);
        let mut best = first.text;
        if warnings.iter().any(|w| w.retryable()) {
            // Zero-shot: nothing in the prompt to copy.
            let second = self.attempt(source, source_tokens, None, true)?;
            usage += second.usage;
            let w2 = self.judge(source, &second);
            // The retry wins ties: it was asked more strictly.
            if w2.len() <= warnings.len() {
                best = second.text;
                warnings = w2;
            }
        }
        // Last line of defence: the translation field never holds Urdu script, and is
        // never empty. Both outcomes are flagged.
        if has_arabic_letters(&best) {
            best = romanize_arabic_runs(&best);
            warnings.push(Warning::Romanized);
        }
        if best.trim().is_empty() {
            best = format!("[untranslated: {}]", romanize(source.trim()));
            warnings.push(Warning::Fallback);
        }
        Ok((best, warnings, usage))
    }

    /// The guards' verdict on one attempt, copies of the context and instructions included.
    fn judge(&self, source: &str, a: &Attempt) -> Vec<Warning> {
        let mut w = check(source, &a.text, &a.stop);
        let ctx = a.context.as_ref().map(|(s, t)| (s.as_str(), t.as_str()));
        let mut instructions = vec![
            self.tasks.translate.system.as_str(),
            self.tasks.translate_strict.system.as_str(),
        ];
        if let Some(turn) = &self.family.translate_turn {
            instructions.push(turn.split("{source}").next().unwrap_or(turn));
        }
        if copied_context(source, &a.text, ctx) || echoes_instructions(&a.text, &instructions) {
            w.push(Warning::CopiedContext);
        }
        w
    }

    fn attempt(
        &mut self,
        source: &str,
        source_tokens: usize,
        carry: Option<&(String, String)>,
        strict: bool,
    ) -> Result<Attempt> {
        let task: &Task = if strict {
            &self.tasks.translate_strict
        } else {
            &self.tasks.translate
        };
        let context = match (strict, carry) {
            (true, _) => None,
            (false, Some((s, t))) => Some((s.clone(), t.clone())),
            (false, None) => task
                .example_source
                .clone()
                .zip(task.example_translation.clone()),
        };
        // `fixed`: the leading messages every chunk's prompt shares (the instructions,
        // and the example when it is the context), whose positions are computed once.
        let (msgs, context, fixed) = match &self.family.translate_turn {
            // A model trained on one fixed prompt gets exactly that prompt.
            Some(turn) => (
                vec![Message::new(
                    Role::User,
                    fill(turn, &[("source", source.trim())]),
                )],
                None,
                0,
            ),
            None => {
                let user = |src: &str| fill(&task.user, &[("source", src.trim())]);
                let mut msgs = vec![Message::new(Role::System, task.system.clone())];
                if let Some((s, t)) = &context {
                    msgs.push(Message::new(Role::User, user(s)));
                    msgs.push(Message::new(Role::Assistant, t.clone()));
                }
                let fixed = if carry.is_none() { msgs.len() } else { 1 };
                msgs.push(Message::new(Role::User, user(source)));
                (msgs, context, fixed)
            }
        };
        let mut opts: DecodeOptions = self.english_options(reply_budget(source_tokens));
        opts.stop_texts = vec!["\n\n".into()];
        if strict {
            opts.repeat_penalty = 1.15;
            opts.no_repeat_ngram = 4;
        }
        let (out, usage) = self.complete(&msgs, fixed, &opts)?;
        Ok(Attempt {
            text: clean(&out.text),
            stop: out.stop,
            usage,
            context,
        })
    }
}

/// One model reply to a translation prompt, cleaned.
struct Attempt {
    text: String,
    stop: StopReason,
    usage: Usage,
    /// The (source, translation) exchange shown to the model before the chunk.
    context: Option<(String, String)>,
}

/// Replaces each run of Arabic-script letters with its romanization.
pub fn romanize_arabic_runs(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in s.chars() {
        if is_arabic_letter(c) {
            run.push(c);
        } else {
            if !run.is_empty() {
                out.push_str(&romanize(&run));
                run.clear();
            }
            out.push(c);
        }
    }
    out.push_str(&romanize(&run));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn romanizes_only_the_urdu_runs() {
        let s = romanize_arabic_runs("Lavrov (لاروف) said");
        assert_eq!(s, "Lavrov (larof) said");
        assert!(!has_arabic_letters(&s));
    }

    #[test]
    fn reply_budget_grows_with_input() {
        assert!(reply_budget(100) >= 150);
        assert!(reply_budget(0) > 0);
    }
}
