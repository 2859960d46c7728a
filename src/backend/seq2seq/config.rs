//! The configuration of an encoder-decoder translation model, read from the Hugging
//! Face `config.json` (and `generation_config.json`) of Marian, M2M100/NLLB and T5/MADLAD
//! checkpoints into one shape the shared implementation understands.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// MarianMT (opus-mt): post-LayerNorm, sinusoidal positions from 0, final logits bias.
    Marian,
    /// M2M100 / NLLB-200: pre-LayerNorm, sinusoidal positions offset by the padding id.
    M2M100,
    /// T5 / mT5 / MADLAD-400: RMS norm, relative position buckets, no biases.
    T5,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Marian => "marian",
            Arch::M2M100 => "m2m100",
            Arch::T5 => "t5",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Relu,
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// GELU with the tanh approximation (`gelu_new`).
    GeluTanh,
}

impl Act {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "relu" => Act::Relu,
            "swish" | "silu" => Act::Silu,
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            other => bail!("unsupported activation `{other}`"),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub vocab_size: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_heads: usize,
    pub decoder_heads: usize,
    /// Per-head width (T5's `d_kv`; `d_model / heads` for the others).
    pub head_dim: usize,
    pub encoder_ffn: usize,
    pub decoder_ffn: usize,
    pub act: Act,
    /// T5 v1.1 / MADLAD gated feed-forward (`wo(act(wi_0 x) * wi_1 x)`).
    pub gated_ffn: bool,
    pub scale_embedding: bool,
    /// Largest number of positions; sentences are split to stay under it.
    pub max_positions: usize,
    pub eps: f64,
    pub tie_word_embeddings: bool,
    pub relative_buckets: usize,
    pub relative_max_distance: usize,
    pub pad: u32,
    pub eos: u32,
    pub decoder_start: u32,
    /// Forced and banned tokens from generation_config.json / config.json.
    pub gen: GenDefaults,
}

/// Token rules from generation_config.json / config.json. Beam width, length penalty and
/// limits come from tarjuma's own flags, so runs do not change with a model's defaults.
#[derive(Debug, Clone, Default)]
pub struct GenDefaults {
    pub forced_eos: Option<u32>,
    pub forced_bos: Option<u32>,
    /// Single-token bad words (Marian bans its pad token).
    pub bad_ids: Vec<u32>,
}

fn get_usize(v: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .map(|x| x as usize)
}

fn need(v: &Value, keys: &[&str], file: &Path) -> Result<usize> {
    get_usize(v, keys).with_context(|| format!("{}: `{}` is missing", file.display(), keys[0]))
}

fn id(v: &Value, key: &str) -> Option<u32> {
    v.get(key).and_then(Value::as_u64).map(|x| x as u32)
}

impl Config {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let gen_path = dir.join("generation_config.json");
        let g: Value = match std::fs::read_to_string(&gen_path) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("{} is not valid JSON", gen_path.display()))?,
            Err(_) => Value::Null,
        };
        Self::from_json(&v, &g, &path)
    }

    pub fn from_json(v: &Value, g: &Value, path: &Path) -> Result<Self> {
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .with_context(|| format!("{}: `model_type` is missing", path.display()))?;
        let arch = match model_type {
            "marian" => Arch::Marian,
            "m2m_100" | "nllb" => Arch::M2M100,
            "t5" | "mt5" => Arch::T5,
            other => bail!(
                "{}: model_type `{other}` is not supported (marian, m2m_100, t5, mt5)",
                path.display()
            ),
        };
        let vocab_size = need(v, &["vocab_size"], path)?;
        let d_model = need(v, &["d_model"], path)?;
        // Generation settings: generation_config.json wins over config.json.
        let pick = |k: &str| g.get(k).filter(|x| !x.is_null()).or_else(|| v.get(k));
        let pick_id = |k: &str| pick(k).and_then(Value::as_u64).map(|x| x as u32);
        let bad_ids = pick("bad_words_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.as_array())
                    .filter(|w| w.len() == 1)
                    .filter_map(|w| w[0].as_u64().map(|x| x as u32))
                    .collect()
            })
            .unwrap_or_default();
        let gen = GenDefaults {
            forced_eos: pick_id("forced_eos_token_id"),
            forced_bos: pick_id("forced_bos_token_id"),
            bad_ids,
        };
        let cfg = match arch {
            Arch::Marian | Arch::M2M100 => {
                let enc_heads = need(v, &["encoder_attention_heads"], path)?;
                let act = Act::parse(
                    v.get("activation_function")
                        .and_then(Value::as_str)
                        .unwrap_or("gelu"),
                )?;
                if arch == Arch::Marian {
                    if v.get("normalize_before").and_then(Value::as_bool) == Some(true) {
                        bail!(
                            "{}: pre-norm Marian models are not supported",
                            path.display()
                        );
                    }
                    if let Some(dv) = get_usize(v, &["decoder_vocab_size"]) {
                        if dv != vocab_size
                            || v.get("share_encoder_decoder_embeddings")
                                .and_then(Value::as_bool)
                                == Some(false)
                        {
                            bail!(
                                "{}: Marian models with separate source and target vocabularies are not supported",
                                path.display()
                            );
                        }
                    }
                }
                Config {
                    arch,
                    vocab_size,
                    d_model,
                    encoder_layers: need(v, &["encoder_layers"], path)?,
                    decoder_layers: need(v, &["decoder_layers"], path)?,
                    encoder_heads: enc_heads,
                    decoder_heads: need(v, &["decoder_attention_heads"], path)?,
                    head_dim: d_model / enc_heads,
                    encoder_ffn: need(v, &["encoder_ffn_dim"], path)?,
                    decoder_ffn: need(v, &["decoder_ffn_dim"], path)?,
                    act,
                    gated_ffn: false,
                    scale_embedding: v
                        .get("scale_embedding")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    max_positions: need(v, &["max_position_embeddings"], path)?,
                    eps: 1e-5,
                    tie_word_embeddings: v
                        .get("tie_word_embeddings")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    relative_buckets: 0,
                    relative_max_distance: 0,
                    pad: id(v, "pad_token_id").unwrap_or(1),
                    eos: id(v, "eos_token_id").unwrap_or(2),
                    decoder_start: id(v, "decoder_start_token_id")
                        .or_else(|| id(g, "decoder_start_token_id"))
                        .unwrap_or(2),
                    gen,
                }
            }
            Arch::T5 => {
                let proj = v
                    .get("feed_forward_proj")
                    .and_then(Value::as_str)
                    .unwrap_or("relu");
                let (gated, act) = match proj.strip_prefix("gated-") {
                    Some(a) => (true, a),
                    None => (false, proj),
                };
                // HF maps T5's "gated-gelu" to the tanh approximation.
                let act = if act == "gelu" {
                    Act::GeluTanh
                } else {
                    Act::parse(act)?
                };
                let layers = need(v, &["num_layers"], path)?;
                let heads = need(v, &["num_heads"], path)?;
                let d_ff = need(v, &["d_ff"], path)?;
                Config {
                    arch,
                    vocab_size,
                    d_model,
                    encoder_layers: layers,
                    decoder_layers: get_usize(v, &["num_decoder_layers"]).unwrap_or(layers),
                    encoder_heads: heads,
                    decoder_heads: heads,
                    head_dim: get_usize(v, &["d_kv"]).unwrap_or(d_model / heads),
                    encoder_ffn: d_ff,
                    decoder_ffn: d_ff,
                    act,
                    gated_ffn: gated,
                    scale_embedding: false,
                    // T5 has no absolute limit; stay within what it was trained on.
                    max_positions: get_usize(v, &["n_positions", "max_position_embeddings"])
                        .unwrap_or(512),
                    eps: v
                        .get("layer_norm_epsilon")
                        .and_then(Value::as_f64)
                        .unwrap_or(1e-6),
                    tie_word_embeddings: v
                        .get("tie_word_embeddings")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    relative_buckets: get_usize(v, &["relative_attention_num_buckets"])
                        .unwrap_or(32),
                    relative_max_distance: get_usize(v, &["relative_attention_max_distance"])
                        .unwrap_or(128),
                    pad: id(v, "pad_token_id").unwrap_or(0),
                    eos: id(v, "eos_token_id").unwrap_or(1),
                    decoder_start: id(v, "decoder_start_token_id").unwrap_or(0),
                    gen,
                }
            }
        };
        if cfg.encoder_heads == 0 || cfg.head_dim == 0 {
            bail!("{}: attention heads must be non-zero", path.display());
        }
        Ok(cfg)
    }
}
