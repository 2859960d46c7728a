//! Chat templates (`prompts/<family>.toml`) and task instructions (`prompts/tasks.toml`).
//!
//! Rendering keeps article text out of the control channel: template literals are split
//! at the family's special tokens, which are added by id, while message contents are
//! encoded as plain text.

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub name: String,
    pub specials: Vec<String>,
    pub system_role: bool,
    pub system: String,
    pub user: String,
    pub assistant: String,
    pub assistant_open: String,
    pub stop: Vec<String>,
    /// A model trained on one fixed translation prompt (TranslateGemma): the whole user
    /// turn, with `{source}` for the trimmed text. Translation then sends this turn
    /// alone, with no system text, example or carried context.
    #[serde(default)]
    pub translate_turn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub system: String,
    pub user: String,
    #[serde(default)]
    pub example_source: Option<String>,
    #[serde(default)]
    pub example_translation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tasks {
    pub translate: Task,
    pub translate_strict: Task,
    pub bullet: Task,
    pub bullet_strict: Task,
}

const FAMILIES: &[(&str, &str)] = &[
    ("chatml", include_str!("../prompts/chatml.toml")),
    ("gemma", include_str!("../prompts/gemma.toml")),
    ("llama3", include_str!("../prompts/llama3.toml")),
    (
        "translategemma",
        include_str!("../prompts/translategemma.toml"),
    ),
];

pub fn family(name: &str) -> Result<Family> {
    let (_, text) = FAMILIES.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        anyhow!("unknown prompt family `{name}` (known: chatml, gemma, llama3, translategemma)")
    })?;
    toml::from_str(text).with_context(|| format!("prompts/{name}.toml is malformed"))
}

const BUILTIN_TASKS: &str = include_str!("../prompts/tasks.toml");

pub fn tasks() -> Tasks {
    toml::from_str(BUILTIN_TASKS).expect("prompts/tasks.toml is malformed")
}

/// A prompt set: the task instructions and, when the directory has one, the chat
/// template of the family, with the name and sha256 recorded in each record.
pub struct PromptSet {
    pub tasks: Tasks,
    pub family: Option<Family>,
    pub info: crate::io::write::PromptInfo,
}

fn sha256_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The built-in prompts (`dir` None), or `DIR/tasks.toml` (required) and, when present,
/// `DIR/<family>.toml` overriding the family's chat template. Researchers compare
/// prompt variants this way (`--prompts DIR`).
pub fn prompt_set(dir: Option<&std::path::Path>, family_name: &str) -> Result<PromptSet> {
    let Some(dir) = dir else {
        let fam = FAMILIES
            .iter()
            .find(|(n, _)| *n == family_name)
            .map_or("", |(_, t)| *t);
        return Ok(PromptSet {
            tasks: tasks(),
            family: None,
            info: crate::io::write::PromptInfo {
                name: "built-in".into(),
                sha256: sha256_hex(&[BUILTIN_TASKS, fam]),
            },
        });
    };
    let tasks_path = dir.join("tasks.toml");
    let text = std::fs::read_to_string(&tasks_path).with_context(|| {
        format!(
            "--prompts {}: cannot read tasks.toml (copy prompts/tasks.toml there and edit it)",
            dir.display()
        )
    })?;
    let tasks: Tasks =
        toml::from_str(&text).with_context(|| format!("{} is malformed", tasks_path.display()))?;
    let fam_path = dir.join(format!("{family_name}.toml"));
    let (family, fam_text) = match std::fs::read_to_string(&fam_path) {
        Ok(t) => {
            let f: Family = toml::from_str(&t)
                .with_context(|| format!("{} is malformed", fam_path.display()))?;
            (Some(f), t)
        }
        Err(_) => (None, String::new()),
    };
    Ok(PromptSet {
        tasks,
        family,
        info: crate::io::write::PromptInfo {
            name: dir.display().to_string(),
            sha256: sha256_hex(&[&text, &fam_text]),
        },
    })
}

/// Fills `{key}` placeholders.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

impl Family {
    /// Token ids of a conversation, ending with an open assistant turn that already
    /// holds `assistant_prefix`.
    pub fn render(
        &self,
        tok: &Tokenizer,
        msgs: &[Message],
        assistant_prefix: &str,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if tok.add_bos {
            ids.extend(tok.bos);
        }
        let mut pending_system: Option<&str> = None;
        for m in msgs {
            let content;
            let (template, text) = match m.role {
                Role::System if !self.system_role => {
                    pending_system = Some(&m.content);
                    continue;
                }
                Role::System => (&self.system, m.content.as_str()),
                Role::User => match pending_system.take() {
                    Some(sys) => {
                        content = format!("{sys}\n\n{}", m.content);
                        (&self.user, content.as_str())
                    }
                    None => (&self.user, m.content.as_str()),
                },
                Role::Assistant => (&self.assistant, m.content.as_str()),
            };
            let (pre, post) = template
                .split_once("{content}")
                .ok_or_else(|| anyhow!("template of `{}` lacks {{content}}", self.name))?;
            self.encode_literal(tok, pre, &mut ids)?;
            ids.extend(tok.encode(text)?);
            self.encode_literal(tok, post, &mut ids)?;
        }
        self.encode_literal(tok, &self.assistant_open, &mut ids)?;
        ids.extend(tok.encode(assistant_prefix)?);
        Ok(ids)
    }

    fn encode_literal(&self, tok: &Tokenizer, lit: &str, ids: &mut Vec<u32>) -> Result<()> {
        let mut rest = lit;
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|s| rest.find(s.as_str()).map(|p| (p, s)))
                .min_by_key(|(p, _)| *p);
            match next {
                Some((p, s)) => {
                    ids.extend(tok.encode(&rest[..p])?);
                    let id = tok
                        .token_id(s)
                        .ok_or_else(|| anyhow!("the model's vocabulary has no `{s}` token, needed by the `{}` prompt family", self.name))?;
                    ids.push(id);
                    rest = &rest[p + s.len()..];
                }
                None => {
                    ids.extend(tok.encode(rest)?);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ids that end a reply: the family's stop tokens plus the model's EOS.
    pub fn stop_ids(&self, tok: &Tokenizer) -> Vec<u32> {
        let mut v: Vec<u32> = self.stop.iter().filter_map(|s| tok.token_id(s)).collect();
        v.extend(tok.eos);
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TranslateGemma's user turn, as its published chat template renders it for
    /// Urdu to English: one newline after the first group, two blank lines before the
    /// trimmed text.
    #[test]
    fn translategemma_turn_is_the_published_template() {
        let f = family("translategemma").unwrap();
        let turn = f.translate_turn.as_deref().unwrap();
        let got = fill(turn, &[("source", "  متن  ".trim())]);
        let want = "You are a professional Urdu (ur) to English (en) translator. Your goal is to \
accurately convey the meaning and nuances of the original Urdu text while adhering to English \
grammar, vocabulary, and cultural sensitivities.\nProduce only the English translation, \
without any additional explanations or commentary. Please translate the following Urdu \
text into English:\n\n\nمتن";
        assert_eq!(got, want);
        assert!(!f.system_role);
        assert_eq!(f.user, "<start_of_turn>user\n{content}<end_of_turn>\n");
        assert_eq!(f.assistant_open, "<start_of_turn>model\n");
        assert!(family("gemma").unwrap().translate_turn.is_none());
    }

    #[test]
    fn families_and_tasks_parse() {
        for (n, _) in FAMILIES {
            let f = family(n).unwrap();
            assert!(f.user.contains("{content}") && f.assistant.contains("{content}"));
        }
        let t = tasks();
        assert!(t.translate.user.contains("{source}"));
        assert!(t.bullet.user.contains("{sentence}") && t.bullet.user.contains("{paragraph}"));
        assert!(t.bullet_strict.user.contains("{sentence}"));
        assert!(t.translate.example_source.is_some());
    }

    #[test]
    fn fill_replaces_all() {
        assert_eq!(
            fill("{a} and {a} {b}", &[("a", "x"), ("b", "y")]),
            "x and x y"
        );
    }
}
