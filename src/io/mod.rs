//! Reading articles from files, directories, stdin and JSONL; writing results.

pub mod read;
pub mod write;
