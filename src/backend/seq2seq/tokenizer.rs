//! Source and target tokenization for the translation models.
//!
//! - Marian (opus-mt) ships SentencePiece models (`source.spm`, `target.spm`) and a
//!   `vocab.json` that maps pieces to model ids. We read the SentencePiece model proto
//!   ourselves and build an equivalent `tokenizers` pipeline (the precompiled NFKC
//!   charsmap, whitespace cleanup, `▁` metaspace, unigram Viterbi), then map pieces
//!   through `vocab.json`, as transformers' `MarianTokenizer` does.
//! - NLLB and MADLAD ship a `tokenizer.json`. NLLB inputs are `[src_lang] pieces </s>`
//!   and its output starts with the forced target language; MADLAD inputs start with the
//!   `<2xx>` target tag.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::{precompiled::Precompiled, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{NormalizerWrapper, Tokenizer};

use super::config::{Arch, Config};

/// What a SentencePiece model file holds that tokenization needs.
#[derive(Debug, Default)]
pub struct SpmModel {
    /// (piece, score, type): type 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
    pub pieces: Vec<(String, f32, u32)>,
    /// 1 unigram, 2 BPE.
    pub model_type: u32,
    pub unk_id: usize,
    pub byte_fallback: bool,
    pub charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

/// (field number, wire type, bytes, varint value)
type Field<'a> = (u64, u64, &'a [u8], u64);

/// A minimal protobuf reader: enough for sentencepiece's ModelProto.
struct Pb<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).context("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }

    /// Next (field, wire type, payload); payload is the bytes for length-delimited and
    /// fixed fields, and the value for varints.
    fn next(&mut self) -> Result<Option<Field<'a>>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        let take = |pb: &mut Self, n: usize| -> Result<&'a [u8]> {
            let end = pb.pos.checked_add(n).filter(|&e| e <= pb.buf.len());
            let end = end.context("truncated field")?;
            let s = &pb.buf[pb.pos..end];
            pb.pos = end;
            Ok(s)
        };
        Ok(Some(match wire {
            0 => {
                let v = self.varint()?;
                (field, wire, &[][..], v)
            }
            1 => (field, wire, take(self, 8)?, 0),
            2 => {
                let n = self.varint()? as usize;
                (field, wire, take(self, n)?, 0)
            }
            5 => (field, wire, take(self, 4)?, 0),
            w => bail!("unsupported protobuf wire type {w}"),
        }))
    }
}

impl SpmModel {
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut m = SpmModel {
            model_type: 1,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            ..Default::default()
        };
        let mut top = Pb { buf, pos: 0 };
        while let Some((field, _, bytes, _)) = top.next()? {
            match field {
                1 => {
                    let (mut piece, mut score, mut kind) = (String::new(), 0f32, 1u32);
                    let mut p = Pb { buf: bytes, pos: 0 };
                    while let Some((f, w, b, v)) = p.next()? {
                        match (f, w) {
                            (1, 2) => piece = String::from_utf8(b.to_vec())?,
                            (2, 5) => score = f32::from_le_bytes(b.try_into()?),
                            (3, 0) => kind = v as u32,
                            _ => {}
                        }
                    }
                    m.pieces.push((piece, score, kind));
                }
                2 => {
                    let mut p = Pb { buf: bytes, pos: 0 };
                    while let Some((f, _, _, v)) = p.next()? {
                        match f {
                            3 => m.model_type = v as u32,
                            35 => m.byte_fallback = v != 0,
                            40 => m.unk_id = v as usize,
                            _ => {}
                        }
                    }
                }
                3 => {
                    let mut p = Pb { buf: bytes, pos: 0 };
                    while let Some((f, _, b, v)) = p.next()? {
                        match f {
                            2 => m.charsmap = b.to_vec(),
                            3 => m.add_dummy_prefix = v != 0,
                            4 => m.remove_extra_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            bail!("no pieces: not a SentencePiece model");
        }
        Ok(m)
    }

    /// A `tokenizers` pipeline that splits text into this model's pieces.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        if self.model_type != 1 {
            bail!(
                "only unigram SentencePiece models are supported (type {})",
                self.model_type
            );
        }
        let vocab: Vec<(String, f64)> = self
            .pieces
            .iter()
            .map(|(p, s, _)| (p.clone(), f64::from(*s)))
            .collect();
        let model = Unigram::from(vocab, Some(self.unk_id), self.byte_fallback)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut tok = Tokenizer::new(model);
        let mut norms: Vec<NormalizerWrapper> = Vec::new();
        if !self.charsmap.is_empty() {
            let pc = Precompiled::from(&self.charsmap)
                .map_err(|e| anyhow::anyhow!("bad precompiled charsmap: {e:?}"))?;
            norms.push(pc.into());
        }
        if self.remove_extra_whitespaces {
            norms.push(Strip::new(true, true).into());
            norms.push(
                Replace::new(
                    tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
                    " ",
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .into(),
            );
        }
        tok.with_normalizer(Some(Sequence::new(norms)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let scheme = if self.add_dummy_prefix {
            PrependScheme::Always
        } else {
            PrependScheme::Never
        };
        tok.with_pre_tokenizer(Some(Metaspace::new('▁', scheme, true)));
        Ok(tok)
    }
}

/// Tokenizer of a translation model, with the model's input and output conventions.
pub enum NmtTokenizer {
    Marian {
        source: Tokenizer,
        vocab: HashMap<String, u32>,
        pieces: Vec<String>,
        unk: u32,
        eos: u32,
        pad: u32,
    },
    Json {
        tok: Tokenizer,
        /// Ids before the text (NLLB: source language).
        prefix: Vec<u32>,
        /// Text before the source (MADLAD: `<2en> `).
        text_prefix: String,
        eos: u32,
    },
}

/// Languages as NLLB (FLORES-200) codes; MADLAD uses the ISO code in `<2xx>`.
#[derive(Debug, Clone)]
pub struct Langs {
    pub source: String,
    pub target: String,
}

impl Default for Langs {
    fn default() -> Self {
        Self {
            source: "urd_Arab".into(),
            target: "eng_Latn".into(),
        }
    }
}

fn load_json_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl NmtTokenizer {
    /// Loads the tokenizer of the model in `dir`. Returns it with the forced first target
    /// token (NLLB's target language), if any.
    pub fn load(dir: &Path, cfg: &Config, langs: &Langs) -> Result<(Self, Option<u32>)> {
        match cfg.arch {
            Arch::Marian => {
                let spm_path = dir.join("source.spm");
                let bytes = std::fs::read(&spm_path)
                    .with_context(|| format!("cannot read {}", spm_path.display()))?;
                let spm = SpmModel::parse(&bytes).with_context(|| {
                    format!("{}: not a SentencePiece model", spm_path.display())
                })?;
                let vpath = dir.join("vocab.json");
                let vocab: HashMap<String, u32> = serde_json::from_slice(
                    &std::fs::read(&vpath)
                        .with_context(|| format!("cannot read {}", vpath.display()))?,
                )
                .with_context(|| format!("{}: not a JSON object of ids", vpath.display()))?;
                let n = vocab.values().copied().max().unwrap_or(0) as usize + 1;
                let mut pieces = vec![String::new(); n];
                for (p, &i) in &vocab {
                    pieces[i as usize] = p.clone();
                }
                let unk = *vocab.get("<unk>").context("vocab.json has no <unk>")?;
                Ok((
                    NmtTokenizer::Marian {
                        source: spm.tokenizer()?,
                        vocab,
                        pieces,
                        unk,
                        eos: cfg.eos,
                        pad: cfg.pad,
                    },
                    None,
                ))
            }
            Arch::M2M100 => {
                let tok = load_json_tokenizer(&dir.join("tokenizer.json"))?;
                let id = |code: &str| {
                    tok.token_to_id(code).with_context(|| {
                        format!("the tokenizer has no language code `{code}` (NLLB uses codes like urd_Arab, eng_Latn)")
                    })
                };
                let src = id(&langs.source)?;
                let tgt = id(&langs.target)?;
                Ok((
                    NmtTokenizer::Json {
                        tok,
                        prefix: vec![src],
                        text_prefix: String::new(),
                        eos: cfg.eos,
                    },
                    Some(tgt),
                ))
            }
            Arch::T5 => {
                let tok = load_json_tokenizer(&dir.join("tokenizer.json"))?;
                let iso = langs.target.split('_').next().unwrap_or("en");
                let iso = match iso {
                    "eng" => "en",
                    "urd" => "ur",
                    other => other,
                };
                let tag = format!("<2{iso}>");
                if tok.token_to_id(&tag).is_none() {
                    bail!("the tokenizer has no target tag `{tag}`");
                }
                Ok((
                    NmtTokenizer::Json {
                        tok,
                        prefix: vec![],
                        text_prefix: format!("{tag} "),
                        eos: cfg.eos,
                    },
                    None,
                ))
            }
        }
    }

    /// Source ids for `text`, special tokens included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            NmtTokenizer::Marian {
                source,
                vocab,
                unk,
                eos,
                ..
            } => {
                let enc = source
                    .encode(text, false)
                    .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
                let mut ids: Vec<u32> = enc
                    .get_tokens()
                    .iter()
                    .map(|p| vocab.get(p).copied().unwrap_or(*unk))
                    .collect();
                ids.push(*eos);
                Ok(ids)
            }
            NmtTokenizer::Json {
                tok,
                prefix,
                text_prefix,
                eos,
            } => {
                let input = format!("{text_prefix}{text}");
                let enc = tok
                    .encode(input.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
                let mut ids = prefix.clone();
                ids.extend_from_slice(enc.get_ids());
                ids.push(*eos);
                Ok(ids)
            }
        }
    }

    /// Source tokens `text` takes, special tokens included.
    pub fn count(&self, text: &str) -> usize {
        self.encode(text).map(|v| v.len()).unwrap_or(usize::MAX)
    }

    /// The text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            NmtTokenizer::Marian {
                pieces,
                unk,
                eos,
                pad,
                ..
            } => {
                let mut s = String::new();
                for &i in ids {
                    if i == *eos || i == *pad || i == *unk {
                        continue;
                    }
                    if let Some(p) = pieces.get(i as usize) {
                        s.push_str(p);
                    }
                }
                Ok(s.replace('▁', " ").trim().to_string())
            }
            NmtTokenizer::Json { tok, .. } => tok
                .decode(ids, true)
                .map(|s| s.trim().to_string())
                .map_err(|e| anyhow::anyhow!("tokenizer: {e}")),
        }
    }
}
