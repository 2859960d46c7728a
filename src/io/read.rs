//! Inputs: files, directories (walked for .txt, .md, .html and .jsonl), `-` for stdin,
//! and `.jsonl` files of `{"id": ..., "text": ...}` records.
//!
//! Arguments are checked up front (a missing path, `-` twice or a directory without
//! inputs is a usage error); directories are walked and articles read as the iterator
//! advances, so a run over many thousands of files starts at once and holds no list of
//! them. A bad article (unreadable, gone since it was listed, not UTF-8 or UTF-16, a
//! malformed JSONL line) becomes an `Err` item that names it, so the batch goes on.
//!
//! Files and stdin are UTF-8, with or without a byte-order mark, or UTF-16 (LE or BE)
//! with one. JSONL is UTF-8 only.

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
    /// Walked when its turn comes.
    Dir(PathBuf),
}

const TEXT_EXTENSIONS: &[&str] = &["txt", "md", "html", "htm"];
const JSONL_EXTENSIONS: &[&str] = &["jsonl"];

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input `{0}` does not exist")]
    Missing(String),
    #[error("input directory `{0}` holds no .txt, .md, .html or .jsonl files")]
    EmptyDir(String),
    #[error("`-` (stdin) may be given only once")]
    StdinTwice,
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A file a directory walk picks up: text, Markdown, HTML or JSONL.
fn is_wanted(p: &Path) -> bool {
    has_ext(p, TEXT_EXTENSIONS) || has_ext(p, JSONL_EXTENSIONS)
}

fn file_input(p: PathBuf) -> Input {
    if has_ext(&p, JSONL_EXTENSIONS) {
        Input::Jsonl(p)
    } else {
        Input::File(p)
    }
}

/// A directory's walk, in a stable order: depth first, entries sorted by name (the
/// order of the sorted full paths). Only the listings of the directories on the path
/// being walked are held, not the tree's.
fn walk(dir: &Path) -> walkdir::IntoIter {
    WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
}

/// Whether a directory holds an input somewhere. Unsorted, so it stops at the first
/// one found without listing the rest.
fn dir_has_input(dir: &Path) -> bool {
    WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .any(|e| e.file_type().is_file() && is_wanted(e.path()))
}

/// Checks the INPUT arguments and turns them into sources, in argument order.
/// Directories are checked for at least one input, not listed.
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
            if !dir_has_input(&p) {
                return Err(InputError::EmptyDir(arg.clone()));
            }
            out.push(Input::Dir(p));
        } else if p.exists() {
            out.push(file_input(p));
        } else {
            return Err(InputError::Missing(arg.clone()));
        }
    }
    Ok(out)
}

/// A filter on (id, source).
type Wanted = Box<dyn FnMut(&str, &str) -> bool + Send>;

/// Lazily yields the articles of all inputs. Ids are unique within the run.
pub struct Articles {
    inputs: std::vec::IntoIter<Input>,
    /// The directory being walked.
    walk: Option<walkdir::IntoIter>,
    jsonl: Option<(PathBuf, std::io::Lines<BufReader<fs::File>>, usize)>,
    used: HashMap<String, usize>,
    /// Which articles to yield, by (id, source); the others are passed over unread.
    wanted: Option<Wanted>,
    /// Yield ids and sources only: no text is read.
    ids_only: bool,
}

pub fn articles(inputs: &[String]) -> Result<Articles, InputError> {
    Ok(Articles {
        inputs: expand(inputs)?.into_iter(),
        walk: None,
        jsonl: None,
        used: HashMap::new(),
        wanted: None,
        ids_only: false,
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

/// What the walk of a directory gives next: an input, or an article for an entry that
/// could not be walked.
enum Step {
    Input(Input),
    Bad(Article),
}

impl Articles {
    /// Yields only the articles for which `wanted(id, source)` holds; the others are
    /// passed over without reading their text (a shard's share, the articles a resumed
    /// run has not done). Ids stay what they would be without the filter.
    pub fn select(mut self, wanted: impl FnMut(&str, &str) -> bool + Send + 'static) -> Self {
        self.wanted = Some(Box::new(wanted));
        self
    }

    /// The ids alone, in order, without reading any text (JSONL lines are parsed for
    /// their ids).
    pub fn ids(mut self) -> impl Iterator<Item = String> {
        self.ids_only = true;
        self.map(|a| a.id)
    }

    fn unique(&mut self, id: String) -> String {
        let n = self.used.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            id
        } else {
            format!("{id}-{n}")
        }
    }

    /// The next source: from the directory being walked, else the next argument.
    fn next_input(&mut self) -> Option<Step> {
        loop {
            if let Some(w) = self.walk.as_mut() {
                match w.next() {
                    None => self.walk = None,
                    Some(Ok(e)) => {
                        if e.file_type().is_file() && is_wanted(e.path()) {
                            return Some(Step::Input(file_input(e.into_path())));
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(a) = self.walk_error(&e) {
                            return Some(Step::Bad(a));
                        }
                    }
                }
                continue;
            }
            match self.inputs.next()? {
                Input::Dir(d) => self.walk = Some(walk(&d)),
                i => return Some(Step::Input(i)),
            }
        }
    }

    /// An article for a walk error that may have cost an input: an input file that
    /// cannot be looked at (a dangling link, gone since its directory was listed) or a
    /// directory that cannot be listed. Symbolic-link loops (their files are walked
    /// already) and dangling links with other names (editor lock files) are skipped.
    fn walk_error(&mut self, e: &walkdir::Error) -> Option<Article> {
        if e.loop_ancestor().is_some() {
            return None;
        }
        let p = e.path()?;
        let dir = e.depth() == 0 || p.is_dir();
        if !dir && !is_wanted(p) {
            return None;
        }
        let why = e
            .io_error()
            .map_or_else(|| e.to_string(), |io| io.to_string());
        let what = if dir {
            "cannot read directory"
        } else {
            "cannot read"
        };
        let id = if dir { p.file_name() } else { p.file_stem() }
            .and_then(|s| s.to_str())
            .unwrap_or("article")
            .to_string();
        Some(self.bad(id, p.display().to_string(), format!("{what}: {why}")))
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
                    // A line that is not UTF-8 is reported and the next line read;
                    // after any other error (a disk error) the rest of the file is
                    // given up, or the same error could repeat forever.
                    if e.kind() != std::io::ErrorKind::InvalidData {
                        self.jsonl = None;
                    }
                    return Some(self.bad(
                        source.clone(),
                        source,
                        format!("cannot read line: {e}"),
                    ));
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
            let a = self.next_any()?;
            if self.keep_pending(&a) {
                return Some(a.read(self.ids_only));
            }
        }
    }
}

/// A file article's text is read only once it is wanted.
enum Text {
    Now(Result<String, String>),
    File(PathBuf),
    Stdin,
}

struct Pending {
    id: String,
    source: String,
    text: Text,
}

impl Pending {
    fn read(self, ids_only: bool) -> Article {
        let text = match self.text {
            _ if ids_only => Err(String::new()),
            Text::Now(t) => t,
            Text::File(p) => read_file(&p),
            Text::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| format!("cannot read stdin: {e}"))
                    .and_then(|_| decode_text(buf))
            }
        };
        Article {
            id: self.id,
            source: self.source,
            text,
        }
    }

    fn now(a: Article) -> Pending {
        Pending {
            id: a.id,
            source: a.source,
            text: Text::Now(a.text),
        }
    }
}

impl Articles {
    fn keep_pending(&mut self, p: &Pending) -> bool {
        match self.wanted.as_mut() {
            Some(f) => f(&p.id, &p.source),
            None => true,
        }
    }

    /// The next article, its text not read yet.
    fn next_any(&mut self) -> Option<Pending> {
        loop {
            if self.jsonl.is_some() {
                if let Some(a) = self.next_jsonl() {
                    return Some(Pending::now(a));
                }
                continue;
            }
            let input = match self.next_input()? {
                Step::Bad(a) => return Some(Pending::now(a)),
                Step::Input(i) => i,
            };
            match input {
                Input::Stdin => {
                    let id = self.unique("stdin".into());
                    return Some(Pending {
                        id,
                        source: "-".into(),
                        text: Text::Stdin,
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
                        let a = self.bad(id, p.display().to_string(), format!("cannot read: {e}"));
                        return Some(Pending::now(a));
                    }
                },
                Input::File(p) => {
                    let id = p
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("article")
                        .to_string();
                    let id = self.unique(sanitize_id(&id));
                    return Some(Pending {
                        id,
                        source: p.display().to_string(),
                        text: Text::File(p),
                    });
                }
                Input::Dir(d) => self.walk = Some(walk(&d)),
            }
        }
    }
}

/// Reads a text, Markdown or HTML file as plain text (see [`decode_text`]).
pub fn read_file(p: &Path) -> Result<String, String> {
    let bytes = fs::read(p).map_err(|e| format!("cannot read: {e}"))?;
    let text = decode_text(bytes)?;
    if has_ext(p, &["html", "htm"]) {
        Ok(html_to_text(&text))
    } else {
        Ok(text)
    }
}

/// Decodes the bytes of a file or of stdin: UTF-8, or UTF-16 LE or BE, as Windows tools
/// write. A byte-order mark is dropped; without one, the bytes must be UTF-8. Errors
/// name the byte offset of the problem.
pub fn decode_text(mut bytes: Vec<u8>) -> Result<String, String> {
    const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];
    if bytes.starts_with(&[0xFF, 0xFE, 0, 0]) || bytes.starts_with(&[0, 0, 0xFE, 0xFF]) {
        return Err("UTF-32 is not supported; convert it to UTF-8 first".into());
    }
    if bytes.starts_with(&[0xFF, 0xFE]) {
        return decode_utf16(&bytes[2..], u16::from_le_bytes, "LE");
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return decode_utf16(&bytes[2..], u16::from_be_bytes, "BE");
    }
    let skip = if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
        UTF8_BOM.len()
    } else {
        0
    };
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (byte {}); convert it to UTF-8 first",
            skip + e.utf8_error().valid_up_to()
        )
    })
}

/// UTF-16 code units after a byte-order mark (so byte offsets in errors start at 2).
fn decode_utf16(body: &[u8], unit: fn([u8; 2]) -> u16, order: &str) -> Result<String, String> {
    if !body.len().is_multiple_of(2) {
        return Err(format!(
            "not valid UTF-16 {order}: odd number of bytes ({})",
            body.len() + 2
        ));
    }
    let units = body.chunks_exact(2).map(|b| unit([b[0], b[1]]));
    let mut out = String::with_capacity(body.len());
    let mut at = 2;
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                out.push(c);
                at += 2 * c.len_utf16();
            }
            Err(e) => {
                return Err(format!(
                    "not valid UTF-16 {order}: unpaired surrogate {:#06x} at byte {at}",
                    e.unpaired_surrogate()
                ))
            }
        }
    }
    Ok(out)
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

    fn utf16(s: &str, le: bool) -> Vec<u8> {
        let mut b = if le {
            vec![0xFF, 0xFE]
        } else {
            vec![0xFE, 0xFF]
        };
        for u in s.encode_utf16() {
            b.extend(if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        b
    }

    fn all(inputs: &[&Path]) -> Vec<Article> {
        let args: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        articles(&args).expect("inputs").collect()
    }

    #[test]
    fn decodes_utf8_with_bom_and_utf16() {
        let s = "روس کے، Moscow 2021 ۲۰۲۱ 😀";
        assert_eq!(decode_text(s.as_bytes().to_vec()).unwrap(), s);
        let mut b = vec![0xEF, 0xBB, 0xBF];
        b.extend(s.as_bytes());
        assert_eq!(decode_text(b).unwrap(), s);
        assert_eq!(decode_text(utf16(s, true)).unwrap(), s);
        assert_eq!(decode_text(utf16(s, false)).unwrap(), s);
        assert_eq!(decode_text(vec![0xFF, 0xFE]).unwrap(), "");
        assert_eq!(decode_text(Vec::new()).unwrap(), "");
    }

    #[test]
    fn bad_encodings_say_what_is_wrong() {
        // No BOM: UTF-8 as before, with the byte offset.
        let e = decode_text(b"ab\xffcd".to_vec()).unwrap_err();
        assert_eq!(e, "not valid UTF-8 (byte 2); convert it to UTF-8 first");
        // After a UTF-8 BOM the offset still counts from the start of the file.
        let e = decode_text(b"\xEF\xBB\xBFab\xffcd".to_vec()).unwrap_err();
        assert_eq!(e, "not valid UTF-8 (byte 5); convert it to UTF-8 first");
        // UTF-16 without a BOM is not guessed.
        let mut b = utf16("ab", true);
        b.drain(..2);
        b.push(0xff);
        assert!(decode_text(b).unwrap_err().starts_with("not valid UTF-8"));

        let mut b = utf16("روس", true);
        b.push(0x20);
        let e = decode_text(b).unwrap_err();
        assert_eq!(e, "not valid UTF-16 LE: odd number of bytes (9)");
        // A high surrogate followed by a letter, then a lone low surrogate.
        let mut b = utf16("a", true);
        b.extend([0x3D, 0xD8, 0x62, 0x00]);
        let e = decode_text(b).unwrap_err();
        assert_eq!(
            e,
            "not valid UTF-16 LE: unpaired surrogate 0xd83d at byte 4"
        );
        let mut b = utf16("ab", false);
        b.extend([0xDE, 0x00]);
        let e = decode_text(b).unwrap_err();
        assert_eq!(
            e,
            "not valid UTF-16 BE: unpaired surrogate 0xde00 at byte 6"
        );
        let e = decode_text(vec![0xFF, 0xFE, 0, 0, 0x61, 0, 0, 0]).unwrap_err();
        assert!(e.contains("UTF-32"), "{e}");
    }

    #[test]
    fn read_file_decodes_then_extracts_html() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.html");
        fs::write(
            &p,
            utf16("<html><body><p>پہلا</p><p>دوسرا</p></body></html>", true),
        )
        .unwrap();
        assert_eq!(read_file(&p).unwrap(), "پہلا\n\nدوسرا");
        let p = d.path().join("b.txt");
        fs::write(&p, utf16("روس\r\n", false)).unwrap();
        assert_eq!(read_file(&p).unwrap(), "روس\r\n");
        fs::write(&p, b"\xEF\xBB\xBF\xd8\xb1").unwrap();
        assert_eq!(read_file(&p).unwrap(), "ر");
        fs::write(&p, b"\xd8").unwrap();
        let e = read_file(&p).unwrap_err();
        assert!(
            e.contains("byte 0") && e.contains("convert it to UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn directories_are_walked_in_order_for_text_and_jsonl() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("b/c")).unwrap();
        fs::write(r.join("b/c/z.txt"), "z").unwrap();
        fs::write(r.join("b/a.md"), "a").unwrap();
        fs::write(r.join("b.txt"), "bt").unwrap();
        fs::write(r.join("notes.csv"), "x").unwrap();
        fs::write(
            r.join("b/recs.JSONL"),
            "{\"id\": \"r1\", \"text\": \"one\"}\n\nnot json\n{\"id\": 7, \"text\": \"seven\"}\n",
        )
        .unwrap();
        let got: Vec<(String, Result<String, String>)> =
            all(&[r]).into_iter().map(|a| (a.id, a.text)).collect();
        assert_eq!(got.len(), 6, "{got:?}");
        let ids: Vec<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
        // The order of the sorted full paths: b/a.md, b/c/z.txt, b/recs.JSONL, b.txt.
        assert_eq!(ids, ["a", "z", "r1", "recs-3", "7", "b"]);
        assert_eq!(got[2].1.as_deref(), Ok("one"));
        assert!(got[3].1.as_ref().unwrap_err().contains("not valid JSON"));
        assert_eq!(got[4].1.as_deref(), Ok("seven"));
        assert_eq!(got[5].1.as_deref(), Ok("bt"));
    }

    #[test]
    fn empty_directories_and_stdin_twice_are_usage_errors() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/x.csv"), "x").unwrap();
        let arg = d.path().display().to_string();
        let e = articles(std::slice::from_ref(&arg)).err().unwrap();
        assert!(matches!(e, InputError::EmptyDir(_)));
        assert!(e.to_string().contains(".jsonl"), "{e}");
        fs::write(d.path().join("sub/x.jsonl"), "").unwrap();
        assert!(articles(&[arg]).is_ok());
        assert!(matches!(
            articles(&["-".into(), "-".into()]),
            Err(InputError::StdinTwice)
        ));
    }

    #[test]
    fn directories_are_listed_when_their_turn_comes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("first.txt");
        fs::write(&f, "1").unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        let args = [f.display().to_string(), d.path().display().to_string()];
        let mut it = articles(&args).unwrap();
        assert_eq!(it.next().unwrap().text.as_deref(), Ok("1"));
        // Added after the iterator was built, before the walk got there.
        fs::write(d.path().join("b.txt"), "b").unwrap();
        let rest: Vec<String> = it.map(|a| a.id).collect();
        assert_eq!(rest, ["a", "b", "first-2"]);
    }

    #[test]
    fn a_file_gone_mid_run_is_an_error_item() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("gone.txt");
        fs::write(&f, "x").unwrap();
        let mut it = articles(&[f.display().to_string()]).unwrap();
        fs::remove_file(&f).unwrap();
        let a = it.next().unwrap();
        assert_eq!(a.id, "gone");
        let e = a.text.unwrap_err();
        assert!(e.starts_with("cannot read: "), "{e}");
        assert!(it.next().is_none());

        // In a directory: listed, then deleted before its turn.
        let sub = d.path().join("dir");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("a.txt"), "a").unwrap();
        fs::write(sub.join("b.txt"), "b").unwrap();
        fs::write(sub.join("c.jsonl"), "{\"text\": \"c\"}\n").unwrap();
        let mut it = articles(&[sub.display().to_string()]).unwrap();
        assert_eq!(it.next().unwrap().text.as_deref(), Ok("a"));
        fs::remove_file(sub.join("b.txt")).unwrap();
        fs::remove_file(sub.join("c.jsonl")).unwrap();
        let rest: Vec<Article> = it.collect();
        assert_eq!(rest.len(), 2, "{rest:?}");
        for (a, id) in rest.iter().zip(["b", "c"]) {
            assert_eq!(a.id, id);
            let e = a.text.as_ref().unwrap_err();
            assert!(e.starts_with("cannot read: "), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn dangling_links_to_inputs_are_reported_others_skipped() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(r.join("nowhere"), r.join("lost.txt")).unwrap();
        std::os::unix::fs::symlink(r.join("nowhere"), r.join(".#ok.txt~lock")).unwrap();
        let got = all(&[r]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].id, "lost");
        assert!(got[0]
            .text
            .as_ref()
            .unwrap_err()
            .starts_with("cannot read: "));
        assert_eq!(got[1].text.as_deref(), Ok("ok"));
    }

    #[test]
    fn missing_input_is_an_error() {
        assert!(matches!(
            expand(&["/no/such/file".into()]),
            Err(InputError::Missing(_))
        ));
    }
}
