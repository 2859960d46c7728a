//! Inputs: files, directories (walked for .txt, .md, .html), `-` for stdin, and `.jsonl`
//! files of `{"id": ..., "text": ...}` records.
//!
//! Paths are checked up front (a missing path is a usage error); articles are read
//! lazily, and a bad article (unreadable, not UTF-8, a malformed JSONL line) becomes an
//! `Err` item that names it, so the batch goes on.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use scraper::{Html, Selector};
use walkdir::WalkDir;

/// One article to process. `text` is the raw text, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Article {
    pub id: String,
    pub source: String,
    pub text: Result<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    Stdin,
    File(PathBuf),
    Jsonl(PathBuf),
}

const TEXT_EXTENSIONS: &[&str] = &["txt", "md", "html", "htm"];

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input `{0}` does not exist")]
    Missing(String),
    #[error("input directory `{0}` holds no .txt, .md or .html files")]
    EmptyDir(String),
    #[error("`-` (stdin) may be given only once")]
    StdinTwice,
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Expands the INPUT arguments into a list of sources, in a stable order.
fn expand(inputs: &[String]) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    for arg in inputs {
        if arg == "-" {
            if out.contains(&Input::Stdin) {
                return Err(InputError::StdinTwice);
            }
            out.push(Input::Stdin);
            continue;
        }
        let p = PathBuf::from(arg);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = WalkDir::new(&p)
                .follow_links(true)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file() && has_ext(e.path(), TEXT_EXTENSIONS))
                .map(|e| e.into_path())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(InputError::EmptyDir(arg.clone()));
            }
            out.extend(files.into_iter().map(Input::File));
        } else if p.exists() {
            out.push(if has_ext(&p, &["jsonl"]) {
                Input::Jsonl(p)
            } else {
                Input::File(p)
            });
        } else {
            return Err(InputError::Missing(arg.clone()));
        }
    }
    Ok(out)
}

/// Lazily yields the articles of all inputs. Ids are unique within the run.
pub struct Articles {
    inputs: std::vec::IntoIter<Input>,
    jsonl: Option<(PathBuf, std::io::Lines<BufReader<fs::File>>, usize)>,
    used: HashMap<String, usize>,
}

pub fn articles(inputs: &[String]) -> Result<Articles, InputError> {
    Ok(Articles {
        inputs: expand(inputs)?.into_iter(),
        jsonl: None,
        used: HashMap::new(),
    })
}

/// A file-name-safe id: letters (any script), digits, `-`, `_` and `.`.
pub fn sanitize_id(raw: &str) -> String {
    let s: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() {
        "article".into()
    } else {
        s.chars().take(120).collect()
    }
}

impl Articles {
    fn unique(&mut self, id: String) -> String {
        let n = self.used.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            id
        } else {
            format!("{id}-{n}")
        }
    }

    fn next_jsonl(&mut self) -> Option<Article> {
        let (path, lines, lineno) = self.jsonl.as_mut()?;
        loop {
            *lineno += 1;
            let source = format!("{}:{}", path.display(), lineno);
            let line = match lines.next() {
                None => {
                    self.jsonl = None;
                    return None;
                }
                Some(Err(e)) => {
                    return Some(self.bad(source.clone(), source, format!("cannot read line: {e}")))
                }
                Some(Ok(l)) => l,
            };
            if line.trim().is_empty() {
                continue;
            }
            let fallback_id = format!(
                "{}-{}",
                path.file_stem().and_then(|s| s.to_str()).unwrap_or("jsonl"),
                lineno
            );
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    return Some(self.bad(
                        fallback_id,
                        source,
                        format!("line is not valid JSON: {e}"),
                    ))
                }
            };
            let id = match v.get("id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => fallback_id,
            };
            let id = sanitize_id(&id);
            let text = match v.get("text") {
                Some(serde_json::Value::String(t)) => Ok(t.clone()),
                _ => Err("record has no string field `text`".to_string()),
            };
            let id = self.unique(id);
            return Some(Article {
                id,
                source: v
                    .get("id")
                    .map_or(source, |i| i.to_string().trim_matches('"').to_string()),
                text,
            });
        }
    }

    fn bad(&mut self, id: String, source: String, why: String) -> Article {
        let id = self.unique(sanitize_id(&id));
        Article {
            id,
            source,
            text: Err(why),
        }
    }
}

impl Iterator for Articles {
    type Item = Article;

    fn next(&mut self) -> Option<Article> {
        loop {
            if self.jsonl.is_some() {
                if let Some(a) = self.next_jsonl() {
                    return Some(a);
                }
                continue;
            }
            match self.inputs.next()? {
                Input::Stdin => {
                    let mut buf = Vec::new();
                    let text = std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| format!("cannot read stdin: {e}"))
                        .and_then(|_| {
                            String::from_utf8(buf).map_err(|e| format!("stdin is not UTF-8: {e}"))
                        });
                    let id = self.unique("stdin".into());
                    return Some(Article {
                        id,
                        source: "-".into(),
                        text,
                    });
                }
                Input::Jsonl(p) => match fs::File::open(&p) {
                    Ok(f) => self.jsonl = Some((p, BufReader::new(f).lines(), 0)),
                    Err(e) => {
                        let id = p
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or("jsonl")
                            .to_string();
                        return Some(self.bad(
                            id,
                            p.display().to_string(),
                            format!("cannot open: {e}"),
                        ));
                    }
                },
                Input::File(p) => {
                    let id = p
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("article")
                        .to_string();
                    let id = self.unique(sanitize_id(&id));
                    return Some(Article {
                        id,
                        source: p.display().to_string(),
                        text: read_file(&p),
                    });
                }
            }
        }
    }
}

/// Reads a text, Markdown or HTML file as plain text.
pub fn read_file(p: &Path) -> Result<String, String> {
    let bytes = fs::read(p).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (byte {}); convert it to UTF-8 first",
            e.utf8_error().valid_up_to()
        )
    })?;
    if has_ext(p, &["html", "htm"]) {
        Ok(html_to_text(&text))
    } else {
        Ok(text)
    }
}

/// The readable blocks of an HTML page (headings, paragraphs, list items, captions),
/// one per paragraph. Scripts, styles and navigation are not selected.
pub fn html_to_text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let sel = Selector::parse("h1, h2, h3, h4, p, li, blockquote, figcaption").expect("selector");
    let mut blocks: Vec<String> = Vec::new();
    for el in doc.select(&sel) {
        // Skip blocks nested in another selected block (a <p> inside a <blockquote>).
        if el
            .ancestors()
            .filter_map(scraper::ElementRef::wrap)
            .any(|a| sel.matches(&a))
        {
            continue;
        }
        let t = el.text().collect::<Vec<_>>().join("");
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        if !t.is_empty() {
            blocks.push(t);
        }
    }
    if blocks.is_empty() {
        // A fragment without block tags: take all text.
        let t = doc.root_element().text().collect::<Vec<_>>().join(" ");
        return t.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    blocks.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_blocks_become_paragraphs() {
        let h = "<html><head><script>x()</script></head><body><h1>سرخی</h1><p>پہلا <b>پیرا</b></p><blockquote><p>قول</p></blockquote></body></html>";
        assert_eq!(html_to_text(h), "سرخی\n\nپہلا پیرا\n\nقول");
    }

    #[test]
    fn ids_are_safe() {
        assert_eq!(sanitize_id("../a b/ج"), "_a_b_ج");
        assert_eq!(sanitize_id(""), "article");
    }

    #[test]
    fn missing_input_is_an_error() {
        assert!(matches!(
            expand(&["/no/such/file".into()]),
            Err(InputError::Missing(_))
        ));
    }
}
