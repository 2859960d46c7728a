//! Weight files of an encoder-decoder model: safetensors (one file or a sharded index),
//! PyTorch `pytorch_model.bin`, or GGUF (as written by candle's tensor-tools, tensors
//! under their Hugging Face names). Linear layers are dense f32, quantized GGML blocks
//! (`QMatMul`), or int8 per channel ([`Int8Matrix`], CPU only); `--quantize` turns dense
//! weights into one of the quantized forms at load time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::backend::int8::Int8Matrix;
use crate::backend::sgemm::PackedF32;
use crate::backend::with_cpu_f32;

/// A load-time quantization of the dense matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Per-channel int8 weights, per-row int8 activations, i32 accumulation (CPU).
    Int8,
    /// A GGML block type, through candle's `QMatMul` (CPU and CUDA).
    Ggml(GgmlDType),
}

impl Quant {
    /// The name `--quantize` takes, as recorded in outputs.
    pub fn name(self) -> String {
        match self {
            Quant::Int8 => "int8".into(),
            Quant::Ggml(t) => format!("{t:?}").to_ascii_lowercase(),
        }
    }
}

enum Store {
    Safetensors(candle_core::safetensors::MmapedSafetensors),
    Pth(Vec<candle_core::pickle::PthTensors>),
    Gguf(HashMap<String, Arc<QTensor>>),
}

pub struct Weights {
    store: Store,
    names: std::collections::HashSet<String>,
    pub device: Device,
    /// Quantize dense matrices to this type on load.
    pub quantize: Option<Quant>,
    /// The files that were read, for the record's digest.
    pub files: Vec<PathBuf>,
}

/// The weight files in a model directory, in order of preference.
pub fn find_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for index in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        let index = dir.join(index);
        if !index.is_file() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index)?)
            .with_context(|| format!("{} is not JSON", index.display()))?;
        let map = v["weight_map"]
            .as_object()
            .with_context(|| format!("{}: no weight_map", index.display()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    for name in ["model.safetensors", "pytorch_model.bin"] {
        if dir.join(name).is_file() {
            return Ok(vec![dir.join(name)]);
        }
    }
    let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    ggufs.sort();
    if let Some(g) = ggufs.into_iter().next() {
        return Ok(vec![g]);
    }
    bail!(
        "{}: no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin or *.gguf)",
        dir.display()
    )
}

impl Weights {
    pub fn open(files: &[PathBuf], device: &Device, quantize: Option<Quant>) -> Result<Self> {
        let first = files.first().context("no weight files")?;
        let ext = first.extension().and_then(|e| e.to_str()).unwrap_or("");
        let store = match ext {
            "safetensors" => {
                // SAFETY: the files are memory-mapped read-only; we never write to them.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(files) }
                    .with_context(|| {
                        format!("{}: not a valid safetensors file", first.display())
                    })?;
                Store::Safetensors(st)
            }
            "bin" | "pt" | "pth" => Store::Pth(
                files
                    .iter()
                    .map(|f| {
                        candle_core::pickle::PthTensors::new(f, None)
                            .with_context(|| format!("{}: not a PyTorch checkpoint", f.display()))
                    })
                    .collect::<Result<_>>()?,
            ),
            "gguf" => {
                let mut f = std::fs::File::open(first)
                    .with_context(|| format!("cannot open {}", first.display()))?;
                let content = gguf_file::Content::read(&mut f)
                    .with_context(|| format!("{}: not a valid GGUF file", first.display()))?;
                let mut map = HashMap::new();
                for name in content.tensor_infos.keys() {
                    let t = content
                        .tensor(&mut f, name, device)
                        .with_context(|| format!("{}: tensor {name}", first.display()))?;
                    map.insert(name.clone(), Arc::new(t));
                }
                Store::Gguf(map)
            }
            _ => bail!("{}: unknown weight format", first.display()),
        };
        let names = match &store {
            Store::Safetensors(s) => s.tensors().into_iter().map(|(n, _)| n).collect(),
            Store::Pth(ps) => ps
                .iter()
                .flat_map(|p| p.tensor_infos().keys().cloned())
                .collect(),
            Store::Gguf(m) => m.keys().cloned().collect(),
        };
        // The int8 kernels are CPU code; on a GPU the nearest GGML type does the job.
        let quantize = match quantize {
            Some(Quant::Int8) if !device.is_cpu() => {
                tracing::info!("int8 matmul runs on the CPU only; using q8_0 on {device:?}");
                Some(Quant::Ggml(GgmlDType::Q8_0))
            }
            q => q,
        };
        Ok(Self {
            store,
            names,
            device: device.clone(),
            quantize,
            files: files.to_vec(),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The first of `names` that exists.
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|n| self.has(n))
    }

    /// A tensor as f32 on the device.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = match &self.store {
            Store::Safetensors(s) => s.load(name, &self.device).ok(),
            Store::Pth(ps) => match ps.iter().find(|p| p.tensor_infos().contains_key(name)) {
                Some(p) => p
                    .get(name)?
                    .map(|t| t.to_device(&self.device))
                    .transpose()?,
                None => None,
            },
            Store::Gguf(m) => m
                .get(name)
                .map(|q| q.dequantize(&self.device))
                .transpose()?,
        };
        let t = t.with_context(|| format!("weight `{name}` is missing"))?;
        Ok(t.to_dtype(DType::F32)?)
    }

    /// A linear layer `y = x Wᵀ + b` from `prefix.weight` (and `prefix.bias` if present).
    pub fn linear(&self, prefix: &str, bias: bool) -> Result<Linear> {
        let wname = format!("{prefix}.weight");
        let w = self.matrix(&wname)?;
        let b = if bias && self.has(&format!("{prefix}.bias")) {
            Some(self.tensor(&format!("{prefix}.bias"))?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }

    /// A weight matrix [out, in] for matmuls, kept quantized if it is (or should be).
    pub fn matrix(&self, name: &str) -> Result<Matrix> {
        self.matrix_as(name, false)
    }

    /// As [`Weights::matrix`], for an LM head (see [`Weights::head`]).
    pub fn head_matrix(&self, name: &str) -> Result<Matrix> {
        self.matrix_as(name, true)
    }

    fn matrix_as(&self, name: &str, split: bool) -> Result<Matrix> {
        if let Store::Gguf(m) = &self.store {
            let q = m
                .get(name)
                .with_context(|| format!("weight `{name}` is missing"))?;
            if !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
                return Ok(Matrix::Quant(QMatMul::from_arc(q.clone())?));
            }
        }
        let t = self.tensor(name)?;
        self.dense_or_quantized_as(t, split)
    }

    /// Applies the load-time quantization, if any, to a dense [out, in] matrix.
    pub fn dense_or_quantized(&self, t: Tensor) -> Result<Matrix> {
        self.dense_or_quantized_as(t, false)
    }

    /// As [`Weights::dense_or_quantized`], for an LM head: packed f32 matrices keep
    /// their values' halves apart ([`PackedF32::pack_split`]), for greedy decoding.
    pub fn head(&self, t: Tensor) -> Result<Matrix> {
        self.dense_or_quantized_as(t, true)
    }

    fn dense_or_quantized_as(&self, t: Tensor, split: bool) -> Result<Matrix> {
        let (n, k) = t.dims2()?;
        match self.quantize {
            Some(Quant::Int8) if k.is_multiple_of(4) => {
                let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
                Ok(Matrix::Int8(Arc::new(Int8Matrix::quantize(&v, n, k))))
            }
            Some(Quant::Ggml(dt)) if k % dt.block_size() == 0 => {
                let q = QTensor::quantize(&t, dt)?;
                Ok(Matrix::Quant(QMatMul::from_qtensor(q)?))
            }
            // Packed once for our kernels (candle's gemm repacks on every call).
            _ if t.device().is_cpu() && crate::backend::sgemm::available() => {
                let p = with_cpu_f32(&t, |v| {
                    if split {
                        PackedF32::pack_split(v, n, k)
                    } else {
                        PackedF32::pack(v, n, k)
                    }
                })?;
                Ok(Matrix::Packed(Arc::new(p)))
            }
            // Elsewhere stored as [in, out], contiguous: with Wᵀ as a strided view, gemm
            // would repack the whole matrix on every call. On the CPU in huge pages,
            // which one-row decoding streams faster.
            _ => {
                let wt = t.t()?.contiguous()?;
                if !wt.device().is_cpu() {
                    return Ok(Matrix::Dense(wt));
                }
                let v = with_cpu_f32(&wt, crate::backend::hugepages::copied)?;
                Ok(Matrix::Dense(Tensor::from_vec(v, (k, n), &Device::Cpu)?))
            }
        }
    }
}

/// A weight matrix of shape [out, in] (dense ones are stored transposed, [in, out]).
#[derive(Debug, Clone)]
pub enum Matrix {
    Dense(Tensor),
    Packed(Arc<PackedF32>),
    Quant(QMatMul),
    Int8(Arc<Int8Matrix>),
}

/// `x Wᵀ (+ bias)` for x of shape [..., in] with one of our CPU kernels, `product(x,
/// rows, bias)`, for a matrix of `n` outputs and `k` inputs.
fn kernel_apply(
    (n, k): (usize, usize),
    x: &Tensor,
    bias: Option<&Tensor>,
    product: impl Fn(&[f32], usize, Option<&[f32]>) -> Vec<f32>,
) -> candle_core::Result<Tensor> {
    let y = kernel_vec(k, x, bias, product)?;
    let mut out = x.dims().to_vec();
    *out.last_mut().expect("non-empty") = n;
    Tensor::from_vec(y, out, &Device::Cpu)
}

/// As [`kernel_apply`], the product left as a row-major vector.
fn kernel_vec(
    k: usize,
    x: &Tensor,
    bias: Option<&Tensor>,
    product: impl Fn(&[f32], usize, Option<&[f32]>) -> Vec<f32>,
) -> candle_core::Result<Vec<f32>> {
    let kx = *x.dims().last().expect("x has a last dimension");
    if kx != k {
        candle_core::bail!("matmul: input has {kx} features, the matrix {k}");
    }
    let rows = x.elem_count() / k.max(1);
    with_cpu_f32(x, |xv| match bias {
        Some(b) => with_cpu_f32(b, |bv| product(xv, rows, Some(bv))),
        None => Ok(product(xv, rows, None)),
    })?
}

fn packed_apply(m: &PackedF32, x: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    kernel_apply((m.rows(), m.cols()), x, bias, |x, r, b| m.matmul(x, r, b))
}

fn int8_apply(m: &Int8Matrix, x: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    kernel_apply((m.rows(), m.cols()), x, bias, |x, r, b| m.matmul(x, r, b))
}

impl Matrix {
    /// `x Wᵀ` for x of shape [..., in].
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Matrix::Dense(wt) => dense_apply(wt, x, None),
            Matrix::Packed(m) => packed_apply(m, x, None),
            Matrix::Quant(q) => q.forward(x),
            Matrix::Int8(m) => int8_apply(m, x, None),
        }
    }
}

/// `x · wt (+ bias)` for dense `wt` [in, out] through candle's matmul (GPUs, and CPUs
/// without AVX2 and FMA).
fn dense_apply(wt: &Tensor, x: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().expect("x has a last dimension");
    let rows = x.elem_count() / k.max(1);
    let (_, n) = wt.dims2()?;
    let mut out = dims;
    *out.last_mut().expect("non-empty") = n;
    let y = x.reshape((rows, k))?.matmul(wt)?.reshape(out)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Matrix,
    pub b: Option<Tensor>,
}

impl Linear {
    /// Our kernels add the bias as they write the output; `QMatMul` needs an extra op.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.w {
            Matrix::Int8(m) => int8_apply(m, x, self.b.as_ref()),
            Matrix::Dense(wt) => dense_apply(wt, x, self.b.as_ref()),
            Matrix::Packed(m) => packed_apply(m, x, self.b.as_ref()),
            Matrix::Quant(q) => {
                let y = q.forward(x)?;
                match &self.b {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }

    /// As [`Linear::forward`], the f32 output as one row-major vector: our CPU kernels
    /// hand theirs over without the copy out of a tensor.
    pub fn forward_vec(&self, x: &Tensor) -> candle_core::Result<Vec<f32>> {
        let b = self.b.as_ref();
        match &self.w {
            Matrix::Int8(m) => kernel_vec(m.cols(), x, b, |x, r, b| m.matmul(x, r, b)),
            Matrix::Packed(m) => kernel_vec(m.cols(), x, b, |x, r, b| m.matmul(x, r, b)),
            _ => self
                .forward(x)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_device(&Device::Cpu)?
                .to_vec1(),
        }
    }
}

/// Parses a `--quantize` value.
pub fn parse_quant(s: &str) -> Result<Option<Quant>> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" | "f32" | "" => None,
        "int8" => Some(Quant::Int8),
        "q8_0" => Some(Quant::Ggml(GgmlDType::Q8_0)),
        "q4_0" => Some(Quant::Ggml(GgmlDType::Q4_0)),
        "q4k" | "q4_k" => Some(Quant::Ggml(GgmlDType::Q4K)),
        "q6k" | "q6_k" => Some(Quant::Ggml(GgmlDType::Q6K)),
        other => bail!("unknown quantization `{other}` (none, int8, q8_0, q4_0, q4k, q6k)"),
    })
}
