//! Fact checking of summary bullets against the paragraphs they cite.
//!
//! A desk editor must be able to trust a bullet: every number, date and capitalised
//! name or place in it has to be found in the English text of the paragraphs the bullet
//! cites (its "support"). [`claims`] lists what a bullet asserts; [`unsupported`] lists
//! the claims its support does not back, so the caller can flag or drop the bullet.
//!
//! # Numbers
//!
//! A number claim is compared by value (relative tolerance 1e-9), so all of these are
//! the same: `14,000`, `14 000` (normal, no-break, thin or narrow no-break space between
//! groups of three), `14000`, `۱۴۰۰۰` (Urdu digits), `١٤٠٠٠` (Arabic-Indic digits),
//! `fourteen thousand`, `14 thousand`, `14k`. Indian grouping (`1,50,000`) is read too.
//!
//! * Decimals (`3.5`), percentages (`40%`, `40 %`, `40 per cent`, `40 percent` all
//!   = 40), digit ordinals (`1st`, `22nd` = 1, 22) and decades (`1990s` = 1990).
//! * Scale words multiply a preceding number, digits or words: `hundred`, `thousand`,
//!   `million`, `billion`, `trillion`, `lakh`, `crore`, `dozen` (`3.5 million`,
//!   `two hundred and fifty`, `half a million`, `two and a half million`, `a dozen`).
//!   Suffixes glued to digits scale too: `k`, `m`/`mn`, `bn`/`b`, `tn`
//!   (`$1.2bn` = 1.2 billion); other glued letters are units and are ignored
//!   (`5km`, `10am`). Currency marks around a number do not change it (`Rs40`,
//!   `US$1.2bn`, `40-rupee` = 40).
//! * Vague amounts are not claims: `hundreds of`, `thousands`, `dozens`, and `half`
//!   on its own.
//! * **"one"**: in a bullet, a bare `one` is not a claim ("one of the officials",
//!   "no one", "one person", "one-day"): it is a pronoun or determiner as often as a
//!   number, and a wrong count of one is rarely the error an editor is hunting. It
//!   counts only inside a larger number (`one million`, `twenty-one`,
//!   `one hundred`, `one and a half`).
//! * **Ordinal words** (`first` … `nineteenth`, `twentieth`, `thirtieth`,
//!   `twenty-first` …): in a bullet they are claims only in a date, that is next to a
//!   month name (`July first`, `first July`, `the first of July`); "the first time" or
//!   "second largest" assert no number.
//! * A space between digit groups is ambiguous ("March 3 200 protesters"): such a
//!   number is supported by its value (3200) or by every group on its own (3 and 200).
//!
//! The support side is read generously: every bare `one` and every ordinal word adds
//! its value there, so `1 July` in a bullet is backed by "first of July".
//!
//! # Dates
//!
//! A date is a day number, a month name and maybe a year number, each checked on its own,
//! so `12 January`, `January 12`, `12th January` and `Jan 12` need no special handling.
//! Month names are normalised on both sides: `Jan`, `Jan.`, `Sept`, `Sep`, `Dec.`
//! match `January`, `September`, `December` and the other way round.
//!
//! # Names
//!
//! Every word whose first letter is uppercase (in any script with case) is a name
//! claim, multi-word names word by word, except:
//!
//! * a common function word or frequent sentence opener (about 130 of them: `The`,
//!   `According`, `Officials`, `One`, `First` …) at the start of the bullet or of a
//!   sentence (after `.`, `!`, `?` or `:` and a space, or a line break; a leading list
//!   marker such as `-`, `•` or `1.` is skipped; the stop after a title like `Mr.` or
//!   `Gen.` ends no sentence);
//! * `I` (and `I'm`, `I've` …), the honorifics `Mr`, `Mrs`, `Ms`, `Mx`, and currency
//!   codes (`Rs`, `PKR`, `USD`, `INR` …, and `US` glued to `$`);
//! * number words and ordinal words read as part of a number.
//!
//! A name claim is the word as written, less a possessive `'s` (`Russia's` →
//! `Russia`). It is supported when the support has a capitalised word that matches
//! case-insensitively (`KARACHI` in a dateline backs `Karachi`; a lowercase "turkey"
//! backs no `Turkey`), ignoring possessives, dots (`U.S.` = `US`) and a plural `s`;
//! or a demonym or adjective form of one: the two words share a stem of at least 4
//! letters and neither goes on for more than 3 letters after it, those letters all
//! from the usual demonym endings (`a e i o u y n s h c`): `Russian` ~ `Russia`,
//! `Ukrainian` ~ `Ukraine`, `Pakistani` ~ `Pakistan`, `Chinese` ~ `China`,
//! `British` ~ `Britain`, but not `Austria` ~ `Australia` or `Mali` ~ `Malik`.
//! Month names match only month names (normalised as above).
//!
//! A sentence-initial word is capitalised by its position, not because it is a name, so
//! it is also supported by the same word in any case (`Floods killed …` is backed by
//! "heavy floods killed …"). Mid-sentence words get no such leniency.
//!
//! Everything runs on the NFC form of both texts.

use std::collections::HashSet;

use unicode_normalization::UnicodeNormalization;

/// One checkable fact in a bullet.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A number, as its value (14,000 = 14 000 = 14000 = fourteen thousand = ۱۴۰۰۰).
    Number { text: String, value: f64 },
    /// A capitalised name, place, month or other proper noun.
    Name(String),
}

/// The claims of a bullet, in order.
pub fn claims(bullet: &str) -> Vec<Claim> {
    let lexed = Lexed::new(strip_marker(bullet));
    extract(&lexed, Mode::Bullet)
        .into_iter()
        .map(|f| f.claim)
        .collect()
}

/// The claims of `bullet` not supported by `support`, as short human-readable reasons
/// ("number 15,000 not in paragraphs 3, 4" is built by the caller; you return e.g.
/// `["number 15,000", "name Donetsk"]`). Empty means the bullet passes.
pub fn unsupported(bullet: &str, support: &str) -> Vec<String> {
    let lexed = Lexed::new(strip_marker(bullet));
    let found = extract(&lexed, Mode::Bullet);
    if found.is_empty() {
        return Vec::new();
    }
    let index = Support::new(support);
    let mut out: Vec<String> = Vec::new();
    for f in found.iter().filter(|f| !index.supports(f)) {
        let reason = match &f.claim {
            Claim::Number { text, .. } => format!("number {text}"),
            Claim::Name(word) => format!("name {word}"),
        };
        if !out.contains(&reason) {
            out.push(reason);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Word lists

/// Sentence openers that are not names when capitalised only by their position.
const OPENERS: &[&str] = &[
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "there",
    "here",
    "it",
    "its",
    "he",
    "she",
    "they",
    "we",
    "you",
    "his",
    "her",
    "their",
    "our",
    "my",
    "your",
    "in",
    "on",
    "at",
    "by",
    "for",
    "from",
    "to",
    "of",
    "with",
    "without",
    "into",
    "over",
    "under",
    "after",
    "before",
    "during",
    "since",
    "until",
    "amid",
    "among",
    "between",
    "against",
    "despite",
    "following",
    "about",
    "across",
    "around",
    "as",
    "through",
    "within",
    "upon",
    "unlike",
    "like",
    "via",
    "and",
    "but",
    "or",
    "nor",
    "so",
    "yet",
    "if",
    "while",
    "when",
    "where",
    "whereas",
    "although",
    "though",
    "because",
    "once",
    "then",
    "also",
    "meanwhile",
    "however",
    "moreover",
    "furthermore",
    "still",
    "now",
    "today",
    "yesterday",
    "tomorrow",
    "earlier",
    "later",
    "elsewhere",
    "separately",
    "instead",
    "overall",
    "finally",
    "further",
    "according",
    "officials",
    "police",
    "authorities",
    "government",
    "residents",
    "protesters",
    "troops",
    "soldiers",
    "militants",
    "security",
    "forces",
    "witnesses",
    "sources",
    "analysts",
    "experts",
    "critics",
    "lawmakers",
    "doctors",
    "rescuers",
    "both",
    "all",
    "some",
    "many",
    "more",
    "most",
    "several",
    "few",
    "other",
    "others",
    "another",
    "each",
    "every",
    "no",
    "not",
    "none",
    "nearly",
    "almost",
    "only",
    "just",
    "even",
    "what",
    "which",
    "who",
    "why",
    "how",
    "one",
    "first",
    "second",
    "third",
    "last",
    "next",
    "new",
    "former",
    "thousands",
    "hundreds",
    "dozens",
    "millions",
    "is",
    "was",
    "were",
    "are",
    "has",
    "have",
    "had",
    "will",
    "would",
    "could",
    "should",
    "can",
    "must",
    "did",
    "does",
    "said",
    "says",
    "such",
    "much",
    "up",
];

/// Honorifics: not facts worth flagging ("Mr Khan" when the support says "Imran Khan").
const HONORIFICS: &[&str] = &["mr", "mrs", "ms", "mx"];

/// Currency codes written before amounts.
const CURRENCIES: &[&str] = &[
    "rs", "pkr", "usd", "inr", "eur", "gbp", "aed", "sar", "cny", "rmb", "afn",
];

/// Titles whose abbreviating stop does not end a sentence.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "mx", "dr", "st", "gen", "lt", "col", "maj", "capt", "sgt", "sen", "rep",
    "gov", "prof", "brig", "adm", "jr", "sr", "mt", "ft", "insp", "supt",
];

const SMALL: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Ordinal words for 1–19.
const ORDINALS: [&str; 19] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn small(w: &str) -> Option<f64> {
    SMALL.iter().position(|s| *s == w).map(|n| n as f64)
}

fn tens(w: &str) -> Option<f64> {
    TENS.iter()
        .position(|s| *s == w)
        .map(|n| (n as f64 + 2.0) * 10.0)
}

/// Scale words that close a group ("fourteen thousand", "two lakh").
fn scale(w: &str) -> Option<f64> {
    match w {
        "thousand" => Some(1e3),
        "lakh" | "lac" => Some(1e5),
        "million" => Some(1e6),
        "crore" => Some(1e7),
        "billion" => Some(1e9),
        "trillion" => Some(1e12),
        _ => None,
    }
}

/// Any word that multiplies the number before it.
fn multiplier(w: &str) -> Option<f64> {
    match w {
        "hundred" => Some(100.0),
        "dozen" => Some(12.0),
        _ => scale(w),
    }
}

/// Scale suffixes glued to digits ("$1.2bn", "Rs40m", "5k").
fn suffix_scale(s: &str) -> Option<f64> {
    match s {
        "k" => Some(1e3),
        "m" | "mn" | "mln" => Some(1e6),
        "cr" => Some(1e7),
        "b" | "bn" | "bln" => Some(1e9),
        "tn" | "trn" => Some(1e12),
        _ => None,
    }
}

fn ordinal_word(w: &str) -> Option<f64> {
    match w {
        "twentieth" => Some(20.0),
        "thirtieth" => Some(30.0),
        _ => ORDINALS
            .iter()
            .position(|s| *s == w)
            .map(|n| n as f64 + 1.0),
    }
}

/// The month (0–11) a lowercase word names, full or abbreviated ("sept", "dec.").
fn month(w: &str) -> Option<usize> {
    let w = w.trim_end_matches('.');
    if w == "sept" {
        return Some(8);
    }
    MONTHS
        .iter()
        .position(|m| *m == w || (w.len() == 3 && m.starts_with(w)))
}

// ---------------------------------------------------------------------------------
// Characters

fn digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '\u{06F0}'..='\u{06F9}' => Some(c as u32 - 0x06F0),
        '\u{0660}'..='\u{0669}' => Some(c as u32 - 0x0660),
        _ => None,
    }
}

fn is_digit(c: char) -> bool {
    digit(c).is_some()
}

fn is_comma(c: char) -> bool {
    matches!(c, ',' | '\u{066C}')
}

fn is_decimal_point(c: char) -> bool {
    matches!(c, '.' | '\u{066B}')
}

fn is_group_space(c: char) -> bool {
    matches!(c, ' ' | '\u{00A0}' | '\u{2007}' | '\u{2009}' | '\u{202F}')
}

fn is_percent(c: char) -> bool {
    matches!(c, '%' | '\u{066A}' | '\u{FE6A}' | '\u{FF05}')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

fn is_hyphen(c: char) -> bool {
    matches!(c, '-' | '\u{2010}' | '\u{2011}' | '\u{2013}')
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ':' | '\u{06D4}' | '\u{061F}')
}

// ---------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word,
    /// Digits as lexed (grouping, decimals, glued suffix and percent sign read);
    /// `parts` holds the groups of a space-grouped number, read one by one.
    Num {
        value: f64,
        parts: Vec<f64>,
    },
    Sym(char),
    /// The end of a sentence.
    Break,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    /// Char offsets into [`Lexed::chars`].
    start: usize,
    end: usize,
    space_before: bool,
    /// The first word or number of a sentence.
    initial: bool,
    /// Words only: lowercase, apostrophes as `'`.
    lower: String,
}

impl Tok {
    fn word(&self) -> Option<&str> {
        (self.kind == Kind::Word).then_some(self.lower.as_str())
    }
}

struct Lexed {
    chars: Vec<char>,
    toks: Vec<Tok>,
}

impl Lexed {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.nfc().collect();
        let mut toks: Vec<Tok> = Vec::new();
        let (mut space, mut initial) = (true, true);
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                initial |= c == '\n';
                space = true;
                i += 1;
                continue;
            }
            let (kind, end) = if is_digit(c) {
                let (value, parts, end) = lex_number(&chars, i);
                (Kind::Num { value, parts }, end)
            } else if c.is_alphabetic() {
                (Kind::Word, lex_word(&chars, i))
            } else if is_sentence_end(c)
                && !matches!(chars.get(i + 1), Some(n) if n.is_alphanumeric())
                && !(c == '.' && !space && after_title(&chars, &toks))
            {
                (Kind::Break, i + 1)
            } else {
                (Kind::Sym(c), i + 1)
            };
            let lower = match kind {
                Kind::Word => chars[i..end]
                    .iter()
                    .map(|&c| if is_apostrophe(c) { '\'' } else { c })
                    .collect::<String>()
                    .to_lowercase(),
                _ => String::new(),
            };
            let counts = matches!(kind, Kind::Word | Kind::Num { .. });
            initial |= kind == Kind::Break;
            toks.push(Tok {
                kind,
                start: i,
                end,
                space_before: space,
                initial: initial && counts,
                lower,
            });
            if counts {
                initial = false;
            }
            space = false;
            i = end;
        }
        Self { chars, toks }
    }

    /// The text from token `from` to the end of token `to - 1`.
    fn span(&self, from: usize, to: usize) -> String {
        self.chars[self.toks[from].start..self.toks[to - 1].end]
            .iter()
            .collect()
    }

    fn capitalised(&self, t: &Tok) -> bool {
        self.chars[t.start].is_uppercase()
    }
}

/// Whether the last token is a capitalised title ("Mr", "Gen") a stop would abbreviate.
fn after_title(chars: &[char], toks: &[Tok]) -> bool {
    toks.last().is_some_and(|t| {
        t.kind == Kind::Word && chars[t.start].is_uppercase() && TITLES.contains(&t.lower.as_str())
    })
}

/// The end of the word starting at `start`: letters, apostrophes between letters
/// ("Russia's", "O'Brien") and stops inside initialisms ("U.S", "U.N").
fn lex_word(chars: &[char], start: usize) -> usize {
    let mut j = start;
    let mut segment = 0;
    while j < chars.len() {
        let c = chars[j];
        if c.is_alphabetic() {
            segment += 1;
            j += 1;
            continue;
        }
        let letter_next = chars.get(j + 1).is_some_and(|n| n.is_alphabetic());
        if letter_next && (is_apostrophe(c) || (c == '.' && segment == 1)) {
            segment = 0;
            j += 1;
            continue;
        }
        break;
    }
    j
}

/// ASCII digits of the run starting at `start`, and where it ends.
fn digit_run(chars: &[char], start: usize) -> (String, usize) {
    let mut s = String::new();
    let mut j = start;
    while let Some(d) = chars.get(j).and_then(|&c| digit(c)) {
        s.push(char::from(b'0' + d as u8));
        j += 1;
    }
    (s, j)
}

/// Whether comma groups after `first` make one number: western (all of three) or
/// Indian (`1,50,000`: twos, then a final three).
fn grouped(first: &str, rest: &[String]) -> bool {
    let Some((last, middle)) = rest.split_last() else {
        return false;
    };
    last.len() == 3
        && (middle.iter().all(|g| g.len() == 3)
            || (first.len() <= 2 && middle.iter().all(|g| g.len() == 2)))
}

fn parse(int: &str, frac: &str) -> f64 {
    let s = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    s.parse().unwrap_or(0.0)
}

/// Reads the number starting at `start`: value, space-group parts, end.
fn lex_number(chars: &[char], start: usize) -> (f64, Vec<f64>, usize) {
    let (first, mut j) = digit_run(chars, start);
    let mut int = first.clone();
    let mut spaced: Vec<String> = Vec::new();
    if first.len() <= 3 {
        let mut commas: Vec<String> = Vec::new();
        let mut k = j;
        while k + 1 < chars.len() && is_comma(chars[k]) && is_digit(chars[k + 1]) {
            let (g, e) = digit_run(chars, k + 1);
            commas.push(g);
            k = e;
        }
        if !commas.is_empty() {
            if grouped(&first, &commas) {
                commas.iter().for_each(|g| int.push_str(g));
                j = k;
            }
        } else {
            while j + 3 < chars.len()
                && is_group_space(chars[j])
                && chars[j + 1..j + 4].iter().all(|&c| is_digit(c))
                && !chars.get(j + 4).is_some_and(|&c| is_digit(c))
            {
                let (g, e) = digit_run(chars, j + 1);
                int.push_str(&g);
                spaced.push(g);
                j = e;
            }
        }
    }
    let mut frac = String::new();
    if j + 1 < chars.len() && is_decimal_point(chars[j]) && is_digit(chars[j + 1]) {
        let (f, e) = digit_run(chars, j + 1);
        frac = f;
        j = e;
    }
    let mut value = parse(&int, &frac);
    let mut parts = Vec::new();
    if !spaced.is_empty() {
        parts.push(parse(&first, ""));
        let n = spaced.len();
        for (i, g) in spaced.iter().enumerate() {
            parts.push(parse(g, if i + 1 == n { &frac } else { "" }));
        }
    }
    let mut k = j;
    while k < chars.len() && chars[k].is_ascii_alphabetic() {
        k += 1;
    }
    if k > j {
        let suffix = chars[j..k].iter().collect::<String>().to_ascii_lowercase();
        if let Some(s) = suffix_scale(&suffix) {
            value *= s;
            parts.clear();
            j = k;
        } else if k - j <= 4 {
            // "1st", "1990s", "5km", "10am": the value stands.
            j = k;
        }
    }
    if j < chars.len() && is_percent(chars[j]) {
        j += 1;
    }
    (value, parts, j)
}

/// Strips one leading list marker ("- ", "• ", "1. ", "2) ").
fn strip_marker(s: &str) -> &str {
    let t = s.trim_start();
    let rest = match t.strip_prefix(['-', '*', '\u{2022}', '\u{2013}', '\u{2014}', '\u{00B7}']) {
        Some(r) => r,
        None => {
            let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if !(1..=2).contains(&digits) {
                return t;
            }
            match t[digits..].strip_prefix(['.', ')']) {
                Some(r) => r,
                None => return t,
            }
        }
    };
    if rest.starts_with(char::is_whitespace) {
        rest
    } else {
        t
    }
}

// ---------------------------------------------------------------------------------
// Claims

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// What a bullet asserts: conservative.
    Bullet,
    /// What the support offers: generous.
    Support,
}

#[derive(Debug, Clone)]
struct Found {
    claim: Claim,
    /// The groups of a space-grouped number, each alone ("3 200" → 3, 200).
    parts: Vec<f64>,
    /// Opens a sentence.
    initial: bool,
}

fn number(text: String, value: f64, parts: Vec<f64>) -> Found {
    Found {
        claim: Claim::Number { text, value },
        parts,
        initial: false,
    }
}

fn extract(lx: &Lexed, mode: Mode) -> Vec<Found> {
    let toks = &lx.toks;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].kind {
            Kind::Num { value, parts } => {
                let (value, parts, end) = scaled(toks, i + 1, *value, parts.clone());
                let end = percent_tail(toks, end);
                out.push(number(lx.span(i, end), value, parts));
                i = end;
            }
            Kind::Word => {
                if let Some((value, end)) = ordinal(toks, i) {
                    if mode == Mode::Support || in_date(lx, i, end) {
                        out.push(number(lx.span(i, end), value, Vec::new()));
                    }
                    i = end;
                } else if let Some((value, end)) = spelled(toks, i, mode) {
                    let end = percent_tail(toks, end);
                    out.push(number(lx.span(i, end), value, Vec::new()));
                    i = end;
                } else {
                    if let Some(name) = name(lx, i, mode) {
                        out.push(Found {
                            claim: Claim::Name(name),
                            parts: Vec::new(),
                            initial: toks[i].initial,
                        });
                    }
                    i += 1;
                }
            }
            Kind::Sym(_) | Kind::Break => i += 1,
        }
    }
    out
}

/// `j + 1` when `j` is a hyphen glued to the words on both sides ("twenty-five").
fn skip_hyphen(toks: &[Tok], j: usize) -> usize {
    match toks.get(j) {
        Some(t)
            if matches!(t.kind, Kind::Sym(c) if is_hyphen(c))
                && !t.space_before
                && toks.get(j + 1).is_some_and(|n| !n.space_before) =>
        {
            j + 1
        }
        _ => j,
    }
}

fn word_at(toks: &[Tok], k: usize) -> Option<&str> {
    toks.get(k).and_then(Tok::word)
}

/// Scale words after a digit number ("3.5 million", "40-million").
fn scaled(
    toks: &[Tok],
    mut j: usize,
    mut value: f64,
    mut parts: Vec<f64>,
) -> (f64, Vec<f64>, usize) {
    loop {
        let k = skip_hyphen(toks, j);
        match word_at(toks, k).and_then(multiplier) {
            Some(m) => {
                value *= m;
                parts.clear();
                j = k + 1;
            }
            None => return (value, parts, j),
        }
    }
}

/// Past a percent mark after a number ("40 %", "40 per cent", "40 percent").
fn percent_tail(toks: &[Tok], j: usize) -> usize {
    let Some(t) = toks.get(j) else {
        return j;
    };
    match (&t.kind, t.lower.as_str()) {
        (Kind::Sym(c), _) if is_percent(*c) => j + 1,
        (Kind::Word, "percent" | "pc") => j + 1,
        (Kind::Word, "per") if word_at(toks, j + 1) == Some("cent") => j + 2,
        _ => j,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Start,
    Unit,
    Tens,
    Hundred,
    Scale,
    And,
    Half,
}

/// A number in words starting at `i`: its value and where it ends.
fn spelled(toks: &[Tok], i: usize, mode: Mode) -> Option<(f64, usize)> {
    let word = |k: usize| word_at(toks, k);
    let multiplies = |k: usize| word(k).and_then(multiplier).is_some();
    let (mut total, mut current) = (0.0, 0.0);
    let mut last = Last::Start;
    let mut j = i;
    match word(i) {
        Some("a" | "an") if multiplies(i + 1) => {
            current = 1.0;
            last = Last::Unit;
            j = i + 1;
        }
        Some("half") if matches!(word(i + 1), Some("a" | "an")) && multiplies(i + 2) => {
            current = 0.5;
            last = Last::Half;
            j = i + 2;
        }
        _ => {}
    }
    let mut end = i;
    loop {
        let k = if last == Last::Start {
            j
        } else {
            skip_hyphen(toks, j)
        };
        let Some(w) = word(k) else {
            break;
        };
        let open = matches!(last, Last::Start | Last::Hundred | Last::Scale | Last::And);
        let counted = matches!(last, Last::Unit | Last::Tens | Last::Hundred);
        if let Some(n) = small(w) {
            if !(open || (last == Last::Tens && n >= 1.0)) {
                break;
            }
            current += n;
            last = Last::Unit;
        } else if let Some(n) = tens(w) {
            if !open {
                break;
            }
            current += n;
            last = Last::Tens;
        } else if w == "hundred" || w == "dozen" {
            if !matches!(last, Last::Unit | Last::Tens | Last::Half) {
                break;
            }
            current *= if w == "hundred" { 100.0 } else { 12.0 };
            last = Last::Hundred;
        } else if let Some(s) = scale(w) {
            if !(counted || last == Last::Half) {
                break;
            }
            total += current * s;
            current = 0.0;
            last = Last::Scale;
        } else if w == "and" {
            if counted && word(k + 1) == Some("a") && word(k + 2) == Some("half") {
                // "two and a half (million)"
                current += 0.5;
                last = Last::Half;
                j = k + 3;
                end = j;
                continue;
            }
            let number_next = word(k + 1).is_some_and(|n| small(n).is_some() || tens(n).is_some());
            if matches!(last, Last::Hundred | Last::Scale) && number_next {
                // "two hundred and fifty": not the end of the number yet.
                last = Last::And;
                j = k + 1;
                continue;
            }
            break;
        } else {
            break;
        }
        j = k + 1;
        end = j;
    }
    if end == i {
        return None;
    }
    if mode == Mode::Bullet && end == i + 1 && toks[i].lower == "one" {
        // A bare "one" is a pronoun or determiner as often as a number.
        return None;
    }
    Some((total + current, end))
}

/// An ordinal word starting at `i` ("first", "twenty-first"): value and end.
fn ordinal(toks: &[Tok], i: usize) -> Option<(f64, usize)> {
    let w = word_at(toks, i)?;
    if let Some(n) = ordinal_word(w) {
        return Some((n, i + 1));
    }
    let t = tens(w)?;
    let k = skip_hyphen(toks, i + 1);
    let n = word_at(toks, k)
        .and_then(ordinal_word)
        .filter(|n| *n < 10.0)?;
    Some((t + n, k + 1))
}

/// Whether the ordinal at `i..end` is a day of a month ("July first", "first of July").
fn in_date(lx: &Lexed, i: usize, end: usize) -> bool {
    let toks = &lx.toks;
    let month_at = |k: usize| {
        toks.get(k)
            .is_some_and(|t| t.kind == Kind::Word && lx.capitalised(t) && month(&t.lower).is_some())
    };
    (i > 0 && month_at(i - 1))
        || month_at(end)
        || (word_at(toks, end) == Some("of") && month_at(end + 1))
}

/// `word` less a possessive `'s` (any apostrophe, any case).
fn without_possessive(word: &str) -> &str {
    let mut cs = word.char_indices().rev();
    match (cs.next(), cs.next()) {
        (Some((_, s)), Some((at, a))) if matches!(s, 's' | 'S') && is_apostrophe(a) => &word[..at],
        _ => word,
    }
}

/// How names are compared: lowercase, no dots, no possessive.
fn name_key(lower: &str) -> String {
    let s: String = lower.chars().filter(|&c| c != '.').collect();
    without_possessive(&s).to_string()
}

/// The name claim at word `i`, if it is one.
fn name(lx: &Lexed, i: usize, mode: Mode) -> Option<String> {
    let t = &lx.toks[i];
    if !lx.capitalised(t) {
        return None;
    }
    let written: String = lx.chars[t.start..t.end].iter().collect();
    let claim = without_possessive(&written).to_string();
    if mode == Mode::Support {
        return Some(claim);
    }
    let key = name_key(&t.lower);
    let dollar_next = lx
        .toks
        .get(i + 1)
        .is_some_and(|n| n.kind == Kind::Sym('$') && !n.space_before);
    let exempt = key == "i"
        || t.lower.starts_with("i'")
        || HONORIFICS.contains(&key.as_str())
        || CURRENCIES.contains(&key.as_str())
        || (key == "us" && dollar_next)
        || (t.initial && OPENERS.contains(&key.as_str()));
    (!exempt).then_some(claim)
}

// ---------------------------------------------------------------------------------
// Support

/// What the support text offers, indexed for lookups.
#[derive(Debug, Default)]
struct Support {
    values: Vec<f64>,
    /// Keys of capitalised words.
    names: HashSet<String>,
    /// Months named by capitalised words.
    months: HashSet<usize>,
    /// Keys of all words, any case.
    words: HashSet<String>,
}

impl Support {
    fn new(text: &str) -> Self {
        let lx = Lexed::new(text);
        let mut s = Self::default();
        for f in extract(&lx, Mode::Support) {
            if let Claim::Number { value, .. } = f.claim {
                s.values.push(value);
                s.values.extend(f.parts);
            }
        }
        for t in lx.toks.iter().filter(|t| t.kind == Kind::Word) {
            let key = name_key(&t.lower);
            if lx.capitalised(t) {
                if let Some(m) = month(&key) {
                    s.months.insert(m);
                }
                s.names.insert(key.clone());
            }
            s.words.insert(key);
        }
        s
    }

    fn has_value(&self, v: f64) -> bool {
        self.values
            .iter()
            .any(|s| (s - v).abs() <= 1e-9 * s.abs().max(v.abs()))
    }

    fn supports(&self, f: &Found) -> bool {
        match &f.claim {
            Claim::Number { value, .. } => {
                self.has_value(*value)
                    || (!f.parts.is_empty() && f.parts.iter().all(|&p| self.has_value(p)))
            }
            Claim::Name(word) => self.has_name(&name_key(&word.to_lowercase()), f.initial),
        }
    }

    fn has_name(&self, key: &str, initial: bool) -> bool {
        if initial && self.words.contains(key) {
            return true;
        }
        if let Some(m) = month(key) {
            return self.months.contains(&m);
        }
        let singular = key.strip_suffix('s').filter(|s| s.chars().count() >= 2);
        self.names.contains(key)
            || singular.is_some_and(|s| self.names.contains(s))
            || self
                .names
                .iter()
                .any(|n| month(n).is_none() && same_stem(key, n))
    }
}

/// Demonym or adjective forms of one stem: a shared prefix of at least 4 letters,
/// after which each word has at most 3 more, all from the usual demonym endings.
fn same_stem(a: &str, b: &str) -> bool {
    const ENDINGS: &str = "aeiouynshc";
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail_ok = |w: &[char]| w.len() - p <= 3 && w[p..].iter().all(|&c| ENDINGS.contains(c));
    p >= 4 && tail_ok(&a) && tail_ok(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(bullet: &str) -> Vec<f64> {
        claims(bullet)
            .into_iter()
            .filter_map(|c| match c {
                Claim::Number { value, .. } => Some(value),
                Claim::Name(_) => None,
            })
            .collect()
    }

    fn names(bullet: &str) -> Vec<String> {
        claims(bullet)
            .into_iter()
            .filter_map(|c| match c {
                Claim::Name(n) => Some(n),
                Claim::Number { .. } => None,
            })
            .collect()
    }

    fn passes(bullet: &str, support: &str) {
        assert_eq!(
            unsupported(bullet, support),
            Vec::<String>::new(),
            "{bullet:?} should be supported by {support:?}"
        );
    }

    #[test]
    fn digits_words_and_separators_are_one_value() {
        let support = "More than 14,000 people have died";
        for bullet in [
            "More than 14,000 people have died",
            "More than 14 000 people have died",
            "More than 14\u{202F}000 people have died",
            "More than 14\u{2009}000 people have died",
            "More than 14000 people have died",
            "More than fourteen thousand people have died",
            "More than 14 thousand people have died",
            "More than ۱۴۰۰۰ people have died",
            "More than ١٤٠٠٠ people have died",
            "More than ۱۴٬۰۰۰ people have died",
            "More than (14,000) people have died",
        ] {
            assert_eq!(numbers(bullet), vec![14000.0], "{bullet}");
            passes(bullet, support);
        }
        assert_eq!(
            unsupported("More than 15,000 people have died", support),
            vec!["number 15,000"]
        );
    }

    #[test]
    fn claims_keep_the_text_as_written() {
        assert_eq!(
            claims("Some 14,000 fled to Geneva"),
            vec![
                Claim::Number {
                    text: "14,000".into(),
                    value: 14000.0
                },
                Claim::Name("Geneva".into()),
            ]
        );
        assert_eq!(
            claims("About two hundred and fifty people"),
            vec![Claim::Number {
                text: "two hundred and fifty".into(),
                value: 250.0
            }]
        );
    }

    #[test]
    fn number_words_combine() {
        assert_eq!(numbers("twenty-five were hurt"), vec![25.0]);
        assert_eq!(numbers("twenty five were hurt"), vec![25.0]);
        assert_eq!(numbers("two hundred and fifty"), vec![250.0]);
        assert_eq!(numbers("a dozen soldiers"), vec![12.0]);
        assert_eq!(numbers("A thousand homes"), vec![1000.0]);
        assert_eq!(numbers("half a million refugees"), vec![500_000.0]);
        assert_eq!(numbers("two and a half million voters"), vec![2_500_000.0]);
        assert_eq!(
            numbers("two million three hundred thousand"),
            vec![2_300_000.0]
        );
        assert_eq!(numbers("five or six bodies"), vec![5.0, 6.0]);
        assert!(numbers("hundreds of thousands of people, dozens more").is_empty());
        passes("fourteen thousand people", "14 000 people");
        passes("2 lakh people", "200,000 people");
        passes("Rs1.5 lakh", "1,50,000 rupees");
    }

    #[test]
    fn decimals_and_scales() {
        passes("3.5 million people", "3,500,000 people");
        passes("3,500,000 people", "3.5 million people");
        passes("14 million people", "14,000,000 people");
        passes("14,000,000 people", "14 million people");
        passes("a $1.2bn loan", "a loan of 1.2 billion dollars");
        passes("a US$1.2bn loan", "a loan of $1,200,000,000");
        passes("a 1.2 billion dollar loan", "a $1.2bn loan");
        passes("Rs40m were spent", "40 million rupees were spent");
        passes("the 40-rupee fare", "a fare of Rs40");
        assert_eq!(numbers("a $1.2bn loan"), vec![1.2e9]);
        assert_eq!(
            unsupported("a $1.3bn loan", "a loan of 1.2 billion dollars"),
            vec!["number 1.3bn"]
        );
        assert_eq!(
            unsupported("3.6 million people", "3,500,000 people"),
            vec!["number 3.6 million"]
        );
        // A digit number is not its own scaled value.
        assert_eq!(
            unsupported("14 people", "14 million people"),
            vec!["number 14"]
        );
    }

    #[test]
    fn percentages() {
        for bullet in [
            "rose 40%",
            "rose 40 %",
            "rose 40 per cent",
            "rose 40 percent",
            "rose forty per cent",
        ] {
            assert_eq!(numbers(bullet), vec![40.0], "{bullet}");
            passes(bullet, "prices rose by 40 per cent");
            passes(bullet, "prices rose by 40%");
        }
        assert_eq!(
            unsupported("rose 45%", "prices rose by 40 per cent"),
            vec!["number 45%"]
        );
    }

    #[test]
    fn dates_in_any_order() {
        let support = "The talks began on 12 January 2022 in Geneva.";
        for bullet in [
            "Talks began on January 12, 2022",
            "Talks began on Jan 12",
            "Talks began on Jan. 12",
            "Talks began on 12th January",
            "Talks began on 12 January 2022",
        ] {
            passes(bullet, support);
        }
        assert_eq!(
            unsupported("Talks began on January 13", support),
            vec!["number 13"]
        );
        assert_eq!(
            unsupported("Talks began on 12 February", support),
            vec!["name February"]
        );
        assert_eq!(
            unsupported("Talks began in 2021", support),
            vec!["number 2021"]
        );
    }

    #[test]
    fn month_abbreviations_match_both_ways() {
        passes("the vote on 5 September", "voting on Sept. 5");
        passes("the vote on Sept. 5", "voting on 5 September");
        passes("the vote on Dec. 5", "voting on December 5");
        passes("the vote on 5 December", "voting on Dec 5");
        assert_eq!(
            unsupported("the vote on 5 Nov", "voting on Dec 5"),
            vec!["name Nov"]
        );
    }

    #[test]
    fn names_allow_possessives_and_demonyms() {
        let support = "Russia's foreign minister met his Ukrainian counterpart in Geneva.";
        passes("Russian officials met in Geneva", support);
        passes("Russia and Ukraine met", support);
        passes("Russians met Ukrainians in Geneva's old town", support);
        passes(
            "Pakistani and American envoys",
            "Pakistan and America sent envoys",
        );
        passes("Chinese and British firms", "China and Britain");
        passes("The U.S. envoy", "a US envoy");
        assert_eq!(
            unsupported("Russian officials met in Moscow", support),
            vec!["name Moscow"]
        );
        // Shared letters alone do not make a demonym.
        assert_eq!(
            unsupported("flights to Austria", "flights to Australia"),
            vec!["name Austria"]
        );
        assert_eq!(
            unsupported("a protest in Mali", "a protest led by Malik"),
            vec!["name Mali"]
        );
    }

    #[test]
    fn sentence_openers_are_not_claims() {
        assert_eq!(
            names("The talks ended. According to officials, Geneva was calm: They left."),
            vec!["Geneva"]
        );
        assert_eq!(names("- The army said"), Vec::<String>::new());
        assert_eq!(names("1. After the vote, I left"), Vec::<String>::new());
        // Mid-sentence, a capitalised "The" is part of a name and checked.
        assert_eq!(names("judges in The Hague"), vec!["The", "Hague"]);
        // A title's stop ends no sentence.
        assert_eq!(names("Mr. The"), vec!["The"]);
        assert!(names("Mr Khan met Rs 40 traders").contains(&"Khan".to_string()));
        assert!(!names("Mr Khan met Rs 40 traders").contains(&"Mr".to_string()));
    }

    #[test]
    fn sentence_initial_words_match_any_case() {
        passes("Floods killed 40 people", "heavy floods killed 40 people");
        // Mid-sentence there is no such leniency.
        assert_eq!(
            unsupported("Officials blamed Floods", "heavy floods killed 40 people"),
            vec!["name Floods"]
        );
    }

    #[test]
    fn dateline_capitals_support_names() {
        let support = "KARACHI: Heavy rain flooded the city on Monday.";
        passes("Heavy rain flooded Karachi's streets", support);
        passes("Rain flooded Karachi on Monday", support);
        // A lowercase support word is not a name.
        assert_eq!(
            unsupported("Rain flooded Karachi", "rain flooded the karachi road"),
            vec!["name Karachi"]
        );
    }

    #[test]
    fn one_is_a_number_only_inside_a_larger_number() {
        assert!(numbers("one of the officials resigned").is_empty());
        assert!(numbers("One of the officials resigned").is_empty());
        assert!(names("One of the officials resigned").is_empty());
        assert!(numbers("no one was hurt").is_empty());
        assert!(numbers("a one-day strike").is_empty());
        assert_eq!(numbers("one million people"), vec![1e6]);
        assert_eq!(numbers("one hundred people"), vec![100.0]);
        assert_eq!(numbers("twenty-one people"), vec![21.0]);
        assert_eq!(
            unsupported("one million people", "two million people"),
            vec!["number one million"]
        );
        // The support side reads a bare "one" generously.
        passes("1 person died", "one person died");
    }

    #[test]
    fn ordinal_words_count_only_in_dates() {
        assert_eq!(numbers("the first of July"), vec![1.0]);
        assert_eq!(numbers("on July first"), vec![1.0]);
        assert_eq!(numbers("on the twenty-first of March"), vec![21.0]);
        assert!(numbers("for the first time").is_empty());
        assert!(numbers("the second largest city").is_empty());
        assert_eq!(numbers("on the 1st of July"), vec![1.0]);
        assert_eq!(numbers("the 22nd round"), vec![22.0]);
        passes("the vote on 1 July", "the vote on the first of July");
        passes("the vote on the first of July", "the vote on 1st July");
        assert_eq!(
            unsupported("the vote on the second of July", "the vote on 1 July"),
            vec!["number second"]
        );
    }

    #[test]
    fn space_grouping_is_read_both_ways() {
        passes(
            "On March 3 200 protesters gathered",
            "On March 3, 200 protesters gathered",
        );
        passes("12 000 protesters", "12,000 protesters");
        assert_eq!(
            unsupported("12 000 protesters", "12 protesters"),
            vec!["number 12 000"]
        );
    }

    #[test]
    fn no_claims_pass_on_any_support() {
        assert!(claims("talks ended without agreement").is_empty());
        passes("talks ended without agreement", "");
        passes(
            "The talks ended without agreement.",
            "Something else entirely: 42.",
        );
    }

    #[test]
    fn each_failure_once_in_bullet_order() {
        assert_eq!(
            unsupported(
                "Donetsk lost 15,000 men; Donetsk and Kyiv lost 15,000 more in Geneva",
                "Troops in Geneva"
            ),
            vec!["name Donetsk", "number 15,000", "name Kyiv"]
        );
    }
}
