//! tarjuma: Urdu news articles to faithful English translations and short bullet
//! summaries, with open models run through candle.
//!
//! The data path (see ARCHITECTURE.md in the shared notes):
//! `read → normalize → segment → chunk → translate → summarize → write`, one module each:
//! [`io`], [`text`], [`pipeline`], with models in [`backend`], [`generate`], [`tokenizer`],
//! [`prompt`] and [`models`]. [`eval`] scores runs and compares them side by side.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod eval;
pub mod generate;
pub mod io;
pub mod models;
pub mod pipeline;
pub mod prompt;
pub mod text;
pub mod tokenizer;
