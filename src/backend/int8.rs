//! Int8 matrix multiplication for CPU inference, the scheme CTranslate2 and oneDNN use:
//! weights quantized once, symmetrically per output channel (`scale = max|w| / 127`);
//! activations quantized per row on every call; products accumulated exactly in i32
//! and rescaled to f32 by `scale_row · scale_channel` (Jacob et al., 2018, "Quantization
//! and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference").
//!
//! candle's Q8_0 matmul computes each output as its own dot product over 32-element
//! blocks, so at 16 or more rows it rereads every weight block per row and spends a third
//! of its time in its pool's barrier (issue 4). Here weights are packed in panels of 64
//! output channels, and a register-blocked kernel (4 rows × 64 channels of i32
//! accumulators) reuses each loaded weight vector for 4 rows. Up to 32 rows pass over a
//! panel before the next rows come; the AVX2 kernel takes the panel in 256-deep slices
//! so that the slice stays in L1 for all of them (issue 13).
//!
//! Kernels, chosen at run time: AVX-512 VNNI (`vpdpbusd`, u8 × i8; activations are
//! offset by 128 and the offset removed with per-channel weight sums), AVX2 (the sign
//! trick: |x| × sign(x)·w with `vpmaddubsw`, no saturation since |q| ≤ 127), and a
//! portable one. All three compute the same integers, so they give bit-identical outputs.

use std::sync::OnceLock;

/// Output channels per packed panel.
const PANEL: usize = 64;
/// Rows per register block.
const MR: usize = 4;
/// Rows that pass over one panel before the next rows come (a multiple of MR).
const GROUP: usize = 32;
/// Inputs per depth slice of the AVX2 kernel (a multiple of 4).
const SLICE: usize = 256;
/// Bytes ahead of its weight stream that the VNNI kernel prefetches. The hardware
/// prefetchers alone left the NLLB head ([256206, 1024]) at 0.9 of one row's bytes per
/// second with four rows (beam search at batch 1); 4 KiB ahead gave four rows 1.05–1.09×,
/// sixteen 1.06–1.08× and one 1.03× (AMD EPYC, family 26; 25 alternations in one process).
const AHEAD: usize = 4096;

/// A weight matrix [n, k] (`y = x Wᵀ`) quantized to int8 per output channel.
#[derive(Clone)]
pub struct Int8Matrix {
    n: usize,
    k: usize,
    /// Panels of 64 channels; inside a panel, for each group of 4 inputs, the 4 bytes of
    /// channel 0, then of channel 1, … (64 × 4 bytes). Channels past `n` are zero.
    packed: Vec<i8>,
    /// Per-channel scales, padded with zeros to whole panels.
    scale: Vec<f32>,
    /// 128 × the sum of each channel's quantized weights (the VNNI offset correction).
    offset: Vec<i32>,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Int8Matrix[{}, {}]", self.n, self.k)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Avx512Vnni,
    Avx2,
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && crate::backend::wide_isa_allowed()
                {
                    return Kernel::Avx512Vnni;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Kernel::Avx2;
                }
            }
            Kernel::Portable
        })
    }

    /// Every kernel this CPU can run (for tests).
    pub fn available() -> Vec<Kernel> {
        let mut v = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Kernel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                v.push(Kernel::Avx512Vnni);
            }
        }
        v
    }
}

/// Quantizes a row to int8 with one symmetric scale; returns the scale.
fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    // f32::max skips NaN, so NaN is carried separately.
    let (amax, nan) = x.iter().fold((0f32, false), |(m, nan), v| {
        (m.max(v.abs()), nan || v.is_nan())
    });
    let amax = if nan { f32::NAN } else { amax };
    if amax == 0.0 || !amax.is_finite() {
        // Non-finite rows give non-finite outputs, as a float matmul would.
        let s = if amax == 0.0 { 0.0 } else { f32::NAN };
        q.fill(0);
        return s;
    }
    let inv = 127.0 / amax;
    // Adding and removing 1.5·2²³ rounds half to even (|v·inv| ≤ 127) and, unlike
    // `round_ties_even` without SSE4.1, vectorizes.
    const MAGIC: f32 = 12_582_912.0;
    for (d, &v) in q.iter_mut().zip(x) {
        *d = ((v * inv + MAGIC) - MAGIC) as i8;
    }
    amax / 127.0
}

impl Int8Matrix {
    /// Quantizes `w`, row-major [n, k]. `k` must be a multiple of 4.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Int8Matrix {
        assert_eq!(
            w.len(),
            n * k,
            "weight has {} values, not {n} × {k}",
            w.len()
        );
        assert!(
            k.is_multiple_of(4) && k > 0,
            "int8 matmul needs k divisible by 4 (k = {k})"
        );
        let panels = n.div_ceil(PANEL);
        let k4 = k / 4;
        let mut packed = crate::backend::hugepages::filled(panels * PANEL * k, 0i8);
        let mut scale = vec![0f32; panels * PANEL];
        let mut offset = vec![0i32; panels * PANEL];
        let mut q = vec![0i8; k];
        for c in 0..n {
            let s = quantize_row(&w[c * k..(c + 1) * k], &mut q);
            scale[c] = s;
            offset[c] = 128 * q.iter().map(|&v| v as i32).sum::<i32>();
            let (p, lane) = (c / PANEL, c % PANEL);
            let base = p * PANEL * k;
            for g in 0..k4 {
                let dst = base + g * PANEL * 4 + lane * 4;
                packed[dst..dst + 4].copy_from_slice(&q[g * 4..g * 4 + 4]);
            }
        }
        Int8Matrix {
            n,
            k,
            packed,
            scale,
            offset,
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    /// `y = x Wᵀ (+ bias)` for `x` row-major [m, k]; returns [m, n].
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(Kernel::best(), x, m, bias)
    }

    /// As [`matmul`](Self::matmul), with a given kernel (which the CPU must support).
    pub fn matmul_with(
        &self,
        kernel: Kernel,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        crate::backend::check_product(x, m, (n, k), bias);
        assert!(
            kernel == Kernel::best() || Kernel::available().contains(&kernel),
            "{kernel:?} is not supported by this CPU"
        );
        // Quantized rows: i8 for the AVX2 and portable kernels; for VNNI offset by 128
        // (u8, stored in the same buffer).
        let mut xq = vec![0i8; m * k];
        let mut xs = vec![0f32; m];
        let (qp, sp) = (
            crate::backend::qmm::SendPtr::new(xq.as_mut_ptr()),
            crate::backend::qmm::SendPtr::new(xs.as_mut_ptr()),
        );
        // In parallel for a prompt's rows (a few % of the encoder's time when serial).
        crate::backend::qmm::parallel(m, m * k >= 1 << 16, |rows| {
            for r in rows {
                // SAFETY: each row's bytes and scale are written by one task alone.
                let (dst, sc) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(qp.get().add(r * k), k),
                        &mut *sp.get().add(r),
                    )
                };
                let src = &x[r * k..(r + 1) * k];
                *sc = match kernel {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: the CPU has AVX-512 (checked above); slices have equal lengths.
                    Kernel::Avx512Vnni => unsafe { x86::quantize_row_u8(src, dst) },
                    _ => quantize_row(src, dst),
                };
            }
        });
        let mut y = vec![0f32; m * n];
        let panels = n.div_ceil(PANEL);
        let out = OutPtr(y.as_mut_ptr());
        let work = |range: std::ops::Range<usize>| {
            let out = &out;
            let mut acc = vec![[0i32; PANEL]; GROUP];
            for p in range {
                let wp = &self.packed[p * PANEL * k..(p + 1) * PANEL * k];
                let c0 = p * PANEL;
                let width = PANEL.min(n - c0);
                let mut r0 = 0;
                while r0 < m {
                    let rows = GROUP.min(m - r0);
                    let xr = &xq[r0 * k..(r0 + rows) * k];
                    run_kernel(kernel, xr, rows, k, wp, &mut acc[..rows], r0 == 0);
                    for (i, a) in acc.iter().enumerate().take(rows) {
                        let r = r0 + i;
                        // SAFETY: chunks own disjoint panels, so disjoint columns of `y`;
                        // r < m and c0 + width ≤ n.
                        let row =
                            unsafe { std::slice::from_raw_parts_mut(out.0.add(r * n + c0), width) };
                        let off = if kernel == Kernel::Avx512Vnni {
                            &self.offset[c0..c0 + width]
                        } else {
                            &ZERO[..width]
                        };
                        let sc = &self.scale[c0..c0 + width];
                        let s = xs[r];
                        // Sliced to `width` first, so that both loops vectorize (indexing
                        // the bias at `c0 + j` kept the biased one scalar).
                        let a = &a[..width];
                        match bias {
                            Some(b) => {
                                let b = &b[c0..c0 + width];
                                for j in 0..width {
                                    row[j] = (a[j] - off[j]) as f32 * (s * sc[j]) + b[j];
                                }
                            }
                            None => {
                                for j in 0..width {
                                    row[j] = (a[j] - off[j]) as f32 * (s * sc[j]);
                                }
                            }
                        }
                    }
                    r0 += rows;
                }
            }
        };
        // Small products run inline: waking the pool costs more than it saves.
        if m * n * k < 1 << 18 {
            work(0..panels);
        } else {
            // candle's own pool: its threads are the ones its quantized matmuls use (so
            // the two never compete for cores), it spins briefly before parking, and the
            // calling thread takes part.
            candle_core::utils::barrier_pool().execute_chunked(panels, work);
        }
        y
    }
}

const ZERO: [i32; PANEL] = [0; PANEL];

struct OutPtr(*mut f32);
// SAFETY: every chunk writes a disjoint set of columns (see `matmul_with`).
unsafe impl Sync for OutPtr {}

/// Accumulates `rows` (≤ GROUP) quantized rows against one panel into `acc`.
fn run_kernel(
    kernel: Kernel,
    x: &[i8],
    rows: usize,
    k: usize,
    w: &[i8],
    acc: &mut [[i32; PANEL]],
    first: bool,
) {
    debug_assert!(x.len() >= rows * k && w.len() == PANEL * k && acc.len() >= rows);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `matmul_with` checked that the CPU has AVX-512 VNNI; slices are in bounds.
        Kernel::Avx512Vnni => unsafe {
            for (b, a) in acc[..rows].chunks_mut(MR).enumerate() {
                let xb = x[b * MR * k..].as_ptr();
                // The first row block streams the panel in from memory; the others find
                // it in cache.
                let ahead = if first && b == 0 { AHEAD } else { 0 };
                match a.len() {
                    4 => x86::vnni::<4>(xb, k, w.as_ptr(), a, ahead),
                    3 => x86::vnni::<3>(xb, k, w.as_ptr(), a, ahead),
                    2 => x86::vnni::<2>(xb, k, w.as_ptr(), a, ahead),
                    _ => x86::vnni::<1>(xb, k, w.as_ptr(), a, ahead),
                }
            }
        },
        // Depth slices: a panel's slice (16 KiB) stays in L1 while all the rows pass over
        // it; whole panels (32 KiB and more) came from L2 once per row (issue 13).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `matmul_with` checked that the CPU has AVX2; slices are in bounds.
        Kernel::Avx2 => unsafe {
            let mut k0 = 0;
            while k0 < k {
                let depth = SLICE.min(k - k0);
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    let (xr, wr) = (x[r * k + k0..].as_ptr(), w[k0 * PANEL..].as_ptr());
                    x86::avx2(xr, depth, wr, a, k0 > 0);
                }
                k0 += depth;
            }
        },
        _ => {
            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                portable(&x[r * k..(r + 1) * k], w, a);
            }
        }
    }
}

fn portable(x: &[i8], w: &[i8], acc: &mut [i32; PANEL]) {
    acc.fill(0);
    for (g, xg) in x.chunks_exact(4).enumerate() {
        let wg = &w[g * PANEL * 4..(g + 1) * PANEL * 4];
        for (c, a) in acc.iter_mut().enumerate() {
            let wc = &wg[c * 4..c * 4 + 4];
            *a += (0..4).map(|t| xg[t] as i32 * wc[t] as i32).sum::<i32>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// R rows of u8 activations (stride k) × one panel, with `vpdpbusd`; fetches the
    /// weights `ahead` bytes on (none when 0).
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn vnni<const R: usize>(
        x: *const i8,
        k: usize,
        w: *const i8,
        acc: &mut [[i32; PANEL]],
        ahead: usize,
    ) {
        let mut a = [[_mm512_setzero_si512(); 4]; R];
        for g in 0..k / 4 {
            let wp = w.add(g * PANEL * 4);
            if ahead > 0 {
                // Prefetches never fault: past the panel is the next one, or nothing.
                let pf = wp.wrapping_add(ahead);
                for l in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(l * 64));
                }
            }
            let w0 = _mm512_loadu_si512(wp as *const _);
            let w1 = _mm512_loadu_si512(wp.add(64) as *const _);
            let w2 = _mm512_loadu_si512(wp.add(128) as *const _);
            let w3 = _mm512_loadu_si512(wp.add(192) as *const _);
            for (r, ar) in a.iter_mut().enumerate() {
                let xv = _mm512_set1_epi32((x.add(r * k + g * 4) as *const i32).read_unaligned());
                ar[0] = _mm512_dpbusd_epi32(ar[0], xv, w0);
                ar[1] = _mm512_dpbusd_epi32(ar[1], xv, w1);
                ar[2] = _mm512_dpbusd_epi32(ar[2], xv, w2);
                ar[3] = _mm512_dpbusd_epi32(ar[3], xv, w3);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            for (b, v) in ar.iter().enumerate() {
                _mm512_storeu_si512(acc[r][b * 16..].as_mut_ptr() as *mut _, *v);
            }
        }
    }

    /// [`super::quantize_row`] with 128 added to every value (u8 for `vpdpbusd`); the
    /// same rounding (to nearest even), so the same integers.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn quantize_row_u8(x: &[f32], q: &mut [i8]) -> f32 {
        debug_assert_eq!(x.len(), q.len());
        let n = x.len();
        let tail = (1u32 << (n % 16)) as u16 - 1;
        let load = |i: usize| {
            if i + 16 <= n {
                _mm512_loadu_ps(x.as_ptr().add(i))
            } else {
                _mm512_maskz_loadu_ps(tail, x.as_ptr().add(i))
            }
        };
        let (mut vmax, mut nan) = (_mm512_setzero_ps(), 0u16);
        let mut i = 0;
        while i < n {
            let v = load(i);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v));
            i += 16;
        }
        let amax = _mm512_reduce_max_ps(vmax);
        if nan != 0 || amax == 0.0 || !amax.is_finite() {
            q.fill(0x80u8 as i8);
            return if amax == 0.0 && nan == 0 {
                0.0
            } else {
                f32::NAN
            };
        }
        let inv = _mm512_set1_ps(127.0 / amax);
        let off = _mm512_set1_epi32(128);
        let mut i = 0;
        while i < n {
            let r = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(load(i), inv)), off);
            let b = _mm512_cvtepi32_epi8(r);
            if i + 16 <= n {
                _mm_storeu_si128(q.as_mut_ptr().add(i) as *mut _, b);
            } else {
                _mm_mask_storeu_epi8(q.as_mut_ptr().add(i), tail, b);
            }
            i += 16;
        }
        amax / 127.0
    }

    /// One row of i8 activations × `k` inputs of one panel, with `vpmaddubsw` on |x|
    /// and sign(x)·w; adds to `acc` when `add`, else overwrites it.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2(x: *const i8, k: usize, w: *const i8, acc: &mut [i32; PANEL], add: bool) {
        let ones = _mm256_set1_epi16(1);
        let mut a = [_mm256_setzero_si256(); 8];
        if add {
            for (i, ai) in a.iter_mut().enumerate() {
                *ai = _mm256_loadu_si256(acc[i * 8..].as_ptr() as *const _);
            }
        }
        for g in 0..k / 4 {
            let xv = _mm256_set1_epi32((x.add(g * 4) as *const i32).read_unaligned());
            let ax = _mm256_sign_epi8(xv, xv);
            let wp = w.add(g * PANEL * 4);
            for (i, ai) in a.iter_mut().enumerate() {
                let wv = _mm256_loadu_si256(wp.add(i * 32) as *const _);
                let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
                *ai = _mm256_add_epi32(*ai, _mm256_madd_epi16(p, ones));
            }
        }
        for (i, v) in a.iter().enumerate() {
            _mm256_storeu_si256(acc[i * 8..].as_mut_ptr() as *mut _, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(w: &[f32], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                y[r * n + c] = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[c * k + i] as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    #[test]
    fn kernels_agree_bit_for_bit_and_track_f32() {
        // Shapes with partial panels, partial row blocks and groups, partial depth
        // slices, and enough rows to quantize them in parallel.
        for &(m, n, k) in &[
            (1, 1, 4),
            (3, 70, 36),
            (5, 64, 128),
            (9, 131, 260),
            (16, 200, 512),
            (37, 65, 1028),
            (140, 64, 600),
        ] {
            let mut r = crate::backend::test_values((m * 1000 + n * 10 + k) as u64, 1.0);
            let w: Vec<f32> = (0..n * k).map(|_| r()).collect();
            let x: Vec<f32> = (0..m * k).map(|_| r() * 3.0).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let q = Int8Matrix::quantize(&w, n, k);
            let base = q.matmul_with(Kernel::Portable, &x, m, Some(&b));
            for kern in Kernel::available() {
                let y = q.matmul_with(kern, &x, m, Some(&b));
                assert_eq!(
                    y, base,
                    "{kern:?} differs from the portable kernel at {m}×{n}×{k}"
                );
            }
            let mut f = reference(&w, &x, m, n, k);
            for (i, v) in f.iter_mut().enumerate() {
                *v += b[i % n];
            }
            let err: f64 = f
                .iter()
                .zip(&base)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>();
            let norm: f64 = f.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
            let rel = (err / norm).sqrt();
            assert!(rel < 0.02, "int8 relative error {rel} at {m}×{n}×{k}");
        }
    }

    #[test]
    fn zero_rows_give_bias_and_nan_rows_propagate() {
        let (n, k) = (3, 8);
        let w: Vec<f32> = (0..n * k).map(|i| i as f32 / 10.0).collect();
        let q = Int8Matrix::quantize(&w, n, k);
        let mut x = vec![0f32; 2 * k];
        x[k] = f32::NAN;
        let y = q.matmul(&x, 2, Some(&[1.0, 2.0, 3.0]));
        assert_eq!(&y[..3], &[1.0, 2.0, 3.0]);
        assert!(y[3..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn quantization_is_per_channel() {
        // A channel 1000× larger than the other must not wipe out the small one.
        let k = 4;
        let w = [0.001, -0.002, 0.003, 0.004, 1.0, 2.0, -3.0, 4.0];
        let q = Int8Matrix::quantize(&w, 2, k);
        let y = q.matmul(&[1.0, 1.0, 1.0, 1.0], 1, None);
        assert!((y[0] - 0.006).abs() < 1e-4, "{}", y[0]);
        assert!((y[1] - 4.0).abs() < 0.05, "{}", y[1]);
    }
}
