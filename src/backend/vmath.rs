//! Elementwise math for the CPU paths, 8 lanes at a time on AVX2 (issue 13).
//!
//! The scalar functions are the definition and the vector ones perform the same IEEE
//! operations in the same order, so every CPU gets the same bits. `exp` is our own
//! fixed sequence of fused multiply-adds rather than libm's, whose scalar calls were
//! most of the cost of a beam step's log-softmax and of SiLU in the translators' FFNs:
//! Cody & Waite's reduction d = n·ln 2 + r (ln 2 in two parts), then the Taylor
//! polynomial of degree 7 in r, within 0.05 ulp of e^r on |r| ≤ ln 2 / 2 (Muller,
//! "Elementary Functions", 2016, ch. 11). Tested within 2 ulps of f64 over the range.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 as the nearest f32, and the rest.
const LN2_HI: f32 = std::f32::consts::LN_2;
const LN2_LO: f32 = -1.904_654_3e-9;
/// 1/7!, 1/6!, …, 1/2!: Horner's order.
const POLY: [f32; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
/// Below this, e^d is under 2⁻¹²⁵ and counts as 0: next to a sum that holds e⁰ = 1 it
/// could not change a bit.
const FLOOR: f32 = -87.0;
/// Above this, e^d counts as ∞ (the largest f32 is e^88.72).
const CEIL: f32 = 88.0;

/// e^d: 0 below −87 and for NaN, ∞ above 88.
pub fn exp(d: f32) -> f32 {
    if d.is_nan() || d < FLOOR {
        return 0.0;
    }
    if d > CEIL {
        return f32::INFINITY;
    }
    let n = (d * LOG2E).round_ties_even();
    let r = n.mul_add(-LN2_HI, d);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = POLY[0];
    for c in &POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let p = p.mul_add(r, 1.0).mul_add(r, 1.0);
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// SiLU, `x / (1 + e^−x)`, in place.
pub fn silu(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::sgemm::available() {
        // SAFETY: AVX2 and FMA checked.
        return unsafe { x86::silu(xs) };
    }
    for x in xs {
        *x /= 1.0 + exp(-*x);
    }
}

/// Softmax in place: the maximum subtracted, [`exp`], divided by the sum. The sum runs
/// in order, so a row's values do not depend on where it starts in a vector or on
/// masked (zero) entries around it: a decoding step and a prompt give the same bits.
/// The exponentials were libm's one at a time, 5 % of a 1024-token Qwen prompt on an
/// AMD EPYC (issue 13).
pub fn softmax(xs: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    exp_less(xs, max);
    let sum = xs.iter().fold(0f32, |a, &b| a + b);
    for x in xs.iter_mut() {
        *x /= sum;
    }
}

/// `x ← e^(x − c)`, in place.
fn exp_less(xs: &mut [f32], c: f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::sgemm::available() {
        // SAFETY: AVX2 and FMA checked.
        return unsafe { x86::exp_less(xs, c) };
    }
    for x in xs {
        *x = exp(*x - c);
    }
}

/// −2·√(2/π): GELU's tanh argument, doubled and negated (exact: a power-of-two scaling).
const GELU_K: f32 = -2.0 * 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// GELU with tanh's approximation (`gelu_pytorch_tanh`: Gemma's FFN), in place:
/// 0.5·x·(1 + tanh z) with z = √(2/π)·x·(1 + 0.044715·x²), computed as
/// x / (1 + e^(−2z)), the same function (1 + tanh z = 2 / (1 + e^(−2z))) on our `exp`
/// instead of libm's `tanhf`, whose scalar calls were 16 % of a Gemma prompt on an
/// Intel Xeon (issue 13). No cancellation: z's sign only moves e^(−2z) to 0 or ∞.
pub fn gelu_tanh(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::backend::sgemm::available() {
        // SAFETY: AVX2 and FMA checked.
        return unsafe { x86::gelu_tanh(xs) };
    }
    for x in xs {
        *x = gelu1(*x);
    }
}

/// One value of [`gelu_tanh`]: the definition the vector code follows.
fn gelu1(x: f32) -> f32 {
    let b = (x * x).mul_add(GELU_C, 1.0);
    x / (1.0 + exp((x * GELU_K) * b))
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{CEIL, FLOOR, LN2_HI, LN2_LO, LOG2E, POLY};
    use std::arch::x86_64::*;

    /// `super::exp` on 8 lanes, operation for operation.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp8(d: __m256) -> __m256 {
        let live = _mm256_cmp_ps::<_CMP_GE_OQ>(d, _mm256_set1_ps(FLOOR));
        let high = _mm256_cmp_ps::<_CMP_GT_OQ>(d, _mm256_set1_ps(CEIL));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(d, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), d);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(POLY[0]);
        for c in &POLY[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let one = _mm256_set1_ps(1.0);
        let p = _mm256_fmadd_ps(_mm256_fmadd_ps(p, r, one), r, one);
        // Lanes outside [FLOOR, CEIL] may hold any n: masked or replaced below.
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e));
        let y = _mm256_and_ps(_mm256_mul_ps(p, scale), live);
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), high)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu(xs: &mut [f32]) {
        let one = _mm256_set1_ps(1.0);
        let sign = _mm256_set1_ps(-0.0);
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            let x = _mm256_loadu_ps(c.as_ptr());
            let e = exp8(_mm256_xor_ps(x, sign));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_div_ps(x, _mm256_add_ps(one, e)));
        }
        for x in chunks.into_remainder() {
            *x /= 1.0 + super::exp(-*x);
        }
    }

    /// `x ← e^(x − c)` (`super::exp`'s bits).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_less(xs: &mut [f32], c: f32) {
        let cv = _mm256_set1_ps(c);
        let mut chunks = xs.chunks_exact_mut(8);
        for ch in &mut chunks {
            let x = _mm256_loadu_ps(ch.as_ptr());
            _mm256_storeu_ps(ch.as_mut_ptr(), exp8(_mm256_sub_ps(x, cv)));
        }
        for x in chunks.into_remainder() {
            *x = super::exp(*x - c);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_tanh(xs: &mut [f32]) {
        let (one, c, k) = (
            _mm256_set1_ps(1.0),
            _mm256_set1_ps(super::GELU_C),
            _mm256_set1_ps(super::GELU_K),
        );
        let mut chunks = xs.chunks_exact_mut(8);
        for ch in &mut chunks {
            let x = _mm256_loadu_ps(ch.as_ptr());
            let b = _mm256_fmadd_ps(_mm256_mul_ps(x, x), c, one);
            let e = exp8(_mm256_mul_ps(_mm256_mul_ps(x, k), b));
            _mm256_storeu_ps(ch.as_mut_ptr(), _mm256_div_ps(x, _mm256_add_ps(one, e)));
        }
        for x in chunks.into_remainder() {
            *x = super::gelu1(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector softmax gives the scalar definition's bits at every length and
    /// offset, ignores masked entries bit for bit, and sums to one.
    #[test]
    fn softmax_follows_its_definition() {
        let mut r = crate::backend::test_values(11, 6.0);
        for len in [1, 7, 8, 9, 33, 100] {
            let xs: Vec<f32> = (0..len).map(|_| r()).collect();
            let mut got = xs.clone();
            softmax(&mut got);
            let max = xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let e: Vec<f32> = xs.iter().map(|&x| exp(x - max)).collect();
            let sum = e.iter().fold(0f32, |a, &b| a + b);
            for (g, e) in got.iter().zip(&e) {
                assert_eq!(g.to_bits(), (e / sum).to_bits(), "len {len}");
            }
            let total: f64 = got.iter().map(|&v| v as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "len {len}: sums to {total}");
            // Masked positions before and after: the live values keep their bits.
            let mut padded = vec![f32::NEG_INFINITY; 3];
            padded.extend(&xs);
            padded.extend([f32::NEG_INFINITY; 5]);
            softmax(&mut padded);
            assert_eq!(&padded[3..3 + len], &got[..], "len {len}");
            assert!(padded[..3]
                .iter()
                .chain(&padded[3 + len..])
                .all(|&v| v == 0.0));
        }
    }

    #[test]
    fn exp_is_within_two_ulps_of_f64() {
        let mut worst = 0u32;
        let mut d = -87.0f32;
        while d <= 88.0 {
            let want = (d as f64).exp() as f32;
            worst = worst.max(want.to_bits().abs_diff(exp(d).to_bits()));
            d += 0.000_731;
        }
        assert!(worst <= 2, "worst error {worst} ulps");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::NAN), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(89.0), f32::INFINITY);
    }

    /// The vector GELU gives the scalar definition's bits, and both stay within a few
    /// ulps of tanh's formula in f64, times the size of e^(−2z)'s argument.
    #[test]
    fn gelu_tanh_equals_its_definition_and_tracks_f64() {
        let mut r = crate::backend::test_values(7, 1.0);
        let mut xs: Vec<f32> = (0..4003).map(|i| r() * (i % 60) as f32 * 0.25).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0, 10.0, -10.0]);
        let mut got = xs.clone();
        gelu_tanh(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            assert_eq!(g.to_bits(), gelu1(x).to_bits(), "gelu({x})");
            let xd = x as f64;
            let z = 0.797_884_560_802_865_4 * xd * (1.0 + 0.044715 * xd * xd);
            // 0.5·x·(1 + tanh z), in the form that does not cancel in f64 either.
            let want = xd / (1.0 + (-2.0 * z).exp());
            // e^(−2z) carries the rounding of its argument as relative error.
            let tol = 4e-7 * (1.0 + 2.0 * z.abs()) * want.abs() + 1e-37;
            assert!(
                (g as f64 - want).abs() <= tol,
                "gelu({x}) = {g}, not {want}"
            );
        }
        let mut edge = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        gelu_tanh(&mut edge);
        assert_eq!(edge[0], f32::INFINITY);
        assert!(
            edge[1].is_nan() && edge[2].is_nan(),
            "as 0.5·x·(1 + tanh z): {edge:?}"
        );
    }

    #[test]
    fn vector_exp_and_silu_equal_the_scalar_definitions() {
        let mut r = crate::backend::test_values(3, 1.0);
        let mut xs: Vec<f32> = (0..1003).map(|i| r() * (i % 200) as f32).collect();
        xs.extend([
            0.0,
            -0.0,
            87.9,
            88.1,
            -86.9,
            -87.1,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let mut got = xs.clone();
        silu(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = x / (1.0 + exp(-x));
            assert_eq!(g.to_bits(), want.to_bits(), "silu({x})");
            let s = (x as f64) / (1.0 + (-x as f64).exp());
            if x.is_finite() && s.abs() > 1e-30 {
                assert!(
                    ((g as f64 - s) / s).abs() < 1e-6,
                    "silu({x}) = {g}, not {s}"
                );
            }
        }
    }
}
