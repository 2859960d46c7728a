//! GGUF instruction models: `qwen2`, `llama` (SmolLM, Llama) and `gemma3`, run by our
//! own engine ([`super::decoder`]). The tokenizer comes from the same file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::decoder::{Decoder, Sequence};
use super::CausalLm;
use crate::tokenizer::Tokenizer;

/// The runnable part of a GGUF model: the decoder and the one sequence that
/// [`CausalLm`] callers drive.
pub struct GgufLm {
    pub model: Arc<Decoder>,
    pub seq: Sequence,
    pub max_positions: usize,
    pub device: Device,
}

/// A loaded GGUF model, its tokenizer and what was read from its metadata.
pub struct Loaded {
    pub lm: GgufLm,
    pub tokenizer: Arc<Tokenizer>,
    pub architecture: String,
}

impl Loaded {
    /// Another handle on the same weights and tokenizer, with its own empty sequence.
    pub fn share(&self) -> Loaded {
        Loaded {
            lm: GgufLm {
                model: self.lm.model.clone(),
                seq: Sequence::new(),
                max_positions: self.lm.max_positions,
                device: self.lm.device.clone(),
            },
            tokenizer: self.tokenizer.clone(),
            architecture: self.architecture.clone(),
        }
    }
}

/// The architectures this backend can run.
pub const ARCHITECTURES: &[&str] = &["qwen2", "llama", "gemma3"];

pub fn load(path: &Path, device: &Device) -> Result<Loaded> {
    let name = path.display();
    let t0 = std::time::Instant::now();
    let file = File::open(path).with_context(|| format!("cannot open model file {name}"))?;
    let map = super::decoder::map_file(&file, path)?;
    // Read through the mapping: candle's reader asks for the stream position before
    // every string (300k of them in a 150k vocabulary), which on a file, buffered or
    // not, is one `lseek` each, about a seventh of a second in all (issue 13).
    let mut f = std::io::Cursor::new(&map[..]);
    let content = gguf_file::Content::read(&mut f)
        .map_err(|e| anyhow!("{name} is not a readable GGUF file ({e}); it may be truncated or corrupt: fetch it again"))?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| anyhow!("{name}: GGUF metadata has no general.architecture"))?;
    if !ARCHITECTURES.contains(&arch.as_str()) {
        bail!(
            "{name}: unsupported architecture `{arch}` (supported: {})",
            ARCHITECTURES.join(", ")
        );
    }
    let t_meta = t0.elapsed();
    let ctx_key = format!("{arch}.context_length");
    let ctx = content
        .metadata
        .get(&ctx_key)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize);
    let tensors_end = content.tensor_data_offset
        + content
            .tensor_infos
            .values()
            .map(|t| {
                t.offset
                    + (t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size())
                        as u64
            })
            .max()
            .unwrap_or(0);
    let file_len = map.len() as u64;
    if file_len < tensors_end {
        bail!("{name} is truncated: {file_len} bytes, but its tensors need {tensors_end}; fetch it again");
    }
    // The tokenizer (a 150k-merge BPE for Qwen: about a third of a second) is built on
    // its own thread while the weights are tiled, so loading waits for the longer of
    // the two, not their sum (issue 13: load under 1 s).
    let (tokenizer, model, t_tok) = std::thread::scope(|s| {
        let tok = s.spawn(|| {
            let t = Tokenizer::from_gguf(&content);
            (t, t0.elapsed())
        });
        let model = Decoder::load_with(
            &content,
            &mut f,
            Some(map.clone()),
            !super::decoder::own_kernels(),
            device,
        );
        let (tokenizer, t_tok) = tok.join().expect("the tokenizer thread panicked");
        (tokenizer, model, t_tok)
    });
    let tokenizer = tokenizer.with_context(|| format!("{name}: cannot build the tokenizer"))?;
    let model = model.map_err(|e| anyhow!("{name}: cannot load `{arch}` weights: {e:#}"))?;
    let max_positions = ctx.unwrap_or(model.config.context_length);
    drop(content);
    let t_both = t0.elapsed();
    super::release_free_memory();
    tracing::debug!(
        "loaded {name} in {:.0} ms: metadata {:.0} ms, then tokenizer {:.0} ms beside the weights (both {:.0} ms)",
        t0.elapsed().as_secs_f64() * 1e3,
        t_meta.as_secs_f64() * 1e3,
        (t_tok - t_meta).as_secs_f64() * 1e3,
        (t_both - t_meta).as_secs_f64() * 1e3,
    );
    Ok(Loaded {
        lm: GgufLm {
            model: Arc::new(model),
            seq: Sequence::new(),
            max_positions,
            device: device.clone(),
        },
        tokenizer: Arc::new(tokenizer),
        architecture: arch,
    })
}

impl CausalLm for GgufLm {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        if pos + tokens.len() > self.max_positions {
            candle_core::bail!(
                "sequence of {} positions exceeds the model's limit of {}",
                pos + tokens.len(),
                self.max_positions
            );
        }
        if pos > self.seq.len() {
            candle_core::bail!(
                "position {pos} is past the {} positions fed so far",
                self.seq.len()
            );
        }
        self.seq.truncate(pos);
        self.model.forward_one(&mut self.seq, tokens)
    }

    fn max_positions(&self) -> usize {
        self.max_positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        match load(&path, &Device::Cpu) {
            Ok(_) => panic!("loaded {} bytes", bytes.len()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn broken_files_are_named_and_explained() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/decoder/qwen2/model-q4_k_m.gguf"
        );
        let whole = std::fs::read(fixture).unwrap();
        assert!(load(Path::new(fixture), &Device::Cpu).is_ok());
        for (bytes, expect) in [
            (&[][..], "is not a readable GGUF file"),
            (&b"GGUF\x03\0\0\0"[..], "is not a readable GGUF file"),
            (&whole[..64], "is not a readable GGUF file"),
            (&whole[..whole.len() - 100], "is truncated"),
        ] {
            let e = load_err(bytes);
            assert!(
                e.contains("m.gguf") && e.contains(expect),
                "{} bytes: {e}",
                bytes.len()
            );
        }
    }
}
