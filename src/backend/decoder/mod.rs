//! tarjuma's own engine for decoder-only GGUF models: `llama` (with Llama 3.x
//! `rope_freqs`), `qwen2` and `gemma3` (sliding-window layers with their own rope base,
//! linear rope scaling on global layers, QK-norm, sandwich norms, scaled embeddings).
//!
//! candle 0.11's quantized models are wrong for the real configurations of these
//! families (issue 9): `quantized_gemma3` drops the linear rope factor of Gemma 3 4B and
//! up, cannot feed several tokens after a cached prefix, and never masks the sliding
//! window in decode; `quantized_llama` ignores Llama 3 rope scaling. This engine follows
//! llama.cpp's reading of every metadata key and is checked against transformers and
//! llama.cpp logits (`tests/all/decoder.rs`).
//!
//! The KV cache lives in [`Sequence`]s owned by the caller: each has its own positions
//! and can be forked (a shared prompt prefix) or truncated (rewinding), and
//! [`Decoder::forward`] runs several sequences in one pass, packing their tokens into
//! one matrix for the weight multiplications and attending per sequence.
//!
//! On the CPU every layer runs on plain rows of f32 values (`layers_on_rows`), with the
//! tensor path's order of operations; the tensor path remains for other devices and is
//! what tests hold the rows path to (issue 13: candle's per-op overhead was a tenth of a
//! decoding step).

pub mod config;

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::qmm::{Bytes, QWeight};
use super::with_cpu_f32;

pub use config::{Arch, Config, Rope};

/// A weight matrix: GGUF blocks multiplied by our own kernels ([`super::qmm`]) on the
/// CPU, or candle's `QMatMul` (float types, CUDA, or `TARJUMA_QMM=off`).
pub enum Weight {
    Blocks(QWeight),
    Candle(QMatMul),
}

impl Weight {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(w) => w.forward(x),
            Self::Blocks(w) => {
                let dims = x.dims().to_vec();
                let k = *dims.last().unwrap_or(&0);
                if k != w.cols() {
                    candle_core::bail!("input of width {k} for a weight of width {}", w.cols());
                }
                let m = x.elem_count() / k.max(1);
                let xs = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let y = w.matmul(&xs, m);
                let mut shape = dims;
                *shape.last_mut().expect("checked") = w.rows();
                Tensor::from_vec(y, shape, x.device())
            }
        }
    }

    /// `x · Wᵀ` for `m` rows of f32 values on the CPU, without tensors (decoding).
    fn forward_rows(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        match self {
            Self::Blocks(w) => {
                if x.len() != m * w.cols() {
                    candle_core::bail!("{} values are not {m} rows of {}", x.len(), w.cols());
                }
                Ok(w.matmul(x, m))
            }
            Self::Candle(w) => {
                let k = x.len() / m.max(1);
                w.forward(&Tensor::from_slice(x, (m, k), &Device::Cpu)?)?
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1()
            }
        }
    }

    /// [`Self::forward_rows`] of several weights over the same rows: our block kernels
    /// take them in one go (`QWeight::matmul_many`).
    fn forward_rows_many(
        ws: &[&Weight],
        x: &[f32],
        m: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let blocks: Option<Vec<&QWeight>> = ws
            .iter()
            .map(|w| match w {
                Self::Blocks(b) => Some(b),
                Self::Candle(_) => None,
            })
            .collect();
        match blocks {
            Some(bs) if bs.iter().all(|b| x.len() == m * b.cols()) => {
                Ok(QWeight::matmul_many(&bs, x, m))
            }
            _ => ws.iter().map(|w| w.forward_rows(x, m)).collect(),
        }
    }

    /// Rows `ids` as a `[ids, cols]` f32 tensor.
    fn embedding(&self, ids: &[u32], device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Candle(w) => {
                let ids = Tensor::from_slice(ids, ids.len(), device)?;
                w.embedding(&ids)?.to_dtype(DType::F32)
            }
            Self::Blocks(w) => {
                let cols = w.cols();
                let mut out = vec![0f32; ids.len() * cols];
                for (row, &id) in out.chunks_exact_mut(cols).zip(ids) {
                    if id as usize >= w.rows() {
                        candle_core::bail!(
                            "token id {id} is outside the vocabulary of {}",
                            w.rows()
                        );
                    }
                    w.dequantize_row(id as usize, row);
                }
                Tensor::from_vec(out, (ids.len(), cols), device)
            }
        }
    }
}

/// Queries per attention block when a sequence feeds many tokens at once.
const QUERY_BLOCK: usize = 128;

/// Prompt tokens per pass when one sequence is fed a long prompt: activations (and so peak
/// memory) stay those of 256 tokens whatever the prompt's length, and the products are
/// as fast at 256 rows as at 1024 (issue 13: peak memory with a 1024-token prompt).
const PREFILL_PIECE: usize = 256;

/// A weight matrix (any GGUF type) with an optional bias.
struct Linear {
    w: Weight,
    b: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.w.forward(x)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// [`Self::forward`] on the CPU for `m` rows, without tensors.
    fn forward_rows(&self, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
        let y = self.w.forward_rows(x, m)?;
        self.add_bias(y)
    }

    /// [`Self::forward_rows`] of several projections of the same rows.
    fn forward_rows_many(
        ls: &[&Linear],
        x: &[f32],
        m: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let ws: Vec<&Weight> = ls.iter().map(|l| &l.w).collect();
        Weight::forward_rows_many(&ws, x, m)?
            .into_iter()
            .zip(ls)
            .map(|(y, l)| l.add_bias(y))
            .collect()
    }

    fn add_bias(&self, mut y: Vec<f32>) -> candle_core::Result<Vec<f32>> {
        if let Some(b) = &self.b {
            with_cpu_f32(b, |b| {
                for row in y.chunks_exact_mut(b.len()) {
                    for (v, &bv) in row.iter_mut().zip(b) {
                        *v += bv;
                    }
                }
            })?;
        }
        Ok(y)
    }
}

/// candle's `rms_norm` over rows of `dim` values, on the CPU and with its order of
/// operations (squares summed in order, `x / rms · w`), so the values are the same.
fn rms_rows(x: &[f32], dim: usize, w: &Tensor, eps: f64) -> candle_core::Result<Vec<f32>> {
    with_cpu_f32(w, |w| {
        if w.len() != dim {
            candle_core::bail!("a norm of {} for rows of {dim}", w.len());
        }
        let mut out = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let sum2 = src.iter().map(|&v| v * v).sum::<f32>();
            let m = (sum2 / dim as f32 + eps as f32).sqrt();
            for ((d, &s), &a) in dst.iter_mut().zip(src).zip(w) {
                *d = s / m * a;
            }
        }
        Ok(out)
    })?
}

/// `cos` and `sin` rows (`head_dim / 2` values per token) of the rotary embedding.
type RopeRows = (Vec<f32>, Vec<f32>);

/// Rotates each head of each row in place by its row's angles (`cos`, `sin`: one row
/// of `head_dim / 2` per input row), pairing `(i, i + hd/2)` when `halves` (candle's
/// `rope`) or `(2i, 2i + 1)` (`rope_i`), with candle's arithmetic.
fn rope_rows(x: &mut [f32], hd: usize, cos: &[f32], sin: &[f32], halves: bool) {
    let half = hd / 2;
    let per_row = x.len() / (cos.len() / half).max(1);
    for (r, row) in x.chunks_exact_mut(per_row).enumerate() {
        let (c, s) = (
            &cos[r * half..(r + 1) * half],
            &sin[r * half..(r + 1) * half],
        );
        for head in row.chunks_exact_mut(hd) {
            for i in 0..half {
                let (a, b) = if halves {
                    (i, i + half)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x1, x2) = (head[a], head[b]);
                head[a] = x1 * c[i] - x2 * s[i];
                head[b] = x1 * s[i] + x2 * c[i];
            }
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Weight,
    up: Weight,
    down: Weight,
    post_ffn_norm: Option<Tensor>,
}

/// A loaded decoder: weights and hyperparameters. It holds no per-sequence state, so
/// one `Decoder` serves any number of [`Sequence`]s.
pub struct Decoder {
    pub config: Config,
    embed: Arc<Weight>,
    layers: Vec<Layer>,
    output_norm: Tensor,
    output: Arc<Weight>,
    /// `base^(-2i/d)` per rotary pair for global and sliding layers, with the Llama 3
    /// factors and linear scale folded in.
    inv_freq: Vec<f64>,
    inv_freq_swa: Vec<f64>,
    device: Device,
}

/// One sequence's KV cache: per layer, keys and values as `[n_kv, capacity, head_dim]`
/// buffers filled up to `len`. Growing doubles the capacity, so appending a token does
/// not copy the whole cache.
#[derive(Default)]
pub struct Sequence {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl Sequence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions held (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `n` on; the next token is fed at position `n`.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// An independent copy of the positions held.
    pub fn fork(&self) -> candle_core::Result<Self> {
        self.fork_prefix(self.len)
    }

    /// An independent copy of the first `n` positions (a shared prompt prefix).
    pub fn fork_prefix(&self, n: usize) -> candle_core::Result<Self> {
        let n = n.min(self.len);
        if n == 0 {
            return Ok(Self::new());
        }
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.narrow(1, 0, n)?.copy()?, v.narrow(1, 0, n)?.copy()?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { layers, len: n })
    }
}

fn append(buf: &mut Tensor, len: usize, new: &Tensor) -> candle_core::Result<()> {
    let (kv, cap, hd) = buf.dims3()?;
    let n = new.dim(1)?;
    if len + n > cap {
        let want = (len + n).max(cap * 2).next_multiple_of(256);
        let grown = Tensor::zeros((kv, want, hd), buf.dtype(), buf.device())?;
        if len > 0 {
            grown.slice_set(&buf.narrow(1, 0, len)?.contiguous()?, 1, 0)?;
        }
        *buf = grown;
    }
    buf.slice_set(&new.contiguous()?, 1, len)
}

/// `act(gate) · up` on the CPU, in parallel: candle's unary ops run on one thread, and
/// GELU's `tanh` was 6 % of an 8-sequence Gemma decode while the other core waited.
/// Both run 8 lanes at a time on our `exp` ([`crate::backend::vmath`]): GELU (the tanh
/// approximation), where libm's scalar `tanhf` was 16 % of a 1024-token Gemma prompt,
/// and SiLU, `x / (1 + e^−x)` as candle's formula, where libm's `expf` was 4 % of a
/// Qwen prompt on an AMD EPYC with AVX-512 (issue 13). Values stay within a few ulps
/// of candle's.
fn gated_activation(arch: Arch, gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let out = with_cpu_f32(gate, |g| with_cpu_f32(up, |u| gated_rows(arch, g, u)))??;
    Tensor::from_vec(out, gate.shape(), gate.device())
}

/// [`gated_activation`] over slices.
fn gated_rows(arch: Arch, g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; g.len()];
    let op = crate::backend::qmm::SendPtr::new(out.as_mut_ptr());
    const CHUNK: usize = 1024;
    let n = g.len().min(u.len());
    crate::backend::qmm::parallel(n.div_ceil(CHUNK), n >= 1 << 14, |chunks| {
        for c in chunks {
            let r = c * CHUNK..((c + 1) * CHUNK).min(n);
            // SAFETY: each chunk of `out` belongs to one task alone.
            let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(r.start), r.len()) };
            o.copy_from_slice(&g[r.clone()]);
            if arch == Arch::Gemma3 {
                crate::backend::vmath::gelu_tanh(o);
            } else {
                crate::backend::vmath::silu(o);
            }
            for (o, &uv) in o.iter_mut().zip(&u[r]) {
                *o *= uv;
            }
        }
    });
    out
}

/// Attention of one new token per sequence over its cache (decoding): `qv` is
/// `[seqs, h · hd]`, already scaled; sequence `i` attends to cache positions
/// `from[i]..=len` of layer `l` (its new token's keys and values appended at `len`).
/// Returns `[seqs, h · hd]`. Softmax as candle's: max subtracted, exp, normalised.
fn decode_attention(
    qv: &[f32],
    seqs: &[&mut Sequence],
    l: usize,
    from: &[usize],
    (h, kvh, hd): (usize, usize, usize),
) -> candle_core::Result<Vec<f32>> {
    use candle_core::{CpuStorage, Storage};
    let n = seqs.len();
    if qv.len() != n * h * hd {
        candle_core::bail!(
            "{} query values for {n} rows of {h} heads of {hd}",
            qv.len()
        );
    }
    let guards: Vec<_> = seqs
        .iter()
        .map(|s| {
            let (k, v) = &s.layers[l];
            (k.storage_and_layout(), v.storage_and_layout())
        })
        .collect();
    let mut caches = Vec::with_capacity(n);
    for (i, ((ks, kl), (vs, vl))) in guards.iter().enumerate() {
        let (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) = (&**ks, &**vs)
        else {
            candle_core::bail!("decode attention needs f32 caches on the CPU");
        };
        let cap = seqs[i].layers[l].0.dim(1)?;
        if !kl.is_contiguous() || !vl.is_contiguous() {
            candle_core::bail!("decode attention needs contiguous caches");
        }
        caches.push((&k[kl.start_offset()..], &v[vl.start_offset()..], cap));
    }
    let groups = h / kvh;
    let mut out = vec![0f32; n * h * hd];
    let op = crate::backend::qmm::SendPtr::new(out.as_mut_ptr());
    let work: usize = seqs.iter().map(|s| s.len + 1).sum::<usize>() * h * hd;
    crate::backend::qmm::parallel(n * kvh, work >= 1 << 15, |tasks| {
        let mut scores = Vec::new();
        for task in tasks {
            let (i, g) = (task / kvh, task % kvh);
            let (k, v, cap) = caches[i];
            let (lo, hi) = (from[i], seqs[i].len + 1);
            let keys = &k[g * cap * hd..];
            let vals = &v[g * cap * hd..];
            for hh in g * groups..(g + 1) * groups {
                let qr = &qv[(i * h + hh) * hd..(i * h + hh + 1) * hd];
                scores.clear();
                scores.extend(
                    (lo..hi).map(|p| crate::backend::qmm::dotf(qr, &keys[p * hd..(p + 1) * hd])),
                );
                // SAFETY: row i, head hh of `out` belongs to this task alone.
                let o =
                    unsafe { std::slice::from_raw_parts_mut(op.get().add((i * h + hh) * hd), hd) };
                crate::backend::softmax_mix(&mut scores, &vals[lo * hd..hi * hd], o);
            }
        }
    });
    drop(caches);
    drop(guards);
    Ok(out)
}

/// One block of queries attending on the CPU: `qs` `[kvh, rows, hd]` (already scaled;
/// row `r` is query `r % cn` of its head) against keys and values `from..from + width`
/// of the caches `[kvh, cap, hd]`, with the additive `mask` `[cn, width]`. Both products
/// run on our packed f32 kernels on every core: through candle's batched matmul they ran
/// on one thread, a fifth of a 1024-token prompt (issue 13). Softmax as candle's (max
/// subtracted, exp, divided by the sum). Returns `[kvh, rows, hd]`.
fn attend_block_cpu(
    qs: &Tensor,
    (kc, vc): (&Tensor, &Tensor),
    (from, width): (usize, usize),
    mask: Option<&Tensor>,
    cn: usize,
) -> candle_core::Result<Tensor> {
    use super::sgemm::PackedF32;
    let (kvh, rows, hd) = qs.dims3()?;
    let cap = kc.dim(1)?;
    let qv = qs.flatten_all()?.to_vec1::<f32>()?;
    let mv = mask
        .map(|m| m.flatten_all()?.to_vec1::<f32>())
        .transpose()?;
    let mut out = Vec::with_capacity(kvh * rows * hd);
    with_cpu_f32(kc, |k| {
        with_cpu_f32(vc, |v| {
            for g in 0..kvh {
                let span = (g * cap + from) * hd..(g * cap + from + width) * hd;
                let (keys, vals) = (&k[span.clone()], &v[span]);
                let q = &qv[g * rows * hd..(g + 1) * rows * hd];
                let mut scores = PackedF32::pack(keys, width, hd).matmul(q, rows, None);
                let sp = crate::backend::qmm::SendPtr::new(scores.as_mut_ptr());
                crate::backend::qmm::parallel(rows, rows * width >= 1 << 14, |rs| {
                    for r in rs {
                        // SAFETY: row r of the scores belongs to this task alone.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(sp.get().add(r * width), width)
                        };
                        if let Some(m) = &mv {
                            let mrow = &m[(r % cn) * width..(r % cn + 1) * width];
                            for (a, &b) in row.iter_mut().zip(mrow) {
                                *a += b;
                            }
                        }
                        crate::backend::vmath::softmax(row);
                    }
                });
                let mut vt = vec![0f32; hd * width];
                for (p, val) in vals.chunks_exact(hd).enumerate() {
                    for (d, &x) in val.iter().enumerate() {
                        vt[d * width + p] = x;
                    }
                }
                out.extend(PackedF32::pack(&vt, hd, width).matmul(&scores, rows, None));
            }
        })
    })??;
    Tensor::from_vec(out, (kvh, rows, hd), qs.device())
}

/// Reads tensors of one GGUF file onto a device.
struct Loader<'a, R> {
    content: &'a gguf_file::Content,
    reader: &'a mut R,
    /// The whole file, when mapped: weights are then used in place.
    map: Option<Arc<memmap2::Mmap>>,
    /// Our block kernels where they know the format (else candle's `QMatMul`).
    own: bool,
    device: &'a Device,
}

impl<R: std::io::Read + std::io::Seek> Loader<'_, R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn tensor(&mut self, name: &str) -> Result<Arc<QTensor>> {
        self.content
            .tensor(self.reader, name, self.device)
            .map(Arc::new)
            .with_context(|| format!("cannot read tensor `{name}`"))
    }

    /// A weight matrix: in place (or read once) for our kernels when they know its
    /// format, else through candle.
    fn weight(&mut self, name: &str) -> Result<Weight> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| anyhow!("cannot read tensor `{name}`: not in the file"))?;
        let dims = info.shape.dims();
        if self.device.is_cpu() && self.own && QWeight::supports(info.ggml_dtype) && dims.len() == 2
        {
            let (rows, cols) = (dims[0], dims[1]);
            let dt = info.ggml_dtype;
            let len = rows * cols / dt.block_size() * dt.type_size();
            let start = (self.content.tensor_data_offset + info.offset) as usize;
            let bytes = match &self.map {
                Some(map) if start + len <= map.len() => Bytes::Mapped {
                    map: map.clone(),
                    start,
                    len,
                },
                Some(_) => bail!("tensor `{name}` runs past the end of the file"),
                None => {
                    let mut buf = vec![0u8; len];
                    self.reader.seek(std::io::SeekFrom::Start(start as u64))?;
                    self.reader
                        .read_exact(&mut buf)
                        .with_context(|| format!("cannot read tensor `{name}`"))?;
                    Bytes::owned(&buf)
                }
            };
            return QWeight::new(dt, rows, cols, bytes)
                .map(Weight::Blocks)
                .with_context(|| format!("tensor `{name}`"));
        }
        Ok(Weight::Candle(QMatMul::from_arc(self.tensor(name)?)?))
    }

    /// A matrix that products read (never rows looked up alone): tiled where our
    /// kernels have a tiled layout for it (see `QWeight::into_tiled`).
    fn matrix(&mut self, name: &str) -> Result<Weight> {
        Ok(match self.weight(name)? {
            Weight::Blocks(w) => Weight::Blocks(w.into_tiled()),
            w => w,
        })
    }

    /// A small tensor (norm, bias) as f32.
    fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self
            .tensor(name)?
            .dequantize(self.device)?
            .to_dtype(DType::F32)?)
    }

    fn optional(&mut self, name: &str) -> Result<Option<Tensor>> {
        if self.has(name) {
            self.dense(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn rms(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)
}

impl Decoder {
    /// Reads the model from an opened GGUF file, copying its weights into memory.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self> {
        Self::load_with(content, reader, None, !own_kernels(), device)
    }

    /// Reads the model; with `map` (the whole file, mapped), weight matrices stay in
    /// the file's pages and loading copies nothing. `plain` puts every weight in
    /// candle's `QMatMul` instead of our block kernels (the reference they are tested
    /// against).
    pub fn load_with<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        map: Option<Arc<memmap2::Mmap>>,
        plain: bool,
        device: &Device,
    ) -> Result<Self> {
        let arch_name = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| anyhow!("GGUF metadata has no general.architecture"))?;
        let arch = Arch::parse(&arch_name)
            .ok_or_else(|| anyhow!("unsupported architecture `{arch_name}`"))?;
        let config = Config::from_gguf(content, arch)?;
        let mut ld = Loader {
            content,
            reader,
            own: !plain,
            map,
            device,
        };
        let hd = config.head_dim;
        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let p = format!("blk.{l}");
            let lin = |ld: &mut Loader<R>, n: &str| -> Result<Linear> {
                Ok(Linear {
                    w: ld.matrix(&format!("{p}.{n}.weight"))?,
                    b: ld.optional(&format!("{p}.{n}.bias"))?,
                })
            };
            let q = lin(&mut ld, "attn_q")?;
            let k = lin(&mut ld, "attn_k")?;
            let v = lin(&mut ld, "attn_v")?;
            let o = lin(&mut ld, "attn_output")?;
            let q_norm = ld.optional(&format!("{p}.attn_q_norm.weight"))?;
            let k_norm = ld.optional(&format!("{p}.attn_k_norm.weight"))?;
            let post_attn_norm = ld.optional(&format!("{p}.post_attention_norm.weight"))?;
            let post_ffn_norm = ld.optional(&format!("{p}.post_ffw_norm.weight"))?;
            if arch == Arch::Gemma3
                && (q_norm.is_none()
                    || k_norm.is_none()
                    || post_attn_norm.is_none()
                    || post_ffn_norm.is_none())
            {
                bail!("layer {l} lacks a Gemma 3 norm (attn_q_norm, attn_k_norm, post_attention_norm, post_ffw_norm)");
            }
            for n in [&q_norm, &k_norm].into_iter().flatten() {
                if n.dims1()? != hd {
                    bail!("layer {l}: QK-norm of {} for heads of {hd}", n.dims1()?);
                }
            }
            layers.push(Layer {
                attn_norm: ld.dense(&format!("{p}.attn_norm.weight"))?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                post_attn_norm,
                ffn_norm: ld.dense(&format!("{p}.ffn_norm.weight"))?,
                gate: ld.matrix(&format!("{p}.ffn_gate.weight"))?,
                up: ld.matrix(&format!("{p}.ffn_up.weight"))?,
                down: ld.matrix(&format!("{p}.ffn_down.weight"))?,
                post_ffn_norm,
            });
        }
        // A tied embedding is also the output matrix, so it is tiled; a separate one
        // is only looked up a row at a time and stays in the file's blocks.
        let (embed, output) = if ld.has("output.weight") {
            let embed = Arc::new(ld.weight("token_embd.weight")?);
            (embed, Arc::new(ld.matrix("output.weight")?))
        } else {
            let embed = Arc::new(ld.matrix("token_embd.weight")?);
            (embed.clone(), embed)
        };
        let output_norm = ld.dense("output_norm.weight")?;
        // Llama 3.x: per-pair divisors precomputed by the converter (llama.cpp's
        // `rope_freqs`, shared by every layer).
        let factors: Option<Vec<f32>> = if ld.has("rope_freqs.weight") {
            let f = ld
                .dense("rope_freqs.weight")?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if f.len() != hd / 2 {
                bail!("rope_freqs has {} factors for heads of {hd}", f.len());
            }
            Some(f)
        } else {
            None
        };
        let freqs = |r: &Rope, factors: Option<&Vec<f32>>| -> Vec<f64> {
            (0..hd / 2)
                .map(|i| {
                    let base = (r.base as f64).powf(-2.0 * i as f64 / hd as f64);
                    let f = factors.map_or(1.0, |f| f[i] as f64);
                    base / f * r.scale as f64
                })
                .collect()
        };
        let inv_freq = freqs(&config.rope, factors.as_ref());
        let inv_freq_swa = freqs(&config.rope_swa, None);
        Ok(Self {
            config,
            embed,
            layers,
            output_norm,
            output,
            inv_freq,
            inv_freq_swa,
            device: device.clone(),
        })
    }

    /// Rows of the embedding table (the vocabulary the weights know).
    pub fn vocab(&self) -> usize {
        match &*self.embed {
            Weight::Blocks(w) => w.rows(),
            Weight::Candle(w) => match w {
                QMatMul::QTensor(t) => t.shape().dims()[0],
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims()[0],
            },
        }
    }

    /// The product kernel of each weight format in the model, e.g. `q5_0: avx2`,
    /// sorted (what benchmarks record beside their figures).
    pub fn kernels(&self) -> Vec<String> {
        let mut ws: Vec<&Weight> = vec![&self.output];
        for l in &self.layers {
            ws.extend([&l.q.w, &l.k.w, &l.v.w, &l.o.w, &l.gate, &l.up, &l.down]);
        }
        let mut out: Vec<String> = ws
            .into_iter()
            .map(|w| match w {
                Weight::Blocks(b) => format!("{}: {}", dtype_name(b.dtype()), b.kernel()),
                Weight::Candle(QMatMul::QTensor(t)) => {
                    format!("{}: candle", dtype_name(t.dtype()))
                }
                Weight::Candle(_) => "f32/f16: candle gemm".to_string(),
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `cos` and `sin` tables `[tokens, head_dim / 2]` for the given positions.
    fn rope_tables(
        &self,
        inv: &[f64],
        positions: &[usize],
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = inv.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in inv {
                let t = p as f64 * f;
                cos.push(t.cos() as f32);
                sin.push(t.sin() as f32);
            }
        }
        Ok((
            Tensor::from_vec(cos, (positions.len(), half), &self.device)?,
            Tensor::from_vec(sin, (positions.len(), half), &self.device)?,
        ))
    }

    /// The additive mask `[n, past + n - from]` of `n` new tokens after `past` cached
    /// ones, keys from position `from`: causal, and within `window` when given.
    fn mask(
        &self,
        past: usize,
        n: usize,
        from: usize,
        window: Option<usize>,
    ) -> candle_core::Result<Option<Tensor>> {
        if n == 1 {
            return Ok(None);
        }
        let width = past + n - from;
        let mut m = vec![0f32; n * width];
        for r in 0..n {
            let qp = past + r;
            for c in 0..width {
                let kp = from + c;
                if kp > qp || window.is_some_and(|w| qp - kp >= w) {
                    m[r * width + c] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_vec(m, (n, width), &self.device).map(Some)
    }

    /// Feeds `tokens[i]` to `seqs[i]` (at that sequence's next positions) and returns,
    /// per sequence, the logits of its last new token. Sequences may be of any lengths;
    /// a sequence with no new tokens is an error. One sequence's long prompt goes
    /// through in pieces of `PREFILL_PIECE` tokens.
    pub fn forward(
        &self,
        seqs: &mut [&mut Sequence],
        tokens: &[&[u32]],
    ) -> candle_core::Result<Vec<Tensor>> {
        if seqs.len() != tokens.len() || tokens.iter().any(|t| t.is_empty()) {
            candle_core::bail!("forward needs one non-empty token list per sequence");
        }
        if let ([seq], [t]) = (&mut *seqs, tokens) {
            let mut t: &[u32] = t;
            while t.len() > PREFILL_PIECE {
                let (piece, rest) = t.split_at(PREFILL_PIECE);
                self.forward_pass(&mut [&mut **seq], &[piece])?;
                t = rest;
            }
            return self.forward_pass(&mut [&mut **seq], &[t]);
        }
        self.forward_pass(seqs, tokens)
    }

    fn forward_pass(
        &self,
        seqs: &mut [&mut Sequence],
        tokens: &[&[u32]],
    ) -> candle_core::Result<Vec<Tensor>> {
        self.forward_pass_with(seqs, tokens, true)
    }

    /// `forward_pass`; `rows: false` keeps decoding on the tensor path (tests compare
    /// the two).
    fn forward_pass_with(
        &self,
        seqs: &mut [&mut Sequence],
        tokens: &[&[u32]],
        rows: bool,
    ) -> candle_core::Result<Vec<Tensor>> {
        let cfg = &self.config;
        let (h, kvh, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let mut starts = Vec::with_capacity(tokens.len());
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        for (s, t) in seqs.iter().zip(tokens) {
            starts.push(ids.len());
            ids.extend_from_slice(t);
            positions.extend(s.len..s.len + t.len());
        }
        let total = ids.len();
        let mut x = self.embed.embedding(&ids, &self.device)?;
        if let Some(s) = cfg.embed_scale {
            x = (x * s)?;
        }
        let (cos, sin) = self.rope_tables(&self.inv_freq, &positions)?;
        let swa_tables = if cfg.swa.iter().any(|&s| s) {
            Some(self.rope_tables(&self.inv_freq_swa, &positions)?)
        } else {
            None
        };
        for (s, t) in seqs.iter_mut().zip(tokens) {
            if s.layers.is_empty() {
                // Never zero-sized: a device allocation of nothing is not portable.
                let cap = t.len().next_multiple_of(256);
                s.layers = (0..cfg.n_layer)
                    .map(|_| {
                        Ok((
                            Tensor::zeros((kvh, cap, hd), DType::F32, &self.device)?,
                            Tensor::zeros((kvh, cap, hd), DType::F32, &self.device)?,
                        ))
                    })
                    .collect::<candle_core::Result<_>>()?;
            }
        }
        // Per sequence: the first key a sliding layer keeps (older ones are outside every
        // new query's window) and the additive masks, built once for all layers. One
        // new token sees every key kept, so it needs none.
        let mut windows = Vec::with_capacity(seqs.len());
        let mut masks = Vec::with_capacity(seqs.len());
        let mut masks_swa = Vec::with_capacity(seqs.len());
        for (s, t) in seqs.iter().zip(tokens) {
            let (past, n) = (s.len, t.len());
            let from = (past + 1).saturating_sub(cfg.sliding_window.max(1));
            windows.push(from);
            masks.push(self.mask(past, n, 0, None)?);
            masks_swa.push(match swa_tables {
                Some(_) => self.mask(past, n, from, Some(cfg.sliding_window))?,
                None => None,
            });
        }
        // On the CPU the layers run on plain rows (see `layers_on_rows`); prompts need our
        // f32 kernels for their block attention.
        let decoding = tokens.iter().all(|t| t.len() == 1);
        if rows && self.device.is_cpu() && (decoding || super::sgemm::available()) {
            let xs = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let rows = |c: &Tensor, s: &Tensor| -> candle_core::Result<RopeRows> {
                Ok((c.flatten_all()?.to_vec1()?, s.flatten_all()?.to_vec1()?))
            };
            let global = rows(&cos, &sin)?;
            let sliding = swa_tables.as_ref().map(|(c, s)| rows(c, s)).transpose()?;
            let lens: Vec<usize> = tokens.iter().map(|t| t.len()).collect();
            let xs = self.layers_on_rows(
                seqs,
                (&starts, &lens),
                xs,
                (&global, sliding.as_ref()),
                &windows,
                (&masks, &masks_swa),
            )?;
            x = Tensor::from_vec(xs, (total, cfg.n_embd), &self.device)?;
        } else {
            for (l, layer) in self.layers.iter().enumerate() {
                let sliding = cfg.swa[l];
                let (cos, sin) = match (&swa_tables, sliding) {
                    (Some((c, s)), true) => (c, s),
                    _ => (&cos, &sin),
                };
                let hn = rms(&x, &layer.attn_norm, cfg.rms_eps)?;
                let heads =
                    |t: Tensor, n: usize, norm: &Option<Tensor>| -> candle_core::Result<Tensor> {
                        let mut t = t.reshape((total, n, hd))?;
                        if let Some(w) = norm {
                            t = rms(&t, w, cfg.rms_eps)?;
                        }
                        let t = t.transpose(0, 1)?.unsqueeze(0)?.contiguous()?;
                        if cfg.arch.rope_halves() {
                            candle_nn::rotary_emb::rope(&t, cos, sin)
                        } else {
                            candle_nn::rotary_emb::rope_i(&t, cos, sin)
                        }
                    };
                let q = heads(layer.q.forward(&hn)?, h, &layer.q_norm)?.squeeze(0)?;
                let k = heads(layer.k.forward(&hn)?, kvh, &layer.k_norm)?.squeeze(0)?;
                // Token-major [total, kvh, hd], as the projection writes it.
                let vt = layer.v.forward(&hn)?.reshape((total, kvh, hd))?;
                let q = (q * cfg.attn_scale)?;
                let v = vt.transpose(0, 1)?.contiguous()?;
                let mut outs = Vec::with_capacity(seqs.len());
                for (i, s) in seqs.iter_mut().enumerate() {
                    let (a, n) = (starts[i], tokens[i].len());
                    let past = s.len;
                    let (kc, vc) = &mut s.layers[l];
                    append(kc, past, &k.narrow(1, a, n)?)?;
                    append(vc, past, &v.narrow(1, a, n)?)?;
                    let from = if sliding { windows[i] } else { 0 };
                    let groups = h / kvh;
                    let mask = if sliding { &masks_swa[i] } else { &masks[i] };
                    // Long prompts attend in blocks of queries, each to the keys it can see:
                    // causality skips about half the products, and the scores of one block
                    // stay small.
                    let mut c0 = 0;
                    while c0 < n {
                        let cn = (n - c0).min(QUERY_BLOCK);
                        let width = past + c0 + cn - from;
                        let keys = kc.narrow(1, from, width)?;
                        let vals = vc.narrow(1, from, width)?;
                        // [h, cn, hd] -> [kvh, groups * cn, hd]: query heads sharing a KV head.
                        let qs = q.narrow(1, a + c0, cn)?.contiguous()?.reshape((
                            kvh,
                            groups * cn,
                            hd,
                        ))?;
                        let m = match mask {
                            Some(m) => Some(m.narrow(0, c0, cn)?.narrow(1, 0, width)?),
                            None => None,
                        };
                        // [kvh, groups * cn, hd]
                        let o = if self.device.is_cpu() && super::sgemm::available() {
                            attend_block_cpu(&qs, (kc, vc), (from, width), m.as_ref(), cn)?
                        } else {
                            let mut att = qs.matmul(&keys.t()?)?;
                            if let Some(m) = m {
                                att = att
                                    .reshape((kvh, groups, cn, width))?
                                    .broadcast_add(&m)?
                                    .reshape((kvh, groups * cn, width))?;
                            }
                            let att = candle_nn::ops::softmax_last_dim(&att)?;
                            att.matmul(&vals.contiguous()?)?
                        };
                        outs.push(
                            o.reshape((h, cn, hd))?
                                .transpose(0, 1)?
                                .reshape((cn, h * hd))?,
                        );
                        c0 += cn;
                    }
                }
                let o = if outs.len() == 1 {
                    outs.pop().expect("one")
                } else {
                    Tensor::cat(&outs, 0)?
                };
                x = self.attn_out_and_ffn(layer, x, &o)?;
            }
        }
        for (s, t) in seqs.iter_mut().zip(tokens) {
            s.len += t.len();
        }
        let last: Vec<u32> = starts
            .iter()
            .zip(tokens)
            .map(|(a, t)| (a + t.len() - 1) as u32)
            .collect();
        let last = Tensor::from_vec(last, starts.len(), &self.device)?;
        let x = rms(&x.index_select(&last, 0)?, &self.output_norm, cfg.rms_eps)?;
        let mut logits = self.output.forward(&x)?;
        if let Some(cap) = cfg.final_logit_softcap {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        (0..starts.len()).map(|i| logits.get(i)).collect()
    }

    /// Every layer on the CPU as rows of f32 values (`lens[i]` new tokens of sequence
    /// `i` from row `starts[i]`), straight into the products, without tensor ops. At 8
    /// decoding sequences the tensor path spent a tenth of a step in candle's op
    /// overhead (allocations, layouts, thread hand-offs for a few thousand values) while
    /// the second core waited (issue 13). Every operation is the tensor path's, in the
    /// same order, so the values are the same; one new token per sequence attends
    /// straight over the caches (`decode_attention`), prompts in blocks of queries as
    /// the tensor path does (`attend_block_cpu`). `rope`: the `cos` and `sin` rows of
    /// the global layers and, for models with sliding layers, of those; `masks`: per
    /// sequence, for global and sliding layers.
    fn layers_on_rows(
        &self,
        seqs: &mut [&mut Sequence],
        (starts, lens): (&[usize], &[usize]),
        mut x: Vec<f32>,
        rope: (&RopeRows, Option<&RopeRows>),
        windows: &[usize],
        masks: (&[Option<Tensor>], &[Option<Tensor>]),
    ) -> candle_core::Result<Vec<f32>> {
        let cfg = &self.config;
        let (h, kvh, hd, d) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_embd);
        let n: usize = lens.iter().sum();
        let decoding = lens.iter().all(|&l| l == 1);
        let eps = cfg.rms_eps;
        let scale = cfg.attn_scale as f32;
        let halves = cfg.arch.rope_halves();
        let no_window = vec![0; n];
        for (l, layer) in self.layers.iter().enumerate() {
            let sliding = cfg.swa[l];
            let (cos, sin) = match (rope.1, sliding) {
                (Some(t), true) => (&t.0, &t.1),
                _ => (&rope.0 .0, &rope.0 .1),
            };
            let hn = rms_rows(&x, d, &layer.attn_norm, eps)?;
            let mut qkv = Linear::forward_rows_many(&[&layer.q, &layer.k, &layer.v], &hn, n)?;
            let (v, mut k, mut q) = (
                qkv.pop().expect("three"),
                qkv.pop().expect("three"),
                qkv.pop().expect("three"),
            );
            if let Some(w) = &layer.q_norm {
                q = rms_rows(&q, hd, w, eps)?;
            }
            if let Some(w) = &layer.k_norm {
                k = rms_rows(&k, hd, w, eps)?;
            }
            rope_rows(&mut q, hd, cos, sin, halves);
            rope_rows(&mut k, hd, cos, sin, halves);
            for v in q.iter_mut() {
                *v *= scale;
            }
            // Token-major, each sequence's new keys and values are one contiguous
            // block: one copy per layer instead of two per sequence.
            let kt = Tensor::from_vec(k, (n, kvh, hd), &self.device)?;
            let vt = Tensor::from_vec(v, (n, kvh, hd), &self.device)?;
            for (i, s) in seqs.iter_mut().enumerate() {
                let (kc, vc) = &mut s.layers[l];
                let (a, len) = (starts[i], lens[i]);
                append(kc, s.len, &kt.narrow(0, a, len)?.transpose(0, 1)?)?;
                append(vc, s.len, &vt.narrow(0, a, len)?.transpose(0, 1)?)?;
            }
            let o = if decoding {
                let from = if sliding { windows } else { &no_window };
                decode_attention(&q, seqs, l, from, (h, kvh, hd))?
            } else {
                let masks = if sliding { masks.1 } else { masks.0 };
                self.prompt_attention(&q, seqs, l, (starts, lens), windows, masks, sliding)?
            };
            let mut y = layer.o.forward_rows(&o, n)?;
            if let Some(w) = &layer.post_attn_norm {
                y = rms_rows(&y, d, w, eps)?;
            }
            for (a, b) in x.iter_mut().zip(&y) {
                *a += b;
            }
            let hn = rms_rows(&x, d, &layer.ffn_norm, eps)?;
            let mut gate_up = Weight::forward_rows_many(&[&layer.gate, &layer.up], &hn, n)?;
            let (up, gate) = (gate_up.pop().expect("two"), gate_up.pop().expect("two"));
            let act = gated_rows(cfg.arch, &gate, &up);
            let mut y = layer.down.forward_rows(&act, n)?;
            if let Some(w) = &layer.post_ffn_norm {
                y = rms_rows(&y, d, w, eps)?;
            }
            for (a, b) in x.iter_mut().zip(&y) {
                *a += b;
            }
        }
        Ok(x)
    }

    /// Attention of every sequence's new tokens (rows `starts[i]..starts[i] + lens[i]`
    /// of `q`, token-major and scaled, their keys and values already appended to layer
    /// `l`'s caches), in blocks of `QUERY_BLOCK` queries as the tensor path attends:
    /// the same blocks through `attend_block_cpu`, so the same values. Returns
    /// token-major `[rows, h · hd]`.
    #[allow(clippy::too_many_arguments)]
    fn prompt_attention(
        &self,
        q: &[f32],
        seqs: &[&mut Sequence],
        l: usize,
        (starts, lens): (&[usize], &[usize]),
        windows: &[usize],
        masks: &[Option<Tensor>],
        sliding: bool,
    ) -> candle_core::Result<Vec<f32>> {
        let cfg = &self.config;
        let (h, kvh, hd) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let groups = h / kvh;
        let mut out = vec![0f32; q.len()];
        for (i, s) in seqs.iter().enumerate() {
            let (a, n, past) = (starts[i], lens[i], s.len);
            let (kc, vc) = &s.layers[l];
            let from = if sliding { windows[i] } else { 0 };
            let mut c0 = 0;
            while c0 < n {
                let cn = (n - c0).min(QUERY_BLOCK);
                let width = past + c0 + cn - from;
                // [kvh, groups * cn, hd]: query heads sharing a KV head, as the tensor
                // path lays them out.
                let mut qs = vec![0f32; h * cn * hd];
                for hh in 0..h {
                    for c in 0..cn {
                        let src = ((a + c0 + c) * h + hh) * hd;
                        qs[(hh * cn + c) * hd..(hh * cn + c + 1) * hd]
                            .copy_from_slice(&q[src..src + hd]);
                    }
                }
                let qs = Tensor::from_vec(qs, (kvh, groups * cn, hd), &self.device)?;
                let m = match &masks[i] {
                    Some(m) => Some(m.narrow(0, c0, cn)?.narrow(1, 0, width)?),
                    None => None,
                };
                let o = attend_block_cpu(&qs, (kc, vc), (from, width), m.as_ref(), cn)?;
                let o = o.flatten_all()?.to_vec1::<f32>()?; // [h, cn, hd]
                for hh in 0..h {
                    for c in 0..cn {
                        let dst = ((a + c0 + c) * h + hh) * hd;
                        out[dst..dst + hd]
                            .copy_from_slice(&o[(hh * cn + c) * hd..(hh * cn + c + 1) * hd]);
                    }
                }
                c0 += cn;
            }
        }
        Ok(out)
    }

    /// The rest of a layer after attention: output projection, residual, feed-forward.
    fn attn_out_and_ffn(
        &self,
        layer: &Layer,
        x: Tensor,
        o: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let mut y = layer.o.forward(&o.contiguous()?)?;
        if let Some(w) = &layer.post_attn_norm {
            y = rms(&y, w, cfg.rms_eps)?;
        }
        let x = (x + y)?;
        let hn = rms(&x, &layer.ffn_norm, cfg.rms_eps)?;
        let gate = layer.gate.forward(&hn)?;
        let up = layer.up.forward(&hn)?;
        let h = if gate.device().is_cpu() && gate.dtype() == DType::F32 {
            gated_activation(cfg.arch, &gate, &up)?
        } else {
            let act = match cfg.arch {
                Arch::Gemma3 => gate.gelu()?,
                _ => candle_nn::ops::silu(&gate)?,
            };
            (act * up)?
        };
        let mut y = layer.down.forward(&h)?;
        if let Some(w) = &layer.post_ffn_norm {
            y = rms(&y, w, cfg.rms_eps)?;
        }
        x + y
    }

    /// One sequence: the logits of its last new token, as f32 values.
    pub fn forward_one(&self, seq: &mut Sequence, tokens: &[u32]) -> candle_core::Result<Vec<f32>> {
        let mut out = self.forward(&mut [seq], &[tokens])?;
        out.pop()
            .expect("one sequence")
            .to_dtype(DType::F32)?
            .to_vec1()
    }
}

/// Opens a GGUF file and loads its decoder (no tokenizer), weights mapped in place.
pub fn open(path: &Path, device: &Device) -> Result<Decoder> {
    open_with(path, device, !own_kernels())
}

/// [`open`], with `plain` choosing candle's `QMatMul` for every weight.
pub fn open_with(path: &Path, device: &Device, plain: bool) -> Result<Decoder> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut f = std::io::BufReader::with_capacity(1 << 20, &file);
    let content = gguf_file::Content::read(&mut f)
        .map_err(|e| anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
    let map = map_file(&file, path)?;
    Decoder::load_with(&content, &mut f, Some(map), plain, device)
}

/// Maps a model file read-only. The file must not be rewritten while mapped: model
/// files are only ever replaced whole (a new file renamed over), which keeps the old
/// pages alive.
pub fn map_file(f: &std::fs::File, path: &Path) -> Result<Arc<memmap2::Mmap>> {
    // SAFETY: read-only mapping of a file that is replaced, never written in place.
    let map = unsafe { memmap2::Mmap::map(f) }
        .with_context(|| format!("cannot map {}", path.display()))?;
    Ok(Arc::new(map))
}

fn dtype_name(d: candle_core::quantized::GgmlDType) -> String {
    format!("{d:?}").to_ascii_lowercase()
}

/// Our block kernels, unless `TARJUMA_QMM=off` asks for candle's plain path (to
/// compare the two).
pub fn own_kernels() -> bool {
    std::env::var("TARJUMA_QMM").map_or(true, |v| v != "off")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_grows_and_keeps_earlier_positions() {
        let dev = Device::Cpu;
        let mut buf = Tensor::zeros((2, 2, 4), DType::F32, &dev).unwrap();
        let a = Tensor::arange(0f32, 24.0, &dev)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        append(&mut buf, 0, &a).unwrap();
        let b = Tensor::arange(100f32, 108.0, &dev)
            .unwrap()
            .reshape((2, 1, 4))
            .unwrap();
        append(&mut buf, 3, &b).unwrap();
        assert!(buf.dim(1).unwrap() >= 4);
        let got = buf.narrow(1, 0, 4).unwrap();
        let want = Tensor::cat(&[&a, &b], 1).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    /// The six decoder fixtures (gemma3, qwen2, llama; f32 and Q4_K_M), named.
    fn fixture_models() -> Vec<(String, Decoder)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/decoder");
        let mut out = Vec::new();
        for arch in ["gemma3", "qwen2", "llama"] {
            for file in ["model-f32.gguf", "model-q4_k_m.gguf"] {
                let path = std::path::PathBuf::from(format!("{root}/{arch}/{file}"));
                out.push((format!("{arch} {file}"), open(&path, &Device::Cpu).unwrap()));
            }
        }
        out
    }

    /// Feeds `toks` to sequences `a` on rows and `b` on tensors: each sequence's logits
    /// from both.
    fn rows_and_tensors(
        model: &Decoder,
        a: &mut [Sequence],
        b: &mut [Sequence],
        toks: &[&[u32]],
    ) -> Vec<(Vec<f32>, Vec<f32>)> {
        let mut ra: Vec<&mut Sequence> = a.iter_mut().collect();
        let mut rb: Vec<&mut Sequence> = b.iter_mut().collect();
        let la = model.forward_pass_with(&mut ra, toks, true).unwrap();
        let lb = model.forward_pass_with(&mut rb, toks, false).unwrap();
        la.iter()
            .zip(&lb)
            .map(|(x, y)| (x.to_vec1().unwrap(), y.to_vec1().unwrap()))
            .collect()
    }

    /// The decoding rows path against the tensor path, which for one token per sequence
    /// attends in blocks rather than with `decode_attention`: logits within 1e-4 of the
    /// largest and the same greedy token, for every architecture (Gemma 3: QK-norm,
    /// sandwich norms, sliding layers; Qwen 2: biases; Llama: interleaved rope), f32 and
    /// quantized weights, and sequences of different lengths. (Before the tensor
    /// decoding code was removed, the rows path matched it bit for bit.)
    #[test]
    fn decoding_rows_match_the_tensor_path() {
        for (name, model) in fixture_models() {
            let vocab = model.vocab() as u32;
            let mut a: Vec<Sequence> = (0..3).map(|_| Sequence::new()).collect();
            let mut b: Vec<Sequence> = (0..3).map(|_| Sequence::new()).collect();
            for i in 0..3 {
                let p: Vec<u32> = (0..5 + 7 * i as u32)
                    .map(|t| (t * 31 + 7) % vocab)
                    .collect();
                model.forward(&mut [&mut a[i]], &[&p]).unwrap();
                model.forward(&mut [&mut b[i]], &[&p]).unwrap();
            }
            for step in 0..6u32 {
                let toks: Vec<[u32; 1]> = (0..3u32)
                    .map(|i| [(step * 13 + i * 5 + 1) % vocab])
                    .collect();
                let toks: Vec<&[u32]> = toks.iter().map(|t| &t[..]).collect();
                for (x, y) in rows_and_tensors(&model, &mut a, &mut b, &toks) {
                    let top = y.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let diff = x
                        .iter()
                        .zip(&y)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0f32, f32::max);
                    assert!(diff <= 1e-4 * top, "{name} step {step}: {diff} of {top}");
                    let argmax =
                        |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
                    assert_eq!(argmax(&x), argmax(&y), "{name} step {step}");
                }
            }
        }
    }

    /// Prompts on rows give the tensor path's logits bit for bit: a prompt longer than
    /// a query block, then a batch of a one-token sequence beside a prompt, for every
    /// architecture, f32 and quantized.
    #[test]
    fn prompts_on_rows_equal_the_tensor_path_bit_for_bit() {
        if !crate::backend::sgemm::available() {
            return;
        }
        for (name, model) in fixture_models() {
            let vocab = model.vocab() as u32;
            let ids = |n: u32, salt: u32| -> Vec<u32> {
                (0..n).map(|t| (t * 31 + salt) % vocab).collect()
            };
            let mut a: Vec<Sequence> = (0..2).map(|_| Sequence::new()).collect();
            let mut b: Vec<Sequence> = (0..2).map(|_| Sequence::new()).collect();
            let feeds: [Vec<Vec<u32>>; 3] = [
                vec![ids(150, 7), ids(3, 1)],
                vec![ids(1, 5), ids(37, 2)],
                vec![ids(20, 9), ids(1, 4)],
            ];
            for (step, feed) in feeds.iter().enumerate() {
                let toks: Vec<&[u32]> = feed.iter().map(|t| &t[..]).collect();
                for (x, y) in rows_and_tensors(&model, &mut a, &mut b, &toks) {
                    let same = x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits());
                    assert!(same, "{name} feed {step}: rows and tensors differ");
                }
            }
        }
    }

    /// Block attention on our packed products against candle's matmul and softmax: a
    /// window of the caches away from their start, grouped query heads, a causal mask
    /// with whole masked spans, within 1e-5.
    #[test]
    fn block_attention_matches_candles_formula() {
        let dev = Device::Cpu;
        let (kvh, groups, cn, hd, cap, from, width) = (2, 3, 5, 64, 40, 7, 21);
        let rnd = |n: usize, seed: f32| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 0.618 + seed).sin() * 1.7)
                .collect()
        };
        let qs = Tensor::from_vec(
            rnd(kvh * groups * cn * hd, 0.3),
            (kvh, groups * cn, hd),
            &dev,
        )
        .unwrap();
        let kc = Tensor::from_vec(rnd(kvh * cap * hd, 1.1), (kvh, cap, hd), &dev).unwrap();
        let vc = Tensor::from_vec(rnd(kvh * cap * hd, 2.9), (kvh, cap, hd), &dev).unwrap();
        // Query c sees keys up to width - cn + c.
        let mask: Vec<f32> = (0..cn * width)
            .map(|i| {
                if i % width > width - cn + i / width {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (cn, width), &dev).unwrap();
        let ours = attend_block_cpu(&qs, (&kc, &vc), (from, width), Some(&mask), cn).unwrap();
        let keys = kc.narrow(1, from, width).unwrap();
        let vals = vc.narrow(1, from, width).unwrap().contiguous().unwrap();
        let att = qs
            .matmul(&keys.t().unwrap())
            .unwrap()
            .reshape((kvh, groups, cn, width))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap()
            .reshape((kvh, groups * cn, width))
            .unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let want = att.matmul(&vals).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (
            ours.flatten_all().unwrap().to_vec1().unwrap(),
            want.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "value {i}: {x} vs {y}"
            );
        }
    }

    /// SiLU and GELU within a few ulps of candle's `silu` and `gelu` (ours run on our
    /// own `exp`, candle's on libm's `expf` and `tanhf`).
    #[test]
    fn gated_activation_follows_candle() {
        let dev = Device::Cpu;
        // Enough values for the parallel chunks, from -12 to 12 and some extremes.
        let mut g: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) * 6e-4).collect();
        g.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            80.0,
            -80.0,
            f32::INFINITY,
            f32::NAN,
        ]);
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let gate = Tensor::from_vec(g.clone(), (2, g.len() / 2), &dev).unwrap();
        let up = Tensor::from_vec(u, (2, g.len() / 2), &dev).unwrap();
        for (arch, plain) in [
            (Arch::Gemma3, (gate.gelu().unwrap() * &up).unwrap()),
            (
                Arch::Qwen2,
                (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap(),
            ),
        ] {
            let ours = gated_activation(arch, &gate, &up).unwrap();
            let (a, b): (Vec<f32>, Vec<f32>) = (
                ours.flatten_all().unwrap().to_vec1().unwrap(),
                plain.flatten_all().unwrap().to_vec1().unwrap(),
            );
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let close = match arch {
                    // For negative inputs candle's 1 + tanh z cancels: its error is up to
                    // half an ulp of 1 times |x| (times up, at most 2.5), which is what
                    // the second term allows.
                    Arch::Gemma3 => x == y || (x - y).abs() <= 1e-6 * y.abs() + 3e-7 * g[i].abs(),
                    // Our exp is within 2 ulps, libm's within one: a few ulps of the
                    // quotient (and e^88.7 overflows to ∞ one step earlier in ours).
                    _ => x == y || (x - y).abs() <= 1e-6 * y.abs() + 1e-30,
                };
                assert!(
                    close || (x.is_nan() && y.is_nan()),
                    "{arch:?} at {}: {x} vs {y}",
                    g[i]
                );
            }
        }
    }
}
