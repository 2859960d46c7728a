//! Decoding for encoder-decoder models: greedy and beam search over a batch of inputs,
//! with the logits processors a translator needs (no-repeat n-grams, banned tokens,
//! forced first/last tokens, a minimum length) and a maximum output length relative to
//! the input.
//!
//! Beam search follows transformers' vectorised `_beam_search` (5.x) step for step, so
//! that token ids match the reference exactly: log-softmax, then processors, then the
//! running score; the top 2·beams continuations; finished hypotheses scored by
//! `sum_logprobs / len^length_penalty`; the early-stop heuristic of
//! `_check_early_stop_heuristic`. Inputs whose result can no longer change are dropped
//! from the batch, so long and short sentences can share a batch cheaply.

use anyhow::Result;

use crate::backend::seq2seq::{Config, DecoderState, EncoderOut, Model};
use crate::backend::sgemm::PackedF32;

use super::scan;

/// When a beam search may stop (transformers' `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop when the best running hypothesis, at its current length, cannot beat the
    /// worst finished one (transformers' `False`, its default).
    #[default]
    Heuristic,
    /// Stop as soon as `beams` hypotheses are finished (`True`).
    Done,
    /// Stop only when no running hypothesis can improve, even at the maximum length (`"never"`).
    Never,
}

/// Output length limit for an input of `n` tokens: `min(cap, ratio·n + extra)`.
#[derive(Debug, Clone, Copy)]
pub struct LengthLimit {
    pub ratio: f32,
    pub extra: usize,
    pub cap: usize,
}

impl LengthLimit {
    pub fn fixed(n: usize) -> Self {
        Self {
            ratio: 0.0,
            extra: n,
            cap: n,
        }
    }

    pub fn for_input(&self, n: usize) -> usize {
        ((self.ratio * n as f32).ceil() as usize + self.extra)
            .min(self.cap)
            .max(1)
    }
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    /// 1 is greedy decoding.
    pub beams: usize,
    pub max_new: LengthLimit,
    /// Generated tokens before EOS is allowed.
    pub min_new: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// 0 turns it off.
    pub no_repeat_ngram: usize,
    /// Token forced as the first output (NLLB's target language).
    pub forced_bos: Option<u32>,
    /// Token forced at the last allowed position.
    pub forced_eos: Option<u32>,
    /// Tokens never generated (Marian's pad).
    pub banned: Vec<u32>,
    pub start: u32,
    pub eos: u32,
    pub pad: u32,
}

impl GenOptions {
    /// Greedy decoding with the model's own conventions (special ids, banned and forced
    /// tokens from its generation config) and an output limit of 2x the input + 10.
    pub fn for_model(cfg: &Config) -> Self {
        Self {
            beams: 1,
            max_new: LengthLimit {
                ratio: 2.0,
                extra: 10,
                cap: cfg.max_positions.saturating_sub(1),
            },
            min_new: 0,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            no_repeat_ngram: 0,
            forced_bos: cfg.gen.forced_bos,
            forced_eos: cfg.gen.forced_eos,
            banned: cfg.gen.bad_ids.clone(),
            start: cfg.decoder_start,
            eos: cfg.eos,
            pad: cfg.pad,
        }
    }
}

/// Applies the logits processors to one row of scores for a sequence `seq` (decoder
/// start included) whose total length may reach `max_len`.
fn process(row: &mut [f32], seq: &[u32], max_len: usize, o: &GenOptions) {
    let cur = seq.len();
    let n = o.no_repeat_ngram;
    if n > 0 && cur >= n {
        let prefix = &seq[cur + 1 - n..];
        for i in 0..=cur - n {
            if &seq[i..i + n - 1] == prefix {
                row[seq[i + n - 1] as usize] = f32::NEG_INFINITY;
            }
        }
    }
    for &t in &o.banned {
        if let Some(x) = row.get_mut(t as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    if cur - 1 < o.min_new {
        row[o.eos as usize] = f32::NEG_INFINITY;
    }
    if let Some(t) = forced(cur, max_len, o) {
        row.fill(f32::NEG_INFINITY);
        row[t as usize] = 0.0;
    }
}

/// The token forced at this length, if any: EOS at the last allowed position, else the
/// first token (NLLB's target language).
fn forced(cur: usize, max_len: usize, o: &GenOptions) -> Option<u32> {
    match (o.forced_eos, o.forced_bos) {
        (Some(e), _) if cur + 1 == max_len => Some(e),
        (_, Some(b)) if cur == 1 => Some(b),
        _ => None,
    }
}

/// Greedy's choice for one sequence from its final hidden state `x`, reading the
/// upper halves of a split LM head and only a few of its rows whole: the token is the
/// one [`argmax`] picks from the full processed logits, bit for bit.
///
/// Every logit is known to within its bound `e` (see `PackedF32::bounded_row`). The
/// best logit is at least T = max(approx − e), so only outputs with approx + e ≥ T can
/// be it (ties included); those are computed exactly, and all others stay below them.
/// The processors only ban or force tokens, so they act on the bounds as on the logits.
fn pick_bounded(
    head: &PackedF32,
    bias: Option<&[f32]>,
    x: &[f32],
    seq: &[u32],
    max_len: usize,
    o: &GenOptions,
) -> u32 {
    if let Some(t) = forced(seq.len(), max_len, o) {
        return t;
    }
    let Some((mut row, e)) = head.bounded_row(x, bias) else {
        let mut row = head.matmul(x, 1, bias);
        process(&mut row, seq, max_len, o);
        return argmax(&row);
    };
    process(&mut row, seq, max_len, o);
    let live = |i: usize| row[i] != f32::NEG_INFINITY;
    let t = (0..row.len())
        .filter(|&i| live(i))
        .map(|i| row[i] as f64 - e[i] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    // f64 sums of f32 values round by far less than this margin (the bound has 2⁻²⁰).
    let t = t - t.abs() * (-40f64).exp2();
    let cands: Vec<usize> = (0..row.len())
        .filter(|&i| live(i) && row[i] as f64 + e[i] as f64 >= t)
        .collect();
    for (&i, v) in cands.iter().zip(head.exact_at(x, bias, &cands)) {
        row[i] = v;
    }
    argmax(&row)
}

/// The first index of the largest value.
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Cuts a generated sequence after its first EOS.
fn cut(mut seq: Vec<u32>, eos: u32) -> Vec<u32> {
    if let Some(p) = seq.iter().position(|&t| t == eos) {
        seq.truncate(p + 1);
    }
    seq
}

/// Translates a batch of encoded inputs; returns the generated ids of each (decoder
/// start excluded, EOS included when generated).
pub fn generate(model: &Model, inputs: &[Vec<u32>], o: &GenOptions) -> Result<Vec<Vec<u32>>> {
    if inputs.is_empty() {
        return Ok(vec![]);
    }
    let enc = model.encode(inputs)?;
    let max_new: Vec<usize> = inputs
        .iter()
        .map(|s| {
            o.max_new
                .for_input(s.len())
                .min(model.cfg.max_positions.saturating_sub(1))
        })
        .collect();
    if o.beams <= 1 {
        greedy(model, &enc, &max_new, o)
    } else {
        beam(model, &enc, &max_new, o)
    }
}

/// Runs `f(r, row r, &mut outs[r])` over the rows of `logits` (`width` values each), in
/// parallel when there are at least `min_work` values: the per-row work of a step
/// (processors, argmax or the top-k of a beam) is tens of ms for a batch of beams on one
/// core, while the matmuls run on all of them.
fn par_rows<T: Send>(
    logits: &mut [f32],
    width: usize,
    outs: &mut [T],
    min_work: usize,
    f: impl Fn(usize, &mut [f32], &mut T) + Sync,
) {
    assert_eq!(logits.len(), outs.len() * width, "one output per row");
    let lp = crate::backend::qmm::SendPtr::new(logits.as_mut_ptr());
    let op = crate::backend::qmm::SendPtr::new(outs.as_mut_ptr());
    crate::backend::qmm::parallel(outs.len(), logits.len() >= min_work, |range| {
        for r in range {
            // SAFETY: row r and output r belong to this task alone; r < outs.len().
            let (row, out) = unsafe {
                (
                    std::slice::from_raw_parts_mut(lp.get().add(r * width), width),
                    &mut *op.get().add(r),
                )
            };
            f(r, row, out);
        }
    });
}

fn greedy(
    model: &Model,
    enc: &EncoderOut,
    max_new: &[usize],
    o: &GenOptions,
) -> Result<Vec<Vec<u32>>> {
    let b = enc.lens.len();
    let mut st = model.start(enc, 1)?;
    let mut seqs: Vec<Vec<u32>> = vec![vec![o.start]; b];
    let mut active: Vec<usize> = (0..b).collect();
    let split = model.split_head()?;
    while !active.is_empty() {
        let tokens: Vec<u32> = active
            .iter()
            .map(|&i| *seqs[i].last().unwrap_or(&o.start))
            .collect();
        let mut picked = vec![0u32; active.len()];
        // One sequence left: bound the logits from half the LM head's bytes.
        if let (1, Some((head, bias))) = (active.len(), &split) {
            let x: Vec<f32> = model
                .step_hidden(&mut st, &tokens)?
                .to_device(&candle_core::Device::Cpu)?
                .flatten_all()?
                .to_vec1()?;
            let i = active[0];
            picked[0] = pick_bounded(head, bias.as_deref(), &x, &seqs[i], 1 + max_new[i], o);
        } else {
            let mut logits = model.step_rows(&mut st, &tokens)?;
            let (act, sq) = (&active, &seqs);
            let vocab = logits.len() / tokens.len();
            par_rows(&mut logits, vocab, &mut picked, 1 << 18, |r, row, t| {
                let i = act[r];
                process(row, &sq[i], 1 + max_new[i], o);
                *t = argmax(row);
            });
        }
        let mut keep = Vec::new();
        for (r, &i) in active.iter().enumerate() {
            let max_len = 1 + max_new[i];
            let t = picked[r];
            seqs[i].push(t);
            if t != o.eos && seqs[i].len() < max_len {
                keep.push(r);
            }
        }
        if keep.len() < active.len() {
            active = keep.iter().map(|&r| active[r]).collect();
            if !active.is_empty() {
                let idx: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
                model.select(&mut st, &idx, true)?;
            }
        }
    }
    Ok(seqs
        .into_iter()
        .map(|s| cut(s[1..].to_vec(), o.eos))
        .collect())
}

#[derive(Clone)]
struct Hyp {
    seq: Vec<u32>,
    score: f32,
    finished: bool,
}

struct Item {
    running: Vec<Hyp>,
    best: Vec<Hyp>,
    improvable: bool,
    max_len: usize,
}

fn sort_desc(v: &mut [(f32, usize)]) {
    // Stable: equal scores keep their order (lower index first), as torch.topk does in practice.
    v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
}

fn beam(
    model: &Model,
    enc: &EncoderOut,
    max_new: &[usize],
    o: &GenOptions,
) -> Result<Vec<Vec<u32>>> {
    let k = o.beams;
    let b = enc.lens.len();
    let mut st: DecoderState = model.start(enc, k)?;
    let start = Hyp {
        seq: vec![o.start],
        score: 0.0,
        finished: false,
    };
    let mut items: Vec<Item> = (0..b)
        .map(|i| Item {
            running: (0..k)
                .map(|j| Hyp {
                    score: if j == 0 { 0.0 } else { -1e9 },
                    ..start.clone()
                })
                .collect(),
            best: vec![
                Hyp {
                    score: -1e9,
                    ..start.clone()
                };
                k
            ],
            improvable: true,
            max_len: 1 + max_new[i],
        })
        .collect();
    let mut active: Vec<usize> = (0..b).collect();
    let mut cur_len = 1usize;
    while !active.is_empty() {
        let tokens: Vec<u32> = active
            .iter()
            .flat_map(|&i| {
                items[i]
                    .running
                    .iter()
                    .map(|h| *h.seq.last().unwrap_or(&o.start))
            })
            .collect();
        let mut logits = model.step_rows(&mut st, &tokens)?;
        let vocab = logits.len() / tokens.len();
        // Each row's 2k best continuations, rows in parallel.
        let mut row_cands: Vec<Vec<(f32, usize)>> = vec![Vec::new(); tokens.len()];
        let (act, its) = (&active, &items);
        par_rows(
            &mut logits,
            vocab,
            &mut row_cands,
            1 << 16,
            |r, row, out| {
                let (item, j) = (&its[act[r / k]], r % k);
                let hyp = &item.running[j];
                // The log-softmax, then the processors: a forced token leaves one live entry.
                let lse = match forced(hyp.seq.len(), item.max_len, o) {
                    Some(t) => {
                        row.fill(f32::NEG_INFINITY);
                        row[t as usize] = 0.0;
                        0.0
                    }
                    None => {
                        let lse = scan::log_sum_exp(row);
                        process(row, &hyp.seq, item.max_len, o);
                        lse
                    }
                };
                scan::top_scores(row, lse, hyp.score, 2 * k, j * vocab, out);
            },
        );
        let mut reorder: Vec<u32> = Vec::with_capacity(active.len() * k);
        let mut still = Vec::new();
        for (a, &i) in active.iter().enumerate() {
            let item = &mut items[i];
            let mut cands = Vec::with_capacity(2 * k * k);
            for rc in &row_cands[a * k..(a + 1) * k] {
                cands.extend_from_slice(rc);
            }
            sort_desc(&mut cands);
            cands.truncate(2 * k);
            let at_max = cur_len + 1 >= item.max_len;
            let hit: Vec<bool> = cands
                .iter()
                .map(|&(_, f)| at_max || (f % vocab) as u32 == o.eos)
                .collect();
            let extend = |f: usize| {
                let mut s = item.running[f / vocab].seq.clone();
                s.push((f % vocab) as u32);
                s
            };
            // Running beams for the next step: the best unfinished continuations.
            let mut next: Vec<(f32, usize)> = cands
                .iter()
                .zip(&hit)
                .enumerate()
                .map(|(c, (&(s, _), &h))| (if h { s - 1e9 } else { s }, c))
                .collect();
            sort_desc(&mut next);
            next.truncate(k);
            // Finished hypotheses: merge the newly finished into the k best.
            let full =
                o.early_stopping == EarlyStopping::Done && item.best.iter().all(|h| h.finished);
            let denom = (cur_len as f64).powf(o.length_penalty as f64) as f32;
            let mut merged: Vec<Hyp> = item.best.clone();
            for (c, &(s, f)) in cands.iter().enumerate() {
                let just = hit[c] && c < k;
                let mut score = s / denom;
                if full {
                    score -= 1e9;
                }
                if !item.improvable {
                    score -= 1e9;
                }
                if !just {
                    score -= 1e9;
                }
                merged.push(Hyp {
                    seq: extend(f),
                    score,
                    finished: just,
                });
            }
            let mut order: Vec<(f32, usize)> = merged
                .iter()
                .enumerate()
                .map(|(m, h)| (h.score, m))
                .collect();
            sort_desc(&mut order);
            item.best = order
                .iter()
                .take(k)
                .map(|&(_, m)| merged[m].clone())
                .collect();
            let mut running = Vec::with_capacity(k);
            for &(s, c) in &next {
                let f = cands[c].1;
                reorder.push((a * k + f / vocab) as u32);
                running.push(Hyp {
                    seq: extend(f),
                    score: s,
                    finished: false,
                });
            }
            item.running = running;
            // Early-stop heuristic, evaluated at the new length.
            let new_len = cur_len + 1;
            let hyp_len = if o.early_stopping == EarlyStopping::Never && o.length_penalty > 0.0 {
                item.max_len - 1
            } else {
                new_len - 1
            };
            let best_possible =
                item.running[0].score / (hyp_len as f64).powf(o.length_penalty as f64) as f32;
            let worst = item
                .best
                .iter()
                .map(|h| h.score)
                .fold(f32::INFINITY, f32::min);
            item.improvable = item.improvable
                && item
                    .best
                    .iter()
                    .any(|h| best_possible > if h.finished { worst } else { -1e9 });
            let all_finished = item.best.iter().all(|h| h.finished);
            let frozen = !item.improvable
                || (o.early_stopping == EarlyStopping::Done && all_finished)
                || hit.iter().all(|&h| h);
            if !frozen {
                still.push(a);
            }
        }
        cur_len += 1;
        // Reorder the caches to follow the surviving beams, then drop frozen inputs.
        model.select(&mut st, &reorder, false)?;
        if still.len() < active.len() {
            if !still.is_empty() {
                let idx: Vec<u32> = still
                    .iter()
                    .flat_map(|&a| (0..k).map(move |j| (a * k + j) as u32))
                    .collect();
                model.select(&mut st, &idx, true)?;
            }
            active = still.iter().map(|&a| active[a]).collect();
        }
    }
    Ok(items
        .into_iter()
        .map(|it| cut(it.best[0].seq[1..].to_vec(), o.eos))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> GenOptions {
        GenOptions {
            beams: 1,
            max_new: LengthLimit::fixed(10),
            min_new: 0,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            no_repeat_ngram: 3,
            forced_bos: None,
            forced_eos: None,
            banned: vec![5],
            start: 0,
            eos: 1,
            pad: 0,
        }
    }

    #[test]
    fn bounded_pick_equals_the_full_argmax() {
        if !crate::backend::sgemm::available() {
            return;
        }
        // Near ties everywhere: rows that differ in their lowest bits only, copies of
        // rows (exact ties: the first index must win), and the best rows banned.
        let (n, k) = (700, 300);
        let mut r = crate::backend::test_values(41, 1.0);
        let base: Vec<f32> = (0..k).map(|_| r()).collect();
        let mut w = Vec::with_capacity(n * k);
        for c in 0..n {
            for (j, &b) in base.iter().enumerate() {
                w.push(match c % 4 {
                    0 => r(),
                    1 => f32::from_bits(b.to_bits() ^ ((c as u32 * 7 + j as u32) & 0xff)),
                    2 => b,
                    _ => b * (1.0 - 1e-4 * (c % 13) as f32),
                });
            }
        }
        let bias: Vec<f32> = (0..n).map(|_| r() * 1e-3).collect();
        let head = PackedF32::pack_split(&w, n, k);
        let mut o = opts();
        let mut near = 0;
        for trial in 0..24 {
            let x: Vec<f32> = base
                .iter()
                .map(|&b| b + r() * 0.01 * (trial % 3) as f32)
                .collect();
            let b = (trial % 2 == 0).then_some(&bias[..]);
            o.banned = if trial % 4 < 2 {
                vec![]
            } else {
                vec![2, 6, 10, 14, 18]
            };
            o.forced_bos = (trial == 5).then_some(3);
            let seq = if trial == 5 {
                vec![0]
            } else {
                vec![0, 9, 2, 9]
            };
            let mut full = head.matmul(&x, 1, b);
            process(&mut full, &seq, 20, &o);
            let want = argmax(&full);
            let got = pick_bounded(&head, b, &x, &seq, 20, &o);
            assert_eq!(got, want, "trial {trial}");
            let (a, e) = head.bounded_row(&x, b).unwrap();
            near += (0..n)
                .filter(|&i| a[i] + e[i] >= full[want as usize])
                .count();
        }
        assert!(
            near > 24 * 20,
            "the bounds should leave many candidates here: {near}"
        );
    }

    #[test]
    fn no_repeat_ngram_bans_the_completing_token() {
        let mut row = vec![0.0f32; 8];
        // seq: start 2 3 4 2 3 → "2 3 4" seen, so after "2 3", 4 is banned.
        process(&mut row, &[0, 2, 3, 4, 2, 3], 20, &opts());
        assert_eq!(row[4], f32::NEG_INFINITY);
        assert_eq!(row[5], f32::NEG_INFINITY, "banned token");
        assert!(row
            .iter()
            .enumerate()
            .all(|(i, &x)| i == 4 || i == 5 || x == 0.0));
    }

    #[test]
    fn forced_tokens_and_min_length() {
        let mut o = opts();
        o.forced_bos = Some(7);
        o.forced_eos = Some(1);
        o.min_new = 2;
        let mut row = vec![0.5f32; 8];
        process(&mut row, &[0], 5, &o);
        assert_eq!(argmax(&row), 7);
        let mut row = vec![0.5f32; 8];
        process(&mut row, &[0, 7], 5, &o);
        assert_eq!(row[1], f32::NEG_INFINITY, "EOS before min_new");
        let mut row = vec![0.5f32; 8];
        process(&mut row, &[0, 7, 3, 3], 5, &o);
        assert_eq!(argmax(&row), 1, "EOS forced at the last position");
    }

    #[test]
    fn length_limit_is_relative_and_capped() {
        let l = LengthLimit {
            ratio: 1.5,
            extra: 10,
            cap: 100,
        };
        assert_eq!(l.for_input(10), 25);
        assert_eq!(l.for_input(1000), 100);
        assert_eq!(LengthLimit::fixed(7).for_input(1000), 7);
    }

    #[test]
    fn top_scores_keep_order_and_ties_by_index() {
        let mut out = vec![];
        scan::top_scores(&[0.1, 0.5, 0.5, -1.0, 0.3], 0.25, 1.0, 3, 10, &mut out);
        assert_eq!(out, vec![(1.25, 11), (1.25, 12), (1.05, 14)]);
    }
}
