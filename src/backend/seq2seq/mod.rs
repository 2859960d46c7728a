//! Encoder-decoder translation models (Marian, M2M100/NLLB, T5/MADLAD): configuration,
//! weights, the shared Transformer implementation and tokenizers. Decoding lives in
//! `generate::seq2seq`.

pub mod attention;
pub mod config;
pub mod model;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;

pub use config::{Arch, Config};
pub use model::{DecoderState, EncoderOut, Model};
pub use tokenizer::{Langs, NmtTokenizer};

/// A translation model ready to use: weights, tokenizer and conventions.
pub struct Nmt {
    pub model: Model,
    pub tokenizer: NmtTokenizer,
    /// Forced first target token (NLLB's target language code).
    pub forced_bos: Option<u32>,
}

impl Nmt {
    /// Loads the model laid out as on the Hugging Face Hub in `dir`.
    pub fn load(
        dir: &Path,
        device: &Device,
        quantize: Option<weights::Quant>,
        langs: &Langs,
    ) -> Result<Self> {
        let cfg = Config::from_dir(dir)?;
        let (tokenizer, forced_bos) = NmtTokenizer::load(dir, &cfg, langs)?;
        let files = weights::find_weight_files(dir)?;
        let w = weights::Weights::open(&files, device, quantize)?;
        let model = Model::load(&w, cfg)
            .with_context(|| format!("{}: cannot build the model", dir.display()))?;
        Ok(Self {
            model,
            tokenizer,
            forced_bos,
        })
    }
}
