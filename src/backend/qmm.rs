//! Matrix products over GGUF weight blocks as they lie in the file (issue 13).
//!
//! candle 0.11's CPU product for quantized weights runs one input row at a time, each
//! row a parallel region of its own, quantizes the input on one thread, and has no SIMD
//! dot product for Q5_0 or Q4_1 at all. The pip-carried Qwen 2.5 0.5B and Gemma 3 270M
//! files keep most of their matrices in Q5_0 (their widths, 896 and 640, are not
//! multiples of the 256-wide k-quant blocks), so prefill ran at a quarter of
//! llama.cpp's speed. Here:
//!
//! - the input is quantized once per product, in parallel, exactly as ggml does it
//!   (Q8_0 / Q8_1 blocks for the 32-wide formats, Q8_K for k-quants), so the integer
//!   dot products, and so the logits, stay those of llama.cpp up to float summation
//!   order;
//! - threads split the weight rows (candle's CPU pool);
//! - from four input rows (prompts, and several sequences decoding together) products
//!   run on packed tiles: eight weight rows unpacked with SIMD into bytes interleaved
//!   four columns deep (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K), so one `maddubs`
//!   multiplies four broadcast inputs into eight rows and the sums land per row (the
//!   layout of candle's x86 repack and llama.cpp's tinyBLAS); on CPUs with VNNI, one
//!   `vpdpbusd` does it and widens the sums too (the same integers, so the same bits).
//!   Tiles are made per call, 1024 columns at a time so they stay in L1 while up to
//!   four input rows at once pass over them, so no second copy of the weights is kept;
//! - one to three rows (one sequence decoding) stream the blocks through AVX2 block
//!   kernels (Q4_0, Q4_1, Q5_0, Q8_0; k-quants use candle's AVX2 block dot products on
//!   the same tiling);
//! - Q5_0 and Q8_0 matrices (most of the bytes of the pip-carried models) are instead
//!   rewritten once at load into tiles of the same size (`QWeight::into_tiled`), which
//!   products of every row count read in place, unpacking in registers: decoding,
//!   alone or several sequences at once, then pays nothing per step for the layout;
//! - other weights are read in place from the memory-mapped file, no second copy is
//!   ever made, and an embedding row is dequantized only when a token asks for it.
//!
//! Measured side by side with llama.cpp and candle in docs/PERFORMANCE.md.
//!
//! The plain path (candle's `QMatMul`) remains the reference: the tests here hold every
//! format and row count to it.

use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ6K, BlockQ8_0,
    GgmlType,
};
use candle_core::quantized::GgmlDType;

/// Where a weight's blocks live.
pub enum Bytes {
    /// A range of a memory-mapped GGUF file.
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
    /// Bytes read into memory (`u64`s keep the blocks aligned).
    Owned { words: Vec<u64>, len: usize },
}

impl Bytes {
    pub fn owned(data: &[u8]) -> Self {
        let mut words = vec![0u64; data.len().div_ceil(8)];
        // SAFETY: `words` holds at least `data.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), words.as_mut_ptr() as *mut u8, data.len())
        };
        Self::Owned {
            words,
            len: data.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Mapped { map, start, len } => &map[*start..*start + *len],
            // SAFETY: `words` holds `len` initialised bytes.
            Self::Owned { words, len } => unsafe {
                std::slice::from_raw_parts(words.as_ptr() as *const u8, *len)
            },
        }
    }
}

/// A `[rows, cols]` weight matrix in one of the GGUF block formats.
pub struct QWeight {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    bytes: Bytes,
    /// `bytes` hold the tiled layout of `into_tiled`, not the file's blocks.
    tiled: bool,
}

/// Rows of weights per task: enough work to pay for a hand-off, few enough that the
/// rows' blocks stay in L2 while every input tile passes over them.
const GROUP: usize = 16;
/// Input rows that share one unpacked weight block (accumulators stay in registers).
const TILE: usize = 4;
/// Weight rows per packed tile (one AVX2 register of f32 sums).
const PACK: usize = 8;
/// Input rows from which unpacking weights into tiles pays for itself.
const PACKED_MIN_ROWS: usize = 4;
/// Columns (in 32s) of a packed tile made and used at once: 8 KiB of tile, in L1.
const KCHUNK: usize = 32;
/// Input rows from which `avx2::Dot::Zmm` takes two tiles at a time. Below, one tile
/// on 256-bit registers is faster: on an AMD EPYC with AVX-512 (family 26), with the
/// pair kernel's 8 KiB prefetch, `tarjuma bench` gave pairs 0.92–0.97× at four rows
/// (Qwen2.5 0.5B, four sequences), 1.03–1.15× at five, 1.05–1.14× at six and 1.03–1.25×
/// at eight (Qwen and Gemma 3, as many sequences or prompt tokens; docs/PERFORMANCE.md).
/// Before that prefetch, pairs lost at eight rows (0.9×) and the threshold was 16.
const PAIR_MIN_ROWS: usize = 5;

impl QWeight {
    /// Whether products over `dtype` run here (otherwise use candle's `QMatMul`).
    pub fn supports(dtype: GgmlDType) -> bool {
        use GgmlDType::*;
        matches!(
            dtype,
            Q4_0 | Q4_1 | Q5_0 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K
        )
    }

    pub fn new(dtype: GgmlDType, rows: usize, cols: usize, bytes: Bytes) -> Result<Self> {
        if !Self::supports(dtype) {
            bail!("no quantized product for {dtype:?}");
        }
        if !cols.is_multiple_of(dtype.block_size()) {
            bail!(
                "rows of {cols} values do not split into {dtype:?} blocks of {}",
                dtype.block_size()
            );
        }
        let want = rows * cols / dtype.block_size() * dtype.type_size();
        let data = bytes.as_slice();
        if data.len() != want {
            bail!(
                "{dtype:?} [{rows}, {cols}] needs {want} bytes, got {}",
                data.len()
            );
        }
        if !(data.as_ptr() as usize).is_multiple_of(4) {
            bail!("{dtype:?} blocks are not aligned in the file");
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            bytes,
            tiled: false,
        })
    }

    /// Rewrites a Q5_0 or Q8_0 matrix (on an AVX2 CPU) as packed tiles of the same
    /// size, made once here rather than at every product: per eight rows and 32
    /// columns, the values interleaved four columns deep as `matmul_packed` lays them
    /// out (Q8_0: the bytes; Q5_0: two column groups' low nibbles per byte, then the
    /// fifth bits as bit planes), then the eight rows' f16 scales. Products of any
    /// row count read them in place and unpack in registers, so sequences decoding
    /// together no longer pay for unpacking per step (issue 13). The file's mapped
    /// pages for the matrix are handed back. Other formats and CPUs keep the blocks.
    pub fn into_tiled(self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx2::available() && matches!(self.dtype, GgmlDType::Q5_0 | GgmlDType::Q8_0) {
            let fmt = avx2::Packed::of(self.dtype).expect("a packed format");
            let (n, kb) = (self.rows, self.cols / 32);
            let bsize = avx2::tiled_block_bytes(fmt);
            let tiles = n.div_ceil(PACK);
            let len = tiles * kb * bsize;
            let mut words = vec![0u64; len.div_ceil(8)];
            let size = self.dtype.type_size();
            let data = self.bytes.as_slice();
            let wp = SendPtr(words.as_mut_ptr() as *mut u8);
            // A few MiB of the file at a time, its pages handed back as soon as they
            // are rewritten, so the matrix is never resident twice.
            let step = ((4 << 20) / (PACK * kb * size).max(1)).max(1);
            for t0 in (0..tiles).step_by(step) {
                let t1 = (t0 + step).min(tiles);
                parallel(t1 - t0, (t1 - t0) * kb >= 1 << 12, |ts| {
                    let chunk = KCHUNK.min(kb);
                    let (mut u, mut sc, mut o) = (
                        vec![0u8; chunk * 32 * PACK],
                        vec![0f32; chunk * 2 * PACK],
                        vec![0f32; chunk * 2 * PACK],
                    );
                    for t in ts.start + t0..ts.end + t0 {
                        let j0 = t * PACK;
                        let rows = (n - j0).min(PACK);
                        for c0 in (0..kb).step_by(chunk) {
                            let cb = chunk.min(kb - c0);
                            // Short last tile: its last row repeated (never read back).
                            let w: [*const u8; PACK] = std::array::from_fn(|i| {
                                data[((j0 + i.min(rows - 1)) * kb + c0) * size..].as_ptr()
                            });
                            // SAFETY: AVX2 detected; each row holds cb blocks from c0; the
                            // buffers hold `chunk` blocks; tile t's bytes are this task's.
                            unsafe {
                                avx2::pack_tile(fmt, w, cb, 0, &mut u, &mut sc, &mut o);
                                let dst = wp.get().add((t * kb + c0) * bsize);
                                avx2::compress_tile(fmt, &u, &sc, cb, dst);
                            }
                        }
                    }
                });
                if let Bytes::Mapped { map, start, len } = &self.bytes {
                    release_pages(map, *start, (t1 * PACK * kb * size).min(*len));
                }
            }
            return Self {
                bytes: Bytes::Owned { words, len },
                tiled: true,
                ..self
            };
        }
        self
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    /// The kernels products over this weight run on: `packed-<dot>` from four input
    /// rows where the format has it (`<dot>` the integer dot product: `avx2`, VNNI's
    /// `avx-vnni` or `avx512-vnni`, or `avx512-vnni-zmm` on 512-bit registers), then
    /// `avx2` (ours) or `candle-blocks` (candle's block dot products on our tiling) for
    /// fewer rows; `tiled-<dot>` for weights tiled at load.
    pub fn kernel(&self) -> String {
        use GgmlDType::*;
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let dot = avx2::Dot::best().name();
            return match self.dtype {
                _ if self.tiled => format!("tiled-{dot} (tiles made at load)"),
                Q4_0 | Q4_1 | Q5_0 | Q8_0 => format!("packed-{dot} (>=4 rows), avx2"),
                Q4K | Q6K => format!("packed-{dot} (>=4 rows), candle-blocks"),
                _ => "candle-blocks".into(),
            };
        }
        "candle-blocks".into()
    }

    fn blocks<T: GgmlType>(&self) -> &[T] {
        let data = self.bytes.as_slice();
        debug_assert_eq!(std::mem::size_of::<T>(), self.dtype.type_size());
        // SAFETY: `new` checked the length and 4-byte alignment (every block type's
        // alignment is at most 4); the block types are `repr(C)` over plain bytes.
        unsafe {
            std::slice::from_raw_parts(
                data.as_ptr() as *const T,
                data.len() / std::mem::size_of::<T>(),
            )
        }
    }

    /// Row `i` as f32 values (an embedding lookup).
    pub fn dequantize_row(&self, i: usize, out: &mut [f32]) {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        assert_eq!(out.len(), self.cols);
        if self.tiled {
            return self.dequantize_tiled(i, out);
        }
        fn row<T: GgmlType>(w: &QWeight, i: usize, out: &mut [f32]) {
            let kb = w.cols / T::BLCK_SIZE;
            T::to_float(&w.blocks::<T>()[i * kb..(i + 1) * kb], out);
        }
        use GgmlDType::*;
        match self.dtype {
            Q4_0 => row::<BlockQ4_0>(self, i, out),
            Q4_1 => row::<BlockQ4_1>(self, i, out),
            Q5_0 => row::<BlockQ5_0>(self, i, out),
            Q8_0 => row::<BlockQ8_0>(self, i, out),
            Q2K => row::<BlockQ2K>(self, i, out),
            Q3K => row::<BlockQ3K>(self, i, out),
            Q4K => row::<BlockQ4K>(self, i, out),
            Q5K => row::<BlockQ5K>(self, i, out),
            Q6K => row::<BlockQ6K>(self, i, out),
            _ => unreachable!("checked in new"),
        }
    }

    /// Row `i` of a tiled matrix (see `into_tiled`): lane `i % 8` of tile `i / 8`.
    fn dequantize_tiled(&self, i: usize, out: &mut [f32]) {
        let q5 = self.dtype == GgmlDType::Q5_0;
        let (bsize, scales) = if q5 { (176, 160) } else { (272, 256) };
        let kb = self.cols / 32;
        let (t, lane) = (i / PACK, i % PACK);
        let data = self.bytes.as_slice();
        for (b, vals) in out.chunks_exact_mut(32).enumerate() {
            let blk = &data[(t * kb + b) * bsize..(t * kb + b + 1) * bsize];
            let d = half::f16::from_le_bytes([blk[scales + 2 * lane], blk[scales + 2 * lane + 1]])
                .to_f32();
            for (j, v) in vals.iter_mut().enumerate() {
                let (g, c) = (j / 4, j % 4);
                let q = if q5 {
                    let byte = blk[((g % 4) * PACK + lane) * 4 + c];
                    let low = if g < 4 { byte & 15 } else { byte >> 4 };
                    let high = (blk[128 + lane * 4 + c] >> g) & 1;
                    (low | high << 4) as i32 - 16
                } else {
                    blk[(g * PACK + lane) * 4 + c] as i8 as i32
                };
                *v = q as f32 * d;
            }
        }
    }

    /// `x · Wᵀ` for `x` of `m` rows of `cols` values: `m` rows of `rows` values.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_from(x, m, PACKED_MIN_ROWS)
    }

    /// `matmul`, on packed tiles from `packed_min` input rows (tests force them).
    fn matmul_from(&self, x: &[f32], m: usize, packed_min: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols, "input is not {m} × {}", self.cols);
        if m == 0 || self.rows == 0 {
            return vec![0f32; m * self.rows];
        }
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            if let Some(fmt) = avx2::Packed::of(self.dtype) {
                if self.tiled || m >= packed_min {
                    // Not zeroed first: every value is written once (8 sequences'
                    // logits are 4.9 MB per step for Qwen's vocabulary).
                    let mut out = Vec::with_capacity(m * self.rows);
                    self.matmul_packed(fmt, x, m, out.as_mut_ptr());
                    // SAFETY: `matmul_packed` wrote all `m × rows` values.
                    unsafe { out.set_len(m * self.rows) };
                    return out;
                }
            }
        }
        let mut out = vec![0f32; m * self.rows];
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            use avx2::Fmt;
            let fmt = match self.dtype {
                GgmlDType::Q4_0 => Some(Fmt::Q4_0),
                GgmlDType::Q4_1 => Some(Fmt::Q4_1),
                GgmlDType::Q5_0 => Some(Fmt::Q5_0),
                GgmlDType::Q8_0 => Some(Fmt::Q8_0),
                _ => None,
            };
            if let Some(fmt) = fmt {
                self.matmul_avx2(fmt, x, m, &mut out);
                return out;
            }
        }
        use GgmlDType::*;
        match self.dtype {
            Q4_0 => self.matmul_blocks::<BlockQ4_0>(x, m, &mut out),
            Q4_1 => self.matmul_blocks::<BlockQ4_1>(x, m, &mut out),
            Q5_0 => self.matmul_blocks::<BlockQ5_0>(x, m, &mut out),
            Q8_0 => self.matmul_blocks::<BlockQ8_0>(x, m, &mut out),
            Q2K => self.matmul_blocks::<BlockQ2K>(x, m, &mut out),
            Q3K => self.matmul_blocks::<BlockQ3K>(x, m, &mut out),
            Q4K => self.matmul_blocks::<BlockQ4K>(x, m, &mut out),
            Q5K => self.matmul_blocks::<BlockQ5K>(x, m, &mut out),
            Q6K => self.matmul_blocks::<BlockQ6K>(x, m, &mut out),
            _ => unreachable!("checked in new"),
        }
        out
    }

    /// Products of `m ≥ PACKED_MIN_ROWS` rows (or any rows for tiled weights): each task
    /// unpacks eight weight rows at a time into bytes interleaved four columns deep
    /// (values `s · u − o` with unsigned `u`, or Q8_0's signed bytes), so one `maddubs`
    /// multiplies four input values into eight rows at once and the sums land per row,
    /// without horizontal reductions (the layout of candle's x86 repack and llama.cpp's
    /// tinyBLAS, made per call so no second copy of the weights is kept).
    ///
    /// Writes each of the `m × rows` values at `out` once (it need not be initialised).
    #[cfg(target_arch = "x86_64")]
    fn matmul_packed(&self, fmt: avx2::Packed, x: &[f32], m: usize, out: *mut f32) {
        packed_group(
            &[Part {
                w: self,
                fmt,
                out: SendPtr(out),
            }],
            x,
            m,
            avx2::Dot::best(),
        );
    }

    /// Whether `matmul` of `m` rows takes the packed path (so it can join a group).
    #[cfg(target_arch = "x86_64")]
    fn packed_at(&self, m: usize) -> Option<avx2::Packed> {
        let fmt = avx2::Packed::of(self.dtype)?;
        (avx2::available() && m > 0 && (self.tiled || m >= PACKED_MIN_ROWS)).then_some(fmt)
    }

    /// `x · Wᵀ` for several weights of the same width and the same input (a layer's
    /// query, key and value projections; its gate and up projections). Those on the
    /// packed path share one quantization of the input and one parallel region, so
    /// decoding pays for one hand-off to the other threads instead of one per weight
    /// (issue 13). Each result is what `matmul` gives, value for value.
    pub fn matmul_many(ws: &[&QWeight], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        for w in ws {
            assert_eq!(x.len(), m * w.cols, "input is not {m} × {}", w.cols);
        }
        let mut outs: Vec<Option<Vec<f32>>> = vec![None; ws.len()];
        #[cfg(target_arch = "x86_64")]
        {
            let mut parts = Vec::new();
            let mut bufs: Vec<(usize, Vec<f32>)> = Vec::new();
            for (i, w) in ws.iter().enumerate() {
                if let Some(fmt) = w.packed_at(m) {
                    if w.rows > 0 {
                        bufs.push((i, Vec::with_capacity(m * w.rows)));
                        let out = SendPtr(bufs.last_mut().expect("pushed").1.as_mut_ptr());
                        parts.push(Part { w, fmt, out });
                    }
                }
            }
            if !parts.is_empty() {
                packed_group(&parts, x, m, avx2::Dot::best());
                for (i, mut b) in bufs {
                    // SAFETY: `packed_group` wrote all `m × rows` values of each part.
                    unsafe { b.set_len(m * ws[i].rows) };
                    outs[i] = Some(b);
                }
            }
        }
        outs.into_iter()
            .zip(ws)
            .map(|(o, w)| o.unwrap_or_else(|| w.matmul(x, m)))
            .collect()
    }

    /// Any block format through candle's block dot products, on our tiling.
    fn matmul_blocks<T: GgmlType>(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (k, n) = (self.cols, self.rows);
        let kb = k / T::BLCK_SIZE;
        let mut acts = vec![T::VecDotType::zeros(); m * kb];
        let ap = SendPtr(acts.as_mut_ptr());
        parallel(m, m * k >= 1 << 14, |rows| {
            for r in rows {
                // SAFETY: each input row is quantized by one task into its own blocks.
                let dst = unsafe { std::slice::from_raw_parts_mut(ap.get().add(r * kb), kb) };
                T::VecDotType::from_float(&x[r * k..(r + 1) * k], dst);
            }
        });
        let w = self.blocks::<T>();
        let acts = &acts;
        let op = SendPtr(out.as_mut_ptr());
        parallel(n.div_ceil(GROUP), m * k * n >= 1 << 16, |groups| {
            for g in groups {
                let (j0, j1) = (g * GROUP, ((g + 1) * GROUP).min(n));
                for r0 in (0..m).step_by(GROUP) {
                    for j in j0..j1 {
                        let wr = &w[j * kb..(j + 1) * kb];
                        for r in r0..(r0 + GROUP).min(m) {
                            let v = T::vec_dot(k, wr, &acts[r * kb..(r + 1) * kb]);
                            // SAFETY: column j belongs to this task alone.
                            unsafe { *op.get().add(r * n + j) = v };
                        }
                    }
                }
            }
        });
    }

    #[cfg(target_arch = "x86_64")]
    fn matmul_avx2(&self, fmt: avx2::Fmt, x: &[f32], m: usize, out: &mut [f32]) {
        use avx2::Fmt;
        let (k, n) = (self.cols, self.rows);
        let kb = k / 32;
        let mut qs = vec![0i8; m * k];
        let mut d = vec![0f32; m * kb];
        let mut s = vec![0f32; m * kb];
        let mut t = vec![0f32; m * kb];
        let (qp, dp, sp, tp) = (
            SendPtr(qs.as_mut_ptr()),
            SendPtr(d.as_mut_ptr()),
            SendPtr(s.as_mut_ptr()),
            SendPtr(t.as_mut_ptr()),
        );
        parallel(m, m * k >= 1 << 14, |rows| {
            for r in rows {
                // SAFETY: each input row is quantized by one task into its own range.
                unsafe {
                    let part =
                        |p: &SendPtr<f32>| std::slice::from_raw_parts_mut(p.get().add(r * kb), kb);
                    quantize_q8(
                        &x[r * k..(r + 1) * k],
                        std::slice::from_raw_parts_mut(qp.get().add(r * k), k),
                        part(&dp),
                        part(&sp),
                        part(&tp),
                    )
                };
            }
        });
        let data = self.bytes.as_slice();
        let size = self.dtype.type_size();
        let row_bytes = kb * size;
        // Weights read unsigned (Q4_0 + 8, Q5_0 + 16) are corrected afterwards with
        // the input's block sums; Q4_1 adds its mins the same way.
        let offset = match fmt {
            Fmt::Q4_0 => 8.0,
            Fmt::Q5_0 => 16.0,
            _ => 0.0,
        };
        let (qs, d, s, t) = (&qs, &d, &s, &t);
        let op = SendPtr(out.as_mut_ptr());
        // Several input rows: unsigned weights, scales read once per group (below).
        let unsigned = m >= TILE;
        parallel(n.div_ceil(GROUP), m * k * n >= 1 << 16, |groups| {
            let mut dw = vec![0f32; if unsigned { GROUP * kb } else { 0 }];
            let mut mw = vec![
                0f32;
                if unsigned && fmt == Fmt::Q4_1 {
                    GROUP * kb
                } else {
                    0
                }
            ];
            for g in groups {
                let (j0, j1) = (g * GROUP, ((g + 1) * GROUP).min(n));
                if unsigned {
                    // The group's block scales (and Q4_1 mins) as f32.
                    for j in j0..j1 {
                        let row = &data[j * row_bytes..(j + 1) * row_bytes];
                        for (bi, blk) in row.chunks_exact(size).enumerate() {
                            let h =
                                |o: usize| half::f16::from_le_bytes([blk[o], blk[o + 1]]).to_f32();
                            dw[(j - j0) * kb + bi] = h(0);
                            if fmt == Fmt::Q4_1 {
                                mw[(j - j0) * kb + bi] = h(2);
                            }
                        }
                    }
                }
                let (dw, mw) = (&dw, &mw);
                let mut r0 = 0;
                while r0 < m {
                    let tile = (m - r0).min(TILE);
                    let a = |i: usize| avx2::Rows {
                        qs: qs[(r0 + i) * k..].as_ptr(),
                        d: d[(r0 + i) * kb..].as_ptr(),
                        s: s[(r0 + i) * kb..].as_ptr(),
                    };
                    let put = |jj: usize, r: usize, v: f32| {
                        let rr = r0 + r;
                        let mut v = v;
                        if unsigned {
                            let ir = rr * kb..(rr + 1) * kb;
                            let wr = (jj - j0) * kb..(jj - j0 + 1) * kb;
                            if offset != 0.0 {
                                v -= offset * dotf(&dw[wr.clone()], &t[ir.clone()]);
                            }
                            if fmt == Fmt::Q4_1 {
                                v += dotf(&mw[wr], &s[ir]);
                            }
                        }
                        // SAFETY: column jj belongs to this task alone.
                        unsafe { *op.get().add(rr * n + jj) = v };
                    };
                    let mut j = j0;
                    while j < j1 {
                        // Two weight rows per pass when several input rows share them
                        // (one input row streams the weights: one row at a time is faster).
                        let pair = unsigned && j + 1 < j1;
                        let wr = |i: usize| data[(j + i) * row_bytes..].as_ptr();
                        let sc = |i: usize| {
                            if unsigned {
                                dw[(j + i - j0) * kb..].as_ptr()
                            } else {
                                std::ptr::null()
                            }
                        };
                        // SAFETY: AVX2 detected; rows j (and j + 1) hold kb blocks (and
                        // with `unsigned`, their kb scales); input rows hold kb blocks.
                        unsafe {
                            macro_rules! tile {
                                ($($r:expr),*) => {
                                    if pair {
                                        let o = avx2::dot::<true, 2, _>(fmt, [wr(0), wr(1)], [sc(0), sc(1)], kb, [$(a($r)),*]);
                                        for (i, row) in o.iter().enumerate() {
                                            for (r, &v) in row.iter().enumerate() {
                                                put(j + i, r, v);
                                            }
                                        }
                                    } else {
                                        let o = if unsigned {
                                            avx2::dot::<true, 1, _>(fmt, [wr(0)], [sc(0)], kb, [$(a($r)),*])
                                        } else {
                                            avx2::dot::<false, 1, _>(fmt, [wr(0)], [sc(0)], kb, [$(a($r)),*])
                                        };
                                        for (r, &v) in o[0].iter().enumerate() {
                                            put(j, r, v);
                                        }
                                    }
                                };
                            }
                            match tile {
                                4 => tile!(0, 1, 2, 3),
                                3 => tile!(0, 1, 2),
                                2 => tile!(0, 1),
                                _ => tile!(0),
                            }
                        }
                        j += if pair { 2 } else { 1 };
                    }
                    r0 += tile;
                }
            }
        });
    }
}

/// Dot product of two equal-length f32 slices, in eight lanes.
pub(crate) fn dotf(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Quantizes 32-value blocks as llama.cpp's x86 `quantize_row_q8_0`/`q8_1` do:
/// scale `d = amax / 127` kept as f16, values `round(x · 127 / amax)` (ties to even),
/// and for Q8_1 `s = d · Σq`, also as f16. `t` is `d · Σq` unrounded (the correction
/// for weights read unsigned).
///
/// On AVX2 the blocks run 8 lanes at a time with the same operations (`avx2::quant`);
/// they were 4 % of a 1024-token Qwen prompt one value at a time (issue 13).
fn quantize_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], t: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2, FMA and F16C checked; the slices hold whole blocks.
        return unsafe { avx2::quant::q8(x, qs, d, s, t) };
    }
    quantize_q8_plain(x, qs, d, s, t)
}

/// `quantize_q8` one value at a time: the definition.
fn quantize_q8_plain(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], t: &mut [f32]) {
    for (b, xs) in x.chunks_exact(32).enumerate() {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let dd = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs[b * 32..(b + 1) * 32].iter_mut().zip(xs) {
            let r = (v * id).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        d[b] = half::f16::from_f32(dd).to_f32();
        s[b] = half::f16::from_f32(dd * sum as f32).to_f32();
        t[b] = d[b] * sum as f32;
    }
}

/// Quantizes 256-value blocks as ggml's Q8_K (the input of k-quant products): one
/// scale per 256 from the value of largest magnitude (`-127 / max`, as candle and
/// llama.cpp do), written per 32 as `d`, with `t = d · Σq` for each 16.
/// On AVX2 the values run 8 lanes at a time (`avx2::quant`; 4.5 % of a 1024-token Qwen
/// prompt one at a time).
fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], t: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: AVX2, FMA and F16C checked; the slices hold whole blocks.
        return unsafe { avx2::quant::q8k(x, qs, d, t) };
    }
    quantize_q8k_plain(x, qs, d, t)
}

/// `quantize_q8k` one value at a time: the definition.
fn quantize_q8k_plain(x: &[f32], qs: &mut [i8], d: &mut [f32], t: &mut [f32]) {
    for (b, xs) in x.chunks_exact(256).enumerate() {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let q = &mut qs[b * 256..(b + 1) * 256];
        if amax == 0.0 {
            q.fill(0);
            d[b * 8..b * 8 + 8].fill(0.0);
            t[b * 16..b * 16 + 16].fill(0.0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in q.iter_mut().zip(xs) {
            *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
        }
        let scale = 1.0 / iscale;
        d[b * 8..b * 8 + 8].fill(scale);
        for j in 0..16 {
            let sum: i32 = q[j * 16..(j + 1) * 16].iter().map(|&v| v as i32).sum();
            t[b * 16 + j] = scale * sum as f32;
        }
    }
}

/// Drops this process's mapping of the whole pages of `map[start..start + len]` (they
/// stay in the page cache; a later read maps them again), so a matrix rewritten by
/// `into_tiled` is not resident twice.
fn release_pages(map: &memmap2::Mmap, start: usize, len: usize) {
    #[cfg(unix)]
    {
        const PAGE: usize = 4096;
        let base = map.as_ptr() as usize;
        let (lo, hi) = (
            (base + start).next_multiple_of(PAGE),
            (base + start + len) / PAGE * PAGE,
        );
        if hi > lo {
            // SAFETY: the range lies inside the read-only mapping; MADV_DONTNEED on a
            // file mapping only unmaps pages, which fault back in from the file if read.
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) };
        }
    }
}

/// One weight of a grouped packed product: the weight, its packed format, and where its
/// `m × rows` outputs go (need not be initialised; each is written once).
#[cfg(target_arch = "x86_64")]
struct Part<'a> {
    w: &'a QWeight,
    fmt: avx2::Packed,
    out: SendPtr<f32>,
}

/// Quantized input rows for the packed kernels: values, a scale per 32 and sums per 16
/// (the Q8_0 or Q8_K rounding, as the weight format's dot product wants).
#[cfg(target_arch = "x86_64")]
struct QInput {
    qs: Vec<i8>,
    d: Vec<f32>,
    t: Vec<f32>,
    /// Σq per 32 values (Q8_0 weights on 512-bit registers need it, see `avx2::Dot::Zmm`).
    sums: Vec<i32>,
}

#[cfg(target_arch = "x86_64")]
fn quantize_rows(x: &[f32], m: usize, k: usize, kq: bool) -> QInput {
    let kb = k / 32;
    let mut qs = vec![0i8; m * k];
    let mut d = vec![0f32; m * kb];
    let mut t = vec![0f32; m * kb * 2];
    let mut sums = vec![0i32; m * kb];
    let (qp, dp, tp, sp) = (
        SendPtr(qs.as_mut_ptr()),
        SendPtr(d.as_mut_ptr()),
        SendPtr(t.as_mut_ptr()),
        SendPtr(sums.as_mut_ptr()),
    );
    parallel(m, m * k >= 1 << 14, |rows| {
        let (mut scratch, mut t32) = (vec![0f32; kb], vec![0f32; kb]);
        for r in rows {
            // SAFETY: each input row is quantized by one task into its own range.
            unsafe {
                let q = std::slice::from_raw_parts_mut(qp.get().add(r * k), k);
                let dd = std::slice::from_raw_parts_mut(dp.get().add(r * kb), kb);
                let tt = std::slice::from_raw_parts_mut(tp.get().add(r * kb * 2), kb * 2);
                let ss = std::slice::from_raw_parts_mut(sp.get().add(r * kb), kb);
                if kq {
                    quantize_q8k(&x[r * k..(r + 1) * k], q, dd, tt);
                } else {
                    quantize_q8(&x[r * k..(r + 1) * k], q, dd, &mut scratch, &mut t32);
                    for (j, t) in tt.iter_mut().enumerate() {
                        let sum: i32 = q[j * 16..(j + 1) * 16].iter().map(|&v| v as i32).sum();
                        *t = dd[j / 2] * sum as f32;
                    }
                }
                for (s, blk) in ss.iter_mut().zip(q.chunks_exact(32)) {
                    *s = blk.iter().map(|&v| v as i32).sum();
                }
            }
        }
    });
    QInput { qs, d, t, sums }
}

/// The packed products of every part (see `QWeight::matmul_packed`) over one input:
/// the input quantized once per rounding the formats need, and the tiles of all the
/// parts shared out in one parallel region.
#[cfg(target_arch = "x86_64")]
fn packed_group(parts: &[Part], x: &[f32], m: usize, dot: avx2::Dot) {
    let k = parts[0].w.cols;
    assert!(
        parts.iter().all(|p| p.w.cols == k),
        "grouped weights differ in width"
    );
    assert_eq!(x.len(), m * k, "input is not {m} × {k}");
    let kb = k / 32;
    let kq = |f: avx2::Packed| matches!(f, avx2::Packed::Q4K | avx2::Packed::Q6K);
    let q8 = parts
        .iter()
        .any(|p| !kq(p.fmt))
        .then(|| quantize_rows(x, m, k, false));
    let q8k = parts
        .iter()
        .any(|p| kq(p.fmt))
        .then(|| quantize_rows(x, m, k, true));
    // Work units (one tile, or two side by side for `Dot::Zmm`) of the parts, one
    // after another.
    let per_unit = if dot.pairs(m) { 2 } else { 1 };
    let dot = dot.single();
    let mut first = Vec::with_capacity(parts.len() + 1);
    first.push(0);
    for p in parts {
        let units = p.w.rows.div_ceil(PACK).div_ceil(per_unit);
        first.push(first.last().copied().unwrap_or(0) + units);
    }
    let total = *first.last().expect("one part at least");
    let work: usize = parts.iter().map(|p| m * k * p.w.rows).sum();
    // The tile is made and used a chunk of columns at a time, so it stays in L1
    // while every input row passes over it.
    let chunk = KCHUNK.min(kb);
    let staged = if parts.iter().all(|p| p.w.tiled) {
        0
    } else {
        chunk
    };
    parallel(total, work >= 1 << 16, |units| {
        let mut u = vec![0u8; per_unit * staged * 32 * PACK];
        let mut s = vec![0f32; per_unit * staged * 2 * PACK];
        let mut o = vec![0f32; per_unit * staged * 2 * PACK];
        let mut acc = vec![[0f32; PACK]; per_unit * m];
        for g in units {
            let pi = first.partition_point(|&f| f <= g) - 1;
            let (w, fmt, out) = (parts[pi].w, parts[pi].fmt, parts[pi].out);
            let n = w.rows;
            let t0 = (g - first[pi]) * per_unit;
            let count = per_unit.min(n.div_ceil(PACK) - t0);
            let per = w.dtype.block_size() / 32;
            let data = w.bytes.as_slice();
            let size = w.dtype.type_size();
            let row_bytes = k / w.dtype.block_size() * size;
            // pack_tile fetches the rows of the tile the next unit makes in its place.
            let ahead = per_unit * PACK * row_bytes;
            let kind = match fmt {
                avx2::Packed::Q6K => 1,
                avx2::Packed::Q8_0 => 2,
                _ => 0,
            };
            let input = if kq(fmt) { &q8k } else { &q8 };
            let QInput { qs, d, t, sums } = input.as_ref().expect("quantized for this format");
            acc.fill([0f32; PACK]);
            for c0 in (0..kb).step_by(chunk) {
                let cb = chunk.min(kb - c0);
                let (mut us, mut ss, mut os) = (
                    u.chunks_mut((staged * 32 * PACK).max(1)),
                    s.chunks_mut((staged * 2 * PACK).max(1)),
                    o.chunks_mut((staged * 2 * PACK).max(1)),
                );
                let mut srcs = [None; 2];
                for (i, src) in srcs.iter_mut().enumerate().take(count) {
                    let tile = t0 + i;
                    *src = Some(if w.tiled {
                        let bsize = avx2::tiled_block_bytes(fmt);
                        let p = data[(tile * kb + c0) * bsize..].as_ptr();
                        avx2::Src::Tiled(fmt == avx2::Packed::Q5_0, p)
                    } else {
                        let (u, s, o) = (
                            us.next().expect("staged"),
                            ss.next().expect("staged"),
                            os.next().expect("staged"),
                        );
                        // Short last tile: repeat its last row (results not stored).
                        let j0 = tile * PACK;
                        let rows = (n - j0).min(PACK);
                        let rp: [*const u8; PACK] = std::array::from_fn(|i| {
                            data[(j0 + i.min(rows - 1)) * row_bytes + c0 / per * size..].as_ptr()
                        });
                        // SAFETY: AVX2 detected; each row holds `cb / per` blocks of `fmt`
                        // from `c0` (`new` checked the size; KCHUNK is a multiple of 8, so
                        // chunks hold whole k-quant blocks); u, s, o hold `chunk` blocks.
                        unsafe { avx2::pack_tile(fmt, rp, cb / per, ahead, u, s, o) };
                        avx2::Src::Packed(kind, u, s, o)
                    });
                }
                let (q_in, d_in, t_in, s_in) = (qs.as_ptr(), d.as_ptr(), t.as_ptr(), sums.as_ptr());
                // SAFETY (offsets): r < m and c0 < kb, inside the quantized input.
                let x = |r: usize| unsafe {
                    (
                        q_in.add(r * k + c0 * 32),
                        d_in.add(r * kb + c0),
                        t_in.add((r * kb + c0) * 2),
                        s_in.add(r * kb + c0),
                    )
                };
                let (acc_a, acc_b) = acc.split_at_mut(m);
                let mut r = 0;
                // `R` input rows from `r` over the unit's tile or pair of tiles.
                macro_rules! rows {
                    ($r:literal, $x:expr) => {
                        match srcs {
                            [Some(a), Some(b)] => avx2::pair_rows_of::<$r>(
                                a,
                                b,
                                cb,
                                $x,
                                &mut acc_a[r..],
                                &mut acc_b[r..],
                            ),
                            [Some(src), _] => {
                                avx2::rows_of::<$r>(dot, src, cb, $x, &mut acc_a[r..])
                            }
                            _ => unreachable!("a unit holds one tile at least"),
                        }
                    };
                }
                while r < m {
                    // SAFETY: AVX2 detected (and AVX-512 VNNI for pairs, `Dot::all`); u,
                    // s, o (or the tiled bytes from `c0`) hold cb blocks of PACK rows;
                    // input rows r.. hold cb blocks from c0.
                    r += unsafe {
                        match (m - r, srcs) {
                            // Pairs hold eight rows' sums in 512-bit registers, so each
                            // unpacked block serves twice as many rows as on 256 bits.
                            (8.., [Some(a), Some(b)]) => avx2::pair_rows_of::<8>(
                                a,
                                b,
                                cb,
                                std::array::from_fn(|i| x(r + i)),
                                &mut acc_a[r..],
                                &mut acc_b[r..],
                            ),
                            (1, _) => rows!(1, [x(r)]),
                            (2 | 3, _) => rows!(2, [x(r), x(r + 1)]),
                            _ => rows!(4, std::array::from_fn(|i| x(r + i))),
                        }
                    };
                }
            }
            for i in 0..count {
                let j0 = (t0 + i) * PACK;
                let rows = (n - j0).min(PACK);
                for (r, a) in acc[i * m..(i + 1) * m].iter().enumerate() {
                    // SAFETY: columns j0..j0 + rows of every row of this part's output
                    // belong to this task alone.
                    unsafe {
                        let dst = out.get().add(r * n + j0);
                        if rows == PACK {
                            std::ptr::write_unaligned(dst as *mut [f32; PACK], *a);
                        } else {
                            std::ptr::copy_nonoverlapping(a.as_ptr(), dst, rows);
                        }
                    }
                }
            }
        }
    });
}

/// A pointer that parallel tasks share, each writing its own disjoint range.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(*mut T);
// SAFETY: tasks write disjoint ranges (see each use).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    pub(crate) fn new(p: *mut T) -> Self {
        Self(p)
    }

    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

/// Runs `f` over `0..n` on candle's CPU pool (or inline for small work, where waking
/// the pool costs more than it saves).
pub(crate) fn parallel(n: usize, big: bool, f: impl Fn(std::ops::Range<usize>) + Sync) {
    if n == 0 {
        return;
    }
    if !big || n == 1 || candle_core::utils::get_num_threads() <= 1 {
        f(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, f);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use candle_core::quantized::GgmlDType;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Fmt {
        Q4_0,
        Q4_1,
        Q5_0,
        Q8_0,
    }

    /// One quantized input row: values, and per block of 32 its scale and (Q8_1)
    /// scaled sum.
    #[derive(Clone, Copy)]
    pub struct Rows {
        pub qs: *const i8,
        pub d: *const f32,
        pub s: *const f32,
    }

    /// Dot products of `W` weight rows (`kb` blocks each) with `R` input rows; with
    /// `U`, block scales at `dw` and 4- and 5-bit weights without their offsets (see
    /// `dot_fmt`).
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available; each `w` holds `kb` blocks of `fmt`, each
    /// `dw` `kb` scales, and each input row `kb` blocks.
    pub unsafe fn dot<const U: bool, const W: usize, const R: usize>(
        fmt: Fmt,
        w: [*const u8; W],
        dw: [*const f32; W],
        kb: usize,
        a: [Rows; R],
    ) -> [[f32; R]; W] {
        match fmt {
            Fmt::Q4_0 => dot_fmt::<0, U, W, R>(w, dw, kb, a),
            Fmt::Q4_1 => dot_fmt::<1, U, W, R>(w, dw, kb, a),
            Fmt::Q5_0 => dot_fmt::<2, U, W, R>(w, dw, kb, a),
            Fmt::Q8_0 => dot_fmt::<3, U, W, R>(w, dw, kb, a),
        }
    }

    /// The input quantizers on 8 lanes: each value goes through the same IEEE
    /// operations as in `quantize_q8_plain` and `quantize_q8k_plain`, so the bits are
    /// theirs; a block holding NaN or ∞ is left to them.
    pub mod quant {
        use std::arch::x86_64::*;

        /// The largest magnitude of `v`, or `None` if a lane is NaN or infinite.
        #[inline(always)]
        unsafe fn amax(v: &[__m256]) -> Option<f32> {
            let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            let mut m = _mm256_setzero_ps();
            let mut bad = _mm256_setzero_ps();
            let inf = _mm256_set1_ps(f32::INFINITY);
            for &x in v {
                let a = _mm256_and_ps(x, abs);
                // Not below ∞: NaN (unordered) or ∞.
                bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(a, inf));
                m = _mm256_max_ps(m, a);
            }
            if _mm256_movemask_ps(bad) != 0 {
                return None;
            }
            let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_max_ss(h, _mm_movehdup_ps(h));
            Some(_mm_cvtss_f32(h))
        }

        /// Stores 32 i32 lanes (each in −128..=127) as bytes, in order.
        #[inline(always)]
        unsafe fn store32(r: [__m256i; 4], dst: *mut i8) {
            let a = _mm256_packs_epi32(r[0], r[1]);
            let b = _mm256_packs_epi32(r[2], r[3]);
            let p = _mm256_packs_epi16(a, b);
            let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(dst as *mut __m256i, p);
        }

        /// Σ of 32 i32 lanes.
        #[inline(always)]
        unsafe fn sum32(r: [__m256i; 4]) -> i32 {
            let s = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
            let h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b01_00_11_10>(h));
            let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b10_11_00_01>(h));
            _mm_cvtsi128_si32(h)
        }

        /// `super::super::quantize_q8` on 8 lanes.
        ///
        /// # Safety
        /// AVX2, FMA and F16C; `x` whole blocks of 32, the outputs room for them.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], t: &mut [f32]) {
            let nb = x.len() / 32;
            assert!(qs.len() >= nb * 32 && d.len() >= nb && s.len() >= nb && t.len() >= nb);
            for b in 0..nb {
                let xp = x.as_ptr().add(b * 32);
                let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xp.add(8 * i)));
                let Some(amax) = amax(&v) else {
                    let (q, dd) = (&mut qs[b * 32..b * 32 + 32], &mut d[b..b + 1]);
                    let (ss, tt) = (&mut s[b..b + 1], &mut t[b..b + 1]);
                    super::super::quantize_q8_plain(&x[b * 32..b * 32 + 32], q, dd, ss, tt);
                    continue;
                };
                let dd = amax / 127.0;
                let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
                let r: [__m256i; 4] = std::array::from_fn(|i| {
                    _mm256_cvtps_epi32(_mm256_round_ps::<
                        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                    >(_mm256_mul_ps(v[i], id)))
                });
                store32(r, qs.as_mut_ptr().add(b * 32));
                let sum = sum32(r);
                d[b] = half::f16::from_f32(dd).to_f32();
                s[b] = half::f16::from_f32(dd * sum as f32).to_f32();
                t[b] = d[b] * sum as f32;
            }
        }

        /// `super::super::quantize_q8k` on 8 lanes. `f32::round` (halves away from
        /// zero) is truncation plus one step away where the dropped part is ≥ ½ (exact:
        /// the part is a difference of nearby floats).
        ///
        /// # Safety
        /// AVX2, FMA and F16C; `x` whole blocks of 256, the outputs room for them.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], t: &mut [f32]) {
            let nb = x.len() / 256;
            assert!(qs.len() >= nb * 256 && d.len() >= nb * 8 && t.len() >= nb * 16);
            let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            let (half_, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
            let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
            for b in 0..nb {
                let xs = &x[b * 256..b * 256 + 256];
                let v: [__m256; 32] =
                    std::array::from_fn(|i| _mm256_loadu_ps(xs.as_ptr().add(8 * i)));
                let amax = match amax(&v) {
                    Some(a) if a != 0.0 => a,
                    _ => {
                        let (q, dd) = (&mut qs[b * 256..b * 256 + 256], &mut d[b * 8..b * 8 + 8]);
                        let tt = &mut t[b * 16..b * 16 + 16];
                        super::super::quantize_q8k_plain(xs, q, dd, tt);
                        continue;
                    }
                };
                // The first value of that magnitude gives the sign, as the scan does.
                let am = _mm256_set1_ps(amax);
                let at = (0..32)
                    .find_map(|i| {
                        let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_and_ps(v[i], abs), am);
                        let mask = _mm256_movemask_ps(hit);
                        (mask != 0).then(|| 8 * i + mask.trailing_zeros() as usize)
                    })
                    .expect("the largest magnitude is a value of the block");
                let iscale = -127.0 / xs[at];
                let is = _mm256_set1_ps(iscale);
                let q = qs.as_mut_ptr().add(b * 256);
                for c in 0..8 {
                    let r: [__m256i; 4] = std::array::from_fn(|i| {
                        let p = _mm256_mul_ps(is, v[4 * c + i]);
                        let tr = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
                        let away = _mm256_cmp_ps::<_CMP_GE_OQ>(
                            _mm256_and_ps(_mm256_sub_ps(p, tr), abs),
                            half_,
                        );
                        let step = _mm256_and_ps(away, _mm256_or_ps(one, _mm256_andnot_ps(abs, p)));
                        let r = _mm256_max_ps(_mm256_min_ps(_mm256_add_ps(tr, step), hi), lo);
                        _mm256_cvtps_epi32(r)
                    });
                    store32(r, q.add(32 * c));
                }
                let scale = 1.0 / iscale;
                d[b * 8..b * 8 + 8].fill(scale);
                let q = &qs[b * 256..b * 256 + 256];
                for j in 0..16 {
                    let sum: i32 = q[j * 16..(j + 1) * 16].iter().map(|&v| v as i32).sum();
                    t[b * 16 + j] = scale * sum as f32;
                }
            }
        }
    }

    /// Bytes ahead of the current block to prefetch when streaming.
    const PREFETCH: usize = 4096;
    /// The same for two tiles at once (`Dot::Zmm`). At `PREFETCH`, 40 distinct tiled
    /// Q5_0 [4864, 896] matrices read in turn took 16 rows 1.30–1.42× as long, 32 rows
    /// 1.21–1.23× and 64 rows 1.11× (AMD EPYC family 26, 2 threads, 20 alternations in
    /// one process); 16 KiB gave what 8 KiB does.
    const PAIR_PREFETCH: usize = 2 * PREFETCH;

    /// 16 bytes of packed nibbles: the low nibbles in lanes 0..16, the high in 16..32
    /// (the order of the 32-wide GGUF formats).
    #[inline(always)]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let v = _mm_loadu_si128(p as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// Byte `i` is 0xFF where bit `i` of `bits` is set.
    #[inline(always)]
    unsafe fn bit_bytes(bits: u32) -> __m256i {
        let v = _mm256_set1_epi32(bits as i32);
        // Each 128-bit lane holds all four bytes; send byte i / 8 to lane i.
        let spread = _mm256_shuffle_epi8(
            v,
            _mm256_setr_epi64x(
                0,
                0x0101_0101_0101_0101,
                0x0202_0202_0202_0202,
                0x0303_0303_0303_0303,
            ),
        );
        let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask)
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Formats with packed tiles.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Packed {
        Q4_0,
        Q4_1,
        Q5_0,
        Q8_0,
        Q4K,
        Q6K,
    }

    impl Packed {
        pub fn of(dtype: GgmlDType) -> Option<Self> {
            Some(match dtype {
                GgmlDType::Q4_0 => Self::Q4_0,
                GgmlDType::Q4_1 => Self::Q4_1,
                GgmlDType::Q5_0 => Self::Q5_0,
                GgmlDType::Q8_0 => Self::Q8_0,
                GgmlDType::Q4K => Self::Q4K,
                GgmlDType::Q6K => Self::Q6K,
                _ => return None,
            })
        }
    }

    /// Transposes eight rows of eight 4-byte groups: group `g` of row `i` goes to
    /// lane `i` of `r[g]`.
    #[inline(always)]
    unsafe fn transpose8(r: &mut [__m256i; 8]) {
        let lo = |a, b| _mm256_unpacklo_epi32(a, b);
        let hi = |a, b| _mm256_unpackhi_epi32(a, b);
        let (t0, t1, t2, t3) = (
            lo(r[0], r[1]),
            hi(r[0], r[1]),
            lo(r[2], r[3]),
            hi(r[2], r[3]),
        );
        let (t4, t5, t6, t7) = (
            lo(r[4], r[5]),
            hi(r[4], r[5]),
            lo(r[6], r[7]),
            hi(r[6], r[7]),
        );
        let lo = |a, b| _mm256_unpacklo_epi64(a, b);
        let hi = |a, b| _mm256_unpackhi_epi64(a, b);
        let (u0, u1, u2, u3) = (lo(t0, t2), hi(t0, t2), lo(t1, t3), hi(t1, t3));
        let (u4, u5, u6, u7) = (lo(t4, t6), hi(t4, t6), lo(t5, t7), hi(t5, t7));
        for (g, (a, b)) in [(u0, u4), (u1, u5), (u2, u6), (u3, u7)]
            .into_iter()
            .enumerate()
        {
            r[g] = _mm256_permute2x128_si256::<0x20>(a, b);
            r[g + 4] = _mm256_permute2x128_si256::<0x31>(a, b);
        }
    }

    /// Unpacks `nb` blocks of eight weight rows into a packed tile (see
    /// `QWeight::matmul_packed`): per 32 values, 256 bytes (eight groups of four
    /// columns × eight rows), and per 16 values each row's scale `s` and offset `o`
    /// (value = s · u − o; Q8_0 keeps its signed bytes and no offset).
    ///
    /// Each block's bytes `ahead` further on (the next tile's) are prefetched: the
    /// eight rows are eight streams, more than the hardware prefetcher follows well.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available; each row holds `nb` blocks of `fmt`;
    /// `u`, `s` and `o` hold the tile of `nb` blocks (32 · 8, 2 · 8 and 2 · 8 per 32
    /// values).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn pack_tile(
        fmt: Packed,
        w: [*const u8; super::PACK],
        nb: usize,
        ahead: usize,
        u: &mut [u8],
        s: &mut [f32],
        o: &mut [f32],
    ) {
        let per = match fmt {
            Packed::Q4K | Packed::Q6K => 8,
            _ => 1,
        };
        assert!(u.len() >= nb * per * 256 && s.len() >= nb * per * 16 && o.len() >= nb * per * 16);
        let t = Tile {
            u: u.as_mut_ptr(),
            s: s.as_mut_ptr(),
            o: o.as_mut_ptr(),
        };
        match fmt {
            Packed::Q4_0 => pack32::<0>(w, nb, ahead, t),
            Packed::Q4_1 => pack32::<1>(w, nb, ahead, t),
            Packed::Q5_0 => pack32::<2>(w, nb, ahead, t),
            Packed::Q8_0 => pack32::<3>(w, nb, ahead, t),
            Packed::Q4K => pack_q4k(w, nb, ahead, t),
            Packed::Q6K => pack_q6k(w, nb, ahead, t),
        }
    }

    #[derive(Clone, Copy)]
    struct Tile {
        u: *mut u8,
        s: *mut f32,
        o: *mut f32,
    }

    impl Tile {
        /// Tile block `tb`: eight rows' 32 values (transposed here), and their scales
        /// and offsets for the first and second 16 values.
        #[inline(always)]
        unsafe fn put(self, tb: usize, v: &mut [__m256i; 8], s: [__m256; 2], o: [__m256; 2]) {
            transpose8(v);
            for (g, x) in v.iter().enumerate() {
                _mm256_storeu_si256(self.u.add((tb * 8 + g) * 32) as *mut __m256i, *x);
            }
            for h in 0..2 {
                _mm256_storeu_ps(self.s.add((tb * 2 + h) * 8), s[h]);
                _mm256_storeu_ps(self.o.add((tb * 2 + h) * 8), o[h]);
            }
        }
    }

    /// Eight f16 values, one from each row, at byte `at` of their blocks.
    #[inline(always)]
    unsafe fn f16x8(p: [*const u8; 8], at: usize) -> __m256 {
        let h = |i: usize| std::ptr::read_unaligned(p[i].add(at) as *const i16);
        _mm256_cvtph_ps(_mm_setr_epi16(
            h(0),
            h(1),
            h(2),
            h(3),
            h(4),
            h(5),
            h(6),
            h(7),
        ))
    }

    /// The 32-wide formats (`F` as in `unpack`): one scale per block.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack32<const F: u8>(w: [*const u8; 8], nb: usize, ahead: usize, t: Tile) {
        let size = match F {
            0 => 18,
            1 => 20,
            2 => 22,
            _ => 34,
        };
        for b in 0..nb {
            let blk: [*const u8; 8] = std::array::from_fn(|i| w[i].add(b * size));
            let mut v: [__m256i; 8] = std::array::from_fn(|i| {
                _mm_prefetch::<_MM_HINT_T0>(blk[i].wrapping_add(ahead) as *const i8);
                unpack::<F, true>(blk[i])
            });
            let d = f16x8(blk, 0);
            let o = match F {
                0 => _mm256_mul_ps(d, _mm256_set1_ps(8.0)),
                1 => _mm256_sub_ps(_mm256_setzero_ps(), f16x8(blk, 2)),
                2 => _mm256_mul_ps(d, _mm256_set1_ps(16.0)),
                _ => _mm256_setzero_ps(),
            };
            t.put(b, &mut v, [d; 2], [o; 2]);
        }
    }

    /// Prefetches the `size`-byte blocks `ahead` bytes past each of `blk`.
    #[inline(always)]
    unsafe fn prefetch_blocks(blk: [*const u8; 8], ahead: usize, size: usize) {
        for p in blk {
            for line in (0..size).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + line) as *const i8);
            }
        }
    }

    /// Q4_K: eight sub-blocks of 32 per block, each with a 6-bit scale and min.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack_q4k(w: [*const u8; 8], nb: usize, ahead: usize, t: Tile) {
        let nib = _mm256_set1_epi8(0x0F);
        for b in 0..nb {
            let blk: [*const u8; 8] = std::array::from_fn(|i| w[i].add(b * 144));
            prefetch_blocks(blk, ahead, 144);
            let (d, dmin) = (f16x8(blk, 0), f16x8(blk, 2));
            let mut sc = [[0f32; 8]; 8];
            let mut mn = [[0f32; 8]; 8];
            for i in 0..8 {
                let scales = std::slice::from_raw_parts(blk[i].add(4), 12);
                for j in 0..8 {
                    let (a, m) = k4_scale(scales, j);
                    sc[j][i] = a as f32;
                    mn[j][i] = m as f32;
                }
            }
            for half in 0..4 {
                // Sub-blocks 2·half (low nibbles) and 2·half + 1 (high nibbles) share
                // 32 bytes.
                let q: [__m256i; 8] = std::array::from_fn(|i| {
                    _mm256_loadu_si256(blk[i].add(16 + 32 * half) as *const __m256i)
                });
                let mut lo: [__m256i; 8] = std::array::from_fn(|i| _mm256_and_si256(q[i], nib));
                let mut hi: [__m256i; 8] =
                    std::array::from_fn(|i| _mm256_and_si256(_mm256_srli_epi16::<4>(q[i]), nib));
                for (k, v) in [&mut lo, &mut hi].into_iter().enumerate() {
                    let j = 2 * half + k;
                    let s = _mm256_mul_ps(d, _mm256_loadu_ps(sc[j].as_ptr()));
                    let o = _mm256_mul_ps(dmin, _mm256_loadu_ps(mn[j].as_ptr()));
                    t.put(b * 8 + j, v, [s; 2], [o; 2]);
                }
            }
        }
    }

    /// Q6_K: 4 + 2 bits per value, a signed 8-bit scale per 16 values.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pack_q6k(w: [*const u8; 8], nb: usize, ahead: usize, t: Tile) {
        let nib = _mm256_set1_epi8(0x0F);
        let two = _mm256_set1_epi8(0x30);
        for b in 0..nb {
            let blk: [*const u8; 8] = std::array::from_fn(|i| w[i].add(b * 210));
            prefetch_blocks(blk, ahead, 210);
            let d = f16x8(blk, 208);
            for half in 0..2 {
                for c in 0..4 {
                    // ggml's order: low nibbles of ql[l] and ql[l + 32], then their high
                    // nibbles; two bits of qh[l] each.
                    let mut v: [__m256i; 8] = std::array::from_fn(|i| {
                        let ql = _mm256_loadu_si256(
                            blk[i].add(64 * half + 32 * (c % 2)) as *const __m256i
                        );
                        let lo = if c < 2 {
                            _mm256_and_si256(ql, nib)
                        } else {
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql), nib)
                        };
                        let qh = _mm256_loadu_si256(blk[i].add(128 + 32 * half) as *const __m256i);
                        // Bits 2c, 2c + 1 of each byte to bits 4, 5.
                        let hb = match c {
                            0 => _mm256_slli_epi16::<4>(qh),
                            1 => _mm256_slli_epi16::<2>(qh),
                            2 => qh,
                            _ => _mm256_srli_epi16::<2>(qh),
                        };
                        _mm256_or_si256(lo, _mm256_and_si256(hb, two))
                    });
                    let at = 192 + 8 * half + 2 * c;
                    let scale = |h: usize| {
                        let q = _mm256_setr_epi32(
                            *blk[0].add(at + h) as i8 as i32,
                            *blk[1].add(at + h) as i8 as i32,
                            *blk[2].add(at + h) as i8 as i32,
                            *blk[3].add(at + h) as i8 as i32,
                            *blk[4].add(at + h) as i8 as i32,
                            *blk[5].add(at + h) as i8 as i32,
                            *blk[6].add(at + h) as i8 as i32,
                            *blk[7].add(at + h) as i8 as i32,
                        );
                        _mm256_mul_ps(d, _mm256_cvtepi32_ps(q))
                    };
                    let s = [scale(0), scale(1)];
                    let thirty_two = _mm256_set1_ps(32.0);
                    let o = [
                        _mm256_mul_ps(s[0], thirty_two),
                        _mm256_mul_ps(s[1], thirty_two),
                    ];
                    t.put(b * 8 + half * 4 + c, &mut v, s, o);
                }
            }
        }
    }

    /// Scale and min of sub-block `j` of a Q4_K block (6 bits each, ggml's packing).
    #[inline(always)]
    fn k4_scale(sc: &[u8], j: usize) -> (u8, u8) {
        if j < 4 {
            (sc[j] & 63, sc[j + 4] & 63)
        } else {
            (
                (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4),
                (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4),
            )
        }
    }

    /// Where a product's weights come from: a packed tile of a kind (as `packed_rows`'s
    /// `K`) with its scales and offsets, or tiled Q5_0 (`true`) or Q8_0 bytes.
    #[derive(Clone, Copy)]
    pub enum Src<'a> {
        Packed(u8, &'a [u8], &'a [f32], &'a [f32]),
        Tiled(bool, *const u8),
    }

    /// The integer dot product the packed kernels use. All compute the same i32 sums
    /// (no kernel's intermediate saturates, see `rows_u5` and `rows_i8`), so products
    /// are bit for bit the same whichever runs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Dot {
        /// `vpmaddubsw` into i16, then `vpmaddwd` against ones into i32.
        Avx2,
        /// `vpdpbusd` (VEX-encoded AVX-VNNI): four u8 × i8 products straight into i32,
        /// one instruction where AVX2 takes two and an add.
        AvxVnni,
        /// The same on 256-bit registers through AVX-512 VNNI and VL (CPUs with
        /// AVX-512 VNNI but not the VEX form).
        Avx512Vnni,
        /// AVX-512 VNNI on 512-bit registers: two tiles (sixteen weight rows) per
        /// instruction (`pair_rows_of`), from `PAIR_MIN_ROWS` input rows. Fewer rows,
        /// and a part's odd last tile, run one tile on 256-bit VNNI (`Dot::single`).
        Zmm,
    }

    impl Dot {
        /// The fastest this CPU runs (needs `available()`).
        pub fn best() -> Dot {
            static BEST: std::sync::OnceLock<Dot> = std::sync::OnceLock::new();
            *BEST.get_or_init(|| match crate::backend::wide_isa_allowed() {
                true => *Dot::all().last().expect("AVX2 at least"),
                false => Dot::Avx2,
            })
        }

        /// Every kind this CPU runs, slowest first (for tests and benches).
        pub fn all() -> Vec<Dot> {
            let mut v = vec![Dot::Avx2];
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                v.push(Dot::Avx512Vnni);
            }
            if is_x86_feature_detected!("avxvnni") {
                v.push(Dot::AvxVnni);
            }
            if is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
            {
                v.push(Dot::Zmm);
            }
            v
        }

        /// Whether products of `m` input rows go two tiles at a time (`pair_rows_of`):
        /// from `PAIR_MIN_ROWS` on.
        pub fn pairs(self, m: usize) -> bool {
            self == Dot::Zmm && m >= super::PAIR_MIN_ROWS
        }

        /// The dot product for one tile alone: for `Zmm`, VNNI on 256-bit registers
        /// (the VEX form where the CPU has it).
        pub fn single(self) -> Dot {
            match self {
                Dot::Zmm if is_x86_feature_detected!("avxvnni") => Dot::AvxVnni,
                Dot::Zmm => Dot::Avx512Vnni,
                d => d,
            }
        }

        /// The name kernels carry in `QWeight::kernel`.
        pub fn name(self) -> &'static str {
            match self {
                Dot::Avx2 => "avx2",
                Dot::AvxVnni => "avx-vnni",
                Dot::Avx512Vnni => "avx512-vnni",
                Dot::Zmm => "avx512-vnni-zmm",
            }
        }
    }

    /// `packed_rows` or `tiled_rows` for `src` with the dot product `dot`; returns `R`.
    ///
    /// # Safety
    /// As `packed_rows` and `tiled_rows`; `dot` is one of `Dot::all()`.
    pub unsafe fn rows_of<const R: usize>(
        dot: Dot,
        src: Src,
        kb: usize,
        x: [Input; R],
        out: &mut [[f32; super::PACK]],
    ) -> usize {
        match dot {
            Dot::Avx2 => rows_avx2::<R>(src, kb, x, out),
            Dot::AvxVnni => rows_avxvnni::<R>(src, kb, x, out),
            Dot::Avx512Vnni => rows_avx512vnni::<R>(src, kb, x, out),
            Dot::Zmm => return rows_of::<R>(dot.single(), src, kb, x, out),
        }
        R
    }

    /// One entry per dot product, compiled with its CPU features, so that the kernels
    /// inlined into it use them.
    macro_rules! rows_entry {
        ($name:ident, $v:expr, $features:literal) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const R: usize>(
                src: Src,
                kb: usize,
                x: [Input; R],
                out: &mut [[f32; super::PACK]],
            ) {
                const V: u8 = $v;
                match src {
                    Src::Packed(0, u, s, o) => packed_rows::<0, R, V>(u, s, o, kb, x, out),
                    Src::Packed(1, u, s, o) => packed_rows::<1, R, V>(u, s, o, kb, x, out),
                    Src::Packed(_, u, s, o) => packed_rows::<2, R, V>(u, s, o, kb, x, out),
                    Src::Tiled(true, p) => tiled_rows::<true, R, V>(p, kb, x, out),
                    Src::Tiled(false, p) => tiled_rows::<false, R, V>(p, kb, x, out),
                }
            }
        };
    }
    rows_entry!(rows_avx2, 0, "avx2,fma,f16c");
    rows_entry!(rows_avxvnni, 1, "avx2,fma,f16c,avxvnni");
    rows_entry!(
        rows_avx512vnni,
        2,
        "avx2,fma,f16c,avx512f,avx512vnni,avx512vl"
    );

    /// `acc` plus the four u8 × i8 products of each 32-bit lane of `u` and `s`, through
    /// the dot product `V` (see `Dot`: 0 AVX2, 1 AVX-VNNI, 2 AVX-512 VNNI). With AVX2 the
    /// pairs are summed in i16 first, which the callers keep from saturating.
    #[inline(always)]
    unsafe fn dp<const V: u8>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        match V {
            1 => _mm256_dpbusd_avx_epi32(acc, u, s),
            2 => _mm256_dpbusd_epi32(acc, u, s),
            _ => _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
            ),
        }
    }

    /// The i32 sums of groups `g..g + 4` of a block (four `maddubs` pairs each). With
    /// AVX2 they are summed in i16 before widening: all four for values below 32 (at
    /// most 4 · 2 · 31 · 128 < 2^15), two and two for 6-bit values (`SIX`: at most
    /// 2 · 2 · 63 · 128). With VNNI they go straight into i32, in two chains so that
    /// the instruction's latency overlaps.
    #[inline(always)]
    unsafe fn sum4<const V: u8, const SIX: bool>(
        wv: &[__m256i; 8],
        y: *const i8,
        g: usize,
    ) -> __m256i {
        if V == 0 {
            let ones = _mm256_set1_epi16(1);
            let part = |g: usize| _mm256_maddubs_epi16(wv[g], bcast(y, g));
            let p0 = _mm256_add_epi16(part(g), part(g + 1));
            let p1 = _mm256_add_epi16(part(g + 2), part(g + 3));
            if SIX {
                _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones))
            } else {
                _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones)
            }
        } else {
            let z = _mm256_setzero_si256();
            let a = dp::<V>(dp::<V>(z, wv[g], bcast(y, g)), wv[g + 2], bcast(y, g + 2));
            let b = dp::<V>(
                dp::<V>(z, wv[g + 1], bcast(y, g + 1)),
                wv[g + 3],
                bcast(y, g + 3),
            );
            _mm256_add_epi32(a, b)
        }
    }

    /// `R` input rows against a packed tile of `PACK` weight rows (see
    /// `QWeight::matmul_packed`), added to `out`: per 32 values, eight `maddubs` of
    /// four input values broadcast against four columns of eight rows, then scaled per
    /// row. `K` is the kind of tile:
    /// - 0 (Q4_0, Q4_1, Q5_0, Q4_K): unsigned values below 32 with one scale per 32;
    /// - 1 (Q6_K): unsigned 6-bit values with a scale per 16; two products per sum;
    /// - 2 (Q8_0): signed bytes (see `rows_i8`).
    ///
    /// # Safety
    /// The features of dot product `V` must be available (see `rows_entry`); `u` holds
    /// `kb · 32 · PACK` bytes, `s` and `o` `kb · 2 · PACK` values; each input row (`qs`,
    /// `d`, `t`) `kb` blocks; `out` at least `R` rows.
    #[inline(always)]
    unsafe fn packed_rows<const K: u8, const R: usize, const V: u8>(
        u: &[u8],
        s: &[f32],
        o: &[f32],
        kb: usize,
        x: [Input; R],
        out: &mut [[f32; super::PACK]],
    ) {
        assert!(u.len() >= kb * 256 && s.len() >= kb * 16 && o.len() >= kb * 16);
        assert!(out.len() >= R);
        let (up, sp, op) = (u.as_ptr(), s.as_ptr(), o.as_ptr());
        rows_over::<K, R, V>(kb, |b| packed_blk(up, sp, op, b), &x, out);
    }

    /// One block (32 columns) of a tile of eight weight rows, as the row kernels take
    /// it: eight groups of four columns × eight rows, and each row's scale and offset
    /// for the first and second 16 columns (the second pair only for Q6_K; offsets
    /// unused for Q8_0).
    #[derive(Clone, Copy)]
    struct Blk {
        wv: [__m256i; 8],
        s: [__m256; 2],
        o: [__m256; 2],
    }

    /// Block `b` of a packed tile (see `pack_tile`).
    #[inline(always)]
    unsafe fn packed_blk(u: *const u8, s: *const f32, o: *const f32, b: usize) -> Blk {
        let w = u.add(b * 256);
        Blk {
            wv: std::array::from_fn(|g| _mm256_loadu_si256(w.add(g * 32) as *const __m256i)),
            s: std::array::from_fn(|h| _mm256_loadu_ps(s.add((b * 2 + h) * 8))),
            o: std::array::from_fn(|h| _mm256_loadu_ps(o.add((b * 2 + h) * 8))),
        }
    }

    /// The `R` rows' sums over `nb` blocks of one tile (`load(b)` gives block `b`) of
    /// kind `K` (see `packed_rows`), added to `out`.
    #[inline(always)]
    unsafe fn rows_over<const K: u8, const R: usize, const V: u8>(
        nb: usize,
        load: impl Fn(usize) -> Blk,
        x: &[Input; R],
        out: &mut [[f32; super::PACK]],
    ) {
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let Blk { wv, s, o } = load(b);
            match K {
                1 => {
                    for h in 0..2 {
                        for (r, &(qs, d, t, _)) in x.iter().enumerate() {
                            let i = sum4::<V, true>(&wv, qs.add(b * 32), 4 * h);
                            let a =
                                _mm256_fnmadd_ps(o[h], _mm256_set1_ps(*t.add(b * 2 + h)), acc[r]);
                            let dy = _mm256_set1_ps(*d.add(b));
                            acc[r] =
                                _mm256_fmadd_ps(_mm256_mul_ps(s[h], dy), _mm256_cvtepi32_ps(i), a);
                        }
                    }
                }
                2 => rows_i8::<R, V>(&wv, s[0], b, x, &mut acc),
                _ => rows_u5::<R, V>(&wv, s[0], o[0], b, x, &mut acc),
            }
        }
        add_rows(&acc, out);
    }

    /// One quantized input row from a block on: values, scale per 32, scaled sums per
    /// 16, and integer sums per 32 (for Q8_0 on 512-bit registers, see `rows_zmm`).
    pub type Input = (*const i8, *const f32, *const f32, *const i32);

    /// Four input bytes from group `g` of a block, in every lane.
    #[inline(always)]
    unsafe fn bcast(y: *const i8, g: usize) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(y.add(4 * g) as *const i32))
    }

    /// Adds the rows' sums to `out`.
    #[inline(always)]
    unsafe fn add_rows<const R: usize>(acc: &[__m256; R], out: &mut [[f32; super::PACK]]) {
        for (a, o) in acc.iter().zip(out) {
            let p = o.as_mut_ptr();
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *a));
        }
    }

    /// Block `b` of the input rows against one tile block of unsigned values below 32
    /// (`wv`, scale `sw` and offset `ow` per row): four products summed in i16 (at most
    /// 4 · 2 · 31 · 127 < 2^15); the offsets come off through the input's sums in `t`.
    #[inline(always)]
    unsafe fn rows_u5<const R: usize, const V: u8>(
        wv: &[__m256i; 8],
        sw: __m256,
        ow: __m256,
        b: usize,
        x: &[Input; R],
        acc: &mut [__m256; R],
    ) {
        for (r, &(qs, d, t, _)) in x.iter().enumerate() {
            let y = qs.add(b * 32);
            let isum = _mm256_add_epi32(sum4::<V, false>(wv, y, 0), sum4::<V, false>(wv, y, 4));
            let tb = *t.add(b * 2) + *t.add(b * 2 + 1);
            let a = _mm256_fnmadd_ps(ow, _mm256_set1_ps(tb), acc[r]);
            let dy = _mm256_set1_ps(*d.add(b));
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(isum), a);
        }
    }

    /// Block `b` of the input rows against one tile block of signed bytes (Q8_0): each
    /// `maddubs` takes |w| and the input with w's sign (at most 2 · 128 · 127: no
    /// saturation, and no room to sum two in i16).
    #[inline(always)]
    unsafe fn rows_i8<const R: usize, const V: u8>(
        wv: &[__m256i; 8],
        sw: __m256,
        b: usize,
        x: &[Input; R],
        acc: &mut [__m256; R],
    ) {
        let aw: [__m256i; 8] = std::array::from_fn(|g| _mm256_sign_epi8(wv[g], wv[g]));
        for (r, &(qs, d, _, _)) in x.iter().enumerate() {
            let y = qs.add(b * 32);
            let part = |g: usize| (aw[g], _mm256_sign_epi8(bcast(y, g), wv[g]));
            // Two chains (even and odd groups), so VNNI's latency overlaps.
            let mut isum = [_mm256_setzero_si256(); 2];
            for g in 0..8 {
                let (u, s) = part(g);
                isum[g % 2] = dp::<V>(isum[g % 2], u, s);
            }
            let isum = _mm256_add_epi32(isum[0], isum[1]);
            let dy = _mm256_set1_ps(*d.add(b));
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(isum), acc[r]);
        }
    }

    /// Bytes per tiled block (eight rows × 32 values): Q5_0 128 of nibbles, 32 of fifth
    /// bits and 16 of scales; Q8_0 256 of values and 16 of scales.
    pub fn tiled_block_bytes(fmt: Packed) -> usize {
        match fmt {
            Packed::Q5_0 => 176,
            Packed::Q8_0 => 272,
            _ => unreachable!("only Q5_0 and Q8_0 are tiled"),
        }
    }

    /// Writes `nb` blocks of a packed tile of Q5_0 or Q8_0 rows (from `pack_tile`) in
    /// the tiled layout (see `QWeight::into_tiled`) at `dst`.
    ///
    /// # Safety
    /// AVX2 and F16C must be available; `u` and `s` hold `nb` blocks; `dst` has room
    /// for `nb` tiled blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn compress_tile(fmt: Packed, u: &[u8], s: &[f32], nb: usize, dst: *mut u8) {
        assert!(u.len() >= nb * 256 && s.len() >= nb * 16);
        let bsize = tiled_block_bytes(fmt);
        let (nib, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(1));
        for b in 0..nb {
            let out = dst.add(b * bsize);
            let v: [__m256i; 8] = std::array::from_fn(|g| {
                _mm256_loadu_si256(u.as_ptr().add(b * 256 + g * 32) as *const __m256i)
            });
            let at = if fmt == Packed::Q5_0 {
                let mut planes = _mm256_setzero_si256();
                for (g, &x) in v.iter().enumerate() {
                    // Values below 32: bit 4 to bit g of the plane byte (no carries).
                    let bit = _mm256_and_si256(_mm256_srli_epi16::<4>(x), one);
                    let shifted = match g {
                        0 => bit,
                        1 => _mm256_slli_epi16::<1>(bit),
                        2 => _mm256_slli_epi16::<2>(bit),
                        3 => _mm256_slli_epi16::<3>(bit),
                        4 => _mm256_slli_epi16::<4>(bit),
                        5 => _mm256_slli_epi16::<5>(bit),
                        6 => _mm256_slli_epi16::<6>(bit),
                        _ => _mm256_slli_epi16::<7>(bit),
                    };
                    planes = _mm256_or_si256(planes, shifted);
                }
                for g in 0..4 {
                    let low = _mm256_and_si256(v[g], nib);
                    let high = _mm256_slli_epi16::<4>(_mm256_and_si256(v[g + 4], nib));
                    _mm256_storeu_si256(
                        out.add(g * 32) as *mut __m256i,
                        _mm256_or_si256(low, high),
                    );
                }
                _mm256_storeu_si256(out.add(128) as *mut __m256i, planes);
                160
            } else {
                for (g, &x) in v.iter().enumerate() {
                    _mm256_storeu_si256(out.add(g * 32) as *mut __m256i, x);
                }
                256
            };
            let scales = _mm256_cvtps_ph::<0>(_mm256_loadu_ps(s.as_ptr().add(b * 16)));
            _mm_storeu_si128(out.add(at) as *mut __m128i, scales);
        }
    }

    /// `R` input rows against `nb` tiled blocks of eight Q5_0 (`Q5`) or Q8_0 rows at
    /// `p` (see `QWeight::into_tiled`), added to `out`; each block is unpacked in
    /// registers, then multiplied as `packed_rows` does.
    ///
    /// # Safety
    /// The features of dot product `V` must be available (see `rows_entry`); `p` holds
    /// `nb` tiled blocks; each input row `nb` blocks; `out` at least `R` rows.
    #[inline(always)]
    unsafe fn tiled_rows<const Q5: bool, const R: usize, const V: u8>(
        p: *const u8,
        nb: usize,
        x: [Input; R],
        out: &mut [[f32; super::PACK]],
    ) {
        assert!(out.len() >= R);
        if Q5 {
            rows_over::<0, R, V>(nb, |b| tiled_blk::<true>(p, b, PREFETCH), &x, out)
        } else {
            rows_over::<2, R, V>(nb, |b| tiled_blk::<false>(p, b, PREFETCH), &x, out)
        }
    }

    /// Block `b` of eight tiled Q5_0 (`Q5`) or Q8_0 rows at `p`, unpacked in registers;
    /// the lines `ahead` bytes on are fetched (the rows stream the weights, across
    /// pages).
    #[inline(always)]
    unsafe fn tiled_blk<const Q5: bool>(p: *const u8, b: usize, ahead: usize) -> Blk {
        let bsize = if Q5 { 176 } else { 272 };
        let blk = p.add(b * bsize);
        for line in (0..bsize).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(ahead + line) as *const i8);
        }
        let load = |q: *const u8| _mm256_loadu_si256(q as *const __m256i);
        if Q5 {
            let (nib, fifth) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
            let planes = load(blk.add(128));
            let bit = |v: __m256i| _mm256_and_si256(v, fifth);
            let low = |q: __m256i| _mm256_and_si256(q, nib);
            let high = |q: __m256i| _mm256_and_si256(_mm256_srli_epi16::<4>(q), nib);
            let (q0, q1, q2, q3) = (
                load(blk),
                load(blk.add(32)),
                load(blk.add(64)),
                load(blk.add(96)),
            );
            // Group g's fifth bit is bit g of its plane byte; move it to bit 4 (16-bit
            // shifts carry across bytes only bits the mask drops).
            let wv = [
                _mm256_or_si256(low(q0), bit(_mm256_slli_epi16::<4>(planes))),
                _mm256_or_si256(low(q1), bit(_mm256_slli_epi16::<3>(planes))),
                _mm256_or_si256(low(q2), bit(_mm256_slli_epi16::<2>(planes))),
                _mm256_or_si256(low(q3), bit(_mm256_slli_epi16::<1>(planes))),
                _mm256_or_si256(high(q0), bit(planes)),
                _mm256_or_si256(high(q1), bit(_mm256_srli_epi16::<1>(planes))),
                _mm256_or_si256(high(q2), bit(_mm256_srli_epi16::<2>(planes))),
                _mm256_or_si256(high(q3), bit(_mm256_srli_epi16::<3>(planes))),
            ];
            let sw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(160) as *const __m128i));
            let ow = _mm256_mul_ps(sw, _mm256_set1_ps(16.0));
            Blk {
                wv,
                s: [sw; 2],
                o: [ow; 2],
            }
        } else {
            let sw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(256) as *const __m128i));
            Blk {
                wv: std::array::from_fn(|g| load(blk.add(g * 32))),
                s: [sw; 2],
                o: [_mm256_setzero_ps(); 2],
            }
        }
    }

    /// `rows_of` over two tiles at once (`a` and `b`, of the same kind and length) on
    /// 512-bit registers: each `vpdpbusd` multiplies four input values into sixteen
    /// weight rows, so a block takes half the instructions. Each lane does the same
    /// integer sums (exact) and the same float operations in the same order as the
    /// 256-bit kernels, so the outputs are the same bits. Returns `R`.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL and VNNI must be available (`Dot::Zmm`); as `rows_of` for each
    /// tile, and each input row's integer sums (`Input`'s last pointer) hold `kb`
    /// blocks for Q8_0.
    pub unsafe fn pair_rows_of<const R: usize>(
        a: Src,
        b: Src,
        kb: usize,
        x: [Input; R],
        out_a: &mut [[f32; super::PACK]],
        out_b: &mut [[f32; super::PACK]],
    ) -> usize {
        rows_zmm::<R>(a, b, kb, x, out_a, out_b);
        R
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn rows_zmm<const R: usize>(
        a: Src,
        b: Src,
        kb: usize,
        x: [Input; R],
        out_a: &mut [[f32; super::PACK]],
        out_b: &mut [[f32; super::PACK]],
    ) {
        assert!(out_a.len() >= R && out_b.len() >= R);
        let pk = |u: &[u8], s: &[f32], o: &[f32]| {
            assert!(u.len() >= kb * 256 && s.len() >= kb * 16 && o.len() >= kb * 16);
            (u.as_ptr(), s.as_ptr(), o.as_ptr())
        };
        match (a, b) {
            (Src::Packed(k, ua, sa, oa), Src::Packed(_, ub, sb, ob)) => {
                let ((ua, sa, oa), (ub, sb, ob)) = (pk(ua, sa, oa), pk(ub, sb, ob));
                let la = |i| packed_blk(ua, sa, oa, i);
                let lb = |i| packed_blk(ub, sb, ob, i);
                match k {
                    0 => rows_over_zmm::<0, R>(kb, la, lb, &x, out_a, out_b),
                    1 => rows_over_zmm::<1, R>(kb, la, lb, &x, out_a, out_b),
                    _ => rows_over_zmm::<2, R>(kb, la, lb, &x, out_a, out_b),
                }
            }
            (Src::Tiled(true, pa), Src::Tiled(true, pb)) => {
                let blk = |p, i| tiled_blk::<true>(p, i, PAIR_PREFETCH);
                rows_over_zmm::<0, R>(kb, |i| blk(pa, i), |i| blk(pb, i), &x, out_a, out_b)
            }
            (Src::Tiled(false, pa), Src::Tiled(false, pb)) => {
                let blk = |p, i| tiled_blk::<false>(p, i, PAIR_PREFETCH);
                rows_over_zmm::<2, R>(kb, |i| blk(pa, i), |i| blk(pb, i), &x, out_a, out_b)
            }
            _ => unreachable!("a pair of tiles of one kind"),
        }
    }

    /// `rows_over` for two tiles, their blocks side by side in 512-bit registers (tile
    /// `a` in the lower half). Q8_0's signed weights go in as `w + 128` (unsigned, as
    /// `vpdpbusd` wants, and AVX-512 has no `vpsignb` to move their signs onto the
    /// input), and `128 · Σy` comes off the exact integer sum.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn rows_over_zmm<const K: u8, const R: usize>(
        nb: usize,
        load_a: impl Fn(usize) -> Blk,
        load_b: impl Fn(usize) -> Blk,
        x: &[Input; R],
        out_a: &mut [[f32; super::PACK]],
        out_b: &mut [[f32; super::PACK]],
    ) {
        let wide_i = |l: __m256i, h: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l), h);
        let wide_f = |l: __m256, h: __m256| {
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_castps_pd(l)),
                _mm256_castps_pd(h),
            ))
        };
        let bc = |y: *const i8, g: usize| {
            _mm512_set1_epi32(std::ptr::read_unaligned(y.add(4 * g) as *const i32))
        };
        // Two chains (even and odd groups), so the instruction's latency overlaps.
        let dot8 = |wv: &[__m512i; 8], y: *const i8, g0: usize, n: usize| {
            let mut c = [_mm512_setzero_si512(); 2];
            for g in g0..g0 + n {
                c[g % 2] = _mm512_dpbusd_epi32(c[g % 2], wv[g], bc(y, g));
            }
            _mm512_add_epi32(c[0], c[1])
        };
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [_mm512_setzero_ps(); R];
        for blk in 0..nb {
            let (p, q) = (load_a(blk), load_b(blk));
            let mut wv: [__m512i; 8] = std::array::from_fn(|g| wide_i(p.wv[g], q.wv[g]));
            let s: [__m512; 2] = std::array::from_fn(|h| wide_f(p.s[h], q.s[h]));
            match K {
                1 => {
                    let o: [__m512; 2] = std::array::from_fn(|h| wide_f(p.o[h], q.o[h]));
                    for h in 0..2 {
                        for (r, &(qs, d, t, _)) in x.iter().enumerate() {
                            let i = dot8(&wv, qs.add(blk * 32), 4 * h, 4);
                            let a =
                                _mm512_fnmadd_ps(o[h], _mm512_set1_ps(*t.add(blk * 2 + h)), acc[r]);
                            let dy = _mm512_set1_ps(*d.add(blk));
                            acc[r] =
                                _mm512_fmadd_ps(_mm512_mul_ps(s[h], dy), _mm512_cvtepi32_ps(i), a);
                        }
                    }
                }
                2 => {
                    for v in wv.iter_mut() {
                        *v = _mm512_xor_si512(*v, flip);
                    }
                    for (r, &(qs, d, _, sums)) in x.iter().enumerate() {
                        let i = dot8(&wv, qs.add(blk * 32), 0, 8);
                        let i = _mm512_sub_epi32(i, _mm512_set1_epi32(128 * *sums.add(blk)));
                        let dy = _mm512_set1_ps(*d.add(blk));
                        acc[r] =
                            _mm512_fmadd_ps(_mm512_mul_ps(s[0], dy), _mm512_cvtepi32_ps(i), acc[r]);
                    }
                }
                _ => {
                    let o = wide_f(p.o[0], q.o[0]);
                    for (r, &(qs, d, t, _)) in x.iter().enumerate() {
                        let i = dot8(&wv, qs.add(blk * 32), 0, 8);
                        let tb = *t.add(blk * 2) + *t.add(blk * 2 + 1);
                        let a = _mm512_fnmadd_ps(o, _mm512_set1_ps(tb), acc[r]);
                        let dy = _mm512_set1_ps(*d.add(blk));
                        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(s[0], dy), _mm512_cvtepi32_ps(i), a);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let (pa, pb) = (out_a[r].as_mut_ptr(), out_b[r].as_mut_ptr());
            let lo = _mm512_castps512_ps256(*a);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*a)));
            _mm256_storeu_ps(pa, _mm256_add_ps(_mm256_loadu_ps(pa), lo));
            _mm256_storeu_ps(pb, _mm256_add_ps(_mm256_loadu_ps(pb), hi));
        }
    }

    #[inline(always)]
    unsafe fn f16(p: *const u8) -> f32 {
        let h = std::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }

    /// The block at `blk` as 32 bytes. With `U`, unsigned for the 4- and 5-bit formats
    /// (Q4_0 and Q5_0 without their offsets of 8 and 16); without, signed values.
    /// Q4_1 is unsigned and Q8_0 signed either way.
    #[inline(always)]
    unsafe fn unpack<const F: u8, const U: bool>(blk: *const u8) -> __m256i {
        match F {
            0 if U => nibbles(blk.add(2)),
            0 => _mm256_sub_epi8(nibbles(blk.add(2)), _mm256_set1_epi8(8)),
            1 => nibbles(blk.add(4)),
            2 => {
                let hi = bit_bytes(std::ptr::read_unaligned(blk.add(2) as *const u32));
                let n = nibbles(blk.add(6));
                if U {
                    _mm256_or_si256(n, _mm256_and_si256(hi, _mm256_set1_epi8(0x10)))
                } else {
                    // A clear fifth bit means value − 16: set the byte's top nibble.
                    _mm256_or_si256(n, _mm256_andnot_si256(hi, _mm256_set1_epi8(0xF0u8 as i8)))
                }
            }
            _ => _mm256_loadu_si256(blk.add(2) as *const __m256i),
        }
    }

    /// `W` weight rows against `R` input rows: each unpacked weight block and each
    /// loaded input block serve several products, and all `W × R` accumulators stay
    /// in registers.
    ///
    /// With `U` (several input rows), 4- and 5-bit weights go into `maddubs` unsigned
    /// (u8 × i8, at most 31 · 127 · 2: no i16 saturation), block scales come from
    /// `dw`, and the caller adds the offsets and Q4_1 mins from the input's block
    /// sums: that saves the sign fix-up of every product. Without `U` (one input row,
    /// bound by memory), scales and mins are read from the blocks as they stream by,
    /// and signed weights enter `maddubs` as |x| with y taking x's sign.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_fmt<const F: u8, const U: bool, const W: usize, const R: usize>(
        w: [*const u8; W],
        dw: [*const f32; W],
        kb: usize,
        a: [Rows; R],
    ) -> [[f32; R]; W] {
        let size = match F {
            0 => 18,
            1 => 20,
            2 => 22,
            _ => 34,
        };
        let signed = F == 3 || (!U && F != 1);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        let mut mins = [[0f32; R]; W];
        for b in 0..kb {
            let mut x = [_mm256_setzero_si256(); W];
            let mut sw = [_mm256_setzero_ps(); W];
            for i in 0..W {
                let blk = w[i].add(b * size);
                if !U {
                    // One input row is a stream through the weights: fetch across page
                    // boundaries, where the hardware prefetcher stops.
                    _mm_prefetch::<_MM_HINT_T0>(blk.add(PREFETCH) as *const i8);
                }
                x[i] = unpack::<F, U>(blk);
                sw[i] = _mm256_set1_ps(if U { *dw[i].add(b) } else { f16(blk) });
            }
            for r in 0..R {
                let y = _mm256_loadu_si256(a[r].qs.add(b * 32) as *const __m256i);
                let dy = _mm256_set1_ps(*a[r].d.add(b));
                for i in 0..W {
                    let p = if signed {
                        _mm256_maddubs_epi16(
                            _mm256_sign_epi8(x[i], x[i]),
                            _mm256_sign_epi8(y, x[i]),
                        )
                    } else {
                        _mm256_maddubs_epi16(x[i], y)
                    };
                    if !U && F == 1 {
                        mins[i][r] += f16(w[i].add(b * size + 2)) * *a[r].s.add(b);
                    }
                    let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                    acc[i][r] = _mm256_fmadd_ps(_mm256_mul_ps(sw[i], dy), p, acc[i][r]);
                }
            }
        }
        let mut out = [[0f32; R]; W];
        for i in 0..W {
            for r in 0..R {
                out[i][r] = hsum(acc[i][r]) + mins[i][r];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    fn weight(dtype: GgmlDType, rows: usize, cols: usize, seed: u64, tiled: bool) -> QWeight {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let w = QWeight::new(dtype, rows, cols, Bytes::owned(&q.data().unwrap())).unwrap();
        if tiled {
            w.into_tiled()
        } else {
            w
        }
    }

    /// Grouped products equal the weights' own products value for value, whatever the
    /// mix: tiled and per-call packed formats, the two input roundings (Q8_0 and Q8_K),
    /// short last tiles, and row counts below the packed threshold.
    /// VNNI's `vpdpbusd` against AVX2's `maddubs` on every packed format, tiled or
    /// made per call, at every row-block width, and from `PAIR_MIN_ROWS` rows on two
    /// tiles at a time on 512-bit registers (40 weight rows: pairs and an odd last
    /// tile): the same bits (the integer sums are exact in all). Only the kinds this
    /// CPU has are run.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_dot_product_gives_the_same_bits() {
        if !avx2::available() {
            return;
        }
        use GgmlDType::*;
        let cases = [
            (Q4_0, false),
            (Q4_1, false),
            (Q5_0, false),
            (Q5_0, true),
            (Q8_0, false),
            (Q8_0, true),
            (Q4K, false),
            (Q6K, false),
        ];
        for (dtype, tiled) in cases {
            let w = weight(dtype, 40, 512, 3, tiled);
            let fmt = avx2::Packed::of(dtype).expect("a packed format");
            for m in [1, 2, 3, 4, 7, PAIR_MIN_ROWS, PAIR_MIN_ROWS + 3, 16, 19] {
                let x = random(m * 512, 30 + m as u64);
                let mut want = None;
                for dot in avx2::Dot::all() {
                    let mut out = vec![f32::NAN; m * 40];
                    let part = Part {
                        w: &w,
                        fmt,
                        out: SendPtr(out.as_mut_ptr()),
                    };
                    packed_group(&[part], &x, m, dot);
                    let want = want.get_or_insert_with(|| out.clone());
                    assert!(out.iter().all(|v| v.is_finite()), "{dtype:?} {dot:?} m={m}");
                    assert_eq!(out, *want, "{dtype:?} tiled={tiled} {dot:?} m={m}");
                }
            }
        }
    }

    /// The vector quantizers give the definitions' bits: random blocks at several
    /// scales, halves that round (ties even for Q8_0, away from zero for Q8_K), a tie
    /// of magnitudes with opposite signs, zero blocks, and blocks with NaN or ∞.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_quantizers_equal_the_definitions() {
        if !avx2::available() {
            return;
        }
        let mut x = Vec::new();
        for (i, scale) in [1.0f32, 1e-3, 37.0, 1e-30, 3e4].into_iter().enumerate() {
            x.extend(random(512, 90 + i as u64).iter().map(|v| v * scale));
        }
        // 127 · v / amax lands on halves: amax 127 and values k + 0.5.
        let mut halves: Vec<f32> = (0..256).map(|i| (i % 250) as f32 * 0.5 - 62.5).collect();
        halves[7] = 127.0;
        x.extend(&halves);
        let mut tie = random(256, 7);
        (tie[3], tie[200]) = (-5.0, 5.0);
        x.extend(&tie);
        x.extend([0f32; 256]);
        let mut odd = random(256, 8);
        (odd[5], odd[40], odd[300 % 256]) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
        x.extend(&odd);
        let (n32, n256) = (x.len() / 32, x.len() / 256);
        let run = |vector: bool| {
            let (mut q, mut d, mut s, mut t) = (
                vec![0i8; x.len()],
                vec![0f32; n32],
                vec![0f32; n32],
                vec![0f32; n32],
            );
            let (mut qk, mut dk, mut tk) = (
                vec![0i8; x.len()],
                vec![0f32; n256 * 8],
                vec![0f32; n256 * 16],
            );
            if vector {
                quantize_q8(&x, &mut q, &mut d, &mut s, &mut t);
                quantize_q8k(&x, &mut qk, &mut dk, &mut tk);
            } else {
                quantize_q8_plain(&x, &mut q, &mut d, &mut s, &mut t);
                quantize_q8k_plain(&x, &mut qk, &mut dk, &mut tk);
            }
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            (q, bits(d), bits(s), bits(t), qk, bits(dk), bits(tk))
        };
        assert!(
            run(true) == run(false),
            "vector and plain quantizers differ"
        );
    }

    #[test]
    fn grouped_products_equal_products_alone() {
        let ws = [
            weight(GgmlDType::Q5_0, 72, 512, 1, true),
            weight(GgmlDType::Q8_0, 24, 512, 2, true),
            weight(GgmlDType::Q4K, 40, 512, 3, false),
            weight(GgmlDType::Q6K, 13, 512, 4, false),
            weight(GgmlDType::Q4_1, 16, 512, 5, false),
        ];
        let refs: Vec<&QWeight> = ws.iter().collect();
        for m in [1, 2, 3, 4, 8, 9, PAIR_MIN_ROWS + 1] {
            let x = random(m * 512, 20 + m as u64);
            let many = QWeight::matmul_many(&refs, &x, m);
            for (w, got) in ws.iter().zip(&many) {
                assert_eq!(*got, w.matmul(&x, m), "{:?} m={m}", w.dtype());
            }
        }
    }

    /// Our product against candle's `QMatMul` (the plain path) on the same blocks.
    fn check(dtype: GgmlDType, rows: usize, cols: usize, m: usize) {
        let dev = Device::Cpu;
        let w = Tensor::from_vec(random(rows * cols, 7), (rows, cols), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let bytes = q.data().unwrap().to_vec();
        let ours = QWeight::new(dtype, rows, cols, Bytes::owned(&bytes)).unwrap();
        let x = random(m * cols, 11 + m as u64);
        let got = ours.matmul(&x, m);
        // The packed tiles at every row count too (where the format has them), and the
        // tiled layout (Q5_0, Q8_0; the others keep their blocks).
        let packed = ours.matmul_from(&x, m, 1);
        let tiled = QWeight::new(dtype, rows, cols, Bytes::owned(&bytes))
            .unwrap()
            .into_tiled();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            tiled.tiled,
            avx2::available() && matches!(dtype, GgmlDType::Q5_0 | GgmlDType::Q8_0)
        );
        let tiled_out = tiled.matmul(&x, m);
        // On the packed path a row's sums do not depend on the rows beside it: the
        // decoding pool relies on it (a reply is the same in any position of a step).
        for r in [0, m / 2, m - 1] {
            let row = &x[r * cols..(r + 1) * cols];
            let alone = ours.matmul_from(row, 1, 1);
            assert_eq!(
                alone,
                packed[r * rows..(r + 1) * rows],
                "{dtype:?} m={m}: row {r} alone"
            );
            if tiled.tiled {
                assert_eq!(
                    tiled.matmul(row, 1),
                    tiled_out[r * rows..(r + 1) * rows],
                    "{dtype:?} m={m}: tiled row {r} alone"
                );
            }
        }
        // Below the packed threshold too, a row's outputs are those it gets alone.
        if m < PACKED_MIN_ROWS {
            for r in 0..m {
                assert_eq!(
                    ours.matmul(&x[r * cols..(r + 1) * cols], 1),
                    got[r * rows..(r + 1) * rows],
                    "{dtype:?} m={m}: row {r} alone, below the packed threshold"
                );
            }
        }
        let plain = QMatMul::from_qtensor(q).unwrap();
        let want = plain
            .forward(&Tensor::from_vec(x, (m, cols), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (i, ((g, p), w)) in got.iter().zip(&packed).zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-3 * scale.max(1.0),
                "{dtype:?} [{rows}x{cols}] m={m}: element {i}: ours {g} vs candle {w}"
            );
            assert!(
                (p - w).abs() <= 1e-3 * scale.max(1.0),
                "{dtype:?} [{rows}x{cols}] m={m}: element {i}: packed {p} vs candle {w}"
            );
            let t = tiled_out[i];
            assert!(
                (t - w).abs() <= 1e-3 * scale.max(1.0),
                "{dtype:?} [{rows}x{cols}] m={m}: element {i}: tiled {t} vs candle {w}"
            );
        }
        // Dequantized rows equal candle's.
        let full = q_dequant(&bytes, dtype, rows, cols);
        let mut row = vec![0f32; cols];
        for i in [0, rows / 2, rows - 1] {
            ours.dequantize_row(i, &mut row);
            assert_eq!(row, full[i * cols..(i + 1) * cols], "{dtype:?} row {i}");
            tiled.dequantize_row(i, &mut row);
            assert_eq!(
                row,
                full[i * cols..(i + 1) * cols],
                "{dtype:?} tiled row {i}"
            );
        }
    }

    fn q_dequant(bytes: &[u8], dtype: GgmlDType, rows: usize, cols: usize) -> Vec<f32> {
        let q = QTensor::new(
            candle_core::quantized::QStorage::from_data(
                std::borrow::Cow::Borrowed(bytes),
                &Device::Cpu,
                dtype,
            )
            .unwrap(),
            (rows, cols),
        )
        .unwrap();
        q.dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn every_format_matches_candle_at_every_tile_width() {
        use GgmlDType::*;
        for dtype in [Q4_0, Q4_1, Q5_0, Q8_0, Q4K, Q5K, Q6K, Q2K, Q3K] {
            let cols = if dtype.block_size() == 256 { 512 } else { 96 };
            for m in [1, 2, 3, 4, 5, 9, 40] {
                check(dtype, 37, cols, m);
            }
            // Rows longer than one packed chunk (KCHUNK · 32), with a short last chunk.
            for m in [4, 7] {
                check(dtype, 11, 1280, m);
            }
        }
    }

    #[test]
    fn large_products_split_across_threads_and_match() {
        check(GgmlDType::Q5_0, 1000, 640, 33);
        check(GgmlDType::Q6K, 300, 1024, 17);
    }

    #[test]
    fn bad_shapes_are_refused() {
        let bytes = Bytes::owned(&[0u8; 22]);
        assert!(QWeight::new(GgmlDType::Q5_0, 1, 48, bytes).is_err());
        let bytes = Bytes::owned(&[0u8; 21]);
        assert!(QWeight::new(GgmlDType::Q5_0, 1, 32, bytes).is_err());
        let bytes = Bytes::owned(&[0u8; 64]);
        assert!(QWeight::new(GgmlDType::F32, 4, 4, bytes).is_err());
    }

    #[test]
    fn bit_and_nibble_unpacking_match_the_block_layout() {
        // A Q5_0 block whose values are 0..32 - 16 in order, against candle's reading.
        let mut blk = [0u8; 22];
        blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
        let mut qh = 0u32;
        for i in 0..32u32 {
            let v = (i * 7 + 3) % 32; // unsigned 5-bit value
            if v & 16 != 0 {
                qh |= 1 << i;
            }
            let nib = (v & 15) as u8;
            let j = (i % 16) as usize;
            blk[6 + j] |= if i < 16 { nib } else { nib << 4 };
        }
        blk[2..6].copy_from_slice(&qh.to_le_bytes());
        let w = QWeight::new(GgmlDType::Q5_0, 1, 32, Bytes::owned(&blk)).unwrap();
        let mut row = vec![0f32; 32];
        w.dequantize_row(0, &mut row);
        let want: Vec<f32> = (0..32).map(|i| ((i * 7 + 3) % 32) as f32 - 16.0).collect();
        assert_eq!(row, want);
        // One-hot inputs read each value back through the product.
        for i in 0..32 {
            let mut x = vec![0f32; 32];
            x[i] = 1.0;
            let y = w.matmul(&x, 1);
            assert!(
                (y[0] - want[i]).abs() < 1e-2,
                "value {i}: {} vs {}",
                y[0],
                want[i]
            );
        }
    }
}
