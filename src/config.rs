//! Validated run configuration, resolved once from the raw flags (ripgrep's
//! LowArgs → HiArgs split), and model loading from it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use crate::backend::{gguf, parse_device};
use crate::cli::{CacheArgs, ModelArgs};
use crate::models::{self, Cache, Manifest};
use crate::pipeline::translate::TranslateOptions;
use crate::pipeline::{Lm, Sampling};
use crate::prompt;

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn config_error(msg: impl Into<String>) -> anyhow::Error {
    ConfigError(msg.into()).into()
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSpec {
    Builtin(Box<Manifest>),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub spec: ModelSpec,
    pub prompt_family: Option<String>,
    pub device: String,
    pub sampling: Sampling,
    pub context: usize,
    pub translate: TranslateOptions,
    pub cache: Cache,
    pub progress: bool,
}

pub fn cache(args: &CacheArgs, quiet: bool) -> Cache {
    Cache {
        root: args.cache_dir.clone().unwrap_or_else(Cache::default_root),
        offline: args.offline,
        progress: !quiet && std::io::stderr().is_terminal(),
        python: args.python.clone(),
    }
}

pub fn manifest(name: &str) -> Result<Manifest> {
    let all = models::all().map_err(|e| config_error(format!("{e:#}")))?;
    let known: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    let msg = format!(
        "unknown model `{name}` (known: {}; or give a path to a .gguf file)",
        known.join(", ")
    );
    all.iter()
        .find(|m| m.name == name)
        .cloned()
        .ok_or_else(|| config_error(msg))
}

pub fn validate_bullets(n: usize) -> Result<usize> {
    if !(1..=20).contains(&n) {
        return Err(config_error(format!(
            "--max-bullets must be between 1 and 20, not {n}"
        )));
    }
    Ok(n)
}

impl ModelConfig {
    pub fn from_args(a: &ModelArgs) -> Result<Self> {
        let spec = if a.model.to_ascii_lowercase().ends_with(".gguf") || a.model.contains('/') {
            let p = PathBuf::from(&a.model);
            if !p.is_file() {
                return Err(config_error(format!(
                    "model file `{}` does not exist",
                    a.model
                )));
            }
            ModelSpec::File(p)
        } else {
            ModelSpec::Builtin(Box::new(manifest(&a.model)?))
        };
        if a.temperature.is_nan() || a.temperature < 0.0 {
            return Err(config_error("--temperature must be 0 (greedy) or more"));
        }
        if let Some(p) = a.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(config_error("--top-p must be in (0, 1]"));
            }
        }
        if a.threads == Some(0) {
            return Err(config_error("--threads must be at least 1"));
        }
        if a.context < 512 {
            return Err(config_error("--context must be at least 512 tokens"));
        }
        if a.chunk_tokens < 16 {
            return Err(config_error("--chunk-tokens must be at least 16"));
        }
        if let Some(f) = &a.prompt_family {
            prompt::family(f).map_err(|e| config_error(e.to_string()))?;
        }
        // Checked here so a bad --device is a usage error before any download.
        parse_device(&a.device).map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            spec,
            prompt_family: a.prompt_family.clone(),
            device: a.device.clone(),
            sampling: Sampling {
                temperature: a.temperature,
                top_p: a.top_p,
                seed: a.seed,
            },
            context: a.context,
            translate: TranslateOptions {
                chunk_tokens: a.chunk_tokens,
            },
            cache: cache(&a.cache, a.quiet),
            progress: !a.quiet && std::io::stderr().is_terminal(),
        })
    }

    /// Fetches (if needed) and loads the model. Failures here are configuration errors.
    pub fn load(&self) -> Result<Lm> {
        let device = parse_device(&self.device).map_err(|e| config_error(e.to_string()))?;
        let (name, path, sha256, family) = match &self.spec {
            ModelSpec::Builtin(m) => {
                let files = self
                    .cache
                    .ensure(m)
                    .map_err(|e| config_error(format!("cannot get model `{}`: {e:#}", m.name)))?;
                let f = files.into_iter().next().expect("a manifest has files");
                (
                    m.name.clone(),
                    f.path,
                    f.sha256,
                    Some(m.prompt_family.clone()),
                )
            }
            ModelSpec::File(p) => {
                let sha =
                    models::source::sha256_file(p).map_err(|e| config_error(format!("{e:#}")))?;
                let name = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model")
                    .to_string();
                (name, p.clone(), sha, None)
            }
        };
        let loaded = gguf::load(&path, &device).map_err(|e| config_error(format!("{e:#}")))?;
        let family_name = self
            .prompt_family
            .clone()
            .or(family)
            .or_else(|| guess_family(&loaded))
            .ok_or_else(|| {
                config_error(format!(
                    "{}: cannot tell its chat template; pass --prompt-family chatml|gemma",
                    path.display()
                ))
            })?;
        let family = prompt::family(&family_name).map_err(|e| config_error(e.to_string()))?;
        // Every special token of the template must exist, or prompts would be wrong.
        for s in &family.specials {
            if loaded.tokenizer.token_id(s).is_none() {
                return Err(config_error(format!(
                    "{}: the `{family_name}` prompt family needs token `{s}`, which the model lacks; pass another --prompt-family",
                    path.display()
                )));
            }
        }
        Ok(Lm::new(
            loaded,
            family,
            name,
            sha256,
            self.sampling.clone(),
            self.context,
        ))
    }
}

fn guess_family(l: &gguf::Loaded) -> Option<String> {
    if l.tokenizer.token_id("<|im_start|>").is_some() {
        Some("chatml".into())
    } else if l.tokenizer.token_id("<start_of_turn>").is_some() {
        Some("gemma".into())
    } else {
        None
    }
}

/// Sets the thread pools' sizes. Must run before candle or rayon start any thread.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}
