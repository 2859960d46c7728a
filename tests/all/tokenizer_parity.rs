//! Tokenizers built from GGUF metadata give the same ids as llama.cpp's tokenizer on
//! the seed article and on a mixed sample. Fixtures: scripts/make-tokenizer-fixtures.py.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tarjuma::tokenizer::Tokenizer;
use unicode_normalization::UnicodeNormalization;

use crate::util::{model_path, seed};

#[derive(Deserialize)]
struct Sample {
    sha256: String,
    text: Option<String>,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Fixture {
    model: String,
    reference: String,
    samples: std::collections::BTreeMap<String, Sample>,
}

fn check(model: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer");
    let fx: Fixture =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{model}.json"))).unwrap())
            .unwrap();
    assert_eq!(fx.model, model);
    let path = model_path(model);
    let mut f = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut f).unwrap();
    let tok = Tokenizer::from_gguf(&content).unwrap();
    let article: String = seed().nfc().collect();
    for (key, s) in &fx.samples {
        let text = s.text.clone().unwrap_or_else(|| article.clone());
        let digest: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest, s.sha256,
            "{model}/{key}: the sample text changed; regenerate the fixture"
        );
        let ids = tok.encode(&text).unwrap();
        if ids != s.ids {
            let at = ids
                .iter()
                .zip(&s.ids)
                .position(|(a, b)| a != b)
                .unwrap_or(ids.len().min(s.ids.len()));
            panic!(
                "{model}/{key}: ids differ from {} at {at} (ours {} ids, theirs {}): ours {:?} theirs {:?}",
                fx.reference,
                ids.len(),
                s.ids.len(),
                &ids[at.saturating_sub(2)..(at + 5).min(ids.len())],
                &s.ids[at.saturating_sub(2)..(at + 5).min(s.ids.len())]
            );
        }
        // Decoding gives the text back.
        assert_eq!(tok.decode(&ids), text, "{model}/{key}: decode");
    }
}

#[test]
fn smollm2_gpt2_bpe_matches_llama_cpp() {
    check("smollm2-135m-instruct");
}

#[test]
fn qwen2_bpe_matches_llama_cpp() {
    check("qwen2.5-coder-0.5b-instruct");
}

#[test]
fn gemma3_sentencepiece_matches_llama_cpp() {
    check("gemma-3-270m");
}
