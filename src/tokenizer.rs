//! Tokenizers built from GGUF metadata, so a GGUF file alone is a complete model.
//!
//! - `tokenizer.ggml.model = "gpt2"` (Qwen, SmolLM, Llama 3): byte-level BPE from
//!   `tokens` + `merges`, with the pre-tokenizer regexes llama.cpp uses for the
//!   `tokenizer.ggml.pre` type. Encoding runs through the `tokenizers` crate.
//! - `tokenizer.ggml.model = "llama"` (Gemma, Llama 2): SentencePiece BPE. Symbols are
//!   merged greedily by the score of the merged piece, with byte fallback, as in
//!   SentencePiece's `bpe_model.cc` and llama.cpp's `llm_tokenizer_spm`.
//!
//! Text is always encoded as plain text: control tokens written in an article (say
//! `<|im_end|>`) never become control tokens. Prompts add control tokens by id (see
//! `prompt.rs`). As in llama.cpp, user-defined tokens (type 4, e.g. Gemma's `\n\n`)
//! are matched in the text before the model runs.

use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("the GGUF file has no tokenizer: metadata key `{0}` is missing")]
    Missing(&'static str),
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("malformed tokenizer metadata: {0}")]
    Malformed(String),
    #[error("tokenizer error: {0}")]
    Engine(String),
}

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types as stored in `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

enum Engine {
    Bpe(Box<tokenizers::Tokenizer>),
    Spm(Spm),
}

/// A tokenizer read from GGUF metadata.
pub struct Tokenizer {
    engine: Engine,
    /// The bytes each token stands for when decoded (empty for control tokens).
    bytes: Vec<Vec<u8>>,
    /// User-defined tokens, longest first, matched in raw text before encoding.
    user_defined: Vec<(String, u32)>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

fn md<'a>(c: &'a Content, key: &'static str) -> Result<&'a Value, TokenizerError> {
    c.metadata.get(key).ok_or(TokenizerError::Missing(key))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, TokenizerError> {
    let arr = v
        .to_vec()
        .map_err(|_| TokenizerError::Malformed(format!("{key} is not an array")))?;
    arr.iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|_| TokenizerError::Malformed(format!("{key} holds a non-string")))
        })
        .collect()
}

/// GPT-2's reversible byte ↔ printable-char map (the "byte-level" alphabet), as a
/// table indexed by the char (all of them are below U+0144).
fn byte_level_decoder() -> [Option<u8>; 0x144] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut table = [None; 0x144];
    let mut extra = 0usize;
    for b in 0u32..256 {
        let c = if printable(b) {
            b as usize
        } else {
            extra += 1;
            255 + extra
        };
        table[c] = Some(b as u8);
    }
    table
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(c: &Content) -> Result<Self, TokenizerError> {
        let model = md(c, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|_| TokenizerError::Malformed("tokenizer.ggml.model".into()))?
            .clone();
        let tokens = strings(md(c, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let types: Vec<TokenType> = match c.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| TokenizerError::Malformed("token_type".into()))?
                .iter()
                .map(|x| TokenType::from_i32(x.to_i32().unwrap_or(1)))
                .collect(),
            None => vec![TokenType::Normal; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Malformed(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let get_id = |k: &str| c.metadata.get(k).and_then(|v| v.to_u32().ok());
        let bos = get_id("tokenizer.ggml.bos_token_id");
        let eos = get_id("tokenizer.ggml.eos_token_id");
        let add_bos = c
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            // Without the key, llama.cpp adds BOS for SentencePiece vocabularies and for
            // the Llama 3 family of BPE pre-tokenizers (llama-vocab.cpp).
            .unwrap_or_else(|| {
                let pre = c
                    .metadata
                    .get("tokenizer.ggml.pre")
                    .and_then(|v| v.to_string().ok())
                    .map_or("", String::as_str);
                model == "llama"
                    || matches!(
                        pre,
                        "llama3"
                            | "llama-v3"
                            | "llama-bpe"
                            | "falcon3"
                            | "falcon-h1"
                            | "pixtral"
                            | "midm-2.0"
                            | "lfm2"
                            | "jina-v5-nano"
                            | "tekken"
                    )
            });
        let mut user_defined: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, t))| **t == TokenType::UserDefined)
            .map(|(i, (s, _))| (s.clone(), i as u32))
            .collect();
        user_defined.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let (engine, bytes) = match model.as_str() {
            "gpt2" => {
                let merges = md(c, "tokenizer.ggml.merges")?;
                let pre = c
                    .metadata
                    .get("tokenizer.ggml.pre")
                    .and_then(|v| v.to_string().ok())
                    .cloned()
                    .unwrap_or_else(|| "default".into());
                let dec = byte_level_decoder();
                let bytes = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match ty {
                        TokenType::Control | TokenType::Unused | TokenType::Unknown => vec![],
                        TokenType::UserDefined => t.as_bytes().to_vec(),
                        _ => t
                            .chars()
                            .map(|ch| dec.get(ch as usize).copied().flatten())
                            .collect::<Option<Vec<u8>>>()
                            .unwrap_or_else(|| t.as_bytes().to_vec()),
                    })
                    .collect();
                // The BPE's vocabulary takes the token strings (no copy); it is also
                // what `token_id` looks up.
                let tk = build_bpe(tokens, merges, &pre)?;
                (Engine::Bpe(Box::new(tk)), bytes)
            }
            "llama" => {
                let scores: Vec<f32> = match c.metadata.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .to_vec()
                        .map_err(|_| TokenizerError::Malformed("scores".into()))?
                        .iter()
                        .map(|x| x.to_f32().unwrap_or(0.0))
                        .collect(),
                    None => return Err(TokenizerError::Missing("tokenizer.ggml.scores")),
                };
                let add_space_prefix = c
                    .metadata
                    .get("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.to_bool().ok())
                    .unwrap_or(true);
                let bytes = tokens
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match ty {
                        TokenType::Control | TokenType::Unused | TokenType::Unknown => vec![],
                        TokenType::Byte => parse_byte_token(t).map_or_else(Vec::new, |b| vec![b]),
                        TokenType::UserDefined => t.as_bytes().to_vec(),
                        TokenType::Normal => t.replace('\u{2581}', " ").into_bytes(),
                    })
                    .collect();
                let byte_ids = spm_byte_ids(&tokens, &types);
                let ids: HashMap<String, u32> = tokens
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (t, i as u32))
                    .collect();
                let spm = Spm {
                    ids,
                    scores,
                    byte_ids: Box::new(byte_ids),
                    add_space_prefix,
                    unk: get_id("tokenizer.ggml.unknown_token_id"),
                };
                (Engine::Spm(spm), bytes)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        Ok(Self {
            engine,
            bytes,
            user_defined,
            bos,
            eos,
            add_bos,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// Id of a token given by its exact text (for control tokens in templates).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.engine {
            Engine::Bpe(tk) => tk.token_to_id(text),
            Engine::Spm(spm) => spm.ids.get(text).copied(),
        }
    }

    /// The bytes a token decodes to (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Encodes plain text (no BOS, control tokens not parsed).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        for frag in self.partition(text) {
            match frag {
                Frag::Token(id) => out.push(id),
                Frag::Text(t) => match &self.engine {
                    Engine::Bpe(tk) => {
                        let enc = tk
                            .encode_fast(t, false)
                            .map_err(|e| TokenizerError::Engine(e.to_string()))?;
                        out.extend_from_slice(enc.get_ids());
                    }
                    Engine::Spm(spm) => spm.encode(t, &mut out),
                },
            }
        }
        Ok(out)
    }

    /// Number of tokens `text` encodes to (0 on error, which cannot happen for valid UTF-8).
    pub fn count(&self, text: &str) -> usize {
        self.encode(text).map(|v| v.len()).unwrap_or(text.len())
    }

    /// Decodes ids to text; invalid UTF-8 (a cut multi-byte char) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The bytes the ids stand for, as they are (byte-fallback tokens need not form
    /// UTF-8).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut buf = Vec::new();
        for &id in ids {
            buf.extend_from_slice(self.token_bytes(id));
        }
        buf
    }

    fn partition<'t>(&self, text: &'t str) -> Vec<Frag<'t>> {
        let mut frags = vec![Frag::Text(text)];
        for (tok, id) in &self.user_defined {
            let mut next = Vec::with_capacity(frags.len());
            for f in frags {
                match f {
                    Frag::Text(t) if t.contains(tok.as_str()) => {
                        let mut rest = t;
                        while let Some(p) = rest.find(tok.as_str()) {
                            if p > 0 {
                                next.push(Frag::Text(&rest[..p]));
                            }
                            next.push(Frag::Token(*id));
                            rest = &rest[p + tok.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }
}

enum Frag<'t> {
    Text(&'t str),
    Token(u32),
}

fn build_bpe(
    tokens: Vec<String>,
    merges: &Value,
    pre: &str,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .to_vec()
        .map_err(|_| TokenizerError::Malformed("tokenizer.ggml.merges is not an array".into()))?
        .iter()
        .map(|m| {
            let m = m.to_string().map_err(|_| {
                TokenizerError::Malformed("tokenizer.ggml.merges holds a non-string".into())
            })?;
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| TokenizerError::Malformed(format!("merge without a space: {m:?}")))
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| TokenizerError::Engine(e.to_string()))?;
    let split = |re: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| TokenizerError::Engine(e.to_string()))
    };
    // Regexes per `tokenizer.ggml.pre`, as llama.cpp's llm_tokenizer_bpe picks them.
    let mut steps = match pre {
        "qwen2" | "stablelm2" | "deepseek-r1-qwen" => vec![split(QWEN2_RE)?],
        "llama3" | "llama-bpe" | "llama-v3" | "dbrx" | "smaug-bpe" => vec![split(LLAMA3_RE)?],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" => {
            vec![split(r"\p{N}")?, split(GPT2_RE)?]
        }
        _ => vec![split(GPT2_RE)?],
    };
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));
    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(Sequence::new(steps)));
    Ok(tk)
}

fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

fn spm_byte_ids(tokens: &[String], types: &[TokenType]) -> [Option<u32>; 256] {
    let mut ids = [None; 256];
    for (i, (t, ty)) in tokens.iter().zip(types).enumerate() {
        if *ty == TokenType::Byte {
            if let Some(b) = parse_byte_token(t) {
                ids[b as usize] = Some(i as u32);
            }
        }
    }
    ids
}

/// SentencePiece BPE encoder over a GGUF vocabulary.
struct Spm {
    /// Token ids by their text (pieces are looked up while merging).
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: Box<[Option<u32>; 256]>,
    add_space_prefix: bool,
    unk: Option<u32>,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Highest score first; among equals, the leftmost pair.
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Spm {
    fn encode(&self, text: &str, out: &mut Vec<u32>) {
        let ids = &self.ids;
        let mut s = String::with_capacity(text.len() + 3);
        if self.add_space_prefix {
            s.push(' ');
        }
        s.push_str(text);
        let s = s.replace(' ', "\u{2581}");
        // Symbols as (start, len) byte ranges, in a doubly linked list.
        let mut start: Vec<usize> = Vec::new();
        let mut len: Vec<usize> = Vec::new();
        for (i, c) in s.char_indices() {
            start.push(i);
            len.push(c.len_utf8());
        }
        let n = start.len();
        if n == 0 {
            return;
        }
        let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
        let mut next: Vec<isize> = (1..=n as isize).collect();
        next[n - 1] = -1;
        let mut heap = BinaryHeap::new();
        let try_add =
            |heap: &mut BinaryHeap<Bigram>, l: isize, r: isize, start: &[usize], len: &[usize]| {
                if l < 0 || r < 0 {
                    return;
                }
                let (l, r) = (l as usize, r as usize);
                let piece = &s[start[l]..start[r] + len[r]];
                if let Some(&id) = ids.get(piece) {
                    heap.push(Bigram {
                        score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                        left: l,
                        size: piece.len(),
                    });
                }
            };
        for i in 1..n {
            try_add(&mut heap, i as isize - 1, i as isize, &start, &len);
        }
        while let Some(b) = heap.pop() {
            let l = b.left;
            let r = next[l];
            if len[l] == 0 || r < 0 {
                continue;
            }
            let r = r as usize;
            if len[r] == 0 || len[l] + len[r] != b.size {
                continue; // stale entry
            }
            len[l] += len[r];
            len[r] = 0;
            next[l] = next[r];
            if next[r] >= 0 {
                prev[next[r] as usize] = l as isize;
            }
            try_add(&mut heap, prev[l], l as isize, &start, &len);
            try_add(&mut heap, l as isize, next[l], &start, &len);
        }
        let mut i: isize = 0;
        while i >= 0 {
            let u = i as usize;
            let piece = &s[start[u]..start[u] + len[u]];
            match ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_ids[b as usize].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            i = next[u];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_maps_each_byte_once() {
        let t = byte_level_decoder();
        let mut seen = [0u32; 256];
        for b in t.iter().flatten() {
            seen[*b as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        // GPT-2's alphabet: printable ASCII stands for itself, the space is `Ġ`
        // (U+0120), the newline `Ċ` (U+010A), and the last char is U+0143.
        assert_eq!(t['A' as usize], Some(b'A'));
        assert_eq!(t[0x120], Some(b' '));
        assert_eq!(t[0x10A], Some(b'\n'));
        assert_eq!(t[0x143], Some(0xAD));
        assert_eq!(t[0x20], None);
    }
}
