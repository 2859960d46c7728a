//! Prefill and decode speed of tarjuma's decoder engine beside candle 0.11's quantized
//! models (the engine it replaced, issue 9), on the same GGUF file, prompt and threads,
//! in one run. Runs alternate (candle, ours, candle, ours) and the best of each is
//! kept, so a noisy neighbour hurts both alike.
//!
//! usage: cargo bench --bench llm -- [--threads N] [--prompt N] [--decode N] MODEL.gguf...
//! (`scripts/bench-llm.sh` finds the pip-carried models in the cache and names the CPU.)

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};
use tarjuma::backend::decoder::Sequence;
use tarjuma::tokenizer::Tokenizer;

enum Candle {
    Qwen2(quantized_qwen2::ModelWeights),
    Llama(quantized_llama::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

impl Candle {
    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        let x = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
        let l = match self {
            Self::Qwen2(m) => m.forward(&x, pos)?,
            Self::Llama(m) => m.forward(&x, pos)?,
            Self::Gemma3(m) => m.forward(&x, pos)?,
        };
        Ok(l.squeeze(0)?.to_vec1()?)
    }
}

fn argmax(l: &[f32]) -> u32 {
    l.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

/// (prefill tok/s, decode tok/s) of one greedy run.
fn time_run(
    prompt: &[u32],
    decode: usize,
    mut step: impl FnMut(&[u32], usize) -> Result<Vec<f32>>,
) -> Result<(f64, f64)> {
    let t = Instant::now();
    let mut l = step(prompt, 0)?;
    let prefill = prompt.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..decode {
        l = step(&[argmax(&l)], prompt.len() + i)?;
    }
    Ok((prefill, decode as f64 / t.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let mut threads = 2;
    let mut prompt_len = 256;
    let mut decode = 64;
    let mut models: Vec<PathBuf> = vec![];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--threads" => threads = num("--threads")?,
            "--prompt" => prompt_len = num("--prompt")?,
            "--decode" => decode = num("--decode")?,
            "--bench" => {}
            _ => models.push(a.into()),
        }
    }
    if models.is_empty() {
        bail!("usage: cargo bench --bench llm -- [--threads N] [--prompt N] [--decode N] MODEL.gguf...");
    }
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    let seed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus/russia-us-talks-2021-12-28.ur.txt"),
    )
    .context("the seed article in ../shared/corpus")?;
    println!(
        "threads {threads}, prompt {prompt_len} tokens of the seed article, {decode} greedy tokens"
    );
    println!(
        "| model | candle prefill | ours prefill | ratio | candle decode | ours decode | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for path in &models {
        let read = || -> Result<(gguf_file::Content, File)> {
            let mut f = File::open(path).with_context(|| format!("{}", path.display()))?;
            Ok((gguf_file::Content::read(&mut f)?, f))
        };
        let (content, _) = read()?;
        let tok = Tokenizer::from_gguf(&content)?;
        let mut prompt = tok.encode(&seed)?;
        while prompt.len() < prompt_len {
            prompt.extend_from_within(..);
        }
        prompt.truncate(prompt_len);
        let arch = content.metadata["general.architecture"]
            .to_string()?
            .clone();
        let ours = tarjuma::backend::decoder::open(path, &Device::Cpu)?;
        let (content, mut f) = read()?;
        let mut theirs = match arch.as_str() {
            "qwen2" => Candle::Qwen2(quantized_qwen2::ModelWeights::from_gguf(
                content,
                &mut f,
                &Device::Cpu,
            )?),
            "llama" => Candle::Llama(quantized_llama::ModelWeights::from_gguf(
                content,
                &mut f,
                &Device::Cpu,
            )?),
            "gemma3" => Candle::Gemma3(quantized_gemma3::ModelWeights::from_gguf(
                content,
                &mut f,
                &Device::Cpu,
            )?),
            other => bail!("{other}: not benchmarked"),
        };
        let (mut best_c, mut best_o) = ((0f64, 0f64), (0f64, 0f64));
        for _ in 0..2 {
            let c = time_run(&prompt, decode, |ids, pos| theirs.forward(ids, pos))?;
            let mut seq = Sequence::new();
            let o = time_run(&prompt, decode, |ids, _| {
                Ok(ours.forward_one(&mut seq, ids)?)
            })?;
            best_c = (best_c.0.max(c.0), best_c.1.max(c.1));
            best_o = (best_o.0.max(o.0), best_o.1.max(o.1));
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} |",
            best_c.0,
            best_o.0,
            best_o.0 / best_c.0,
            best_c.1,
            best_o.1,
            best_o.1 / best_c.1
        );
    }
    Ok(())
}
