//! The passes a beam step makes over each row of logits (issue 13): the row's
//! log-sum-exp, then the 2k best of `(logit − lse) + score`, ties to the lower index.
//!
//! Beam search at batch 1 must read the whole LM head, so what it does besides counts
//! against it: with libm's `expf` and one scalar pass per stage, the rows of a Marian
//! step (4 × 59 464 values) took 0.9 of its 13 ms on an AMD EPYC with 2 threads. Here
//! each pass runs 8 lanes at a time on AVX2.
//!
//! The scalar functions are the definition; the vector ones perform the same IEEE
//! operations in the same order, so every CPU gets the same bits: `exp` is
//! [`vmath::exp`], and the sum keeps 32 partial sums, folded in a fixed tree.

use crate::backend::vmath;

/// Partial sums kept by [`sum_exp`]: element `i` adds into sum `i % LANES`.
const LANES: usize = 32;

/// The largest value (NaN ignored); −∞ for an empty row.
pub fn max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA checked.
        return unsafe { x86::max(row) };
    }
    row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// Σ e^(x − max) over the row, in [`LANES`] partial sums.
pub fn sum_exp(row: &[f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA checked.
        return unsafe { x86::sum_exp(row, max) };
    }
    let mut acc = [0f32; LANES];
    for (i, &x) in row.iter().enumerate() {
        acc[i % LANES] += vmath::exp(x - max);
    }
    fold(acc)
}

/// Adds the partial sums pairwise: sum j takes sum j + w, for w = 16, 8, 4, 2, 1.
fn fold(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for j in 0..w {
            acc[j] += acc[j + w];
        }
        w /= 2;
    }
    acc[0]
}

/// log Σ e^x over the row: what the log-softmax subtracts.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let m = max(row);
    m + sum_exp(row, m).ln()
}

/// Appends to `out` the `k` best `((x − lse) + score, base + i)` of the row: descending,
/// equal values by index (as `torch.topk` returns them on these rows), NaN never kept
/// once `k` values are held.
pub fn top_scores(
    row: &[f32],
    lse: f32,
    score: f32,
    k: usize,
    base: usize,
    out: &mut Vec<(f32, usize)>,
) {
    if k == 0 {
        return;
    }
    let mut top = Top::new(k);
    let head = k.min(row.len());
    for (i, &x) in row[..head].iter().enumerate() {
        top.offer((x - lse) + score, base + i);
    }
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: AVX2 and FMA checked.
        unsafe { x86::top_scores(&row[head..], lse, score, base + head, &mut top) };
        out.extend(top.buf);
        return;
    }
    for (i, &x) in row[head..].iter().enumerate() {
        top.offer((x - lse) + score, base + head + i);
    }
    out.extend(top.buf);
}

/// The best `k` so far, descending.
struct Top {
    k: usize,
    buf: Vec<(f32, usize)>,
}

impl Top {
    fn new(k: usize) -> Self {
        Top {
            k,
            buf: Vec::with_capacity(k + 1),
        }
    }

    /// The value an entry must exceed once `k` are held.
    fn bar(&self) -> Option<f32> {
        (self.buf.len() == self.k).then(|| self.buf[self.k - 1].0)
    }

    fn offer(&mut self, v: f32, i: usize) {
        if let Some(b) = self.bar() {
            if v.partial_cmp(&b) != Some(std::cmp::Ordering::Greater) {
                return;
            }
        }
        let pos = self.buf.partition_point(|&(y, _)| y >= v);
        self.buf.insert(pos, (v, i));
        self.buf.truncate(self.k);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Top, LANES};
    use crate::backend::vmath::x86::exp8;
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        crate::backend::sgemm::available()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn max(row: &[f32]) -> f32 {
        let mut m = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
        let chunks = row.chunks_exact(32);
        let rest = chunks.remainder();
        for c in chunks {
            for (q, mq) in m.iter_mut().enumerate() {
                // max(x, m) keeps m where x is NaN.
                *mq = _mm256_max_ps(_mm256_loadu_ps(c.as_ptr().add(8 * q)), *mq);
            }
        }
        let mut v = [0f32; 8];
        _mm256_storeu_ps(
            v.as_mut_ptr(),
            _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])),
        );
        v.iter()
            .chain(rest)
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b))
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sum_exp(row: &[f32], max: f32) -> f32 {
        let mv = _mm256_set1_ps(max);
        let mut a = [_mm256_setzero_ps(); LANES / 8];
        let chunks = row.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for (q, aq) in a.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(c.as_ptr().add(8 * q));
                *aq = _mm256_add_ps(*aq, exp8(_mm256_sub_ps(x, mv)));
            }
        }
        let mut acc = [0f32; LANES];
        for (q, aq) in a.iter().enumerate() {
            _mm256_storeu_ps(acc.as_mut_ptr().add(8 * q), *aq);
        }
        // The rest starts at a multiple of LANES: element i is lane i % LANES still.
        for (j, &x) in rest.iter().enumerate() {
            acc[j] += crate::backend::vmath::exp(x - max);
        }
        super::fold(acc)
    }

    /// `super::top_scores`' scan past the first k values, into `top` (already full).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn top_scores(row: &[f32], lse: f32, score: f32, base: usize, top: &mut Top) {
        let (lv, sv) = (_mm256_set1_ps(lse), _mm256_set1_ps(score));
        let mut bar = top.bar().unwrap_or(f32::NEG_INFINITY);
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder();
        for (c, ch) in chunks.enumerate() {
            let v = _mm256_add_ps(_mm256_sub_ps(_mm256_loadu_ps(ch.as_ptr()), lv), sv);
            let mut hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_set1_ps(bar)));
            if hit == 0 {
                continue;
            }
            let mut vals = [0f32; 8];
            _mm256_storeu_ps(vals.as_mut_ptr(), v);
            while hit != 0 {
                let l = hit.trailing_zeros() as usize;
                top.offer(vals[l], base + 8 * c + l);
                hit &= hit - 1;
            }
            bar = top.bar().unwrap_or(f32::NEG_INFINITY);
        }
        let at = base + row.len() - rest.len();
        for (i, &x) in rest.iter().enumerate() {
            top.offer((x - lse) + score, at + i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with what logits hold: wide ranges, exact ties, −∞ (banned tokens), values
    /// far below the maximum, and lengths that leave every kind of remainder.
    fn rows() -> Vec<Vec<f32>> {
        let mut r = crate::backend::test_values(7, 1.0);
        let mut out = Vec::new();
        for (t, len) in [1usize, 7, 31, 32, 33, 100, 1000, 4099]
            .into_iter()
            .enumerate()
        {
            let mut row: Vec<f32> = (0..len).map(|_| r() * 12.0 * (1 + t % 3) as f32).collect();
            for i in (0..len).step_by(5) {
                row[i] = row[i / 2];
            }
            for i in (3..len).step_by(17) {
                row[i] = f32::NEG_INFINITY;
            }
            for i in (1..len).step_by(23) {
                row[i] -= 95.0;
            }
            out.push(row);
        }
        out
    }

    /// The definitions above, spelled out without the vector paths.
    fn plain(row: &[f32], score: f32, k: usize) -> (f32, Vec<(f32, usize)>) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut acc = [0f32; LANES];
        for (i, &x) in row.iter().enumerate() {
            acc[i % LANES] += vmath::exp(x - m);
        }
        let lse = m + fold(acc).ln();
        let mut all: Vec<(f32, usize)> = row
            .iter()
            .enumerate()
            .map(|(i, &x)| ((x - lse) + score, 3 + i))
            .collect();
        // Stable: equal values keep index order.
        all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        all.truncate(k);
        (lse, all)
    }

    #[test]
    fn vector_passes_equal_the_definitions_bit_for_bit() {
        for (t, row) in rows().iter().enumerate() {
            let score = -1.5 * t as f32;
            for k in [1, 4, 8, 40] {
                let (want_lse, want) = plain(row, score, k);
                let lse = log_sum_exp(row);
                assert_eq!(lse.to_bits(), want_lse.to_bits(), "row {t}");
                let mut got = vec![];
                top_scores(row, lse, score, k, 3, &mut got);
                let bits = |v: &[(f32, usize)]| -> Vec<(u32, usize)> {
                    v.iter().map(|&(x, i)| (x.to_bits(), i)).collect()
                };
                assert_eq!(bits(&got), bits(&want), "row {t}, k {k}");
            }
        }
    }

    #[test]
    fn log_sum_exp_matches_f64() {
        for row in rows() {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let want = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            let got = log_sum_exp(&row) as f64;
            assert!((got - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs().max(1.0));
        }
    }
}
