//! Tiny GGUF models generated at test time (random weights, a byte-level vocabulary),
//! so hub, loading and failure tests need no downloaded model and no binary fixture.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// What to write: a loadable llama, or one of the broken variants.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Ok,
    UnknownArch,
    NoTokenizer,
}

/// The GPT-2 byte-level alphabet, so every byte is a token.
fn byte_tokens() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            let c = if printable.contains(&b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

pub fn write_tiny_gguf(path: &Path, variant: Variant) {
    let dev = Device::Cpu;
    let (d, heads, kv, ff, layers) = (32usize, 4usize, 2usize, 64usize, 2usize);
    let mut tokens = byte_tokens();
    tokens.push("ab".into());
    let specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];
    tokens.extend(specials.iter().map(|s| s.to_string()));
    let n_vocab = tokens.len();
    let mut types = vec![Value::I32(1); n_vocab];
    for t in types.iter_mut().skip(n_vocab - 3) {
        *t = Value::I32(3);
    }
    let arch = if variant == Variant::UnknownArch {
        "mamba"
    } else {
        "llama"
    };
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            "general.name".into(),
            Value::String("tiny test llama".into()),
        ),
        ("llama.block_count".into(), u(layers)),
        ("llama.context_length".into(), u(4096)),
        ("llama.embedding_length".into(), u(d)),
        ("llama.feed_forward_length".into(), u(ff)),
        ("llama.attention.head_count".into(), u(heads)),
        ("llama.attention.head_count_kv".into(), u(kv)),
        ("llama.rope.dimension_count".into(), u(d / heads)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.rope.freq_base".into(), Value::F32(10000.0)),
    ];
    if variant != Variant::NoTokenizer {
        md.extend([
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("gpt2".into())),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
            ),
            ("tokenizer.ggml.token_type".into(), Value::Array(types)),
            (
                "tokenizer.ggml.merges".into(),
                Value::Array(vec![Value::String("a b".into())]),
            ),
            ("tokenizer.ggml.bos_token_id".into(), u(n_vocab - 1)),
            ("tokenizer.ggml.eos_token_id".into(), u(n_vocab - 2)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        ]);
    }
    let q = |shape: &[usize]| {
        let t = Tensor::randn(0f32, 0.5, shape, &dev).unwrap();
        QTensor::quantize(&t, GgmlDType::F32).unwrap()
    };
    let ones = |n: usize| {
        QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &dev).unwrap(),
            GgmlDType::F32,
        )
        .unwrap()
    };
    let hd = d / heads;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q(&[n_vocab, d])),
        ("output_norm.weight".into(), ones(d)),
        ("output.weight".into(), q(&[n_vocab, d])),
    ];
    for l in 0..layers {
        let p = format!("blk.{l}");
        tensors.extend([
            (format!("{p}.attn_q.weight"), q(&[d, d])),
            (format!("{p}.attn_k.weight"), q(&[kv * hd, d])),
            (format!("{p}.attn_v.weight"), q(&[kv * hd, d])),
            (format!("{p}.attn_output.weight"), q(&[d, d])),
            (format!("{p}.ffn_gate.weight"), q(&[ff, d])),
            (format!("{p}.ffn_up.weight"), q(&[ff, d])),
            (format!("{p}.ffn_down.weight"), q(&[d, ff])),
            (format!("{p}.attn_norm.weight"), ones(d)),
            (format!("{p}.ffn_norm.weight"), ones(d)),
        ]);
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}
