//! f32 products `y = x Wᵀ + b` for the translators' dense layers, on weights packed once
//! at load (issue 13).
//!
//! candle's matmul (the `gemm` crate) packs the weight operand again on every call: for a
//! decoding step at batch 16 it reads and rewrites every matrix, the 122 MB Marian LM head
//! included, before multiplying, and ran at about a tenth of the cores' FMA peak. Here the
//! weights are stored the way the micro-kernel reads them, so each call streams them once:
//!
//! - panels of 16 output channels; inside a panel, for each input index, the 16 weights
//!   of those channels side by side (one aligned pair of AVX registers);
//! - a register-blocked kernel of up to 6 input rows × 16 channels (12 accumulators, so
//!   the FMA latency never binds; each weight vector loaded once serves 6 rows; the
//!   register blocking of Goto & van de Geijn, 2008, "Anatomy of High-Performance Matrix
//!   Multiplication");
//! - inputs are read in place (a broadcast per row and input index), so nothing is
//!   copied per call; the depth is cut into 256-deep slices so that a panel's slice and
//!   the rows it meets stay in L1 while several row blocks pass over it;
//! - one row (greedy decoding at batch 1) is a pure stream over the panels, at memory
//!   bandwidth;
//! - the bias is added as the outputs are written.
//!
//! Work is split over (row block, panel group) items on candle's barrier pool. Every
//! output is summed in the same order whatever the number of rows (input indices in
//! order within a 256-deep slice, then slice after slice), so a sentence's outputs are
//! bit for bit the same alone or inside any batch; they differ from candle's matmul by
//! rounding.

/// Output channels per panel.
pub const NR: usize = 16;
/// Rows per register block.
const MR: usize = 6;
/// Input depth per slice.
const KC: usize = 256;
/// Rows per block of work items (a multiple of MR).
const MC: usize = 96;
const _: () = assert!(MC.is_multiple_of(MR));
/// Panels per work item.
const PANELS_PER_ITEM: usize = 4;

/// Whether this CPU runs the packed kernels (AVX2 and FMA).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A dense f32 weight matrix [n, k] (`y = x Wᵀ`), packed for [`PackedF32::matmul`].
pub struct PackedF32 {
    n: usize,
    k: usize,
    /// `n.div_ceil(NR)` panels of `k × NR` values from `data[start]` (64-byte aligned,
    /// so no load splits a cache line); channels past `n` are zero.
    data: Vec<f32>,
    start: usize,
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedF32[{}, {}]", self.n, self.k)
    }
}

impl PackedF32 {
    /// Packs `w`, row-major [n, k] (PyTorch's [out, in]).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "matrix has {} values, not {n} × {k}",
            w.len()
        );
        let panels = n.div_ceil(NR);
        // Huge pages: one-row decoding streams the whole matrix per token.
        let mut data = crate::backend::hugepages::filled(panels * k * NR + NR, 0f32);
        let start = data.as_ptr().align_offset(64).min(NR);
        for p in 0..panels {
            let panel = &mut data[start + p * k * NR..start + (p + 1) * k * NR];
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * NR + j] = v;
                }
            }
        }
        PackedF32 { n, k, data, start }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// `y = x Wᵀ (+ bias)` for `x` row-major [m, k]; returns [m, n]. Needs [`available`].
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        assert!(available(), "the packed f32 kernels need AVX2 and FMA");
        crate::backend::check_product(x, m, (n, k), bias);
        let mut y = vec![0f32; m * n];
        if m == 0 || n == 0 {
            return y;
        }
        let panels = n.div_ceil(NR);
        let groups = panels.div_ceil(PANELS_PER_ITEM);
        let blocks = m.div_ceil(MC);
        let out = OutPtr(y.as_mut_ptr());
        let work = |items: std::ops::Range<usize>| {
            let out = &out;
            for item in items {
                let (b, g) = (item / groups, item % groups);
                let rows = b * MC..(b * MC + MC).min(m);
                let ps = g * PANELS_PER_ITEM..(g * PANELS_PER_ITEM + PANELS_PER_ITEM).min(panels);
                // SAFETY: items own disjoint (row block, panel group) rectangles of `y`;
                // AVX2 and FMA asserted above; every index stays inside x, data and y.
                unsafe { self.block(x, rows, ps, bias, out.0) };
            }
        };
        let items = blocks * groups;
        // Small products run inline: waking the pool costs more than it saves.
        crate::backend::qmm::parallel(items, m * n * k >= 1 << 18, work);
        y
    }

    /// Rows `rows` × panels `ps` of the product, written into `y` ([m, n]).
    ///
    /// # Safety
    /// AVX2 and FMA; no other thread writes this rectangle of `y`.
    unsafe fn block(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        ps: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        y: *mut f32,
    ) {
        let (n, k) = (self.n, self.k);
        let panel = |p: usize, k0: usize| self.data.as_ptr().add(self.start + (p * k + k0) * NR);
        // `next`: the slice visited after this one, fetched into cache while the first
        // row block works on this one.
        let tile = |p: usize, k0: usize, next: Option<(usize, usize)>| {
            let depth = KC.min(k - k0);
            let c0 = p * NR;
            let init = if k0 > 0 {
                Init::Add
            } else {
                match bias {
                    Some(b) => Init::Bias(b.as_ptr().add(c0)),
                    None => Init::Zero,
                }
            };
            let mut r = rows.start;
            while r < rows.end {
                let rr = MR.min(rows.end - r);
                let t = Tile {
                    x: x.as_ptr().add(r * k + k0),
                    ldx: k,
                    w: panel(p, k0),
                    depth,
                    prefetch: match next {
                        Some((np, nk)) if r == rows.start => panel(np, nk),
                        _ => std::ptr::null(),
                    },
                    y: y.add(r * n + c0),
                    ldy: n,
                    width: NR.min(n - c0),
                    init,
                };
                #[cfg(target_arch = "x86_64")]
                match rr {
                    6 => x86::tile::<6>(&t),
                    5 => x86::tile::<5>(&t),
                    4 => x86::tile::<4>(&t),
                    3 => x86::tile::<3>(&t),
                    2 => x86::tile::<2>(&t),
                    _ => x86::tile::<1>(&t),
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("packed f32 kernels without x86: {}", t.depth);
                r += rr;
            }
        };
        // The visiting order changes which panel comes first, never the order of an
        // output's sums (slice after slice). A couple of row blocks reuse nothing across
        // panels: stream the panels in memory order. More rows: every row block passes
        // over a panel's slice while it is in L1.
        let (slices, panels) = (k.div_ceil(KC), ps.len());
        let panel_major = rows.len() <= 2 * MR;
        let visit = |v: usize| {
            let (p, s) = if panel_major {
                (v / slices, v % slices)
            } else {
                (v % panels, v / panels)
            };
            (ps.start + p, s * KC)
        };
        // In memory order the hardware prefetchers keep up with the stream, and software
        // prefetches on top only take fill buffers from it (NLLB f32 at batch 1, `benches/
        // nmt.rs`: 1.12× faster without them). They pay only where the order jumps.
        let visits = slices * panels;
        for v in 0..visits {
            let (p, k0) = visit(v);
            let next = (!panel_major && v + 1 < visits).then(|| visit(v + 1));
            tile(p, k0, next);
        }
    }
}

/// How a tile's outputs start: zero, the bias, or what an earlier depth slice wrote.
#[derive(Clone, Copy)]
enum Init {
    Zero,
    Bias(*const f32),
    Add,
}

/// One register block: up to MR rows of `x` (stride `ldx`) × one panel slice `w`
/// (`depth × NR`), written to `y` (stride `ldy`, `width` valid columns).
struct Tile {
    x: *const f32,
    ldx: usize,
    w: *const f32,
    depth: usize,
    /// A slice to prefetch meanwhile (or null).
    prefetch: *const f32,
    y: *mut f32,
    ldy: usize,
    width: usize,
    init: Init,
}

struct OutPtr(*mut f32);
// SAFETY: every work item writes its own rectangle of the output (see `matmul`).
unsafe impl Sync for OutPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Init, Tile, NR};
    use std::arch::x86_64::*;

    /// R rows × 16 channels, one accumulator pair per row, input indices in order.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (x, w) = (t.x, t.w);
        for kk in 0..t.depth {
            let wp = w.add(kk * NR);
            if !t.prefetch.is_null() && kk % 2 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(t.prefetch.add(kk * NR) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(t.prefetch.add(kk * NR + NR) as *const i8);
            }
            let (b0, b1) = (_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8)));
            for (r, a) in acc.iter_mut().enumerate() {
                let xr = _mm256_broadcast_ss(&*x.add(r * t.ldx + kk));
                a[0] = _mm256_fmadd_ps(xr, b0, a[0]);
                a[1] = _mm256_fmadd_ps(xr, b1, a[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let yp = t.y.add(r * t.ldy);
            if t.width == NR {
                let (s0, s1) = match t.init {
                    Init::Zero => (_mm256_setzero_ps(), _mm256_setzero_ps()),
                    Init::Bias(b) => (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8))),
                    Init::Add => (_mm256_loadu_ps(yp), _mm256_loadu_ps(yp.add(8))),
                };
                _mm256_storeu_ps(yp, _mm256_add_ps(s0, a[0]));
                _mm256_storeu_ps(yp.add(8), _mm256_add_ps(s1, a[1]));
            } else {
                let mut v = [0f32; NR];
                _mm256_storeu_ps(v.as_mut_ptr(), a[0]);
                _mm256_storeu_ps(v.as_mut_ptr().add(8), a[1]);
                for (j, vj) in v.iter().enumerate().take(t.width) {
                    let s = match t.init {
                        Init::Zero => 0.0,
                        Init::Bias(b) => *b.add(j),
                        Init::Add => *yp.add(j),
                    };
                    *yp.add(j) = s + vj;
                }
            }
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
        let mut r = crate::backend::test_values(11, 0.5);
        // Row counts around the 3-row blocks and the 96-row items; depths around the
        // 256-deep slices; widths with partial panels and groups.
        for &(m, n, k) in &[
            (1, 5, 3),
            (1, 300, 101),
            (2, 33, 512),
            (4, 64, 7),
            (5, 17, 257),
            (6, 16, 256),
            (7, 100, 600),
            (16, 1000, 512),
            (97, 70, 300),
            (200, 129, 64),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| r()).collect();
            let w: Vec<f32> = (0..n * k).map(|_| r()).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let p = PackedF32::pack(&w, n, k);
            let y = p.matmul(&x, m, Some(&b));
            let y0 = p.matmul(&x, m, None);
            for i in 0..m {
                for c in 0..n {
                    let e: f64 = (0..k)
                        .map(|j| x[i * k + j] as f64 * w[c * k + j] as f64)
                        .sum::<f64>();
                    let (got, got0) = (y[i * n + c] as f64, y0[i * n + c] as f64);
                    assert!(
                        (got - e - b[c] as f64).abs() < 1e-4 && (got0 - e).abs() < 1e-4,
                        "m {m} n {n} k {k} at ({i}, {c}): {got} / {got0} vs {e} (+{})",
                        b[c]
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_alone_and_in_a_batch() {
        if !available() {
            return;
        }
        // Batched translation relies on it: a sentence's outputs must not depend on its
        // neighbours or on how many there are.
        let mut r = crate::backend::test_values(5, 0.5);
        let (n, k) = (70, 600);
        let w: Vec<f32> = (0..n * k).map(|_| r()).collect();
        let p = PackedF32::pack(&w, n, k);
        let x: Vec<f32> = (0..13 * k).map(|_| r()).collect();
        let all = p.matmul(&x, 13, None);
        for i in [3usize, 10, 12] {
            let one = p.matmul(&x[i * k..(i + 1) * k], 1, None);
            let two = p.matmul(&x[(i - 1) * k..(i + 1) * k], 2, None);
            assert_eq!(one, all[i * n..(i + 1) * n], "row {i}: alone vs 13 rows");
            assert_eq!(one, two[n..], "row {i}: alone vs 2 rows");
        }
    }

    #[test]
    fn nan_inputs_propagate_to_their_row_only() {
        if !available() {
            return;
        }
        let (n, k) = (20, 8);
        let w = vec![0.5f32; n * k];
        let p = PackedF32::pack(&w, n, k);
        let mut x = vec![1f32; 2 * k];
        x[3] = f32::NAN;
        let y = p.matmul(&x, 2, None);
        assert!(y[..n].iter().all(|v| v.is_nan()));
        assert!(y[n..].iter().all(|&v| v == 4.0));
    }
}
