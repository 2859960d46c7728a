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
//!   Multiplication"); on CPUs with AVX-512, up to 8 rows × 16 channels, one 512-bit
//!   accumulator per row, the inputs broadcast by the multiply-add itself ([`Kernel`]);
//! - inputs are read in place (a broadcast per row and input index), so nothing is
//!   copied per call; the depth is cut into 256-deep slices so that a panel's slice and
//!   the rows it meets stay in L1 while several row blocks pass over it;
//! - one row (greedy decoding at batch 1) is a pure stream over the panels, at memory
//!   bandwidth; a few rows (beams at batch 1) prefetch a little ahead of their stream;
//! - the bias is added as the outputs are written;
//! - LM heads keep each value's upper and lower 16 bits in two arrays
//!   ([`PackedF32::pack_split`]): products are the same bits, and greedy decoding bounds
//!   one row's logits from the upper halves (bfloat16) alone, reading half the bytes,
//!   then computes exactly the few outputs that can still be the largest.
//!
//! Work is split over (row block, panel group) items on candle's barrier pool. Every
//! output is summed in the same order whatever the number of rows (input indices in
//! order within a 256-deep slice, then slice after slice), so a sentence's outputs are
//! bit for bit the same alone or inside any batch; they differ from candle's matmul by
//! rounding.

/// Output channels per panel.
pub const NR: usize = 16;
/// Rows per register block (AVX2; see [`Kernel`]).
const MR: usize = 6;
/// Rows per register block of the AVX-512 kernel.
const MR512: usize = 8;
/// Input depth per slice.
const KC: usize = 256;
/// Rows per block of work items (a multiple of MR).
const MC: usize = 96;
const _: () = assert!(MC.is_multiple_of(MR) && MC.is_multiple_of(MR512));
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

/// The register kernels, chosen at run time. Every output is summed in the same order
/// by both (fused multiply-adds in input order, slice after slice), so they give the
/// same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Up to 6 rows × 16 channels in 12 AVX2 registers.
    Avx2,
    /// Up to 8 rows × 16 channels in 8 AVX-512 registers, the inputs broadcast from
    /// memory by the multiply-add itself: Intel's Xeons of this kind run two 512-bit
    /// multiply-adds a cycle, where AVX2 gets half the work per instruction.
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs (needs [`available`]).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let all = Kernel::all();
            match crate::backend::wide_isa_allowed() {
                true => *all.last().expect("AVX2 at least"),
                false => Kernel::Avx2,
            }
        })
    }

    /// Every kernel this CPU runs, slowest first.
    pub fn all() -> Vec<Kernel> {
        [Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.runs_here())
            .collect()
    }

    /// Whether this CPU runs the kernel (checked on every product: no allocation).
    fn runs_here(self) -> bool {
        match self {
            Kernel::Avx2 => available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => available() && std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "packed-avx2",
            Kernel::Avx512 => "packed-avx512",
        }
    }

    /// Rows per register block.
    fn rows(self) -> usize {
        match self {
            Kernel::Avx2 => MR,
            Kernel::Avx512 => MR512,
        }
    }
}

/// A dense f32 weight matrix [n, k] (`y = x Wᵀ`), packed for [`PackedF32::matmul`].
pub struct PackedF32 {
    n: usize,
    k: usize,
    store: Store,
}

/// `n.div_ceil(NR)` panels of `k × NR` values from `start` (or `hs` and `ls`; 64-byte
/// aligned, so no load splits a cache line); channels past `n` are zero.
enum Store {
    F32 {
        data: Vec<f32>,
        start: usize,
    },
    /// Each value's upper 16 bits (a bfloat16) in `hi` and its lower 16 bits in `lo`,
    /// same layout, except that inside each input index the channels are stored in the
    /// order [`split_slot`] gives (AVX2's 16-bit unpacks interleave 128-bit halves).
    Split {
        hi: Vec<u16>,
        lo: Vec<u16>,
        hs: usize,
        ls: usize,
    },
}

/// Calls `put(at, j, v)` for every value `v` of `w` (row-major [n, k]), where `at` is
/// where its panel's slot for its input index starts and `j` its channel in the panel.
fn in_panel_order(w: &[f32], n: usize, k: usize, mut put: impl FnMut(usize, usize, f32)) {
    assert_eq!(
        w.len(),
        n * k,
        "matrix has {} values, not {n} × {k}",
        w.len()
    );
    for p in 0..n.div_ceil(NR) {
        for j in 0..NR.min(n - p * NR) {
            let row = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
            for (kk, &v) in row.iter().enumerate() {
                put((p * k + kk) * NR, j, v);
            }
        }
    }
}

/// Where channel `j` (of 16) of a split panel is stored: 0–3 and 12–15 in place, 4–7
/// and 8–11 swapped, so that unpacking the low and high halves yields 0–7 and 8–15.
const fn split_slot(j: usize) -> usize {
    (j & 3) | ((j & 4) << 1) | ((j & 8) >> 1)
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedF32[{}, {}]", self.n, self.k)
    }
}

impl PackedF32 {
    /// Packs `w`, row-major [n, k] (PyTorch's [out, in]).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        // Huge pages: one-row decoding streams the whole matrix per token.
        let mut data = crate::backend::hugepages::filled(n.div_ceil(NR) * k * NR + NR, 0f32);
        let start = data.as_ptr().align_offset(64).min(NR);
        in_panel_order(w, n, k, |at, j, v| data[start + at + j] = v);
        let store = Store::F32 { data, start };
        PackedF32 { n, k, store }
    }

    /// Packs `w` as [`PackedF32::pack`] does, but with each value's upper and lower 16
    /// bits apart. Products are bit for bit those of `pack`; besides, one row's logits
    /// can be bounded from the upper halves alone ([`PackedF32::bounded_row`]), which
    /// reads half the bytes. For LM heads, where greedy decoding needs only the argmax.
    pub fn pack_split(w: &[f32], n: usize, k: usize) -> Self {
        let len = n.div_ceil(NR) * k * NR + 32;
        let mut hi = crate::backend::hugepages::filled(len, 0u16);
        let mut lo = crate::backend::hugepages::filled(len, 0u16);
        let hs = hi.as_ptr().align_offset(64).min(32);
        let ls = lo.as_ptr().align_offset(64).min(32);
        in_panel_order(w, n, k, |at, j, v| {
            let (bits, at) = (v.to_bits(), at + split_slot(j));
            hi[hs + at] = (bits >> 16) as u16;
            lo[ls + at] = bits as u16;
        });
        let store = Store::Split { hi, lo, hs, ls };
        PackedF32 { n, k, store }
    }

    /// Whether the values are stored split (see [`PackedF32::pack_split`]).
    pub fn is_split(&self) -> bool {
        matches!(self.store, Store::Split { .. })
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
        self.matmul_with(x, m, bias, Kernel::best())
    }

    /// [`PackedF32::matmul`] on the register kernel `kernel` (one of [`Kernel::all`]).
    pub fn matmul_with(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        kernel: Kernel,
    ) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        assert!(
            kernel.runs_here(),
            "this CPU does not run the {} kernel",
            kernel.name()
        );
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
                // the kernel's features asserted above; every index stays inside x, data
                // and y.
                unsafe { self.block(x, rows, ps, bias, out.0, kernel) };
            }
        };
        let items = blocks * groups;
        // Small products run inline: waking the pool costs more than it saves.
        crate::backend::qmm::parallel(items, m * n * k >= 1 << 18, work);
        y
    }

    /// For one input row `x`: each output from the upper halves of the weights alone
    /// (bfloat16, half the bytes), and a bound `e` with |approx − exact| ≤ e, where
    /// exact is what [`PackedF32::matmul`] returns. `None` unless the matrix is split
    /// and every value is finite (then only the exact product will do).
    ///
    /// The bound: truncating a weight to its upper half moves it by less than 2⁻⁷ of
    /// itself, so |x·w − x·hi| < 2⁻⁷ Σ|x||hi|; both float sums add at most
    /// γ(k) = k·2⁻²⁴ (1 + …) of Σ|x||w| in rounding (Higham, "Accuracy and Stability of
    /// Numerical Algorithms", 2002, §3.1). Σ|x||hi| is summed in the same pass.
    pub fn bounded_row(&self, x: &[f32], bias: Option<&[f32]>) -> Option<(Vec<f32>, Vec<f32>)> {
        let (n, k) = (self.n, self.k);
        let Store::Split { hi, hs, .. } = &self.store else {
            return None;
        };
        assert!(available(), "the packed f32 kernels need AVX2 and FMA");
        crate::backend::check_product(x, 1, (n, k), bias);
        if !x.iter().all(|v| v.is_finite()) || !bias.is_none_or(|b| b.iter().all(|v| v.is_finite()))
        {
            return None;
        }
        let panels = n.div_ceil(NR);
        let (mut a, mut e) = (vec![0f32; panels * NR], vec![0f32; panels * NR]);
        let (ap, ep) = (
            crate::backend::qmm::SendPtr::new(a.as_mut_ptr()),
            crate::backend::qmm::SendPtr::new(e.as_mut_ptr()),
        );
        let groups = panels.div_ceil(PANELS_PER_ITEM);
        crate::backend::qmm::parallel(groups, n * k >= 1 << 18, |items| {
            for g in items {
                for p in g * PANELS_PER_ITEM..(g * PANELS_PER_ITEM + PANELS_PER_ITEM).min(panels) {
                    // SAFETY: AVX2 and FMA asserted; panel p has k × NR values from its
                    // offset; each task writes its own panels' NR outputs.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        x86::bounded_panel(
                            x.as_ptr(),
                            k,
                            hi.as_ptr().add(hs + p * k * NR),
                            ap.get().add(p * NR),
                            ep.get().add(p * NR),
                        )
                    };
                }
            }
        });
        a.truncate(n);
        e.truncate(n);
        // Rounding: at most γ(k + 64) of Σ|x||w| in each sum, Σ|x||w| ≤ (1 + 2⁻⁷) Σ|x||hi|,
        // plus the bias's addition, then margins for this bound's own rounding and for
        // comparisons made in f64. Subnormal weights truncate by less than 2⁻¹³³ each.
        let gamma = 1.01 * (k + 64) as f64 * (-24f64).exp2();
        let c = ((2f64.powi(-7) + 2.01 * gamma + 4.0 * (-24f64).exp2()) * (1.0 + gamma) * 1.0001)
            as f32;
        let tiny = (x.iter().map(|v| v.abs() as f64).sum::<f64>() * (-120f64).exp2()
            + (-126f64).exp2()) as f32;
        for (c_, (av, ev)) in a.iter_mut().zip(e.iter_mut()).enumerate() {
            let b = bias.map_or(0.0, |b| b[c_]);
            *av += b;
            *ev = c * (*ev + b.abs()) + tiny + av.abs() * (-20f32).exp2();
        }
        (a.iter().all(|v| v.is_finite()) && e.iter().all(|v| v.is_finite())).then_some((a, e))
    }

    /// What [`PackedF32::matmul`] returns for one row `x` at the outputs `cs`, summed
    /// alone in the kernel's order: per 256-deep slice, fused multiply-adds in input
    /// order from zero, then the slice added to the bias (or zero) or to the sum so far.
    pub fn exact_at(&self, x: &[f32], bias: Option<&[f32]>, cs: &[usize]) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        crate::backend::check_product(x, 1, (n, k), bias);
        let value = |c: usize, kk: usize| -> f32 {
            let (p, j) = (c / NR, c % NR);
            match &self.store {
                Store::F32 { data, start } => data[start + (p * k + kk) * NR + j],
                Store::Split { hi, lo, hs, ls } => {
                    let at = (p * k + kk) * NR + split_slot(j);
                    f32::from_bits(((hi[hs + at] as u32) << 16) | lo[ls + at] as u32)
                }
            }
        };
        cs.iter()
            .map(|&c| {
                assert!(c < n, "output {c} of {n}");
                let mut y = bias.map_or(0.0, |b| b[c]);
                for k0 in (0..k).step_by(KC) {
                    let mut acc = 0f32;
                    for (kk, &xv) in x.iter().enumerate().take((k0 + KC).min(k)).skip(k0) {
                        acc = xv.mul_add(value(c, kk), acc);
                    }
                    y += acc;
                }
                y
            })
            .collect()
    }

    /// Rows `rows` × panels `ps` of the product, written into `y` ([m, n]).
    ///
    /// # Safety
    /// The CPU runs `kernel`; no other thread writes this rectangle of `y`.
    unsafe fn block(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        ps: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        y: *mut f32,
        kernel: Kernel,
    ) {
        let (n, k) = (self.n, self.k);
        let mr = kernel.rows();
        // A panel's slice: (values or upper halves, lower halves or null).
        let panel = |p: usize, k0: usize| -> (*const u8, *const u8) {
            let at = (p * k + k0) * NR;
            match &self.store {
                Store::F32 { data, start } => {
                    (data.as_ptr().add(start + at).cast(), std::ptr::null())
                }
                Store::Split { hi, lo, hs, ls } => (
                    hi.as_ptr().add(hs + at).cast(),
                    lo.as_ptr().add(ls + at).cast(),
                ),
            }
        };
        // `next`: the slice visited after this one, fetched into cache while the first
        // row block works on this one.
        let tile = |p: usize, k0: usize, next: Ahead| {
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
                let rr = mr.min(rows.end - r);
                let (w, lo) = panel(p, k0);
                let t = Tile {
                    x: x.as_ptr().add(r * k + k0),
                    ldx: k,
                    w,
                    lo,
                    depth,
                    prefetch: match next {
                        Ahead::Slice(np, nk) if r == rows.start => panel(np, nk),
                        // The same stream, `ahead(rows)` input indices on.
                        Ahead::Stream if r == rows.start => {
                            let by = ahead(rows.len()) * if lo.is_null() { 4 * NR } else { 2 * NR };
                            (w.wrapping_add(by), lo.wrapping_add(by))
                        }
                        _ => (std::ptr::null(), std::ptr::null()),
                    },
                    y: y.add(r * n + c0),
                    ldy: n,
                    width: NR.min(n - c0),
                    init,
                };
                #[cfg(target_arch = "x86_64")]
                if t.lo.is_null() {
                    x86::tile_rows::<false>(kernel, rr, &t)
                } else {
                    x86::tile_rows::<true>(kernel, rr, &t)
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
        let panel_major = rows.len() <= 2 * mr;
        let visit = |v: usize| {
            let (p, s) = if panel_major {
                (v / slices, v % slices)
            } else {
                (v % panels, v / panels)
            };
            (ps.start + p, s * KC)
        };
        // Where the order jumps, the next slice is fetched while this one is used. In
        // memory order, one row keeps up on the hardware prefetchers alone, and software
        // prefetches on top only take fill buffers from it (NLLB f32 at batch 1, `benches/
        // nmt.rs`: 1.12× faster without them). A few rows do more work per byte, so the
        // out-of-order window reaches fewer lines ahead: they fetch a little ahead.
        let visits = slices * panels;
        for v in 0..visits {
            let (p, k0) = visit(v);
            let next = match (panel_major, rows.len()) {
                (true, 1) => Ahead::None,
                (true, _) => Ahead::Stream,
                _ if v + 1 < visits => {
                    let (np, nk) = visit(v + 1);
                    Ahead::Slice(np, nk)
                }
                _ => Ahead::None,
            };
            tile(p, k0, next);
        }
    }
}

/// What a tile prefetches: nothing, the slice (panel, depth) visited next, or its own
/// stream a little ahead.
#[derive(Clone, Copy)]
enum Ahead {
    None,
    Slice(usize, usize),
    Stream,
}

/// Input indices ahead that `Ahead::Stream` fetches for `rows` rows: 4 KiB of f32
/// panel (2 KiB of each half of a split one) up to four rows, 8 KiB beyond. The more
/// rows, the more work per byte, so the fewer bytes the out-of-order window reaches
/// ahead. Against 32 indices for every row count before, each variant alternated 25
/// times in one process (AMD EPYC family 26, 2 threads; the Marian head split, [59464,
/// 512], and 24 distinct [2048, 512] matrices read in turn): at 64, 2 rows 1.02–1.07×,
/// 4 rows 1.03–1.13×, 8 rows 1.15–1.17×, 16 rows 1.16–1.19× (the AVX2 kernel alike, up
/// to the 12 rows it streams); 128 gave 8 and 16 rows another 1.07–1.15×, and 4 rows
/// nothing. One matrix that stays in cache lost 2 % at 64.
fn ahead(rows: usize) -> usize {
    if rows <= 4 {
        64
    } else {
        128
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
/// (`depth × NR` f32, or with `lo` the upper halves and `lo` the lower ones, u16),
/// written to `y` (stride `ldy`, `width` valid columns).
struct Tile {
    x: *const f32,
    ldx: usize,
    w: *const u8,
    lo: *const u8,
    depth: usize,
    /// A slice to prefetch meanwhile (or null), as (`w`, `lo`).
    prefetch: (*const u8, *const u8),
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
    use super::{split_slot, Init, Kernel, Tile, NR};
    use std::arch::x86_64::*;

    /// How far ahead `bounded_panel` fetches, in u16 values.
    const PREFETCH_U16: usize = 1024;

    /// One row against one split panel's upper halves `hi` (`k × NR`): writes x·hi to
    /// `a` and |x|·|hi| to `s`, NR each (even and odd input indices summed apart).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn bounded_panel(x: *const f32, k: usize, hi: *const u16, a: *mut f32, s: *mut f32) {
        let mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut sum = [_mm256_setzero_ps(); 4];
        // A macro, not a closure: the body must be compiled with this function's features.
        macro_rules! step {
            ($kk:expr, $o:expr) => {{
                let h = _mm256_loadu_si256(hi.add($kk * NR) as *const __m256i);
                let b0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, h));
                let b1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, h));
                let xv = _mm256_broadcast_ss(&*x.add($kk));
                let xa = _mm256_and_ps(xv, mask);
                acc[$o] = _mm256_fmadd_ps(xv, b0, acc[$o]);
                acc[$o + 1] = _mm256_fmadd_ps(xv, b1, acc[$o + 1]);
                sum[$o] = _mm256_fmadd_ps(xa, _mm256_and_ps(b0, mask), sum[$o]);
                sum[$o + 1] = _mm256_fmadd_ps(xa, _mm256_and_ps(b1, mask), sum[$o + 1]);
            }};
        }
        let mut kk = 0;
        while kk + 2 <= k {
            // More work per byte than the product: the out-of-order window reaches fewer
            // lines ahead, so fetch ahead explicitly.
            _mm_prefetch::<_MM_HINT_T0>(hi.wrapping_add(kk * NR + PREFETCH_U16) as *const i8);
            step!(kk, 0);
            step!(kk + 1, 2);
            kk += 2;
        }
        if kk < k {
            step!(kk, 0);
        }
        _mm256_storeu_ps(a, _mm256_add_ps(acc[0], acc[2]));
        _mm256_storeu_ps(a.add(8), _mm256_add_ps(acc[1], acc[3]));
        _mm256_storeu_ps(s, _mm256_add_ps(sum[0], sum[2]));
        _mm256_storeu_ps(s.add(8), _mm256_add_ps(sum[1], sum[3]));
    }

    /// The register kernel `kernel` for `rows` (1 to its row block) rows.
    ///
    /// # Safety
    /// As `tile` and `tile512`.
    #[inline]
    pub unsafe fn tile_rows<const SPLIT: bool>(kernel: Kernel, rows: usize, t: &Tile) {
        macro_rules! by_rows {
            ($f:ident, $($r:literal)*) => {
                match rows {
                    $($r => $f::<$r, SPLIT>(t),)*
                    _ => $f::<1, SPLIT>(t),
                }
            };
        }
        match kernel {
            Kernel::Avx2 => by_rows!(tile, 6 5 4 3 2),
            Kernel::Avx512 => by_rows!(tile512, 8 7 6 5 4 3 2),
        }
    }

    /// Fetches `t.prefetch` (if any) at input index `kk`, two indices' lines at a time.
    #[inline(always)]
    unsafe fn prefetch<const SPLIT: bool>(t: &Tile, kk: usize, step: usize) {
        if !t.prefetch.0.is_null() && kk.is_multiple_of(2) {
            // Prefetches never fault; the addresses may pass the end of the panels.
            let (pw, pl) = t.prefetch;
            _mm_prefetch::<_MM_HINT_T0>(pw.wrapping_add(kk * step) as *const i8);
            if SPLIT {
                _mm_prefetch::<_MM_HINT_T0>(pl.wrapping_add(kk * step) as *const i8);
            } else {
                _mm_prefetch::<_MM_HINT_T0>(pw.wrapping_add(kk * step + 64) as *const i8);
            }
        }
    }

    /// `tile` on AVX-512: R rows × 16 channels, one accumulator per row, the same
    /// multiply-adds in the same order. A split panel's values come out of the 16-bit
    /// widening in their stored order (`split_slot`), so the sums are put back in
    /// channel order once, before they are written.
    ///
    /// # Safety
    /// AVX-512F; as `tile`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile512<const R: usize, const SPLIT: bool>(t: &Tile) {
        let mut acc = [_mm512_setzero_ps(); R];
        let x = t.x;
        let step = if SPLIT { 2 * NR } else { 4 * NR };
        for kk in 0..t.depth {
            let wp = t.w.add(kk * step);
            prefetch::<SPLIT>(t, kk, step);
            let b = if SPLIT {
                let half = |p: *const u8| {
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.add(kk * step) as *const __m256i))
                };
                let (hi, lo) = (half(t.w), half(t.lo));
                _mm512_castsi512_ps(_mm512_or_si512(_mm512_slli_epi32::<16>(hi), lo))
            } else {
                _mm512_loadu_ps(wp as *const f32)
            };
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(r * t.ldx + kk)), b, *a);
            }
        }
        // `split_slot` is its own inverse: lane j takes the sum of slot split_slot(j).
        const ORDER: [i32; NR] = {
            let mut o = [0; NR];
            let mut j = 0;
            while j < NR {
                o[j] = split_slot(j) as i32;
                j += 1;
            }
            o
        };
        let order = _mm512_loadu_si512(ORDER.as_ptr().cast());
        let mask: __mmask16 = if t.width >= NR {
            0xffff
        } else {
            ((1u32 << t.width) - 1) as __mmask16
        };
        for (r, a) in acc.iter().enumerate() {
            let a = if SPLIT {
                _mm512_permutexvar_ps(order, *a)
            } else {
                *a
            };
            let yp = t.y.add(r * t.ldy);
            let s = match t.init {
                Init::Zero => _mm512_setzero_ps(),
                Init::Bias(b) => _mm512_maskz_loadu_ps(mask, b),
                Init::Add => _mm512_maskz_loadu_ps(mask, yp),
            };
            _mm512_mask_storeu_ps(yp, mask, _mm512_add_ps(s, a));
        }
    }

    /// R rows × 16 channels, one accumulator pair per row, input indices in order.
    /// `SPLIT`: each weight is rebuilt from its two halves (see `Store::Split`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile<const R: usize, const SPLIT: bool>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let x = t.x;
        // Bytes per input index: 16 f32, or 16 u16 in each array.
        let step = if SPLIT { 2 * NR } else { 4 * NR };
        for kk in 0..t.depth {
            let wp = t.w.add(kk * step);
            prefetch::<SPLIT>(t, kk, step);
            let (b0, b1) = if SPLIT {
                let hi = _mm256_loadu_si256(wp as *const __m256i);
                let lo = _mm256_loadu_si256(t.lo.add(kk * step) as *const __m256i);
                (
                    _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo, hi)),
                    _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo, hi)),
                )
            } else {
                let wp = wp as *const f32;
                (_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8)))
            };
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
    fn split_storage_gives_the_same_bits() {
        if !available() {
            return;
        }
        let mut r = crate::backend::test_values(23, 0.5);
        for &(n, k) in &[(5, 3), (40, 257), (70, 600), (33, 512)] {
            // Values over many binades, so that the lower halves matter.
            let w: Vec<f32> = (0..n * k).map(|i| r() * (1 << (i % 9)) as f32).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let (plain, split) = (PackedF32::pack(&w, n, k), PackedF32::pack_split(&w, n, k));
            assert!(split.is_split() && !plain.is_split());
            for m in [1, 2, 4, 7, 13] {
                let x: Vec<f32> = (0..m * k).map(|_| r()).collect();
                for bias in [None, Some(&b[..])] {
                    let y = plain.matmul(&x, m, bias);
                    assert_eq!(split.matmul(&x, m, bias), y, "n {n} k {k} m {m}");
                    let all: Vec<usize> = (0..n).collect();
                    for i in 0..m {
                        let row = &x[i * k..(i + 1) * k];
                        assert_eq!(split.exact_at(row, bias, &all), y[i * n..(i + 1) * n]);
                        assert_eq!(
                            plain.exact_at(row, bias, &all[..n / 2]),
                            y[i * n..i * n + n / 2]
                        );
                    }
                }
            }
        }
    }

    /// AVX-512 against AVX2 (where this CPU has both): plain and split storage, row
    /// counts around both register blocks, partial panels and slices, with and without
    /// bias. The same bits, so a batch's outputs do not depend on the machine's kernel.
    #[test]
    fn every_kernel_gives_the_same_bits() {
        let kernels = Kernel::all();
        if kernels.is_empty() {
            return;
        }
        let mut r = crate::backend::test_values(29, 0.5);
        for &(n, k) in &[(5, 3), (40, 257), (70, 600), (33, 512)] {
            let w: Vec<f32> = (0..n * k).map(|i| r() * (1 << (i % 9)) as f32).collect();
            let b: Vec<f32> = (0..n).map(|_| r()).collect();
            let packs = [PackedF32::pack(&w, n, k), PackedF32::pack_split(&w, n, k)];
            for m in [1, 2, 5, 6, 7, 8, 9, 13, 16, 17, 97] {
                let x: Vec<f32> = (0..m * k).map(|_| r()).collect();
                for p in &packs {
                    for bias in [None, Some(&b[..])] {
                        let want = p.matmul_with(&x, m, bias, Kernel::Avx2);
                        for &kernel in &kernels {
                            let got = p.matmul_with(&x, m, bias, kernel);
                            assert_eq!(got, want, "{kernel:?} n {n} k {k} m {m}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bounds_from_the_upper_halves_hold_and_are_tight() {
        if !available() {
            return;
        }
        let mut r = crate::backend::test_values(29, 1.0);
        for &(n, k, spread) in &[(300, 1024, 1), (129, 512, 20), (17, 64, 1)] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| r() * (1u32 << (i % spread)) as f32)
                .collect();
            let b: Vec<f32> = (0..n).map(|_| r() * 4.0).collect();
            let split = PackedF32::pack_split(&w, n, k);
            for trial in 0..4 {
                // Inputs that cancel: pairs of opposite values.
                let x: Vec<f32> = (0..k)
                    .map(|j| {
                        if trial % 2 == 1 && j % 2 == 1 {
                            -1.0
                        } else {
                            r()
                        }
                    })
                    .collect();
                let bias = (trial > 1).then_some(&b[..]);
                let (a, e) = split.bounded_row(&x, bias).expect("finite");
                let exact = split.matmul(&x, 1, bias);
                for c in 0..n {
                    let mag: f64 = (0..k).map(|j| (x[j] * w[c * k + j]).abs() as f64).sum();
                    let err = (a[c] as f64 - exact[c] as f64).abs();
                    assert!(
                        err <= e[c] as f64,
                        "n {n} k {k} at {c}: |{} − {}| > {}",
                        a[c],
                        exact[c],
                        e[c]
                    );
                    // Tight enough to be of use: about 2⁻⁷ of the magnitudes summed.
                    let b = bias.map_or(0.0, |b| b[c].abs() as f64);
                    assert!((e[c] as f64) < 0.0081 * (mag + b) + 1e-3 + 1e-5 * a[c].abs() as f64);
                }
            }
            let mut x = vec![0.5f32; k];
            x[k / 2] = f32::INFINITY;
            assert!(split.bounded_row(&x, None).is_none(), "non-finite input");
        }
        let plain = PackedF32::pack(&[1.0; 8], 2, 4);
        assert!(
            plain.bounded_row(&[1.0; 4], None).is_none(),
            "only split matrices"
        );
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
