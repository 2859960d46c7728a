//! Model backends. One narrow trait per kind of model; an enum picks the concrete
//! implementation from the model's own metadata.

pub mod decoder;
pub mod gguf;
pub mod hugepages;
pub mod int8;
pub mod qmm;
pub mod seq2seq;
pub mod sgemm;
pub mod vmath;

use candle_core::Device;

/// Whether the CPU kernels may use AVX-512 and VNNI where the CPU has them. Setting
/// `TARJUMA_FORCE_CPU_ISA=avx2` keeps every product on the AVX2 kernels (as
/// CTranslate2's `CT2_FORCE_CPU_ISA` does), so figures can be compared across kernels
/// in one build and on one machine. The kernels give the same bits either way.
pub fn wide_isa_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| match std::env::var("TARJUMA_FORCE_CPU_ISA") {
        Ok(v) if v.eq_ignore_ascii_case("avx2") => false,
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("best") => true,
        Ok(v) => {
            tracing::warn!("TARJUMA_FORCE_CPU_ISA={v:?} is not `avx2` or `best`; using the best");
            true
        }
        Err(_) => true,
    })
}

/// A decoder-only language model with a KV cache.
pub trait CausalLm {
    /// Runs `tokens` at positions `pos..pos + tokens.len()` and returns the logits
    /// (f32, one per vocabulary entry) of the last position. `pos == 0` starts afresh.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>>;
    /// Largest number of positions the model (as loaded) supports.
    fn max_positions(&self) -> usize;
}

/// Keeps freed activation buffers in the process heap. glibc serves every allocation
/// over 128 KiB–32 MiB with a fresh `mmap` and unmaps it on free, so each forward pass
/// paid page faults and page clearing for its scores and activations (5 % of a
/// 1024-token prefill, issue 13). Peak memory is unchanged; it is just not returned
/// between passes.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Returns freed heap memory to the system. [`tune_allocator`] keeps freed buffers for
/// reuse, so what loading a model frees (GGUF metadata, the tokenizer's build-time
/// tables: tens of MiB for Gemma 3's 262k-entry vocabulary) would otherwise stay
/// resident for the whole run (issue 13).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free pages of the heap back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> anyhow::Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match spec.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| anyhow::anyhow!("bad device `{spec}`: use cpu, cuda or cuda:N"))?,
        None => anyhow::bail!("bad device `{spec}`: use cpu, cuda or cuda:N"),
    };
    if !candle_core::utils::cuda_is_available() {
        anyhow::bail!("device `{spec}` needs a CUDA build: rebuild with `cargo build --release --features cuda`");
    }
    Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("cannot open {spec}: {e}"))
}

/// Runs `f` on the values of a contiguous f32 CPU tensor without copying them.
pub(crate) fn with_cpu_f32<R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("expected a CPU tensor, found one on {:?}", t.device())
    };
    let v = cpu.as_slice::<f32>()?;
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("tensor not contiguous".into()))?;
    Ok(f(&v[a..b]))
}

/// `out += softmax(scores) · vals` (`vals`: one row of `out.len()` values per score),
/// the softmax as candle's (max subtracted, `exp`, divided by the sum) on our vector
/// `exp` (the LLM decoder's attention; the translators' is in `seq2seq::attention`).
pub(crate) fn softmax_mix(scores: &mut [f32], vals: &[f32], out: &mut [f32]) {
    vmath::softmax(scores);
    for (&w, val) in scores.iter().zip(vals.chunks_exact(out.len())) {
        for (a, &b) in out.iter_mut().zip(val) {
            *a += w * b;
        }
    }
}

/// Panics unless `x` holds `m × k` values and the bias (if any) `n`: the contract of our
/// CPU matrix products `y = x Wᵀ + b` for W [n, k].
pub(crate) fn check_product(x: &[f32], m: usize, (n, k): (usize, usize), bias: Option<&[f32]>) {
    assert_eq!(
        x.len(),
        m * k,
        "input has {} values, not {m} × {k}",
        x.len()
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias has {} values, not {n}", b.len());
    }
}

/// A reproducible stream of values uniform in [-amp, amp), for the kernels' tests.
#[cfg(test)]
pub(crate) fn test_values(seed: u64, amp: f32) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * amp
    }
}
