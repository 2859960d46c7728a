//! Decoder attention for one new token per row, on the CPU (issue 13).
//!
//! Through candle, a decoding step's attention was a dozen tensor ops per layer: the
//! self-attention cache grew by concatenation (every step copied all of it), heads were
//! split and merged with copies, and the small batched products ran one after another
//! on one thread while the other core waited. Here the self-attention keys and values
//! live in buffers that grow by doubling, new ones are written in place, and
//! scores, softmax and the weighted sum of values run straight over the caches, in one
//! parallel region over (row, head): max subtracted, `exp`, divided by the sum, on
//! AVX2 with FMA products and sums 8 lanes at a time and `vmath::exp`.

/// Keys and values of one self-attention layer: [slots, heads, cap, head_dim] each, the
/// first `len` positions filled.
///
/// Beam search reorders the rows after every step. Rather than move the keys and values
/// (a Marian step at 4 beams moved 6 MB, 0.4 of its 13 ms), each row keeps a table of
/// where its positions live: `from[r · cap + p]` is the slot whose position `p` row `r`
/// reads. Row `r` writes its new position into slot `r`; no row holds that position yet,
/// and what is written is never changed, so rows can share a history.
pub struct KvCache {
    /// Rows now; never more than the slots.
    rows: usize,
    slots: usize,
    heads: usize,
    dh: usize,
    cap: usize,
    len: usize,
    k: Vec<f32>,
    v: Vec<f32>,
    from: Vec<u32>,
}

impl KvCache {
    pub fn new(rows: usize, heads: usize, dh: usize) -> Self {
        KvCache {
            rows,
            slots: rows,
            heads,
            dh,
            cap: 0,
            len: 0,
            k: Vec::new(),
            v: Vec::new(),
            from: Vec::new(),
        }
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one position per row, from `qkv` ([rows, 3 · heads · dh]: q, then k,
    /// then v, each head after head).
    pub fn append(&mut self, qkv: &[f32]) {
        let (inner, dh) = (self.heads * self.dh, self.dh);
        assert_eq!(qkv.len(), self.rows * 3 * inner, "qkv has the wrong size");
        if self.len == self.cap {
            self.grow((self.cap * 2).max(16));
        }
        let (cap, len) = (self.cap, self.len);
        for r in 0..self.rows {
            let row = &qkv[r * 3 * inner..(r + 1) * 3 * inner];
            for h in 0..self.heads {
                let at = ((r * self.heads + h) * cap + len) * dh;
                self.k[at..at + dh].copy_from_slice(&row[inner + h * dh..inner + (h + 1) * dh]);
                self.v[at..at + dh]
                    .copy_from_slice(&row[2 * inner + h * dh..2 * inner + (h + 1) * dh]);
            }
            self.from[r * cap + len] = r as u32;
        }
        self.len += 1;
    }

    fn grow(&mut self, cap: usize) {
        let (dh, len, old) = (self.dh, self.len, self.cap);
        let move_to = |from: &[f32], blocks: usize, w: usize| {
            let mut new = vec![0f32; blocks * cap * w];
            for b in 0..blocks {
                new[b * cap * w..(b * cap + len) * w]
                    .copy_from_slice(&from[b * old * w..(b * old + len) * w]);
            }
            new
        };
        self.k = move_to(&self.k, self.slots * self.heads, dh);
        self.v = move_to(&self.v, self.slots * self.heads, dh);
        let mut from = vec![0u32; self.slots * cap];
        for r in 0..self.rows {
            from[r * cap..r * cap + len].copy_from_slice(&self.from[r * old..r * old + len]);
        }
        self.from = from;
        self.cap = cap;
    }

    /// Keeps rows `idx`, in that order (beam reordering, finished rows dropped): only
    /// the tables move.
    pub fn select(&mut self, idx: &[u32]) {
        assert!(idx.len() <= self.slots, "more rows than slots");
        let (cap, len) = (self.cap, self.len);
        let mut from = vec![0u32; self.slots * cap];
        for (r, &i) in idx.iter().enumerate() {
            let i = i as usize;
            assert!(i < self.rows, "row {i} of {}", self.rows);
            from[r * cap..r * cap + len].copy_from_slice(&self.from[i * cap..i * cap + len]);
        }
        self.from = from;
        self.rows = idx.len();
    }

    /// Attention of the rows' queries (in `qkv`, as for [`append`](Self::append)) over
    /// the cache; returns [rows, heads · dh].
    pub fn attend(&self, qkv: &[f32], scale: Option<f32>, bias: Bias) -> Vec<f32> {
        let kv = Keys {
            k: &self.k,
            v: &self.v,
            cap: self.cap,
            len: self.len,
            slots: Slots::Positions(&self.from),
        };
        attend(
            qkv,
            3 * self.heads * self.dh,
            self.rows,
            self.heads,
            self.dh,
            kv,
            scale,
            bias,
        )
    }
}

/// An additive score bias, `bias[row · row_stride + head · head_stride + position]`: a
/// padding mask (head stride 0) or T5's position bias (row stride 0).
#[derive(Clone, Copy)]
pub struct Bias<'a> {
    pub values: &'a [f32],
    pub row_stride: usize,
    pub head_stride: usize,
}

impl Bias<'_> {
    pub const NONE: Bias<'static> = Bias {
        values: &[],
        row_stride: 0,
        head_stride: 0,
    };
}

/// Keys and values laid out [slots, heads, cap, dh], `len` positions valid.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub cap: usize,
    pub len: usize,
    pub slots: Slots<'a>,
}

/// Which slot row `r` reads position `p` from.
#[derive(Clone, Copy)]
pub enum Slots<'a> {
    /// Slot `r`.
    Own,
    /// Slot `map[r]` (beams reading their input's cross-attention K/V).
    Rows(&'a [u32]),
    /// Slot `map[r · cap + p]` (see [`KvCache`]).
    Positions(&'a [u32]),
}

impl Slots<'_> {
    fn slot(&self, r: usize, p: usize, cap: usize) -> usize {
        match self {
            Slots::Own => r,
            Slots::Rows(m) => m[r] as usize,
            Slots::Positions(m) => m[r * cap + p] as usize,
        }
    }
}

/// `softmax(scale · q kᵀ + bias) v` for one query per row: `q` holds row r's heads at
/// `q[r · q_stride ..]`, one after another. Returns [rows, heads · dh].
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    q_stride: usize,
    rows: usize,
    heads: usize,
    dh: usize,
    kv: Keys,
    scale: Option<f32>,
    bias: Bias,
) -> Vec<f32> {
    let (cap, len) = (kv.cap, kv.len);
    assert!(rows == 0 || q.len() >= (rows - 1) * q_stride + heads * dh);
    let slots = kv.k.len() / (heads * cap * dh).max(1);
    assert!(kv.v.len() == kv.k.len() && len <= cap);
    let inside = |m: &[u32]| m.iter().all(|&s| (s as usize) < slots);
    let fits = match kv.slots {
        Slots::Own => rows <= slots,
        Slots::Rows(m) => inside(&m[..rows]),
        Slots::Positions(m) => (0..rows).all(|r| inside(&m[r * cap..r * cap + len])),
    };
    assert!(fits, "slot out of range");
    if !bias.values.is_empty() {
        let last = (rows.max(1) - 1) * bias.row_stride + (heads - 1) * bias.head_stride + len;
        assert!(bias.values.len() >= last, "bias has too few values");
    }
    let mut out = vec![0f32; rows * heads * dh];
    let op = crate::backend::qmm::SendPtr::new(out.as_mut_ptr());
    let work = rows * heads * len * dh;
    crate::backend::qmm::parallel(rows * heads, work >= 1 << 15, |tasks| {
        let mut scores = vec![0f32; len];
        let mut qs = vec![0f32; dh];
        let mut offs = Vec::with_capacity(len);
        for task in tasks {
            let (r, h) = (task / heads, task % heads);
            let qr = &q[r * q_stride + h * dh..r * q_stride + (h + 1) * dh];
            // Scaled before the product, as candle's `q * scale` then `matmul`.
            match scale {
                Some(s) => qs.iter_mut().zip(qr).for_each(|(a, &b)| *a = b * s),
                None => qs.copy_from_slice(qr),
            }
            // Where position p of this row and head lives.
            offs.clear();
            offs.extend((0..len).map(|p| {
                let slot = kv.slots.slot(r, p, cap);
                ((slot * heads + h) * cap + p) * dh
            }));
            let b = (!bias.values.is_empty()).then(|| {
                let b0 = r * bias.row_stride + h * bias.head_stride;
                &bias.values[b0..b0 + len]
            });
            // SAFETY: row r, head h of `out` belongs to this task alone.
            let o =
                unsafe { std::slice::from_raw_parts_mut(op.get().add((r * heads + h) * dh), dh) };
            let hd = Head {
                q: &qs,
                k: kv.k,
                v: kv.v,
                offs: &offs,
                bias: b,
            };
            mix(&hd, &mut scores, o);
        }
    });
    out
}

/// One (row, head): the query `q`, and where its positions' keys and values start in
/// `k` and `v` (every `offs[p] + q.len()` within both); `bias` per position.
struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    offs: &'a [usize],
    bias: Option<&'a [f32]>,
}

/// Scores `q·k + bias`, their softmax, and the weighted sum of the values written to
/// `o` (which starts at zero).
fn mix(hd: &Head, scores: &mut [f32], o: &mut [f32]) {
    let Head {
        q,
        k,
        v,
        offs,
        bias,
    } = *hd;
    let dh = q.len();
    assert!(o.len() == dh && scores.len() == offs.len());
    assert!(offs.iter().all(|&a| a + dh <= k.len() && a + dh <= v.len()));
    #[cfg(target_arch = "x86_64")]
    if dh.is_multiple_of(8) && crate::backend::sgemm::available() {
        // SAFETY: AVX2 and FMA checked; every offset checked above.
        unsafe { x86::mix(hd, scores, o) };
        return;
    }
    for (s, &a) in scores.iter_mut().zip(offs) {
        *s = crate::backend::qmm::dotf(q, &k[a..a + dh]);
    }
    if let Some(b) = bias {
        for (s, &b) in scores.iter_mut().zip(b) {
            *s += b;
        }
    }
    crate::backend::vmath::softmax(scores);
    for (&w, &a) in scores.iter().zip(offs) {
        for (x, &y) in o.iter_mut().zip(&v[a..a + dh]) {
            *x += w * y;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Head;
    use crate::backend::vmath::x86::exp8;
    use std::arch::x86_64::*;

    /// `super::mix` for a head width that is a multiple of 8: products and sums 8 lanes
    /// at a time, the output accumulated in registers 64 columns at a time.
    ///
    /// # Safety
    /// AVX2 and FMA; `q.len() % 8 == 0`; `offs[p] + q.len()` within `k` and `v`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn mix(hd: &Head, scores: &mut [f32], o: &mut [f32]) {
        let Head {
            q,
            k,
            v,
            offs,
            bias,
        } = *hd;
        let dh = q.len();
        let qp = q.as_ptr();
        let n = offs.len();
        let mut p = 0;
        // Eight positions at a time: eight sums kept apart, then reduced together.
        while p + 8 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in (0..dh).step_by(8) {
                let qv = _mm256_loadu_ps(qp.add(j));
                for (i, x) in acc.iter_mut().enumerate() {
                    let kp = k.as_ptr().add(offs[p + i] + j);
                    *x = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp), *x);
                }
            }
            let t0 = _mm256_hadd_ps(acc[0], acc[1]);
            let t1 = _mm256_hadd_ps(acc[2], acc[3]);
            let t2 = _mm256_hadd_ps(acc[4], acc[5]);
            let t3 = _mm256_hadd_ps(acc[6], acc[7]);
            let u0 = _mm256_hadd_ps(t0, t1);
            let u1 = _mm256_hadd_ps(t2, t3);
            let mut sv = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(u0, u1),
                _mm256_permute2f128_ps::<0x31>(u0, u1),
            );
            if let Some(b) = bias {
                sv = _mm256_add_ps(sv, _mm256_loadu_ps(b.as_ptr().add(p)));
            }
            _mm256_storeu_ps(scores.as_mut_ptr().add(p), sv);
            p += 8;
        }
        for p in p..n {
            let kp = k.as_ptr().add(offs[p]);
            let mut a0 = _mm256_setzero_ps();
            for j in (0..dh).step_by(8) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(j)), _mm256_loadu_ps(kp.add(j)), a0);
            }
            let s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps::<1>(a0));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            scores[p] = _mm_cvtss_f32(s) + bias.map_or(0.0, |b| b[p]);
        }
        let m = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mv = _mm256_set1_ps(m);
        let mut sv = _mm256_setzero_ps();
        let mut chunks = scores.chunks_exact_mut(8);
        for c in &mut chunks {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            sv = _mm256_add_ps(sv, e);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sv);
        let mut sum: f32 = lanes.iter().sum();
        for s in chunks.into_remainder() {
            *s = crate::backend::vmath::exp(*s - m);
            sum += *s;
        }
        for s in scores.iter_mut() {
            *s /= sum;
        }
        let op = o.as_mut_ptr();
        let mut c0 = 0;
        // 64 columns in eight registers, position after position.
        while c0 + 64 <= dh {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (&wt, &a) in scores.iter().zip(offs) {
                let (wv, vp) = (_mm256_set1_ps(wt), v.as_ptr().add(a + c0));
                for (i, x) in acc.iter_mut().enumerate() {
                    *x = _mm256_fmadd_ps(wv, _mm256_loadu_ps(vp.add(8 * i)), *x);
                }
            }
            for (i, x) in acc.iter().enumerate() {
                _mm256_storeu_ps(op.add(c0 + 8 * i), *x);
            }
            c0 += 64;
        }
        while c0 < dh {
            let mut x = _mm256_setzero_ps();
            for (&wt, &a) in scores.iter().zip(offs) {
                let vp = v.as_ptr().add(a + c0);
                x = _mm256_fmadd_ps(_mm256_set1_ps(wt), _mm256_loadu_ps(vp), x);
            }
            _mm256_storeu_ps(op.add(c0), x);
            c0 += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per row: the keys and the values of every position so far, each [heads · dh].
    type History = Vec<(Vec<Vec<f32>>, Vec<Vec<f32>>)>;

    /// The plain formula in f64.
    fn reference(
        q: &[f32],
        k: &[Vec<f32>],
        v: &[Vec<f32>],
        heads: usize,
        dh: usize,
        scale: f32,
        bias: impl Fn(usize, usize) -> f32,
    ) -> Vec<f64> {
        let mut out = vec![0f64; heads * dh];
        for h in 0..heads {
            let s: Vec<f64> = (0..k.len())
                .map(|p| {
                    (0..dh)
                        .map(|d| q[h * dh + d] as f64 * scale as f64 * k[p][h * dh + d] as f64)
                        .sum::<f64>()
                        + bias(h, p) as f64
                })
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (p, ep) in e.iter().enumerate() {
                for d in 0..dh {
                    out[h * dh + d] += ep / sum * v[p][h * dh + d] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn cache_attention_matches_the_formula_through_growth_and_reordering() {
        let (heads, dh) = (2, 8);
        let inner = heads * dh;
        let mut rows = 3;
        let mut rnd = crate::backend::test_values(3, 0.5);
        let mut cache = KvCache::new(rows, heads, dh);
        let mut hist: History = vec![(vec![], vec![]); rows];
        for step in 0..40 {
            let qkv: Vec<f32> = (0..rows * 3 * inner).map(|_| rnd()).collect();
            cache.append(&qkv);
            for (r, h) in hist.iter_mut().enumerate() {
                h.0.push(qkv[r * 3 * inner + inner..r * 3 * inner + 2 * inner].to_vec());
                h.1.push(qkv[r * 3 * inner + 2 * inner..(r + 1) * 3 * inner].to_vec());
            }
            assert_eq!(cache.len(), step + 1);
            // Beam reordering (row 2 twice, row 0 dropped), again after the cache grew,
            // then a finished row dropped.
            let pick: &[usize] = match step {
                12 => &[2, 1, 2],
                20 => &[1, 0, 0],
                33 => &[2, 0],
                _ => &[],
            };
            if !pick.is_empty() {
                cache.select(&pick.iter().map(|&i| i as u32).collect::<Vec<_>>());
                hist = pick.iter().map(|&i| hist[i].clone()).collect();
                rows = pick.len();
            }
            if step % 7 != 0 && pick.is_empty() {
                continue;
            }
            let qkv: Vec<f32> = (0..rows * 3 * inner).map(|_| rnd()).collect();
            let pos_bias: Vec<f32> = (0..heads * (step + 1)).map(|_| rnd()).collect();
            let b = Bias {
                values: &pos_bias,
                row_stride: 0,
                head_stride: step + 1,
            };
            let got = cache.attend(&qkv, Some(0.35), b);
            for r in 0..rows {
                let q = &qkv[r * 3 * inner..r * 3 * inner + inner];
                let e = reference(q, &hist[r].0, &hist[r].1, heads, dh, 0.35, |h, p| {
                    pos_bias[h * (step + 1) + p]
                });
                for (a, b) in got[r * inner..(r + 1) * inner].iter().zip(&e) {
                    assert!(
                        (*a as f64 - b).abs() < 1e-5,
                        "step {step} row {r}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn reordered_rows_attend_as_if_their_history_had_been_copied() {
        // Rows that share history through the tables give the same bits as a cache
        // filled with each row's history directly.
        let (heads, dh, inner) = (2, 4, 8);
        let mut rnd = crate::backend::test_values(5, 0.5);
        let mut shared = KvCache::new(4, heads, dh);
        let mut hist: Vec<Vec<Vec<f32>>> = vec![vec![]; 4];
        for step in 0..25 {
            let qkv: Vec<f32> = (0..4 * 3 * inner).map(|_| rnd()).collect();
            shared.append(&qkv);
            for (r, h) in hist.iter_mut().enumerate() {
                h.push(qkv[r * 3 * inner..(r + 1) * 3 * inner].to_vec());
            }
            if step % 6 == 5 {
                let pick = [3u32, 3, 0, (step % 4) as u32];
                shared.select(&pick);
                hist = pick.iter().map(|&i| hist[i as usize].clone()).collect();
            }
        }
        let mut copied = KvCache::new(4, heads, dh);
        for p in 0..25 {
            let qkv: Vec<f32> = hist.iter().flat_map(|h| h[p].clone()).collect();
            copied.append(&qkv);
        }
        let q: Vec<f32> = (0..4 * 3 * inner).map(|_| rnd()).collect();
        let a = shared.attend(&q, Some(0.5), Bias::NONE);
        let b = copied.attend(&q, Some(0.5), Bias::NONE);
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rows_sharing_a_slot_read_what_a_copy_would_hold() {
        // Beams of two inputs reading their input's K/V, against the K/V copied per row.
        let (heads, dh, s) = (2, 8, 6);
        let mut rnd = crate::backend::test_values(11, 0.5);
        let block = heads * s * dh;
        let k: Vec<f32> = (0..2 * block).map(|_| rnd()).collect();
        let v: Vec<f32> = (0..2 * block).map(|_| rnd()).collect();
        let map = [1u32, 0, 1, 1];
        let copy = |x: &[f32]| -> Vec<f32> {
            map.iter()
                .flat_map(|&i| x[i as usize * block..(i as usize + 1) * block].to_vec())
                .collect()
        };
        let (kc, vc) = (copy(&k), copy(&v));
        let q: Vec<f32> = (0..4 * heads * dh).map(|_| rnd()).collect();
        let mask: Vec<f32> = (0..4 * s)
            .map(|i| if i % 5 == 4 { f32::MIN } else { 0.0 })
            .collect();
        let b = Bias {
            values: &mask,
            row_stride: s,
            head_stride: 0,
        };
        let shared = Keys {
            k: &k,
            v: &v,
            cap: s,
            len: s,
            slots: Slots::Rows(&map),
        };
        let copied = Keys {
            k: &kc,
            v: &vc,
            cap: s,
            len: s,
            slots: Slots::Own,
        };
        let a = attend(&q, heads * dh, 4, heads, dh, shared, Some(0.3), b);
        let c = attend(&q, heads * dh, 4, heads, dh, copied, Some(0.3), b);
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_head_width_matches_the_formula() {
        // Widths through each path: scalar (4, 12), 8 lanes, pairs of 8, and more than
        // the 64 columns kept in registers at once.
        let (rows, heads, len) = (2, 3, 9);
        let mut rnd = crate::backend::test_values(17, 0.7);
        for dh in [4, 8, 12, 24, 64, 72, 128] {
            let block = heads * len * dh;
            let k: Vec<f32> = (0..rows * block).map(|_| rnd()).collect();
            let v: Vec<f32> = (0..rows * block).map(|_| rnd()).collect();
            let q: Vec<f32> = (0..rows * heads * dh).map(|_| rnd()).collect();
            let kv = Keys {
                k: &k,
                v: &v,
                cap: len,
                len,
                slots: Slots::Own,
            };
            let got = attend(&q, heads * dh, rows, heads, dh, kv, Some(0.3), Bias::NONE);
            for r in 0..rows {
                // [heads, len, dh] per row, as the reference's per-position vectors.
                let pos = |x: &[f32], p: usize| -> Vec<f32> {
                    (0..heads)
                        .flat_map(|h| {
                            let at = ((r * heads + h) * len + p) * dh;
                            x[at..at + dh].to_vec()
                        })
                        .collect()
                };
                let ks: Vec<Vec<f32>> = (0..len).map(|p| pos(&k, p)).collect();
                let vs: Vec<Vec<f32>> = (0..len).map(|p| pos(&v, p)).collect();
                let qr = &q[r * heads * dh..(r + 1) * heads * dh];
                let want = reference(qr, &ks, &vs, heads, dh, 0.3, |_, _| 0.0);
                for (a, b) in got[r * heads * dh..(r + 1) * heads * dh].iter().zip(&want) {
                    assert!((*a as f64 - b).abs() < 1e-5, "dh {dh}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn a_padding_mask_hides_positions() {
        // Two rows over 5 positions; row 1 sees only the first 3 (f32::MIN, as the
        // model's masks): its output must equal attention over those 3 alone.
        let (heads, dh, s) = (2, 4, 5);
        let mut rnd = crate::backend::test_values(9, 0.5);
        let k: Vec<f32> = (0..2 * heads * s * dh).map(|_| rnd()).collect();
        let v: Vec<f32> = (0..2 * heads * s * dh).map(|_| rnd()).collect();
        let q: Vec<f32> = (0..2 * heads * dh).map(|_| rnd()).collect();
        let mut mask = vec![0f32; 2 * s];
        mask[s + 3] = f32::MIN;
        mask[s + 4] = f32::MIN;
        let kv = Keys {
            k: &k,
            v: &v,
            cap: s,
            len: s,
            slots: Slots::Own,
        };
        let b = Bias {
            values: &mask,
            row_stride: s,
            head_stride: 0,
        };
        let full = attend(&q, heads * dh, 2, heads, dh, kv, None, b);
        // Row 1 alone over 3 positions: copy its blocks with cap 3.
        let mut k3 = vec![];
        let mut v3 = vec![];
        for h in 0..heads {
            let base = (heads + h) * s * dh;
            k3.extend_from_slice(&k[base..base + 3 * dh]);
            v3.extend_from_slice(&v[base..base + 3 * dh]);
        }
        let kv3 = Keys {
            k: &k3,
            v: &v3,
            cap: 3,
            len: 3,
            slots: Slots::Own,
        };
        let alone = attend(
            &q[heads * dh..],
            heads * dh,
            1,
            heads,
            dh,
            kv3,
            None,
            Bias::NONE,
        );
        for (a, b) in full[heads * dh..].iter().zip(&alone) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
