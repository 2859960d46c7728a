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
use crate::generate::{arabic_script_mask, DecodeOptions, Output, Session};
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
        }
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
        let name = &self.name;
        let mut s = Session::new(&mut self.loaded.lm, prompt).map_err(|e| {
            anyhow::anyhow!(
                "model `{name}`: reading a prompt of {} tokens: {}",
                prompt.len(),
                one_line(&e)
            )
        })?;
        s.generate(&self.loaded.tokenizer, opts)
            .map_err(|e| anyhow::anyhow!("model `{name}`: generating: {}", one_line(&e)))
    }

    /// One prompt, one reply.
    pub fn complete(&mut self, msgs: &[Message], opts: &DecodeOptions) -> Result<(Output, Usage)> {
        let prompt = self.render(msgs, "")?;
        let mut opts = opts.clone();
        opts.max_new = opts.max_new.min(self.context.saturating_sub(prompt.len()));
        anyhow::ensure!(
            opts.max_new > 0,
            "prompt of {} tokens leaves no room for a reply in a {}-token context",
            prompt.len(),
            self.context
        );
        let out = self.run(&prompt, &opts)?;
        let usage = Usage {
            tokens_in: prompt.len(),
            tokens_out: out.ids.len(),
        };
        Ok((out, usage))
    }
}
