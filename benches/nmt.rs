//! Translator decode throughput, the same work as `../shared/bench/seq2seq_bench.py`:
//! N random source sequences of SRC_LEN tokens (ending in </s>; NLLB's start with the
//! source language code), greedy, output forced to exactly TGT_LEN new tokens, batches
//! of BATCH; reports generated target tokens per second (encoder included) per
//! repetition, and the CPU other processes burnt meanwhile. Not a test: run it through
//! `scripts/bench-nmt.sh`, which runs the peers side by side.
//!
//! cargo bench --bench nmt -- --model DIR [--kind marian|nllb] [--quantize int8|q8_0]
//!     [--batch 16] [--threads 2] [--src-len 40] [--tgt-len 40] [--n 64] [--reps 3]
//!     [--beams 1]   (beam search instead of greedy; not what the peers' script does)
//!     [--vs-greedy] (with --beams K: every batch runs greedy and beam search back to
//!                    back, the order alternating, and each repetition reports both and
//!                    beam / greedy; a drift in the machine's memory bandwidth, which
//!                    moved 2× within minutes on one VM, then falls on both alike)

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use tarjuma::backend::seq2seq::weights::{find_weight_files, parse_quant, Quant, Weights};
use tarjuma::backend::seq2seq::{Config, Model};
use tarjuma::generate::seq2seq::{generate, GenOptions, LengthLimit};

struct Args {
    model: String,
    kind: String,
    quantize: String,
    batch: usize,
    threads: usize,
    src_len: usize,
    tgt_len: usize,
    n: usize,
    reps: usize,
    beams: usize,
    vs_greedy: bool,
    label: String,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        model: String::new(),
        kind: "auto".into(),
        quantize: "none".into(),
        batch: 16,
        threads: 2,
        src_len: 40,
        tgt_len: 40,
        n: 64,
        reps: 3,
        beams: 1,
        vs_greedy: false,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--bench" {
            continue;
        }
        if k == "--vs-greedy" {
            a.vs_greedy = true;
            continue;
        }
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--model" => a.model = v()?,
            "--kind" => a.kind = v()?,
            "--quantize" => a.quantize = v()?,
            "--batch" => a.batch = v()?.parse()?,
            "--threads" => a.threads = v()?.parse()?,
            "--src-len" => a.src_len = v()?.parse()?,
            "--tgt-len" => a.tgt_len = v()?.parse()?,
            "--n" => a.n = v()?.parse()?,
            "--reps" => a.reps = v()?.parse()?,
            "--beams" => a.beams = v()?.parse()?,
            "--label" => a.label = v()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.model.is_empty() {
        bail!("--model DIR is required");
    }
    if a.vs_greedy && a.beams < 2 {
        bail!("--vs-greedy needs --beams 2 or more");
    }
    if a.kind == "auto" {
        a.kind = if a.model.to_lowercase().contains("nllb") {
            "nllb".into()
        } else {
            "marian".into()
        };
    }
    Ok(a)
}

fn proc_stat_busy() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return 0.0;
    }
    // user nice system irq softirq steal, in clock ticks (100 Hz on Linux).
    (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0
}

fn own_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    // utime and stime are fields 14 and 15; after the ')' (state is field 3) they are
    // the 12th and 13th tokens.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, sd)
}

fn main() -> Result<()> {
    let a = parse()?;
    // As the `tarjuma` binary does.
    tarjuma::backend::tune_allocator();
    tarjuma::config::set_threads(Some(a.threads));
    let dir = std::path::Path::new(&a.model);
    let cfg = Config::from_dir(dir)?;
    let quant = parse_quant(&a.quantize)?;
    let w = Weights::open(&find_weight_files(dir)?, &Device::Cpu, quant)?;
    let model = Model::load(&w, cfg.clone())?;
    let v = cfg.vocab_size as u64;
    // A fixed LCG: the ids differ from the Python script's, the work does not.
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut rand = |lo: u64, hi: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (state >> 33) % (hi - lo + 1)
    };
    let srcs: Vec<Vec<u32>> = (0..a.n)
        .map(|_| {
            if a.kind == "nllb" {
                let mut s = vec![(v - 3) as u32];
                s.extend((0..a.src_len - 2).map(|_| rand(4, v - 4) as u32));
                s.push(2);
                s
            } else {
                let mut s: Vec<u32> = (0..a.src_len - 1).map(|_| rand(2, v - 2) as u32).collect();
                s.push(cfg.eos);
                s
            }
        })
        .collect();
    let gen = GenOptions {
        max_new: LengthLimit::fixed(a.tgt_len),
        min_new: a.tgt_len,
        beams: a.beams,
        ..GenOptions::for_model(&cfg)
    };
    let batches: Vec<&[Vec<u32>]> = srcs.chunks(a.batch).collect();
    let run = |bs: &[&[Vec<u32>]], per_batch: &mut Vec<f64>| -> Result<(usize, Vec<usize>)> {
        let mut n_new = 0;
        let mut lens = Vec::new();
        for b in bs {
            let t = Instant::now();
            let out = generate(&model, b, &gen)?;
            let nb: usize = out.iter().map(Vec::len).sum();
            n_new += nb;
            lens.extend(out.iter().map(Vec::len));
            per_batch.push(nb as f64 / t.elapsed().as_secs_f64());
        }
        lens.sort();
        lens.dedup();
        Ok((n_new, lens))
    };
    if a.vs_greedy {
        let greedy = GenOptions {
            beams: 1,
            ..gen.clone()
        };
        return vs_greedy(&a, &model, &batches, [&greedy, &gen]);
    }
    run(&batches[..1], &mut Vec::new())?;
    let (mut reps, mut contention, mut per_batch, mut lens_seen) = (vec![], vec![], vec![], vec![]);
    let mut n_new = 0;
    for _ in 0..a.reps {
        let (m0, c0, t0) = (proc_stat_busy(), own_cpu(), Instant::now());
        let (n, lens) = run(&batches, &mut per_batch)?;
        let dt = t0.elapsed().as_secs_f64();
        let (m1, c1) = (proc_stat_busy(), own_cpu());
        n_new = n;
        lens_seen.extend(lens);
        reps.push(n as f64 / dt);
        contention.push((((m1 - m0) - (c1 - c0)) / dt * 1000.0).round() / 1000.0);
    }
    lens_seen.sort();
    lens_seen.dedup();
    let (m, sd) = mean_sd(&reps);
    let (pm, psd) = mean_sd(&per_batch);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let kernel = kernel_name(&a);
    let rec = serde_json::json!({
        "label": a.label, "engine": "tarjuma", "model": a.model, "kind": a.kind,
        "compute_type": if quant.is_some() { a.quantize.clone() } else { "float32".into() },
        "n": a.n, "src_len": a.src_len, "tgt_len": a.tgt_len, "batch": a.batch,
        "threads": a.threads, "beams": a.beams, "new_tokens_per_rep": n_new, "output_lengths": lens_seen,
        "tok_s_reps": reps.iter().map(|&x| r2(x)).collect::<Vec<_>>(),
        "tok_s_mean": r2(m), "tok_s_stdev": r2(sd),
        "per_batch_tok_s_mean": r2(pm), "per_batch_tok_s_stdev": r2(psd),
        "n_batches_timed": per_batch.len(), "foreign_busy_cores": contention,
        "cpu": tarjuma::bench::Cpu::detect(), "kernel": kernel,
    });
    println!("{rec}");
    Ok(())
}

/// `--vs-greedy`: each batch decoded with `opts[0]` (greedy) and `opts[1]` (beam search)
/// back to back, the order alternating from batch to batch and repetition to repetition;
/// prints one record with both tokens/s per repetition and their ratio.
fn vs_greedy(
    a: &Args,
    model: &Model,
    batches: &[&[Vec<u32>]],
    opts: [&GenOptions; 2],
) -> Result<()> {
    for o in opts {
        generate(model, batches[0], o)?;
    }
    let (mut tok_s, mut ratios, mut contention) = ([vec![], vec![]], vec![], vec![]);
    let mut n_new = [0; 2];
    for rep in 0..a.reps {
        let (mut n, mut secs) = ([0usize; 2], [0f64; 2]);
        let (m0, c0, t0) = (proc_stat_busy(), own_cpu(), Instant::now());
        for (i, b) in batches.iter().enumerate() {
            let first = (i + rep) % 2;
            for s in [first, 1 - first] {
                let t = Instant::now();
                let out = generate(model, b, opts[s])?;
                secs[s] += t.elapsed().as_secs_f64();
                n[s] += out.iter().map(Vec::len).sum::<usize>();
            }
        }
        let dt = t0.elapsed().as_secs_f64();
        let (m1, c1) = (proc_stat_busy(), own_cpu());
        contention.push((((m1 - m0) - (c1 - c0)) / dt * 1000.0).round() / 1000.0);
        let r = [n[0] as f64 / secs[0], n[1] as f64 / secs[1]];
        tok_s[0].push(r[0]);
        tok_s[1].push(r[1]);
        ratios.push(r[1] / r[0]);
        n_new = n;
    }
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let beam = mean_sd(&tok_s[1]);
    let mut sorted = ratios.clone();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let rec = serde_json::json!({
        "label": a.label, "engine": "tarjuma", "model": a.model, "kind": a.kind,
        "compute_type": if a.quantize == "none" { "float32".to_string() } else { a.quantize.clone() },
        "n": a.n, "src_len": a.src_len, "tgt_len": a.tgt_len, "batch": a.batch,
        "threads": a.threads, "beams": a.beams, "vs_greedy": true,
        "new_tokens_per_rep": n_new[1], "greedy_new_tokens_per_rep": n_new[0],
        "greedy_tok_s_reps": tok_s[0].iter().map(|&x| r2(x)).collect::<Vec<_>>(),
        "tok_s_reps": tok_s[1].iter().map(|&x| r2(x)).collect::<Vec<_>>(),
        "tok_s_mean": r2(beam.0), "tok_s_stdev": r2(beam.1),
        "greedy_tok_s_mean": r2(mean_sd(&tok_s[0]).0),
        "ratio_reps": ratios.iter().map(|&x| r3(x)).collect::<Vec<_>>(),
        "ratio_median": r3(median),
        "foreign_busy_cores": contention,
        "cpu": tarjuma::bench::Cpu::detect(), "kernel": kernel_name(a),
    });
    println!("{rec}");
    Ok(())
}

/// Which kernels the figures belong to (machines of this kind differ, issue 13).
fn kernel_name(a: &Args) -> String {
    match parse_quant(&a.quantize) {
        Ok(Some(Quant::Int8)) => {
            format!("tarjuma int8 {:?}", tarjuma::backend::int8::Kernel::best())
        }
        Ok(Some(q)) => format!("candle {}", q.name()),
        _ if tarjuma::backend::sgemm::available() => {
            format!(
                "tarjuma {} f32",
                tarjuma::backend::sgemm::Kernel::best().name()
            )
        }
        _ => "gemm (candle)".to_string(),
    }
}
