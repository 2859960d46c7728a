//! Hyperparameters of a decoder-only GGUF model, read from its metadata the way
//! llama.cpp reads them (`src/llama-model.cpp`, `src/models/{llama,qwen2,gemma3}.cpp`),
//! so a file means the same thing here as there.

use anyhow::{anyhow, bail, Result};
use candle_core::quantized::gguf_file::{Content, Value};

/// Which family of layer wiring a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1–3, SmolLM: rotary pairs are adjacent (llama.cpp's "norm" rope, after the
    /// converter's Q/K permutation), no biases.
    Llama,
    /// Qwen2 / Qwen2.5: q/k/v biases, rotary halves ("neox" rope).
    Qwen2,
    /// Gemma 3: sandwich norms, QK-norm, scaled embeddings, GELU, sliding-window layers
    /// with their own rope base.
    Gemma3,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3",
        }
    }

    /// Rotary pairs are the two halves of a head (GPT-NeoX style), not adjacent values.
    pub fn rope_halves(self) -> bool {
        !matches!(self, Self::Llama)
    }
}

/// Rotary embedding of one kind of layer: `theta_i = pos * scale * base^(-2i/d) / f_i`
/// (ggml's `rope_ext`), with `f_i` the optional per-pair factors of `rope_freqs.weight`
/// (Llama 3.x scaling, precomputed by the converter).
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub base: f32,
    pub scale: f32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub context_length: usize,
    /// Global (full-attention) layers.
    pub rope: Rope,
    /// Sliding-window layers (Gemma 3): base 10000 unless `rope.freq_base_swa` says
    /// otherwise, never scaled.
    pub rope_swa: Rope,
    /// Tokens a sliding-window layer sees, itself included; 0 means no such layers.
    pub sliding_window: usize,
    /// `swa[l]`: layer `l` attends within the sliding window.
    pub swa: Vec<bool>,
    /// Multiplies queries before attention.
    pub attn_scale: f64,
    /// Multiplies token embeddings (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f64>,
    /// `tanh` soft cap of the output logits, when the file sets one.
    pub final_logit_softcap: Option<f64>,
}

fn get<'a>(c: &'a Content, key: &str) -> Option<&'a Value> {
    c.metadata.get(key)
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(*x as u64),
        Value::U16(x) => Some(*x as u64),
        Value::U32(x) => Some(*x as u64),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        other => as_u64(other).map(|x| x as f64),
    }
}

fn usize_key(c: &Content, key: &str) -> Result<Option<usize>> {
    match get(c, key) {
        None => Ok(None),
        Some(v) => as_u64(v)
            .map(|x| Some(x as usize))
            .ok_or_else(|| anyhow!("metadata `{key}` is not a single integer ({v:?})")),
    }
}

fn f64_key(c: &Content, key: &str) -> Result<Option<f64>> {
    match get(c, key) {
        None => Ok(None),
        Some(v) => as_f64(v)
            .map(Some)
            .ok_or_else(|| anyhow!("metadata `{key}` is not a number")),
    }
}

fn required(c: &Content, key: &str) -> Result<usize> {
    usize_key(c, key)?.ok_or_else(|| anyhow!("GGUF metadata has no `{key}`"))
}

impl Config {
    pub fn from_gguf(c: &Content, arch: Arch) -> Result<Self> {
        let a = arch.name();
        let k = |s: &str| format!("{a}.{s}");
        let n_layer = required(c, &k("block_count"))?;
        let n_embd = required(c, &k("embedding_length"))?;
        let n_ff = required(c, &k("feed_forward_length"))?;
        let n_head = required(c, &k("attention.head_count"))?;
        let n_head_kv = usize_key(c, &k("attention.head_count_kv"))?.unwrap_or(n_head);
        let head_dim = usize_key(c, &k("attention.key_length"))?.unwrap_or(n_embd / n_head);
        let v_dim = usize_key(c, &k("attention.value_length"))?.unwrap_or(head_dim);
        if v_dim != head_dim {
            bail!("value heads of {v_dim} differ from key heads of {head_dim}: not supported");
        }
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            bail!("{n_head} query heads cannot share {n_head_kv} key/value heads");
        }
        if let Some(rot) = usize_key(c, &k("rope.dimension_count"))? {
            if rot != head_dim {
                bail!("partial rotary embeddings ({rot} of {head_dim} dims) are not supported");
            }
        }
        let rms_eps = f64_key(c, &k("attention.layer_norm_rms_epsilon"))?.ok_or_else(|| {
            anyhow!("GGUF metadata has no `{a}.attention.layer_norm_rms_epsilon`")
        })?;
        let context_length = usize_key(c, &k("context_length"))?.unwrap_or(match arch {
            Arch::Llama => 4096,
            _ => 32768,
        });
        if let Some(Value::String(t)) = get(c, &k("rope.scaling.type")) {
            if !matches!(t.as_str(), "none" | "linear") {
                bail!("rope scaling `{t}` is not supported (linear and Llama 3 rope_freqs are)");
            }
        }
        // llama.cpp: the factor applies whatever the type says (the old key too).
        let factor = f64_key(c, &k("rope.scaling.factor"))?
            .or(f64_key(c, &k("rope.scale_linear"))?)
            .filter(|&f| f != 0.0);
        let rope = Rope {
            base: f64_key(c, &k("rope.freq_base"))?.unwrap_or(10000.0) as f32,
            scale: factor.map_or(1.0, |f| (1.0 / f) as f32),
        };
        let rope_swa = Rope {
            base: f64_key(c, &k("rope.freq_base_swa"))?.unwrap_or(10000.0) as f32,
            scale: 1.0,
        };
        let mut sliding_window = 0;
        let mut swa = vec![false; n_layer];
        let mut attn_scale = 1.0 / (head_dim as f64).sqrt();
        let mut embed_scale = None;
        let mut final_logit_softcap = None;
        if arch == Arch::Gemma3 {
            let window = usize_key(c, &k("attention.sliding_window"))?.unwrap_or(0);
            if window > 0 {
                sliding_window = window;
                match get(c, &k("attention.sliding_window_pattern")) {
                    Some(Value::Array(flags)) => {
                        if flags.len() < n_layer {
                            bail!(
                                "sliding_window_pattern has {} entries for {n_layer} layers",
                                flags.len()
                            );
                        }
                        for (l, f) in flags.iter().take(n_layer).enumerate() {
                            swa[l] = matches!(f, Value::Bool(true));
                        }
                    }
                    other => {
                        let p = match other {
                            Some(v) => as_u64(v).ok_or_else(|| {
                                anyhow!("metadata `{a}.attention.sliding_window_pattern` is not an integer")
                            })? as usize,
                            None => 6,
                        };
                        for (l, s) in swa.iter_mut().enumerate() {
                            *s = p == 0 || l % p < p - 1;
                        }
                    }
                }
            }
            // As llama.cpp (after gemma_pytorch): 27B scales by n_embd / n_head.
            attn_scale = if n_layer == 62 {
                1.0 / ((n_embd / n_head) as f64).sqrt()
            } else {
                1.0 / (head_dim as f64).sqrt()
            };
            embed_scale = Some((n_embd as f32).sqrt() as f64);
            final_logit_softcap = f64_key(c, &k("final_logit_softcapping"))?.filter(|&x| x != 0.0);
        }
        Ok(Self {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            rms_eps,
            context_length,
            rope,
            rope_swa,
            sliding_window,
            swa,
            attn_scale,
            embed_scale,
            final_logit_softcap,
        })
    }
}
