//! Pure text stages of the data path: normalize → segment → tag boilerplate → chunk.
//!
//! Nothing in here touches a model or the file system, so every stage is unit-tested on
//! the seed article and on hand-made edge cases (see `tests/text_stages.rs`).

pub mod boilerplate;
pub mod chunk;
pub mod dateline;
pub mod normalize;
pub mod script;
pub mod segment;

pub use boilerplate::{tag_paragraphs, Kind};
pub use chunk::{Chunk, Chunker};
pub use normalize::normalize;
pub use segment::{paragraphs, sentences, Paragraph};
