//! f32 matrix-vector product for one-row inputs (greedy decoding at batch 1), on the
//! transposed weights the model keeps for gemm (`[in, out]`, row-major).
//!
//! At one row the product is bound by how fast the weights stream from memory. candle's
//! matmul (gemm's generic kernel) reached 16 GB/s on the 122 MB Marian LM head on 2
//! cores, where the machine streams 33 GB/s (issue 4). Here each thread sweeps one
//! contiguous slab of rows, four rows per pass over its partial sums (which stay in
//! cache), and the partial sums are added at the end. Column blocks were slower: a block
//! narrow enough for L1 reads a few KB per row and then jumps a whole row ahead, which
//! costs a TLB miss and a prefetcher restart each time (NLLB head: 26 vs 33 GB/s).
//!
//! The hardware prefetcher stops at 4 KiB page boundaries, so on matrices with short
//! rows, where every pass starts new pages, the sweep prefetches 16 KiB ahead itself
//! (Marian-shaped decoder at batch 1: 98 → 114 tokens/s; it slowed the 1 MB-row NLLB
//! head, which the hardware streams well).

/// Whether [`gemv`] has a fast kernel on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y = x · wt (+ bias)` for `x` of `k` values and `wt` row-major [k, n]. Needs
/// [`available`].
pub fn gemv(x: &[f32], wt: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Vec<f32> {
    assert!(available(), "gemv needs AVX-512");
    assert_eq!(x.len(), k, "gemv: x has {} values, not {k}", x.len());
    assert_eq!(
        wt.len(),
        k * n,
        "gemv: matrix has {} values, not {k} × {n}",
        wt.len()
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "gemv: bias has {} values, not {n}", b.len());
    }
    let mut y = bias.map_or_else(|| vec![0f32; n], |b| b.to_vec());
    let threads = candle_core::utils::get_num_threads().max(1);
    // Small products run inline: waking the pool costs more than it saves.
    if k * n < 1 << 16 || threads == 1 {
        // SAFETY: AVX-512 asserted; wt holds k rows of n values.
        unsafe { sweep(x, wt, n, &mut y) };
        return y;
    }
    let slabs = threads.min(k.div_ceil(4));
    let rows = k.div_ceil(slabs);
    let mut partial = vec![0f32; slabs * n];
    let out = OutPtr(partial.as_mut_ptr());
    candle_core::utils::barrier_pool().execute_chunked(slabs, |range| {
        let out = &out;
        for s in range {
            let (r0, r1) = (s * rows, ((s + 1) * rows).min(k));
            // SAFETY: slab s alone writes partial[s·n .. (s+1)·n]; rows r0..r1 are in wt;
            // AVX-512 asserted.
            unsafe {
                let ys = std::slice::from_raw_parts_mut(out.0.add(s * n), n);
                sweep(&x[r0..r1], &wt[r0 * n..r1 * n], n, ys);
            }
        }
    });
    for p in partial.chunks_exact(n) {
        for (a, b) in y.iter_mut().zip(p) {
            *a += b;
        }
    }
    y
}

/// Adds `x · wt` to `y`, for `wt` row-major [x.len(), n] and `y` of n values.
///
/// # Safety
/// The CPU has AVX-512F; `wt.len() == x.len() · n`; `y.len() == n`.
unsafe fn sweep(x: &[f32], wt: &[f32], n: usize, y: &mut [f32]) {
    debug_assert!(wt.len() == x.len() * n && y.len() == n);
    #[cfg(target_arch = "x86_64")]
    if n <= 4096 {
        x86::sweep::<true>(x, wt.as_ptr(), n, y)
    } else {
        x86::sweep::<false>(x, wt.as_ptr(), n, y)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!(
        "gemv without AVX-512: {:?}",
        (x.len(), wt.len(), n, y.len())
    );
}

struct OutPtr(*mut f32);
// SAFETY: every slab writes its own part of the output (see `gemv`).
unsafe impl Sync for OutPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// How far ahead (bytes) the sweep prefetches when `PREFETCH` is on (prefetches
    /// past the end of the matrix are harmless: they never fault).
    const AHEAD: usize = 16 << 10;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn sweep<const PREFETCH: bool>(x: &[f32], wt: *const f32, n: usize, y: &mut [f32]) {
        let full = n / 16;
        let tail = n % 16;
        let mask: u16 = ((1u32 << tail) - 1) as u16;
        let yp = y.as_mut_ptr();
        let mut kk = 0;
        while kk + 4 <= x.len() {
            let (x0, x1, x2, x3) = (
                _mm512_set1_ps(x[kk]),
                _mm512_set1_ps(x[kk + 1]),
                _mm512_set1_ps(x[kk + 2]),
                _mm512_set1_ps(x[kk + 3]),
            );
            let r0 = wt.add(kk * n);
            let (r1, r2, r3) = (r0.add(n), r0.add(2 * n), r0.add(3 * n));
            for j in 0..full {
                let o = 16 * j;
                if PREFETCH {
                    let ahead = AHEAD / 4;
                    _mm_prefetch::<_MM_HINT_T0>(r0.add(o + ahead) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(r1.add(o + ahead) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(r2.add(o + ahead) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(r3.add(o + ahead) as *const i8);
                }
                let mut a = _mm512_loadu_ps(yp.add(o));
                a = _mm512_fmadd_ps(x0, _mm512_loadu_ps(r0.add(o)), a);
                a = _mm512_fmadd_ps(x1, _mm512_loadu_ps(r1.add(o)), a);
                a = _mm512_fmadd_ps(x2, _mm512_loadu_ps(r2.add(o)), a);
                a = _mm512_fmadd_ps(x3, _mm512_loadu_ps(r3.add(o)), a);
                _mm512_storeu_ps(yp.add(o), a);
            }
            if tail > 0 {
                let o = 16 * full;
                let mut a = _mm512_maskz_loadu_ps(mask, yp.add(o));
                a = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(mask, r0.add(o)), a);
                a = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(mask, r1.add(o)), a);
                a = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(mask, r2.add(o)), a);
                a = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(mask, r3.add(o)), a);
                _mm512_mask_storeu_ps(yp.add(o), mask, a);
            }
            kk += 4;
        }
        while kk < x.len() {
            let xv = _mm512_set1_ps(x[kk]);
            let r = wt.add(kk * n);
            for j in 0..full {
                let o = 16 * j;
                let a = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r.add(o)), _mm512_loadu_ps(yp.add(o)));
                _mm512_storeu_ps(yp.add(o), a);
            }
            if tail > 0 {
                let o = 16 * full;
                let a = _mm512_fmadd_ps(
                    xv,
                    _mm512_maskz_loadu_ps(mask, r.add(o)),
                    _mm512_maskz_loadu_ps(mask, yp.add(o)),
                );
                _mm512_mask_storeu_ps(yp.add(o), mask, a);
            }
            kk += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_float64_reference() {
        if !available() {
            return;
        }
        let mut s = 7u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // The inline path, row slabs (with a 4-row remainder), partial vectors, wide rows.
        for &(k, n) in &[
            (3, 5),
            (64, 256),
            (101, 300),
            (512, 1000),
            (33, 4113),
            (70, 20_011),
        ] {
            let x: Vec<f32> = (0..k).map(|_| r()).collect();
            let w: Vec<f32> = (0..k * n).map(|_| r()).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let y = gemv(&x, &w, k, n, Some(&b));
            for c in 0..n {
                let e: f64 = b[c] as f64
                    + (0..k)
                        .map(|i| x[i] as f64 * w[i * n + c] as f64)
                        .sum::<f64>();
                assert!(
                    (y[c] as f64 - e).abs() < 1e-4,
                    "k {k} n {n} col {c}: {} vs {e}",
                    y[c]
                );
            }
            let y0 = gemv(&x, &w, k, n, None);
            assert!(y0
                .iter()
                .zip(&y)
                .zip(&b)
                .all(|((a, c), bb)| (a + bb - c).abs() < 1e-5));
        }
    }
}
