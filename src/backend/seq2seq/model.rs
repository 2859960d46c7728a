//! One encoder-decoder Transformer (Vaswani et al., 2017) covering MarianMT, M2M100 /
//! NLLB-200 and T5 / MADLAD-400, written for batched translation:
//!
//! - padding masks in encoder self-attention and in cross-attention, so a sentence gives
//!   the same result alone and inside a right-padded batch (candle's `marian.rs` has
//!   neither, see ARCHITECTURE.md);
//! - the encoder keeps no KV cache; the decoder keeps a self-attention cache per row and
//!   computes cross-attention K/V once per input;
//! - rows can be reordered (beam search) or dropped (finished sentences) between steps.
//!
//! Differences between the families follow the Hugging Face reference implementations
//! (`modeling_marian.py`, `modeling_m2m_100.py`, `modeling_t5.py`, transformers 5.24):
//! Marian is post-LN with sinusoidal positions from 0 (sin half, cos half) and a
//! `final_logits_bias`; M2M100 is pre-LN with fairseq sinusoidal positions offset by
//! `pad + 1` and scaled embeddings; T5 uses RMS norm, no attention scaling, relative
//! position buckets (Raffel et al., 2020) shared across layers, and scales the tied LM
//! head input by `d_model^-0.5`.

use anyhow::{Context, Result};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Tensor, D};

use super::attention::{Bias, Keys, KvCache, Slots};
use super::config::{Act, Arch, Config};
use super::weights::{Linear, Matrix, Weights};
use crate::backend::sgemm::PackedF32;
use crate::backend::with_cpu_f32;

/// An LM head stored split, with its bias (see [`Model::split_head`]).
pub type SplitHead<'a> = (&'a PackedF32, Option<Vec<f32>>);

enum Norm {
    /// The weights also as vectors, for [`layer_norm`] on the CPU.
    Layer {
        w: Tensor,
        b: Tensor,
        eps: f32,
        wv: Vec<f32>,
        bv: Vec<f32>,
    },
    Rms {
        w: Tensor,
        eps: f32,
    },
}

impl Norm {
    fn load(w: &Weights, prefix: &str, cfg: &Config) -> Result<Self> {
        let eps = cfg.eps as f32;
        Ok(if cfg.arch == Arch::T5 {
            Norm::Rms {
                w: w.tensor(&format!("{prefix}.weight"))?,
                eps,
            }
        } else {
            let wt = w.tensor(&format!("{prefix}.weight"))?;
            let bt = w.tensor(&format!("{prefix}.bias"))?;
            let vec = |t: &Tensor| -> Result<Vec<f32>> {
                Ok(t.to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_device(&Device::Cpu)?
                    .to_vec1()?)
            };
            Norm::Layer {
                wv: vec(&wt)?,
                bv: vec(&bt)?,
                w: wt,
                b: bt,
                eps,
            }
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Norm::Layer { wv, bv, eps, .. } if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let mut y = with_cpu_f32(x, |v| v.to_vec())?;
                layer_norm(&mut y, wv, bv, *eps);
                Tensor::from_vec(y, x.dims(), &Device::Cpu)
            }
            Norm::Layer { w, b, eps, .. } => candle_nn::ops::layer_norm(x, w, b, *eps),
            Norm::Rms { w, eps } => candle_nn::ops::rms_norm(x, w, *eps),
        }
    }
}

/// Rows `idx` of `data`, which holds `rows` rows of equal width.
fn gather_rows(data: &[f32], rows: usize, idx: &[u32]) -> Vec<f32> {
    let w = data.len() / rows.max(1);
    idx.iter()
        .flat_map(|&i| &data[i as usize * w..(i as usize + 1) * w])
        .copied()
        .collect()
}

/// Layer normalisation in place over rows of `w.len()` values: mean, then the variance
/// about it (two passes, as torch), `(x − mean) / sqrt(var + eps) · w + b`. A decoding
/// step's few rows are done inline: candle's op handed each call to rayon's threads,
/// which cost more than the arithmetic.
fn layer_norm(xs: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = w.len();
    assert!(
        d > 0 && b.len() == d && xs.len().is_multiple_of(d),
        "layer norm shapes"
    );
    let rows = xs.len() / d;
    let p = crate::backend::qmm::SendPtr::new(xs.as_mut_ptr());
    crate::backend::qmm::parallel(rows, xs.len() >= 1 << 16, |range| {
        for r in range {
            // SAFETY: row r belongs to this task alone; r < rows.
            let x = unsafe { std::slice::from_raw_parts_mut(p.get().add(r * d), d) };
            let mean = x.iter().sum::<f32>() / d as f32;
            let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, &wi), &bi) in x.iter_mut().zip(w).zip(b) {
                *v = (*v - mean) * inv * wi + bi;
            }
        }
    });
}

/// A residual sublayer: `x + f(norm(x))` (pre-norm: M2M100, T5) or `norm(x + f(x))`
/// (post-norm: Marian).
fn residual(
    x: Tensor,
    norm: &Norm,
    pre: bool,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    if pre {
        let y = f(&norm.forward(&x)?)?;
        x + y
    } else {
        let y = f(&x)?;
        norm.forward(&(x + y)?)
    }
}

fn activate(act: Act, x: &Tensor) -> candle_core::Result<Tensor> {
    match act {
        Act::Relu => x.relu(),
        Act::Silu => candle_nn::ops::silu(x),
        Act::Gelu => x.gelu_erf(),
        Act::GeluTanh => x.gelu(),
    }
}

enum Ffn {
    Plain {
        up: Linear,
        down: Linear,
        act: Act,
    },
    Gated {
        gate: Linear,
        up: Linear,
        down: Linear,
        act: Act,
    },
}

impl Ffn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            // On the CPU, SiLU runs in place on the product, 8 lanes at a time.
            Ffn::Plain {
                up,
                down,
                act: Act::Silu,
            } if x.device().is_cpu() => {
                let mut h = up.forward_vec(x)?;
                crate::backend::vmath::silu(&mut h);
                let mut dims = x.dims().to_vec();
                let rows = x.elem_count() / x.dim(D::Minus1)?.max(1);
                *dims.last_mut().expect("x has a last dimension") = h.len() / rows.max(1);
                down.forward(&Tensor::from_vec(h, dims, &Device::Cpu)?)
            }
            Ffn::Plain { up, down, act } => down.forward(&activate(*act, &up.forward(x)?)?),
            Ffn::Gated {
                gate,
                up,
                down,
                act,
            } => {
                let h = (activate(*act, &gate.forward(x)?)? * up.forward(x)?)?;
                down.forward(&h)
            }
        }
    }
}

/// Multi-head attention with Q, K and V projected by one fused matmul where possible.
struct Attention {
    /// Q, K, V (self-attention) or Q alone (cross-attention) in one matrix.
    q_or_qkv: Linear,
    /// K and V of the encoder output (cross-attention only).
    kv: Option<Linear>,
    out: Linear,
    heads: usize,
    head_dim: usize,
    /// Query scaling (1/sqrt(head_dim)); T5 does not scale.
    scale: Option<f64>,
}

/// Concatenates the rows of several [out, in] projections (and their biases).
fn fused(w: &Weights, prefixes: &[String], bias: bool) -> Result<Linear> {
    let mut ws = Vec::new();
    let mut bs = Vec::new();
    for p in prefixes {
        ws.push(w.tensor(&format!("{p}.weight"))?);
        if bias {
            bs.push(w.tensor(&format!("{p}.bias"))?);
        }
    }
    let m = w.dense_or_quantized(Tensor::cat(&ws, 0)?)?;
    let b = if bias {
        Some(Tensor::cat(&bs, 0)?)
    } else {
        None
    };
    Ok(Linear { w: m, b })
}

impl Attention {
    fn load(
        w: &Weights,
        cfg: &Config,
        names: &AttnNames,
        cross: bool,
        heads: usize,
    ) -> Result<Self> {
        let bias = cfg.arch != Arch::T5;
        let (q_or_qkv, kv) = if cross {
            (
                w.linear(&names.q, bias)?,
                Some(fused(w, &[names.k.clone(), names.v.clone()], bias)?),
            )
        } else {
            (
                fused(
                    w,
                    &[names.q.clone(), names.k.clone(), names.v.clone()],
                    bias,
                )?,
                None,
            )
        };
        Ok(Self {
            q_or_qkv,
            kv,
            out: w.linear(&names.o, bias)?,
            heads,
            head_dim: cfg.head_dim,
            scale: (cfg.arch != Arch::T5).then(|| (cfg.head_dim as f64).powf(-0.5)),
        })
    }

    /// [b, t, heads*dh] → [b, heads, t, dh]
    fn split(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn inner(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Self-attention projections: (q, k, v) split into heads.
    fn qkv(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let y = self.q_or_qkv.forward(x)?;
        let n = self.inner();
        let q = self.split(&y.narrow(D::Minus1, 0, n)?)?;
        let k = self.split(&y.narrow(D::Minus1, n, n)?)?;
        let v = self.split(&y.narrow(D::Minus1, 2 * n, n)?)?;
        Ok((q, k, v))
    }

    /// Cross-attention K and V of the encoder output.
    fn cross_kv(&self, enc: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let kv = self
            .kv
            .as_ref()
            .expect("cross-attention has kv")
            .forward(enc)?;
        let n = self.inner();
        Ok((
            self.split(&kv.narrow(D::Minus1, 0, n)?)?,
            self.split(&kv.narrow(D::Minus1, n, n)?)?,
        ))
    }

    /// softmax(q kᵀ · scale + bias) v, merged back to [b, t, heads*dh] and projected.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let q = match self.scale {
            Some(s) => (q * s)?,
            None => q.clone(),
        };
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(b) = bias {
            scores = scores.broadcast_add(b)?;
        }
        let p = candle_nn::ops::softmax_last_dim(&scores)?;
        let o = p.matmul(v)?;
        let (b, _, t, _) = o.dims4()?;
        let o = o.transpose(1, 2)?.reshape((b, t, self.inner()))?;
        self.out.forward(&o)
    }
}

struct AttnNames {
    q: String,
    k: String,
    v: String,
    o: String,
}

impl AttnNames {
    fn bart(prefix: &str) -> Self {
        Self {
            q: format!("{prefix}.q_proj"),
            k: format!("{prefix}.k_proj"),
            v: format!("{prefix}.v_proj"),
            o: format!("{prefix}.out_proj"),
        }
    }
    fn t5(prefix: &str) -> Self {
        Self {
            q: format!("{prefix}.q"),
            k: format!("{prefix}.k"),
            v: format!("{prefix}.v"),
            o: format!("{prefix}.o"),
        }
    }
}

/// One encoder layer, or a decoder layer (with cross-attention).
struct Layer {
    attn: Attention,
    attn_norm: Norm,
    cross: Option<(Attention, Norm)>,
    ffn: Ffn,
    ffn_norm: Norm,
}

impl Layer {
    /// Layer `i` of the stack at `prefix`, under the family's tensor names.
    fn load(w: &Weights, cfg: &Config, prefix: &str, i: usize, decoder: bool) -> Result<Self> {
        let heads = if decoder {
            cfg.decoder_heads
        } else {
            cfg.encoder_heads
        };
        let attn = |names: &AttnNames, cross| Attention::load(w, cfg, names, cross, heads);
        let norm = |name: String| Norm::load(w, &name, cfg);
        if cfg.arch == Arch::T5 {
            // layer.0 self-attention, layer.1 cross-attention (decoder), then the FFN.
            let p = format!("{prefix}.block.{i}.layer");
            let f = if decoder { 2 } else { 1 };
            let cross = if decoder {
                let names = AttnNames::t5(&format!("{p}.1.EncDecAttention"));
                Some((attn(&names, true)?, norm(format!("{p}.1.layer_norm"))?))
            } else {
                None
            };
            Ok(Self {
                attn: attn(&AttnNames::t5(&format!("{p}.0.SelfAttention")), false)?,
                attn_norm: norm(format!("{p}.0.layer_norm"))?,
                cross,
                ffn: load_ffn(w, cfg, &format!("{p}.{f}.DenseReluDense"))?,
                ffn_norm: norm(format!("{p}.{f}.layer_norm"))?,
            })
        } else {
            let p = format!("{prefix}.layers.{i}");
            let cross = if decoder {
                let names = AttnNames::bart(&format!("{p}.encoder_attn"));
                Some((
                    attn(&names, true)?,
                    norm(format!("{p}.encoder_attn_layer_norm"))?,
                ))
            } else {
                None
            };
            Ok(Self {
                attn: attn(&AttnNames::bart(&format!("{p}.self_attn")), false)?,
                attn_norm: norm(format!("{p}.self_attn_layer_norm"))?,
                cross,
                ffn: load_ffn(w, cfg, &p)?,
                ffn_norm: norm(format!("{p}.final_layer_norm"))?,
            })
        }
    }
}

fn load_ffn(w: &Weights, cfg: &Config, prefix: &str) -> Result<Ffn> {
    Ok(match cfg.arch {
        Arch::T5 if cfg.gated_ffn => Ffn::Gated {
            gate: w.linear(&format!("{prefix}.wi_0"), false)?,
            up: w.linear(&format!("{prefix}.wi_1"), false)?,
            down: w.linear(&format!("{prefix}.wo"), false)?,
            act: cfg.act,
        },
        Arch::T5 => Ffn::Plain {
            up: w.linear(&format!("{prefix}.wi"), false)?,
            down: w.linear(&format!("{prefix}.wo"), false)?,
            act: cfg.act,
        },
        _ => Ffn::Plain {
            up: w.linear(&format!("{prefix}.fc1"), true)?,
            down: w.linear(&format!("{prefix}.fc2"), true)?,
            act: cfg.act,
        },
    })
}

/// The loaded model. Stateless between calls: all per-input state is in
/// [`EncoderOut`] and [`DecoderState`].
pub struct Model {
    pub cfg: Config,
    pub device: Device,
    embed: QMatMul,
    dec_embed: QMatMul,
    embed_scale: f64,
    /// Sinusoidal table (Marian, M2M100).
    positions: Option<Tensor>,
    enc: Vec<Layer>,
    dec: Vec<Layer>,
    enc_norm: Option<Norm>,
    dec_norm: Option<Norm>,
    /// T5 relative attention bias tables [buckets, heads].
    enc_rel: Option<Tensor>,
    dec_rel: Option<Tensor>,
    /// The output projection, with Marian's `final_logits_bias` as its bias.
    lm_head: Linear,
    lm_scale: Option<f64>,
}

/// Encoder output for a batch, right-padded.
pub struct EncoderOut {
    /// [b, s, d]
    pub hidden: Tensor,
    /// Additive key mask [b, 1, 1, s]: 0 for tokens, a very negative number for padding.
    pub mask: Tensor,
    pub lens: Vec<usize>,
}

/// Per-row decoder state: self-attention caches and cross-attention K/V.
pub struct DecoderState {
    /// Self-attention keys and values through candle (GPUs).
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    /// The same in our own caches (CPU: [`attention`]).
    cpu_kv: Vec<KvCache>,
    /// Cross-attention K/V and padding mask: one row per input on the CPU (where
    /// `inputs` maps each row to its input, so beams share them), one per row on GPUs.
    cross_kv: Vec<(Tensor, Tensor)>,
    cross_mask: Tensor,
    inputs: Vec<u32>,
    /// The padding mask of each row ([rows, source length]), for the CPU layers.
    row_mask: Vec<f32>,
    /// Tokens fed so far (same for every row).
    pub step: usize,
    pub rows: usize,
}

/// Marian's table: column j < d/2 is sin(pos / 10000^(2j/d)), column d/2 + j the cosine.
fn marian_positions(n: usize, d: usize) -> Vec<f32> {
    let half = d.div_ceil(2);
    let mut out = vec![0f32; n * d];
    for pos in 0..n {
        for j in 0..d {
            let i = j / 2;
            let angle = pos as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
            if j % 2 == 0 {
                out[pos * d + i] = angle.sin() as f32;
            } else {
                out[pos * d + half + i] = angle.cos() as f32;
            }
        }
    }
    out
}

/// fairseq's table (M2M100): sin of the first half of frequencies, then cos; the row of
/// the padding id is zero.
fn fairseq_positions(n: usize, d: usize, pad: usize) -> Vec<f32> {
    let half = d / 2;
    let step = (10000f32).ln() / (half as f32 - 1.0);
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut out = vec![0f32; n * d];
    for pos in 0..n {
        if pos == pad {
            continue;
        }
        for (i, f) in freqs.iter().enumerate() {
            let a = pos as f32 * f;
            out[pos * d + i] = a.sin();
            out[pos * d + half + i] = a.cos();
        }
    }
    out
}

/// T5's relative position bucket (`_relative_position_bucket` in modeling_t5.py).
pub fn t5_bucket(rel: i64, bidirectional: bool, buckets: usize, max_distance: usize) -> usize {
    let mut nb = buckets as i64;
    let mut bucket = 0i64;
    let n = if bidirectional {
        nb /= 2;
        if rel > 0 {
            bucket += nb;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = nb / 2;
    if n < max_exact {
        bucket += n;
    } else {
        let large = max_exact as f32
            + ((n as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln()
                * (nb - max_exact) as f32);
        bucket += (large as i64).min(nb - 1);
    }
    bucket as usize
}

impl Model {
    pub fn load(w: &Weights, cfg: Config) -> Result<Self> {
        let device = w.device.clone();
        let (embed_name, dec_embed_name) = match cfg.arch {
            Arch::T5 => (
                w.first_of(&["shared.weight", "encoder.embed_tokens.weight"]),
                w.first_of(&["decoder.embed_tokens.weight", "shared.weight"]),
            ),
            _ => (
                w.first_of(&["model.shared.weight", "model.encoder.embed_tokens.weight"]),
                w.first_of(&["model.decoder.embed_tokens.weight", "model.shared.weight"]),
            ),
        };
        let embed_name = embed_name.context("the token embedding (shared.weight) is missing")?;
        let dec_embed_name = dec_embed_name.unwrap_or(embed_name);
        let embed_t = w.tensor(embed_name)?;
        let embed = QMatMul::Tensor(embed_t.clone());
        let dec_embed = if dec_embed_name == embed_name {
            embed.clone()
        } else {
            QMatMul::Tensor(w.tensor(dec_embed_name)?)
        };
        let (enc_p, dec_p) = match cfg.arch {
            Arch::T5 => ("encoder", "decoder"),
            _ => ("model.encoder", "model.decoder"),
        };
        let enc = (0..cfg.encoder_layers)
            .map(|i| Layer::load(w, &cfg, enc_p, i, false))
            .collect::<Result<Vec<_>>>()?;
        let dec = (0..cfg.decoder_layers)
            .map(|i| Layer::load(w, &cfg, dec_p, i, true))
            .collect::<Result<Vec<_>>>()?;
        let (enc_norm, dec_norm) = match cfg.arch {
            Arch::Marian => (None, None),
            Arch::M2M100 => (
                Some(Norm::load(w, &format!("{enc_p}.layer_norm"), &cfg)?),
                Some(Norm::load(w, &format!("{dec_p}.layer_norm"), &cfg)?),
            ),
            Arch::T5 => (
                Some(Norm::load(w, &format!("{enc_p}.final_layer_norm"), &cfg)?),
                Some(Norm::load(w, &format!("{dec_p}.final_layer_norm"), &cfg)?),
            ),
        };
        let (enc_rel, dec_rel) = if cfg.arch == Arch::T5 {
            let name = "block.0.layer.0.SelfAttention.relative_attention_bias.weight";
            (
                Some(w.tensor(&format!("{enc_p}.{name}"))?),
                Some(w.tensor(&format!("{dec_p}.{name}"))?),
            )
        } else {
            (None, None)
        };
        let positions = match cfg.arch {
            Arch::Marian => Some(Tensor::from_vec(
                marian_positions(cfg.max_positions, cfg.d_model),
                (cfg.max_positions, cfg.d_model),
                &device,
            )?),
            Arch::M2M100 => {
                let n = cfg.max_positions + cfg.pad as usize + 1;
                Some(Tensor::from_vec(
                    fairseq_positions(n, cfg.d_model, cfg.pad as usize),
                    (n, cfg.d_model),
                    &device,
                )?)
            }
            Arch::T5 => None,
        };
        let head = if cfg.tie_word_embeddings {
            w.head(embed_t)?
        } else {
            let name = w
                .first_of(&["lm_head.weight"])
                .context("lm_head.weight is missing (the model does not tie its embeddings)")?;
            w.head_matrix(name)?
        };
        let lm_head = Linear {
            w: head,
            b: if w.has("final_logits_bias") {
                Some(w.tensor("final_logits_bias")?.flatten_all()?)
            } else {
                None
            },
        };
        let embed_scale = if cfg.scale_embedding {
            (cfg.d_model as f64).sqrt()
        } else {
            1.0
        };
        let lm_scale = (cfg.arch == Arch::T5 && cfg.tie_word_embeddings)
            .then(|| (cfg.d_model as f64).powf(-0.5));
        Ok(Self {
            cfg,
            device,
            embed,
            dec_embed,
            embed_scale,
            positions,
            enc,
            dec,
            enc_norm,
            dec_norm,
            enc_rel,
            dec_rel,
            lm_head,
            lm_scale,
        })
    }

    fn embed(&self, table: &QMatMul, ids: &Tensor) -> candle_core::Result<Tensor> {
        let x = table.embedding(ids)?;
        if self.embed_scale != 1.0 {
            x * self.embed_scale
        } else {
            Ok(x)
        }
    }

    /// Encodes a batch of token-id sequences (right-padded internally).
    pub fn encode(&self, batch: &[Vec<u32>]) -> Result<EncoderOut> {
        let b = batch.len();
        let s = batch.iter().map(Vec::len).max().unwrap_or(0).max(1);
        anyhow::ensure!(
            s <= self.cfg.max_positions,
            "input of {s} tokens is longer than the model's {} positions",
            self.cfg.max_positions
        );
        let pad = self.cfg.pad;
        let mut ids = Vec::with_capacity(b * s);
        let mut mask = Vec::with_capacity(b * s);
        for seq in batch {
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(pad, s - seq.len()));
            mask.extend(std::iter::repeat_n(0f32, seq.len()));
            mask.extend(std::iter::repeat_n(f32::MIN, s - seq.len()));
        }
        let ids_t = Tensor::from_vec(ids.clone(), (b, s), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, 1, 1, s), &self.device)?;
        let mut x = self.embed(&self.embed, &ids_t)?;
        match self.cfg.arch {
            Arch::Marian => {
                let p = self
                    .positions
                    .as_ref()
                    .expect("marian table")
                    .narrow(0, 0, s)?;
                x = x.broadcast_add(&p)?;
            }
            Arch::M2M100 => {
                // fairseq: tokens count from pad + 1; padding takes the (zero) pad row.
                let mut pos = Vec::with_capacity(b * s);
                for row in ids.chunks(s) {
                    let mut n = 0u32;
                    for &t in row {
                        if t == pad {
                            pos.push(pad);
                        } else {
                            n += 1;
                            pos.push(pad + n);
                        }
                    }
                }
                let pos = Tensor::from_vec(pos, (b * s,), &self.device)?;
                let p = self
                    .positions
                    .as_ref()
                    .expect("m2m100 table")
                    .index_select(&pos, 0)?
                    .reshape((b, s, self.cfg.d_model))?;
                x = (x + p)?;
            }
            Arch::T5 => {}
        }
        // T5: one relative position bias for all layers, with the padding mask folded in.
        let bias = match &self.enc_rel {
            Some(table) => {
                let mut idx = Vec::with_capacity(s * s);
                for q in 0..s {
                    for k in 0..s {
                        idx.push(t5_bucket(
                            k as i64 - q as i64,
                            true,
                            self.cfg.relative_buckets,
                            self.cfg.relative_max_distance,
                        ) as u32);
                    }
                }
                let idx = Tensor::from_vec(idx, (s * s,), &self.device)?;
                let heads = self.cfg.encoder_heads;
                let pb = table
                    .index_select(&idx, 0)?
                    .reshape((s, s, heads))?
                    .permute((2, 0, 1))?
                    .unsqueeze(0)?;
                pb.broadcast_add(&mask)?.contiguous()?
            }
            None => mask.clone(),
        };
        let pre = self.cfg.arch != Arch::Marian;
        for l in &self.enc {
            x = residual(x, &l.attn_norm, pre, |h| {
                let (q, k, v) = l.attn.qkv(h)?;
                l.attn.attend(&q, &k, &v, Some(&bias))
            })?;
            x = residual(x, &l.ffn_norm, pre, |h| l.ffn.forward(h))?;
        }
        if let Some(n) = &self.enc_norm {
            x = n.forward(&x)?;
        }
        Ok(EncoderOut {
            hidden: x,
            mask,
            lens: batch.iter().map(Vec::len).collect(),
        })
    }

    /// Starts decoding: cross-attention K/V for each input, each repeated `copies`
    /// times (beams) in consecutive rows.
    pub fn start(&self, enc: &EncoderOut, copies: usize) -> Result<DecoderState> {
        let b = enc.lens.len();
        let cpu = self.device.is_cpu();
        let (hidden, mask) = if copies > 1 && !cpu {
            let idx: Vec<u32> = (0..b as u32)
                .flat_map(|i| std::iter::repeat_n(i, copies))
                .collect();
            let idx = Tensor::from_vec(idx, (b * copies,), &self.device)?;
            (
                enc.hidden.index_select(&idx, 0)?,
                enc.mask.index_select(&idx, 0)?,
            )
        } else {
            (enc.hidden.clone(), enc.mask.clone())
        };
        let mut cross_kv = Vec::with_capacity(self.dec.len());
        for l in &self.dec {
            let (cross, _) = l.cross.as_ref().expect("decoder layers cross-attend");
            cross_kv.push(cross.cross_kv(&hidden)?);
        }
        let (cpu_kv, inputs, row_mask) = if cpu {
            let (heads, dh) = (self.cfg.decoder_heads, self.cfg.head_dim);
            let inputs: Vec<u32> = (0..(b * copies) as u32)
                .map(|r| r / copies as u32)
                .collect();
            let row_mask = gather_rows(&mask.flatten_all()?.to_vec1()?, b, &inputs);
            let kv = (0..self.dec.len())
                .map(|_| KvCache::new(b * copies, heads, dh))
                .collect();
            (kv, inputs, row_mask)
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        Ok(DecoderState {
            self_kv: vec![None; self.dec.len()],
            cpu_kv,
            cross_kv,
            cross_mask: mask,
            inputs,
            row_mask,
            step: 0,
            rows: b * copies,
        })
    }

    /// Feeds one token per row; returns the logits [rows, vocab] (f32).
    pub fn step(&self, st: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let x = self.step_hidden(st, tokens)?;
        self.logits(&x)
    }

    /// As [`Model::step`], the logits as one row-major vector [rows × vocab].
    pub fn step_rows(&self, st: &mut DecoderState, tokens: &[u32]) -> Result<Vec<f32>> {
        let x = self.step_hidden(st, tokens)?;
        Ok(self.lm_head.forward_vec(&x)?)
    }

    /// Feeds one token per row; returns the final hidden states [rows, d_model], as the
    /// LM head takes them.
    pub fn step_hidden(&self, st: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let n = st.rows;
        anyhow::ensure!(tokens.len() == n, "{} tokens for {n} rows", tokens.len());
        let pos = st.step;
        let ids = Tensor::from_vec(tokens.to_vec(), (n, 1), &self.device)?;
        let mut x = self.embed(&self.dec_embed, &ids)?;
        match self.cfg.arch {
            Arch::Marian => {
                anyhow::ensure!(
                    pos < self.cfg.max_positions,
                    "output reached the position limit"
                );
                let p = self.positions.as_ref().expect("table").narrow(0, pos, 1)?;
                x = x.broadcast_add(&p)?;
            }
            Arch::M2M100 => {
                let pad = self.cfg.pad;
                let idx: Vec<u32> = tokens
                    .iter()
                    .map(|&t| if t == pad { pad } else { pad + 1 + pos as u32 })
                    .collect();
                anyhow::ensure!(
                    pos < self.cfg.max_positions,
                    "output reached the position limit"
                );
                let idx = Tensor::from_vec(idx, (n,), &self.device)?;
                let p = self
                    .positions
                    .as_ref()
                    .expect("table")
                    .index_select(&idx, 0)?
                    .unsqueeze(1)?;
                x = (x + p)?;
            }
            Arch::T5 => {}
        }
        let self_bias = match &self.dec_rel {
            Some(table) => {
                let idx: Vec<u32> = (0..=pos)
                    .map(|k| {
                        t5_bucket(
                            k as i64 - pos as i64,
                            false,
                            self.cfg.relative_buckets,
                            self.cfg.relative_max_distance,
                        ) as u32
                    })
                    .collect();
                let idx = Tensor::from_vec(idx, (pos + 1,), &self.device)?;
                Some(table.index_select(&idx, 0)?.t()?.reshape((
                    1,
                    self.cfg.decoder_heads,
                    1,
                    pos + 1,
                ))?)
            }
            None => None,
        };
        let pre = self.cfg.arch != Arch::Marian;
        if !st.cpu_kv.is_empty() {
            x = self.cpu_layers(st, x, self_bias.as_ref(), pre)?;
        } else {
            for (i, l) in self.dec.iter().enumerate() {
                let cache = &mut st.self_kv[i];
                x = residual(x, &l.attn_norm, pre, |h| {
                    let (q, k, v) = l.attn.qkv(h)?;
                    let (k, v) = match cache.take() {
                        Some((pk, pv)) => {
                            (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?)
                        }
                        None => (k, v),
                    };
                    let a = l.attn.attend(&q, &k, &v, self_bias.as_ref())?;
                    *cache = Some((k, v));
                    Ok(a)
                })?;
                let (cross, cross_norm) = l.cross.as_ref().expect("decoder layers cross-attend");
                let (ck, cv) = &st.cross_kv[i];
                x = residual(x, cross_norm, pre, |h| {
                    let q = cross.split(&cross.q_or_qkv.forward(h)?)?;
                    cross.attend(&q, ck, cv, Some(&st.cross_mask))
                })?;
                x = residual(x, &l.ffn_norm, pre, |h| l.ffn.forward(h))?;
            }
        }
        if let Some(nm) = &self.dec_norm {
            x = nm.forward(&x)?;
        }
        let mut x = x.reshape((n, self.cfg.d_model))?;
        if let Some(s) = self.lm_scale {
            x = (x * s)?;
        }
        st.step += 1;
        Ok(x)
    }

    /// The logits [rows, vocab] (f32) of hidden states from [`Model::step_hidden`].
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(x)?.to_dtype(DType::F32)?)
    }

    /// The LM head and its bias when its f32 values are stored split, so that one
    /// row's logits can be bounded from half the bytes (greedy decoding, see
    /// `generate::seq2seq`).
    pub fn split_head(&self) -> Result<Option<SplitHead<'_>>> {
        match &self.lm_head.w {
            Matrix::Packed(m) if m.is_split() => {
                let bias = match &self.lm_head.b {
                    Some(b) => Some(b.to_dtype(DType::F32)?.to_vec1()?),
                    None => None,
                };
                Ok(Some((m, bias)))
            }
            _ => Ok(None),
        }
    }

    /// The decoder layers of one step on the CPU, attention over our own caches.
    fn cpu_layers(
        &self,
        st: &mut DecoderState,
        mut x: Tensor,
        self_bias: Option<&Tensor>,
        pre: bool,
    ) -> candle_core::Result<Tensor> {
        let n = st.rows;
        let (heads, dh) = (self.cfg.decoder_heads, self.cfg.head_dim);
        let inner = heads * dh;
        // T5's position bias [1, heads, 1, pos + 1]; the padding mask [rows, 1, 1, s].
        let pos_bias: Option<Vec<f32>> = self_bias
            .map(|b| b.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        let src = st.row_mask.len() / n.max(1);
        for (i, l) in self.dec.iter().enumerate() {
            let cache = &mut st.cpu_kv[i];
            x = residual(x, &l.attn_norm, pre, |h| {
                let y = l.attn.q_or_qkv.forward(h)?;
                let o = with_cpu_f32(&y, |qkv| {
                    cache.append(qkv);
                    let bias = match &pos_bias {
                        Some(b) => Bias {
                            values: b,
                            row_stride: 0,
                            head_stride: cache.len(),
                        },
                        None => Bias::NONE,
                    };
                    cache.attend(qkv, l.attn.scale.map(|s| s as f32), bias)
                })?;
                l.attn
                    .out
                    .forward(&Tensor::from_vec(o, (n, 1, inner), &Device::Cpu)?)
            })?;
            let (cross, cross_norm) = l.cross.as_ref().expect("decoder layers cross-attend");
            let (ck, cv) = &st.cross_kv[i];
            x = residual(x, cross_norm, pre, |h| {
                let q = cross.q_or_qkv.forward(h)?;
                let o = with_cpu_f32(&q, |q| {
                    with_cpu_f32(ck, |k| {
                        with_cpu_f32(cv, |v| {
                            let kv = Keys {
                                k,
                                v,
                                cap: src,
                                len: src,
                                slots: Slots::Rows(&st.inputs),
                            };
                            let bias = Bias {
                                values: &st.row_mask,
                                row_stride: src,
                                head_stride: 0,
                            };
                            let scale = cross.scale.map(|s| s as f32);
                            super::attention::attend(q, inner, n, heads, dh, kv, scale, bias)
                        })
                    })
                })???;
                cross
                    .out
                    .forward(&Tensor::from_vec(o, (n, 1, inner), &Device::Cpu)?)
            })?;
            x = residual(x, &l.ffn_norm, pre, |h| l.ffn.forward(h))?;
        }
        Ok(x)
    }

    /// Keeps rows `idx` (in that order) of the decoder state: beam reordering, or
    /// dropping finished inputs. `cross` says whether rows move between inputs (then the
    /// cross-attention K/V move too).
    pub fn select(&self, st: &mut DecoderState, idx: &[u32], cross: bool) -> Result<()> {
        let t = Tensor::from_vec(idx.to_vec(), (idx.len(),), &self.device)?;
        for kv in st.self_kv.iter_mut().flatten() {
            *kv = (kv.0.index_select(&t, 0)?, kv.1.index_select(&t, 0)?);
        }
        for kv in st.cpu_kv.iter_mut() {
            kv.select(idx);
        }
        if !st.cpu_kv.is_empty() {
            // The rows' inputs and masks follow; the inputs' K/V stay where they are.
            st.row_mask = gather_rows(&st.row_mask, st.rows, idx);
            st.inputs = idx.iter().map(|&i| st.inputs[i as usize]).collect();
        } else if cross {
            for kv in st.cross_kv.iter_mut() {
                *kv = (kv.0.index_select(&t, 0)?, kv.1.index_select(&t, 0)?);
            }
            st.cross_mask = st.cross_mask.index_select(&t, 0)?;
        }
        st.rows = idx.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t5_buckets_match_the_reference_formula() {
        // Values computed with transformers' T5Attention._relative_position_bucket
        // (32 buckets, max distance 128).
        assert_eq!(t5_bucket(0, true, 32, 128), 0);
        assert_eq!(t5_bucket(1, true, 32, 128), 17);
        assert_eq!(t5_bucket(-1, true, 32, 128), 1);
        assert_eq!(t5_bucket(-7, true, 32, 128), 7);
        assert_eq!(t5_bucket(-8, true, 32, 128), 8);
        assert_eq!(t5_bucket(-200, true, 32, 128), 15);
        assert_eq!(t5_bucket(200, true, 32, 128), 31);
        assert_eq!(t5_bucket(3, false, 32, 128), 0);
        assert_eq!(t5_bucket(-3, false, 32, 128), 3);
        assert_eq!(t5_bucket(-20, false, 32, 128), 17);
        assert_eq!(t5_bucket(-1000, false, 32, 128), 31);
    }

    #[test]
    fn layer_norm_matches_f64() {
        // Rows far from zero: a one-pass E[x²] − mean² (candle's op) loses digits there.
        let (rows, d) = (5, 48);
        let mut r = crate::backend::test_values(23, 3.0);
        let x: Vec<f32> = (0..rows * d).map(|i| r() + (i / d) as f32 * 10.0).collect();
        let w: Vec<f32> = (0..d).map(|_| r()).collect();
        let b: Vec<f32> = (0..d).map(|_| r()).collect();
        let mut got = x.clone();
        layer_norm(&mut got, &w, &b, 1e-5);
        for (row, out) in x.chunks(d).zip(got.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (row[j] as f64 - mean) / (var + 1e-5).sqrt() * w[j] as f64 + b[j] as f64;
                assert!((out[j] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0));
            }
        }
    }

    #[test]
    fn marian_table_is_sin_then_cos() {
        let t = marian_positions(3, 4);
        // pos 0: sin(0)=0 (cols 0,1), cos(0)=1 (cols 2,3)
        assert_eq!(&t[0..4], &[0.0, 0.0, 1.0, 1.0]);
        let p1 = &t[4..8];
        assert!((p1[0] - 1f32.sin()).abs() < 1e-6);
        assert!((p1[1] - (1.0f64 / 100f64).sin() as f32).abs() < 1e-6);
        assert!((p1[2] - 1f32.cos()).abs() < 1e-6);
    }
}
