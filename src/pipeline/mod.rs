//! The data path for one article (translate, summarize) and for a batch (job, batch).

pub mod batch;
pub mod factcheck;
pub mod guards;
pub mod job;
pub mod merge;
pub mod nmt;
pub mod shard;
pub mod summarize;
pub mod translate;

use std::sync::Arc;

use anyhow::Result;

use crate::backend::gguf::Loaded;
use crate::generate::pool::{Client, Pool, Request};
use crate::generate::{arabic_script_mask, DecodeOptions, Output};
use crate::prompt::{Family, Message, Tasks};

/// Decoding settings chosen by the user.
#[derive(Debug, Clone)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
}

/// An error as one line: its chain joined by ": ", without the backtrace candle attaches
/// (kept only when `RUST_BACKTRACE` asks for it).
pub fn one_line(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    if std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0") {
        return full;
    }
    full.lines().next().unwrap_or("").trim_end().to_string()
}

/// A loaded instruction model with its prompts, ready to run tasks.
pub struct Lm {
    pub loaded: Loaded,
    pub family: Family,
    pub tasks: Tasks,
    /// The prompt set (built-in or `--prompts DIR`) as recorded in results.
    pub prompts: crate::io::write::PromptInfo,
    pub name: String,
    pub sha256: String,
    pub sampling: Sampling,
    stop_ids: Vec<u32>,
    english_only: Arc<Vec<bool>>,
    /// Positions usable per prompt + reply (the model's limit, or less if asked).
    pub context: usize,
    /// Most source tokens per translation request (the manifest's `max_input_tokens`);
    /// 0 when only the context limits it.
    pub max_input_tokens: usize,
    /// The decoding thread, started on the first request and shared with workers.
    pool: Option<Pool>,
    /// A worker's standing line to the pool ([`Lm::worker`]); others ask per request.
    client: Option<Client>,
}

/// Token counts of one model call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub tokens_in: usize,
    pub tokens_out: usize,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
    }
}

impl Lm {
    pub fn new(
        loaded: Loaded,
        family: Family,
        name: String,
        sha256: String,
        sampling: Sampling,
        context: usize,
    ) -> Self {
        let stop_ids = family.stop_ids(&loaded.tokenizer);
        let english_only = Arc::new(arabic_script_mask(&loaded.tokenizer));
        let context = context.min(loaded.lm.max_positions).max(256);
        Self {
            loaded,
            family,
            tasks: crate::prompt::tasks(),
            prompts: crate::io::write::PromptInfo {
                name: "built-in".into(),
                sha256: String::new(),
            },
            name,
            sha256,
            sampling,
            stop_ids,
            english_only,
            context,
            max_input_tokens: 0,
            pool: None,
            client: None,
        }
    }

    fn pool(&mut self) -> Result<&Pool> {
        if self.pool.is_none() {
            let lm = &self.loaded.lm;
            self.pool = Some(Pool::start(
                lm.model.clone(),
                self.loaded.tokenizer.clone(),
                lm.max_positions,
                self.name.clone(),
            )?);
        }
        Ok(self.pool.as_ref().expect("started"))
    }

    /// Another handle on the same model (weights, tokenizer and decoding thread
    /// shared) for a worker thread: its requests decode together with those of the
    /// other workers (see [`crate::generate::pool`]). Make all workers before starting
    /// their threads, so they join the pool in a fixed order.
    pub fn worker(&mut self) -> Result<Lm> {
        let pool = self.pool()?.clone();
        let client = pool.client();
        Ok(Lm {
            loaded: self.loaded.share(),
            family: self.family.clone(),
            tasks: self.tasks.clone(),
            prompts: self.prompts.clone(),
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            sampling: self.sampling.clone(),
            stop_ids: self.stop_ids.clone(),
            english_only: self.english_only.clone(),
            context: self.context,
            max_input_tokens: self.max_input_tokens,
            pool: Some(pool),
            client: Some(client),
        })
    }

    pub fn count(&self, text: &str) -> usize {
        self.loaded.tokenizer.count(text)
    }

    /// Decoding options for English output with the user's sampling settings.
    pub fn english_options(&self, max_new: usize) -> DecodeOptions {
        DecodeOptions {
            max_new,
            temperature: self.sampling.temperature,
            top_p: self.sampling.top_p,
            seed: self.sampling.seed,
            banned: Some(self.english_only.clone()),
            stop_ids: self.stop_ids.clone(),
            ..Default::default()
        }
    }

    pub fn render(&self, msgs: &[Message], assistant_prefix: &str) -> Result<Vec<u32>> {
        self.family
            .render(&self.loaded.tokenizer, msgs, assistant_prefix)
    }

    /// Feeds `prompt` afresh and generates. A failure is one line naming the model and
    /// the step (candle's own errors can carry a backtrace: see [`one_line`]).
    pub fn run(&mut self, prompt: &[u32], opts: &DecodeOptions) -> Result<Output> {
        self.run_keeping(prompt, 0, opts)
    }

    /// [`Lm::run`], keeping the first `keep` positions of the prompt for later prompts
    /// that start the same way (see [`crate::generate::pool`]).
    pub fn run_keeping(
        &mut self,
        prompt: &[u32],
        keep: usize,
        opts: &DecodeOptions,
    ) -> Result<Output> {
        let req = Request {
            prompt: prompt.to_vec(),
            opts: opts.clone(),
            keep,
        };
        match &self.client {
            Some(c) => c.generate(req),
            None => self.pool()?.client().generate(req),
        }
    }

    /// Tokens that every prompt beginning with `fixed` shares: `fixed` and the opening
    /// of the next user turn, as far as the template renders them the same.
    pub fn shared_prefix(&self, fixed: &[Message], prompt: &[u32]) -> usize {
        if fixed.is_empty() {
            return 0;
        }
        let mut probe = fixed.to_vec();
        probe.push(Message::new(crate::prompt::Role::User, String::new()));
        let Ok(p) = self.render(&probe, "") else {
            return 0;
        };
        p.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }

    /// One prompt, one reply; the first `fixed` messages are shared by other prompts
    /// (a system prompt, an example exchange) and their positions are kept for them.
    pub fn complete(
        &mut self,
        msgs: &[Message],
        fixed: usize,
        opts: &DecodeOptions,
    ) -> Result<(Output, Usage)> {
        let prompt = self.render(msgs, "")?;
        let mut opts = opts.clone();
        opts.max_new = opts.max_new.min(self.context.saturating_sub(prompt.len()));
        anyhow::ensure!(
            opts.max_new > 0,
            "prompt of {} tokens leaves no room for a reply in a {}-token context",
            prompt.len(),
            self.context
        );
        let keep = self.shared_prefix(&msgs[..fixed.min(msgs.len())], &prompt);
        let out = self.run_keeping(&prompt, keep, &opts)?;
        let usage = Usage {
            tokens_in: prompt.len(),
            tokens_out: out.ids.len(),
        };
        Ok((out, usage))
    }
}
