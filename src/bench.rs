//! `tarjuma bench`: prompt (prefill) and generation (decode) speed of a GGUF model on
//! our engine, measured as llama-bench measures llama.cpp, so the two can be set side
//! by side (`scripts/bench-llm.sh`, issue 13).
//!
//! As in llama-bench, a prefill test feeds `n` prompt tokens to an empty context in one
//! call, and a decode test generates tokens one at a time from an empty context; token
//! ids are pseudo-random (speed does not depend on them). Each test runs once to warm
//! up, then `repetitions` times; the figure is the mean, with its standard deviation.
//! A decode test over `N` sequences feeds one token to each of `N` independent
//! sequences per step, in one forward pass, and reports the aggregate tokens/s. The
//! decode tests' repetitions take turns (`tg64`, `tg64x8`, `tg64`, …), so that a drift
//! in the machine's memory bandwidth, which moved single-sequence decode between 69 and
//! 114 tok/s within an hour on one VM, falls on all of them alike and their ratio
//! (issue 13: eight sequences against one) is read in the same conditions.
//!
//! Every report names the CPU, its vector extensions, the threads, and the kernel each
//! weight format ran on: these machines differ, and a figure without them is not
//! comparable.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

use crate::backend::decoder::{Decoder, Sequence};
use crate::backend::gguf;

/// The CPU a figure was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub model: String,
    pub vendor: String,
    /// Vector extensions that matter to the kernels, as the CPU reports them.
    pub isa: Vec<String>,
    pub logical_cpus: usize,
}

impl Cpu {
    pub fn detect() -> Self {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        Self {
            model: field("model name"),
            vendor: field("vendor_id"),
            isa: isa(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// `AMD EPYC (AuthenticAMD; avx2 fma f16c)`.
    pub fn line(&self) -> String {
        format!("{} ({}; {})", self.model, self.vendor, self.isa.join(" "))
    }
}

fn isa() -> Vec<String> {
    #[allow(unused_mut)]
    let mut out: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) {
                    out.push($f.to_string());
                })*
            };
        }
        probe!(
            "avx2",
            "fma",
            "f16c",
            "avxvnni",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avx512bf16"
        );
        // AMX is not probed by std; the kernel lists it.
        if std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| s.contains(" amx_tile")) {
            out.push("amx_tile".into());
        }
    }
    #[cfg(target_arch = "aarch64")]
    out.push("neon".into());
    out
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub prompt_tokens: Vec<usize>,
    pub gen_tokens: usize,
    /// Decode tests over this many sequences at once (1 is plain decode).
    pub sequences: Vec<usize>,
    pub repetitions: usize,
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct Test {
    /// `pp256`, `tg64`, `tg64x8` (llama-bench's names; `xN` for N sequences).
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub sequences: usize,
    /// Mean tokens/s (aggregate over the sequences) and its standard deviation.
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
}

/// A model's whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub file: String,
    pub file_bytes: u64,
    pub cpu: Cpu,
    pub threads: usize,
    pub kernels: Vec<String>,
    pub load_s: f64,
    /// Peak resident memory of the process after all tests (VmHWM).
    pub peak_rss_bytes: u64,
    pub tests: Vec<Test>,
}

/// `n` pseudo-random token ids below `vocab` (xorshift; the same for the same seed).
pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

fn prefill(model: &Decoder, ids: &[u32]) -> Result<f64> {
    let mut seq = Sequence::new();
    let t = Instant::now();
    model.forward(&mut [&mut seq], &[ids])?;
    Ok(ids.len() as f64 / t.elapsed().as_secs_f64())
}

fn decode(model: &Decoder, n: usize, sequences: usize, vocab: usize) -> Result<f64> {
    let mut seqs: Vec<Sequence> = (0..sequences).map(|_| Sequence::new()).collect();
    let ids = tokens(n * sequences, vocab, 99);
    let t = Instant::now();
    for step in 0..n {
        let mut refs: Vec<&mut Sequence> = seqs.iter_mut().collect();
        let toks: Vec<&[u32]> = (0..sequences)
            .map(|i| &ids[(step * sequences + i)..(step * sequences + i + 1)])
            .collect();
        model.forward(&mut refs, &toks)?;
    }
    Ok((n * sequences) as f64 / t.elapsed().as_secs_f64())
}

fn stats(test: String, n_prompt: usize, n_gen: usize, sequences: usize, s: Vec<f64>) -> Test {
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let var = if s.len() > 1 {
        s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (s.len() - 1) as f64
    } else {
        0.0
    };
    Test {
        test,
        n_prompt,
        n_gen,
        sequences,
        avg_ts: mean,
        stddev_ts: var.sqrt(),
        samples_ts: s,
    }
}

/// Peak resident set of this process, in bytes (Linux; 0 elsewhere).
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Loads `path` and runs `plan` on it, calling `each` as every test finishes (the
/// decode tests, whose repetitions take turns, all at the end).
pub fn run(
    name: &str,
    path: &Path,
    device: &Device,
    plan: &Plan,
    mut each: impl FnMut(&Test),
) -> Result<Report> {
    let t = Instant::now();
    let loaded = gguf::load(path, device)?;
    let load_s = t.elapsed().as_secs_f64();
    let model = &loaded.lm.model;
    let vocab = model.vocab();
    let reps = plan.repetitions.max(1);
    let mut tests = Vec::new();
    for &n in &plan.prompt_tokens {
        if n == 0 {
            continue;
        }
        let ids = tokens(n, vocab, n as u64);
        prefill(model, &ids)?;
        let s = (0..reps)
            .map(|_| prefill(model, &ids))
            .collect::<Result<Vec<_>>>()?;
        let t = stats(format!("pp{n}"), n, 0, 1, s);
        each(&t);
        tests.push(t);
    }
    if plan.gen_tokens > 0 {
        let ks: Vec<usize> = plan.sequences.iter().map(|&k| k.max(1)).collect();
        for &k in &ks {
            decode(model, 2, k, vocab)?;
        }
        let mut samples = vec![Vec::with_capacity(reps); ks.len()];
        for _ in 0..reps {
            for (s, &k) in samples.iter_mut().zip(&ks) {
                s.push(decode(model, plan.gen_tokens, k, vocab)?);
            }
        }
        for (s, &k) in samples.into_iter().zip(&ks) {
            let name = if k == 1 {
                format!("tg{}", plan.gen_tokens)
            } else {
                format!("tg{}x{k}", plan.gen_tokens)
            };
            let t = stats(name, 0, plan.gen_tokens, k, s);
            each(&t);
            tests.push(t);
        }
    }
    Ok(Report {
        model: name.to_string(),
        file: path.display().to_string(),
        file_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        cpu: Cpu::detect(),
        threads: candle_core::utils::get_num_threads(),
        kernels: model.kernels(),
        load_s,
        peak_rss_bytes: peak_rss(),
        tests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_stay_in_the_vocabulary_and_repeat_per_seed() {
        let a = tokens(500, 37, 5);
        assert!(a.iter().all(|&t| t < 37));
        assert_eq!(a, tokens(500, 37, 5));
        assert_ne!(a, tokens(500, 37, 6));
    }

    #[test]
    fn stats_are_mean_and_sample_deviation() {
        let t = stats("pp4".into(), 4, 0, 1, vec![1.0, 2.0, 3.0]);
        assert!((t.avg_ts - 2.0).abs() < 1e-12);
        assert!((t.stddev_ts - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_cpu_is_named() {
        let c = Cpu::detect();
        assert!(c.logical_cpus >= 1);
        #[cfg(target_os = "linux")]
        assert_ne!(c.vendor, "unknown");
    }
}
