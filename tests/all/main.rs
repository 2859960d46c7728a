//! The integration test binary (one binary, as ripgrep does, so it links once).

mod batch;
mod cli;
mod decoder;
mod eval;
mod fixtures;
mod hub;
mod pool;
mod real_model;
mod report;
mod seq2seq;
mod summary;
mod text_stages;
mod tokenizer_parity;
mod util;
