//! Known models and where their weights come from.
//!
//! `models/*.toml` manifests are compiled into the binary, so `tarjuma` works from any
//! directory; `$TARJUMA_MODELS_DIR` may add more. A model is named by its manifest
//! name, or given as a path to a `.gguf`.

pub mod manifest;
pub mod source;

pub use manifest::{all, builtin, Manifest};
pub use source::{Cache, ModelFile};
