//! Validated run configuration, resolved once from the raw flags (ripgrep's
//! LowArgs → HiArgs split), and model loading from it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use crate::backend::seq2seq::{weights, Langs, Nmt};
use crate::backend::{gguf, parse_device};
use crate::cli::{CacheArgs, ModelArgs, TranslatorArgs};
use crate::generate::seq2seq::{EarlyStopping, GenOptions, LengthLimit};
use crate::models::manifest::ModelKind;
use crate::models::{self, Cache, Manifest};
use crate::pipeline::nmt::NmtTranslator;
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
    /// `--prompts DIR` (None: the built-in prompts).
    pub prompts: Option<PathBuf>,
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
    let most = crate::pipeline::summarize::MAX_BULLETS;
    if !(1..=most).contains(&n) {
        return Err(config_error(format!(
            "--max-bullets must be between 1 and {most}, not {n}"
        )));
    }
    Ok(n)
}

impl ModelConfig {
    pub fn from_args(a: &ModelArgs) -> Result<Self> {
        let spec = if a.model.to_ascii_lowercase().ends_with(".gguf") || a.model.contains('/') {
            // (a path)
            let p = PathBuf::from(&a.model);
            if !p.is_file() {
                return Err(config_error(format!(
                    "model file `{}` does not exist",
                    a.model
                )));
            }
            ModelSpec::File(p)
        } else {
            let m = manifest(&a.model)?;
            if m.kind != ModelKind::Llm {
                return Err(config_error(format!(
                    "`{}` is a translation model; pass it as --translator {} (--model is the instruction model for summaries)",
                    m.name, m.name
                )));
            }
            ModelSpec::Builtin(Box::new(m))
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
        if let Some(d) = &a.prompts {
            // Malformed prompts are a usage error before any model is loaded.
            prompt::prompt_set(Some(d), a.prompt_family.as_deref().unwrap_or("chatml"))
                .map_err(|e| config_error(format!("{e:#}")))?;
        }
        // Checked here so a bad --device is a usage error before any download.
        parse_device(&a.device).map_err(|e| config_error(e.to_string()))?;
        Ok(Self {
            spec,
            prompt_family: a.prompt_family.clone(),
            prompts: a.prompts.clone(),
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

    /// The model's name and file, fetched if needed (no hashing of a local path).
    pub fn file(&self) -> Result<(String, PathBuf)> {
        self.resolve().map(|(name, path, _)| (name, path))
    }

    /// Name, file and, for a built-in model, the sha256 its fetch verified.
    fn resolve(&self) -> Result<(String, PathBuf, Option<String>)> {
        match &self.spec {
            ModelSpec::Builtin(m) => {
                let files = self
                    .cache
                    .ensure(m)
                    .map_err(|e| config_error(format!("cannot get model `{}`: {e:#}", m.name)))?;
                let f = files.into_iter().next().expect("a manifest has files");
                Ok((m.name.clone(), f.path, Some(f.sha256)))
            }
            ModelSpec::File(p) => Ok((
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model")
                    .to_string(),
                p.clone(),
                None,
            )),
        }
    }

    /// Fetches (if needed) and loads the model. Failures here are configuration errors.
    pub fn load(&self) -> Result<Lm> {
        let device = parse_device(&self.device).map_err(|e| config_error(e.to_string()))?;
        let (name, path, verified) = self.resolve()?;
        let (max_input_tokens, family) = match &self.spec {
            ModelSpec::Builtin(m) => (m.max_input_tokens, Some(m.prompt_family.clone())),
            ModelSpec::File(_) => (0, None),
        };
        let sha256 = match verified {
            Some(sha) => sha,
            None => {
                models::source::sha256_file(&path).map_err(|e| config_error(format!("{e:#}")))?
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
        let set = prompt::prompt_set(self.prompts.as_deref(), &family_name)
            .map_err(|e| config_error(format!("{e:#}")))?;
        let family = match set.family {
            Some(f) => f,
            None => prompt::family(&family_name).map_err(|e| config_error(e.to_string()))?,
        };
        // Every special token of the template must exist, or prompts would be wrong.
        for s in &family.specials {
            if loaded.tokenizer.token_id(s).is_none() {
                return Err(config_error(format!(
                    "{}: the `{family_name}` prompt family needs token `{s}`, which the model lacks; pass another --prompt-family",
                    path.display()
                )));
            }
        }
        let mut lm = Lm::new(
            loaded,
            family,
            name,
            sha256,
            self.sampling.clone(),
            self.context,
        );
        lm.tasks = set.tasks;
        lm.prompts = set.info;
        lm.max_input_tokens = max_input_tokens;
        Ok(lm)
    }
}

fn guess_family(l: &gguf::Loaded) -> Option<String> {
    if l.tokenizer.token_id("<|im_start|>").is_some() {
        Some("chatml".into())
    } else if l.tokenizer.token_id("<start_of_turn>").is_some() {
        Some("gemma".into())
    } else if l.tokenizer.token_id("<|start_header_id|>").is_some() {
        Some("llama3".into())
    } else {
        None
    }
}

/// Sets the thread pools' sizes. Must run before candle or rayon start any thread.
///
/// candle's pool workers keep their default spin (25 000 rounds) before parking: the
/// int8 translator runs its matmuls on that pool, and parking between ops cost it a
/// quarter of its speed at batch 16 (benches/nmt.rs: 1300 vs 1000 tokens/s, Marian shape);
/// f32, Q8_0 and the GGUF LLMs measured the same either way.
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

/// The models whose manifests say they translate Urdu (dedicated translators, and
/// instruction models such as TranslateGemma), in `models list` order.
pub fn urdu_translators() -> Vec<String> {
    models::manifest::all()
        .unwrap_or_else(|_| models::manifest::builtin())
        .into_iter()
        .filter(|m| m.can_translate_urdu())
        .map(|m| m.name)
        .collect()
}

/// `--translator NAME` naming an instruction model that translates (TranslateGemma):
/// its settings are the model flags with that model. `None` otherwise.
pub fn llm_translator(t: &TranslatorArgs, m: &ModelArgs) -> Result<Option<ModelConfig>> {
    if t.translator == "llm" {
        return Ok(None);
    }
    let man = manifest(&t.translator)?;
    if man.kind != ModelKind::Llm || !man.translates_urdu {
        return Ok(None);
    }
    if t.model_dir.is_some() {
        return Err(config_error(format!(
            "--model-dir is for dedicated translators; `{}` is a GGUF model",
            man.name
        )));
    }
    let mut args = m.clone();
    args.model = man.name.clone();
    args.prompt_family = None;
    ModelConfig::from_args(&args).map(Some)
}

/// One line for `run` and `translate` when the instruction model translates and its
/// manifest does not say it can translate Urdu; `None` when there is nothing to say.
pub fn translation_warning(m: &ModelArgs, t: &TranslatorArgs) -> Option<String> {
    if t.translator != "llm" {
        return None;
    }
    let man = models::manifest::all()
        .ok()?
        .into_iter()
        .find(|x| x.name == m.model)?;
    if man.can_translate_urdu() {
        return None;
    }
    Some(format!(
        "tarjuma: note: `{}` is not known to translate Urdu; its output is checked and flagged, but for usable translations pass --translator with one of: {}",
        man.name,
        urdu_translators().join(", ")
    ))
}

/// The validated `--translator` settings.
#[derive(Debug, Clone)]
pub struct TranslatorConfig {
    pub manifest: Box<Manifest>,
    pub model_dir: Option<PathBuf>,
    pub device: String,
    pub quantize: Option<crate::backend::seq2seq::weights::Quant>,
    pub beams: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub no_repeat_ngram: usize,
    pub max_length_ratio: f32,
    pub batch_tokens: usize,
    pub sentence_tokens: usize,
    pub cache: Cache,
}

impl TranslatorConfig {
    /// `None` when the instruction model translates (`--translator llm`).
    pub fn from_args(t: &TranslatorArgs, m: &ModelArgs) -> Result<Option<Self>> {
        if t.translator == "llm" {
            if t.model_dir.is_some() {
                return Err(config_error(
                    "--model-dir needs --translator NAME (a translation model)",
                ));
            }
            return Ok(None);
        }
        let man = manifest(&t.translator)?;
        if man.kind != ModelKind::Translator {
            // An instruction model that translates (TranslateGemma) runs as an LLM
            // translator: see `llm_translator`.
            if man.translates_urdu {
                return Ok(None);
            }
            return Err(config_error(format!(
                "`{}` is an instruction model not known to translate Urdu; use --model {} (or pick a translator: {})",
                man.name,
                man.name,
                urdu_translators().join(", ")
            )));
        }
        if let Some(d) = &t.model_dir {
            if !d.join("config.json").is_file() {
                return Err(config_error(format!(
                    "--model-dir {}: no config.json (expected a directory laid out like the Hub repository)",
                    d.display()
                )));
            }
        }
        if !(1..=32).contains(&t.beams) {
            return Err(config_error("--beams must be between 1 and 32"));
        }
        if !t.length_penalty.is_finite() {
            return Err(config_error("--length-penalty must be a number"));
        }
        if !(t.max_length_ratio > 0.0 && t.max_length_ratio <= 10.0) {
            return Err(config_error("--max-length-ratio must be in (0, 10]"));
        }
        if t.batch_tokens < 16 {
            return Err(config_error("--batch-tokens must be at least 16"));
        }
        if t.sentence_tokens < 8 {
            return Err(config_error("--sentence-tokens must be at least 8"));
        }
        let quantize =
            weights::parse_quant(&t.quantize).map_err(|e| config_error(e.to_string()))?;
        let early_stopping = match t.early_stopping.as_str() {
            "heuristic" | "false" => EarlyStopping::Heuristic,
            "done" | "true" => EarlyStopping::Done,
            "never" => EarlyStopping::Never,
            other => {
                return Err(config_error(format!(
                    "--early-stopping must be heuristic, done or never, not `{other}`"
                )))
            }
        };
        parse_device(&m.device).map_err(|e| config_error(e.to_string()))?;
        Ok(Some(Self {
            manifest: Box::new(man),
            model_dir: t.model_dir.clone(),
            device: m.device.clone(),
            quantize,
            beams: t.beams,
            length_penalty: t.length_penalty,
            early_stopping,
            no_repeat_ngram: t.no_repeat_ngram,
            max_length_ratio: t.max_length_ratio,
            batch_tokens: t.batch_tokens,
            sentence_tokens: t.sentence_tokens,
            cache: cache(&m.cache, m.quiet),
        }))
    }

    /// Fetches (unless --model-dir) and loads the translator. Failures are
    /// configuration errors.
    pub fn load(&self) -> Result<NmtTranslator> {
        let m = &self.manifest;
        let device = parse_device(&self.device).map_err(|e| config_error(e.to_string()))?;
        let (dir, sha256) = match &self.model_dir {
            Some(d) => {
                let files =
                    weights::find_weight_files(d).map_err(|e| config_error(format!("{e:#}")))?;
                let mut digests = Vec::new();
                for f in &files {
                    digests.push(
                        models::source::sha256_file(f)
                            .map_err(|e| config_error(format!("{e:#}")))?,
                    );
                }
                let sha = if digests.len() == 1 {
                    digests.remove(0)
                } else {
                    use sha2::Digest;
                    format!("{:x}", sha2::Sha256::digest(digests.join("\n").as_bytes()))
                };
                (d.clone(), sha)
            }
            None => {
                let files = self
                    .cache
                    .ensure(m)
                    .map_err(|e| config_error(format!("cannot get model `{}`: {e:#}", m.name)))?;
                let f = files.into_iter().next().expect("a manifest has files");
                let dir = f
                    .path
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."));
                (dir, f.sha256)
            }
        };
        let nmt = Nmt::load(&dir, &device, self.quantize, &Langs::default())
            .map_err(|e| config_error(format!("translator `{}`: {e:#}", m.name)))?;
        let cfg = &nmt.model.cfg;
        if cfg.arch.name() != m.architecture {
            return Err(config_error(format!(
                "{}: holds a {} model, but `{}` is {}",
                dir.display(),
                cfg.arch.name(),
                m.name,
                m.architecture
            )));
        }
        let gen = GenOptions {
            beams: self.beams,
            max_new: LengthLimit {
                ratio: self.max_length_ratio,
                extra: 10,
                cap: cfg.max_positions.saturating_sub(1),
            },
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
            no_repeat_ngram: self.no_repeat_ngram,
            ..GenOptions::for_model(cfg)
        };
        let quant = self
            .quantize
            .map(|q| format!("+{}", q.name()))
            .unwrap_or_default();
        Ok(NmtTranslator {
            nmt,
            name: format!("{}{quant}", m.name),
            sha256,
            gen,
            batch_tokens: self.batch_tokens,
            segment_tokens: self.sentence_tokens,
        })
    }
}
