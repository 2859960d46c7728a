//! Decoding: a [`Session`] over a model's KV cache, greedy or sampled steps, token bans,
//! repetition penalty, `no_repeat_ngram`, stop tokens and strings, and a guard that stops
//! runaway repetition loops as soon as they show.
//!
//! Small models fall into loops ("a conflict with the Soviet Union" over and over, see
//! ARCHITECTURE.md); [`loop_tail`] detects a period-p cycle at the tail of the output
//! and cuts it back to one copy instead of burning the whole token budget.

pub mod pool;
mod scan;
pub mod seq2seq;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::backend::CausalLm;
use crate::text::script::is_arabic_script;
use crate::tokenizer::Tokenizer;

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-turn or EOS token.
    Eos,
    /// A stop string appeared (the text is cut before it).
    StopText,
    /// The token budget ran out.
    MaxTokens,
    /// A repetition loop was detected and cut.
    Loop,
    /// The model's position limit was reached.
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub max_new: usize,
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
    /// 1.0 disables it.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// 0 disables it.
    pub no_repeat_ngram: usize,
    /// `banned[id]` tokens are never produced.
    pub banned: Option<Arc<Vec<bool>>>,
    pub stop_ids: Vec<u32>,
    pub stop_texts: Vec<String>,
    /// Tokens that may not end the reply yet (e.g. EOS before the minimum bullets).
    pub suppress: Vec<u32>,
    /// Cut a repetition loop as soon as it shows ([`loop_tail`]); off for raw completions.
    pub loop_guard: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_new: 256,
            temperature: 0.0,
            top_p: None,
            seed: 299792458,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            no_repeat_ngram: 0,
            banned: None,
            stop_ids: vec![],
            stop_texts: vec![],
            suppress: vec![],
            loop_guard: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub ids: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// Tokens that would write Arabic-script text (Urdu included): byte-level pieces that
/// carry a lead byte of U+0600–U+06FF or U+0740–U+077F, and any piece whose text holds
/// an Arabic-script character. Banning them makes "English only" a hard constraint.
pub fn arabic_script_mask(tok: &Tokenizer) -> Vec<bool> {
    (0..tok.vocab_size() as u32)
        .map(|id| {
            let b = tok.token_bytes(id);
            b.iter().any(|&x| (0xD8..=0xDB).contains(&x) || x == 0xDD)
                || std::str::from_utf8(b).is_ok_and(|s| s.chars().any(is_arabic_script))
        })
        .collect()
}

/// If the tail of `ids` repeats with a short period, returns the length that keeps
/// one copy of the repeated part.
pub fn loop_tail(ids: &[u32]) -> Option<usize> {
    let n = ids.len();
    for p in 1..=64.min(n / 3) {
        let reps = if p < 4 { 8 } else { 3 };
        if n < reps * p {
            continue;
        }
        let tail = &ids[n - reps * p..];
        if (p..tail.len()).all(|i| tail[i] == tail[i - p]) {
            return Some(n - (reps - 1) * p);
        }
    }
    None
}

/// A decoding session: the tokens fed so far and the logits of the last one.
pub struct Session<'m, M: CausalLm + ?Sized> {
    model: &'m mut M,
    pos: usize,
    logits: Vec<f32>,
}

/// Prefill in slices, so attention scores stay small for long prompts.
const PREFILL_SLICE: usize = 512;

impl<'m, M: CausalLm + ?Sized> Session<'m, M> {
    /// Starts afresh with `prompt` (the KV cache is reset).
    pub fn new(model: &'m mut M, prompt: &[u32]) -> Result<Self> {
        anyhow::ensure!(!prompt.is_empty(), "empty prompt");
        let mut s = Self {
            model,
            pos: 0,
            logits: vec![],
        };
        s.feed(prompt)?;
        Ok(s)
    }

    pub fn feed(&mut self, ids: &[u32]) -> Result<()> {
        let t = std::time::Instant::now();
        for slice in ids.chunks(PREFILL_SLICE) {
            self.logits = self.model.forward(slice, self.pos)?;
            self.pos += slice.len();
        }
        if ids.len() > 1 {
            let s = t.elapsed().as_secs_f64();
            tracing::debug!(
                tokens = ids.len(),
                seconds = s,
                tok_per_s = ids.len() as f64 / s,
                "prefill"
            );
        }
        Ok(())
    }

    pub fn remaining(&self) -> usize {
        self.model.max_positions().saturating_sub(self.pos)
    }

    /// Generates until a stop condition; the produced tokens are fed as they come, except
    /// a final stop token.
    pub fn generate(&mut self, tok: &Tokenizer, o: &DecodeOptions) -> Result<Output> {
        let mut d = Decoding::new(o.clone());
        loop {
            let mut logits = self.logits.clone();
            match d.next(&mut logits, self.remaining(), tok)? {
                Next::Feed(t) => self.feed(&[t])?,
                Next::Stop(stop) => {
                    if stop == StopReason::StopText {
                        // The stop text's last token is kept in the cache, as fed.
                        let t = *d.ids.last().expect("a stop text needs a token");
                        self.feed(&[t])?;
                    }
                    return Ok(d.finish(stop, tok));
                }
            }
        }
    }
}

/// What a [`Decoding`] wants after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Feed this token and come back with its logits.
    Feed(u32),
    Stop(StopReason),
}

/// One reply's choices, a token at a time: processors, sampling and stop conditions,
/// apart from the model that supplies the logits. A [`Session`] drives one on one
/// sequence; [`pool`] drives many whose sequences share each forward pass, so a reply
/// is chosen by the same code whichever way it runs.
pub struct Decoding {
    o: DecodeOptions,
    lp: LogitsProcessor,
    /// The ids `o.banned` marks, listed once: a few thousand of a vocabulary of
    /// 150k+, set at every step of every sequence.
    banned: Vec<u32>,
    ids: Vec<u32>,
    t0: std::time::Instant,
}

impl Decoding {
    pub fn new(o: DecodeOptions) -> Self {
        let sampling = if o.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match o.top_p {
                Some(p) => Sampling::TopP {
                    p,
                    temperature: o.temperature,
                },
                None => Sampling::All {
                    temperature: o.temperature,
                },
            }
        };
        Self {
            lp: LogitsProcessor::from_sampling(o.seed, sampling),
            banned: banned_ids(&o),
            o,
            ids: Vec::new(),
            t0: std::time::Instant::now(),
        }
    }

    /// Tokens chosen so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The next step, given the logits of the last token fed (processed in place) and
    /// the positions left.
    pub fn next(&mut self, logits: &mut [f32], room: usize, tok: &Tokenizer) -> Result<Next> {
        let o = &self.o;
        if self.ids.len() >= o.max_new {
            return Ok(Next::Stop(StopReason::MaxTokens));
        }
        if room == 0 {
            return Ok(Next::Stop(StopReason::ContextFull));
        }
        process(logits, &self.ids, o, &self.banned);
        let t = if o.temperature <= 0.0 {
            argmax(logits)
        } else {
            let l = Tensor::from_slice(logits, logits.len(), &Device::Cpu)?;
            self.lp.sample(&l)?
        };
        if o.stop_ids.contains(&t) {
            return Ok(Next::Stop(StopReason::Eos));
        }
        self.ids.push(t);
        if let Some(keep) = loop_tail(&self.ids).filter(|_| o.loop_guard) {
            self.ids.truncate(keep);
            return Ok(Next::Stop(StopReason::Loop));
        }
        if !o.stop_texts.is_empty() {
            // Leading whitespace never stops a reply (models often open with "\n").
            let text = tok.decode(&self.ids);
            let body = text.trim_start();
            if o.stop_texts.iter().any(|s| body.contains(s.as_str())) {
                return Ok(Next::Stop(StopReason::StopText));
            }
        }
        Ok(Next::Feed(t))
    }

    /// The reply, its text cut before a stop text.
    pub fn finish(self, stop: StopReason, tok: &Tokenizer) -> Output {
        let s = self.t0.elapsed().as_secs_f64();
        let ids = self.ids;
        tracing::debug!(tokens = ids.len(), seconds = s, tok_per_s = ids.len() as f64 / s, stop = ?stop, "decode");
        let mut text = tok.decode(&ids).trim_start().to_string();
        if stop == StopReason::StopText {
            if let Some(p) = self
                .o
                .stop_texts
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(p);
            }
        }
        Output { ids, text, stop }
    }
}

/// The ids `o.banned` marks.
fn banned_ids(o: &DecodeOptions) -> Vec<u32> {
    o.banned.as_ref().map_or_else(Vec::new, |b| {
        (0..b.len() as u32).filter(|&i| b[i as usize]).collect()
    })
}

/// The first index of the largest value, as candle's `argmax` (and so
/// `LogitsProcessor`'s greedy choice) picks it: a value replaces the best only when
/// greater, so ties keep the first and NaN never wins after the first place.
fn argmax(logits: &[f32]) -> u32 {
    let (mut best, mut val) = (0, logits.first().copied().unwrap_or(f32::NEG_INFINITY));
    for (i, &v) in logits.iter().enumerate() {
        if val < v {
            best = i;
            val = v;
        }
    }
    best as u32
}

/// Bans (`banned`: the ids `o.banned` marks), suppressions, repetition penalty and
/// `no_repeat_ngram`, applied to `logits`.
fn process(logits: &mut [f32], generated: &[u32], o: &DecodeOptions, banned: &[u32]) {
    for &id in banned {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    for &id in &o.suppress {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    if o.repeat_penalty != 1.0 {
        let start = generated.len().saturating_sub(o.repeat_last_n);
        let seen: HashSet<u32> = generated[start..].iter().copied().collect();
        for id in seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l >= 0.0 {
                    *l / o.repeat_penalty
                } else {
                    *l * o.repeat_penalty
                };
            }
        }
    }
    let n = o.no_repeat_ngram;
    if n > 0 && generated.len() >= n {
        let prefix = &generated[generated.len() - (n - 1)..];
        for w in generated.windows(n) {
            if &w[..n - 1] == prefix {
                logits[w[n - 1] as usize] = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_tail_finds_cycles() {
        let mut v: Vec<u32> = vec![1, 2, 3];
        for _ in 0..3 {
            v.extend([7, 8, 9, 10, 11]);
        }
        assert_eq!(loop_tail(&v), Some(3 + 5));
        assert_eq!(loop_tail(&[1, 2, 3, 4, 5, 6]), None);
        assert_eq!(loop_tail(&[5; 7]), None, "short runs are allowed");
        assert_eq!(loop_tail(&[5; 8]), Some(1));
    }

    #[test]
    fn greedy_choice_is_candles_argmax() {
        let mut lp = LogitsProcessor::from_sampling(1, Sampling::ArgMax);
        let candle = |lp: &mut LogitsProcessor, v: &[f32]| {
            lp.sample(&Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap())
                .unwrap()
        };
        let mut cases: Vec<Vec<f32>> = vec![
            vec![1.0, 3.0, 3.0, 2.0],
            vec![f32::NAN, 5.0, 1.0],
            vec![0.0, f32::NAN, 7.0, 7.0],
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY],
            vec![-1.0, f32::INFINITY, f32::INFINITY],
        ];
        let mut seed = 7u64;
        for n in [1, 2, 17, 1000] {
            cases.push(
                (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        // Few distinct values, so ties are common.
                        ((seed >> 60) as f32) - 8.0
                    })
                    .collect(),
            );
        }
        for v in &cases {
            assert_eq!(argmax(v), candle(&mut lp, v), "{v:?}");
        }
    }

    #[test]
    fn banned_ids_ban_what_the_mask_marks() {
        let mask: Vec<bool> = (0..50).map(|i| i % 7 == 3).collect();
        let o = DecodeOptions {
            banned: Some(Arc::new(mask.clone())),
            ..Default::default()
        };
        // Logits longer than the mask: the rest is left alone.
        let mut l = vec![1.0f32; 60];
        process(&mut l, &[], &o, &banned_ids(&o));
        for (i, v) in l.iter().enumerate() {
            assert_eq!(*v == f32::NEG_INFINITY, i < 50 && mask[i], "{i}");
        }
    }

    /// A scripted model: always prefers the next token of `script`.
    struct Scripted {
        script: Vec<u32>,
        vocab: usize,
        step: usize,
    }

    impl CausalLm for Scripted {
        fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
            self.step = pos + tokens.len();
            let mut l = vec![0.0; self.vocab];
            let want = self.script.get(self.step).copied().unwrap_or(0);
            l[want as usize] = 10.0;
            l[(want as usize + 1) % self.vocab] = 5.0;
            Ok(l)
        }
        fn max_positions(&self) -> usize {
            1000
        }
    }

    #[test]
    fn no_repeat_ngram_changes_the_choice() {
        // Positions 0..2 are the prompt; the model then wants 3, 4, 3, 4, ...
        let script = vec![0, 0, 3, 4, 3, 4, 3, 4, 3, 4];
        let mut m = Scripted {
            script,
            vocab: 8,
            step: 0,
        };
        let o = DecodeOptions {
            max_new: 4,
            no_repeat_ngram: 2,
            ..Default::default()
        };
        let mut s = Session::new(&mut m, &[1, 1]).unwrap();
        let out = s.generate_ids(&o).unwrap();
        // (3,4) may not occur twice: the second 4 becomes 5.
        assert_eq!(out, vec![3, 4, 3, 5]);
    }

    impl<M: CausalLm + ?Sized> Session<'_, M> {
        /// Greedy ids without a tokenizer, for tests.
        fn generate_ids(&mut self, o: &DecodeOptions) -> Result<Vec<u32>> {
            let mut ids = vec![];
            while ids.len() < o.max_new {
                let mut l = self.logits.clone();
                process(&mut l, &ids, o, &banned_ids(o));
                let t = l
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i as u32)
                    .unwrap();
                ids.push(t);
                self.feed(&[t])?;
            }
            Ok(ids)
        }
    }
}
