//! Many replies at once over one decoder (issue 13: batched decode, prefix reuse).
//!
//! A [`Pool`] is a thread that owns the decoding: callers on any thread ask it for a
//! reply through a [`Client`] and block until it is done. Each step feeds one token to
//! every reply in progress in a single forward pass, so each weight read serves all of
//! them (decoding on a CPU is bound by those reads: 8 sequences decode at about 3× the
//! tokens/s of one, `docs/PERFORMANCE.md`). `tarjuma run` gives each of its workers a
//! client, so the chunks and summaries of different articles decode together.
//!
//! - **Reproducible.** The pool steps only when every client that has joined is
//!   waiting on it, so which replies share a step follows from the requests alone, not
//!   from thread timing; a reply is chosen by the same [`Decoding`] as in a
//!   [`super::Session`]. (Products of 4 or more rows use packed tiles for some block
//!   formats, which sum in another order than the one-row kernels, so a reply can
//!   depend on how many others decode beside it: a last-digit difference in the logits
//!   flips a greedy choice now and then, and the rest of the reply follows. The same
//!   requests always give the same replies.)
//! - **Prefix reuse.** A request names how many leading tokens are worth keeping (a
//!   fixed system prompt, the translation example): the pool computes those positions
//!   apart, keeps a copy of their cache, and later prompts that start with the same
//!   tokens begin from a copy instead of computing them again. The prefix is always
//!   computed apart, kept or not, so reuse never changes a reply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use candle_core::DType;

use super::{DecodeOptions, Decoding, Next, Output};
use crate::backend::decoder::{Decoder, Sequence};
use crate::tokenizer::Tokenizer;

/// One reply to make.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub opts: DecodeOptions,
    /// Leading tokens of `prompt` that later prompts will share (0: none).
    pub keep: usize,
}

enum Msg {
    Join {
        id: usize,
        reply: Sender<Result<Output>>,
    },
    Ask {
        id: usize,
        req: Request,
    },
    Leave {
        id: usize,
    },
}

/// The handle that makes clients; the pool thread ends when the handle and every
/// client are gone.
#[derive(Clone)]
pub struct Pool {
    tx: Sender<Msg>,
    next_id: Arc<AtomicUsize>,
}

/// One caller's line to the pool. While it exists the pool waits for its requests
/// before each step (see the module docs), so a worker holds one for its whole run and
/// a lone caller makes one per request. The rule: a holder between requests only
/// works, it never waits on another client's reply (the pool would wait for it in
/// turn, until [`IDLE_CLIENT_WAIT`]).
pub struct Client {
    id: usize,
    tx: Sender<Msg>,
    rx: Receiver<Result<Output>>,
}

/// How long the pool waits for an idle client before stepping without it.
pub const IDLE_CLIENT_WAIT: Duration = Duration::from_secs(10);

/// Prompt prefixes kept, least recently used first out.
const KEPT_PREFIXES: usize = 8;
/// Shorter prefixes are not worth a copy.
const MIN_KEEP: usize = 16;

impl Pool {
    /// Starts the pool thread for `model` (`name` is used in errors).
    pub fn start(
        model: Arc<Decoder>,
        tok: Arc<Tokenizer>,
        max_positions: usize,
        name: String,
    ) -> Result<Self> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("tarjuma-decode".into())
            .spawn(move || {
                Server {
                    model,
                    tok,
                    max_positions,
                    name,
                    kept: Vec::new(),
                    clock: 0,
                }
                .serve(rx)
            })?;
        Ok(Self {
            tx,
            next_id: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A new client. Clients made before their threads start join in a fixed order.
    pub fn client(&self) -> Client {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (reply, rx) = channel();
        // A send fails only when the pool thread is gone; `generate` then says so.
        let _ = self.tx.send(Msg::Join { id, reply });
        Client {
            id,
            tx: self.tx.clone(),
            rx,
        }
    }
}

impl Client {
    /// Makes one reply (blocking until it is done).
    pub fn generate(&self, req: Request) -> Result<Output> {
        let gone = || anyhow!("the decoding thread has stopped");
        self.tx
            .send(Msg::Ask { id: self.id, req })
            .map_err(|_| gone())?;
        self.rx.recv().map_err(|_| gone())?
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Leave { id: self.id });
    }
}

/// A reply in progress.
struct Active {
    id: usize,
    seq: Sequence,
    dec: Decoding,
    logits: Vec<f32>,
}

struct Server {
    model: Arc<Decoder>,
    tok: Arc<Tokenizer>,
    max_positions: usize,
    name: String,
    /// Kept prefixes: tokens, their cache, last use.
    kept: Vec<(Vec<u32>, Sequence, u64)>,
    clock: u64,
}

impl Server {
    fn serve(mut self, rx: Receiver<Msg>) {
        let mut live: BTreeMap<usize, Sender<Result<Output>>> = BTreeMap::new();
        let mut asked: BTreeMap<usize, Request> = BTreeMap::new();
        let mut active: Vec<Active> = Vec::new();
        loop {
            // Step only when every live client is waiting on the pool. A client idle
            // for long (a caller that breaks the rule in `Client`'s docs) is not
            // waited for forever: the others go on, warned.
            while live.is_empty() || asked.len() + active.len() < live.len() {
                let msg = if asked.is_empty() && active.is_empty() {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(IDLE_CLIENT_WAIT)
                };
                match msg {
                    Ok(Msg::Join { id, reply }) => {
                        live.insert(id, reply);
                    }
                    Ok(Msg::Ask { id, req }) => {
                        asked.insert(id, req);
                    }
                    Ok(Msg::Leave { id }) => {
                        live.remove(&id);
                        asked.remove(&id);
                        active.retain(|a| a.id != id);
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        tracing::warn!(
                            idle = live.len() - asked.len() - active.len(),
                            "decoding pool: clients idle for {}s; stepping without them",
                            IDLE_CLIENT_WAIT.as_secs()
                        );
                        break;
                    }
                    // Every handle and client is gone.
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            for (id, req) in std::mem::take(&mut asked) {
                match self.admit(id, req) {
                    Ok(a) => active.push(a),
                    Err(e) => send(&live, id, Err(e)),
                }
            }
            active.sort_by_key(|a| a.id);
            // Each reply's next token; finished replies go back to their clients.
            let mut feeding = Vec::with_capacity(active.len());
            let mut tokens = Vec::with_capacity(active.len());
            for mut a in std::mem::take(&mut active) {
                let room = self.max_positions.saturating_sub(a.seq.len());
                match a.dec.next(&mut a.logits, room, &self.tok) {
                    Ok(Next::Feed(t)) => {
                        tokens.push(t);
                        feeding.push(a);
                    }
                    Ok(Next::Stop(stop)) => {
                        let out = a.dec.finish(stop, &self.tok);
                        send(&live, a.id, Ok(out));
                    }
                    Err(e) => send(&live, a.id, Err(self.generating(e))),
                }
            }
            if feeding.is_empty() {
                continue;
            }
            let fed = {
                let mut seqs: Vec<&mut Sequence> = feeding.iter_mut().map(|a| &mut a.seq).collect();
                let toks: Vec<[u32; 1]> = tokens.iter().map(|&t| [t]).collect();
                let toks: Vec<&[u32]> = toks.iter().map(|t| t.as_slice()).collect();
                self.model.forward(&mut seqs, &toks).and_then(|ls| {
                    ls.into_iter()
                        .map(|l| l.to_dtype(DType::F32)?.to_vec1::<f32>())
                        .collect::<candle_core::Result<Vec<_>>>()
                })
            };
            match fed {
                Ok(logits) => {
                    for (mut a, l) in feeding.into_iter().zip(logits) {
                        a.logits = l;
                        active.push(a);
                    }
                }
                Err(e) => {
                    let msg = crate::pipeline::one_line(&e.into());
                    for a in feeding {
                        send(&live, a.id, Err(self.generating(anyhow!("{msg}"))));
                    }
                }
            }
        }
    }

    fn generating(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "model `{}`: generating: {}",
            self.name,
            crate::pipeline::one_line(&e)
        )
    }

    /// Reads a request's prompt (from a kept prefix where one matches) and returns the
    /// reply ready for its first token.
    fn admit(&mut self, id: usize, req: Request) -> Result<Active> {
        let Request { prompt, opts, keep } = req;
        let t = std::time::Instant::now();
        let mut seq = Sequence::new();
        let read = self.read(&mut seq, &prompt, keep).map_err(|e| {
            anyhow!(
                "model `{}`: reading a prompt of {} tokens: {}",
                self.name,
                prompt.len(),
                crate::pipeline::one_line(&e)
            )
        });
        let (logits, reused) = read?;
        let s = t.elapsed().as_secs_f64();
        let fed = prompt.len() - reused;
        tracing::debug!(
            tokens = prompt.len(),
            reused,
            seconds = s,
            tok_per_s = fed as f64 / s,
            "prefill"
        );
        Ok(Active {
            id,
            seq,
            dec: Decoding::new(opts),
            logits,
        })
    }

    /// Feeds `prompt` into `seq`; returns the last logits and how many positions came
    /// from a kept prefix.
    fn read(
        &mut self,
        seq: &mut Sequence,
        prompt: &[u32],
        keep: usize,
    ) -> Result<(Vec<f32>, usize)> {
        anyhow::ensure!(!prompt.is_empty(), "empty prompt");
        if prompt.len() > self.max_positions {
            anyhow::bail!(
                "sequence of {} positions exceeds the model's limit of {}",
                prompt.len(),
                self.max_positions
            );
        }
        // The prefix is its own piece whenever it is named, so a reply is the same
        // whether the prefix was kept or computed now.
        let keep = if (MIN_KEEP..prompt.len()).contains(&keep) {
            keep
        } else {
            0
        };
        self.clock += 1;
        let mut reused = 0;
        if keep > 0 {
            if let Some(k) = self
                .kept
                .iter_mut()
                .find(|k| k.0.len() == keep && prompt.starts_with(&k.0))
            {
                k.2 = self.clock;
                *seq = k.1.fork()?;
                reused = keep;
            } else {
                self.model.forward_one(seq, &prompt[..keep])?;
                if self.kept.len() == KEPT_PREFIXES {
                    let oldest = (0..self.kept.len())
                        .min_by_key(|&i| self.kept[i].2)
                        .expect("full");
                    self.kept.swap_remove(oldest);
                }
                self.kept
                    .push((prompt[..keep].to_vec(), seq.fork()?, self.clock));
            }
        }
        // `keep` positions are in the cache now (0 when none is named).
        let logits = self.model.forward_one(seq, &prompt[keep..])?;
        Ok((logits, reused))
    }
}

fn send(live: &BTreeMap<usize, Sender<Result<Output>>>, id: usize, r: Result<Output>) {
    if let Some(tx) = live.get(&id) {
        let _ = tx.send(r);
    }
}
