//! The Porter stemmer (Porter 1980) in NLTK's default mode (`NLTK_EXTENSIONS`), which is
//! what rouge-score's `use_stemmer=True` runs: the original five steps plus NLTK's
//! irregular forms (`skies` → `sky`, `dying` → `die`, …), its short-word rules and its
//! additions to step 2 (`fulli`, `logi`, a recursive `alli`).
//!
//! Words reach it lowercased and ASCII (rouge-score keeps only `[a-z0-9]` tokens), so it
//! works on bytes.

fn irregular(w: &str) -> Option<&'static str> {
    Some(match w {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Whether each letter is a consonant: `y` is one unless it follows a consonant.
fn consonants(w: &[u8]) -> Vec<bool> {
    let mut f: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let v = if vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !f[i - 1]
        } else {
            true
        };
        f.push(v);
    }
    f
}

fn is_cons(w: &[u8], i: usize) -> bool {
    consonants(w)[i]
}

/// m in [C](VC)^m[V]: the number of vowel-consonant transitions.
fn measure(w: &[u8]) -> usize {
    let f = consonants(w);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    consonants(w).iter().any(|c| !c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_cons(w, n - 1)
}

/// *o: the stem ends consonant-vowel-consonant, the last not w, x or y (or, as NLTK
/// adds, the stem is just vowel-consonant).
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_cons(w, n - 3)
        && !is_cons(w, n - 2)
        && is_cons(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_cons(w, 0) && is_cons(w, 1))
}

type Cond<'a> = &'a dyn Fn(&[u8]) -> bool;

/// A rule: suffix, replacement, condition on the stem. The suffix `*d` means "ends
/// with a double consonant" (the stem drops both letters).
struct Rule<'a>(&'a str, &'a str, Option<Cond<'a>>);

/// The first rule whose suffix matches decides: its replacement when its condition holds,
/// else the word unchanged.
fn apply(w: Vec<u8>, rules: &[Rule]) -> Vec<u8> {
    for Rule(suffix, rep, cond) in rules {
        if *suffix == "*d" && ends_double_consonant(&w) {
            let stem = &w[..w.len() - 2];
            return if cond.is_none_or(|c| c(stem)) {
                [stem, rep.as_bytes()].concat()
            } else {
                w
            };
        }
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if cond.is_none_or(|c| c(stem)) {
                [stem, rep.as_bytes()].concat()
            } else {
                w
            };
        }
    }
    w
}

fn positive(s: &[u8]) -> bool {
    measure(s) > 0
}

fn replace_suffix(w: &[u8], suffix: &str, rep: &str) -> Vec<u8> {
    [&w[..w.len() - suffix.len()], rep.as_bytes()].concat()
}

fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_suffix(&w, "ies", "ie");
    }
    apply(
        w,
        &[
            Rule("sses", "ss", None),
            Rule("ies", "i", None),
            Rule("ss", "ss", None),
            Rule("s", "", None),
        ],
    )
}

fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return replace_suffix(&w, "ied", if w.len() == 4 { "ie" } else { "i" });
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            [stem, b"ee"].concat()
        } else {
            w
        };
    }
    let mut stem = None;
    for suffix in ["ed", "ing"] {
        if w.ends_with(suffix.as_bytes()) {
            let s = &w[..w.len() - suffix.len()];
            if contains_vowel(s) {
                stem = Some(s.to_vec());
                break;
            }
        }
    }
    let Some(stem) = stem else {
        return w;
    };
    let last = *stem.last().expect("a stem with a vowel is not empty");
    let last_s = (last as char).to_string();
    let not_lsz = move |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let add_e = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply(
        stem,
        &[
            Rule("at", "ate", None),
            Rule("bl", "ble", None),
            Rule("iz", "ize", None),
            Rule("*d", &last_s, Some(&not_lsz)),
            Rule("", "e", Some(&add_e)),
        ],
    )
}

fn step1c(w: Vec<u8>) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_cons(s, s.len() - 1);
    apply(w, &[Rule("y", "i", Some(&cond))])
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(replace_suffix(&w, "alli", "al"));
    }
    let p: Cond = &positive;
    // NLTK's `logi` rule measures the word without `ogi`, not the stem without `logi`.
    let logi_stem: Vec<u8> = w[..w.len().saturating_sub(3)].to_vec();
    let logi = move |_: &[u8]| positive(&logi_stem);
    apply(
        w,
        &[
            Rule("ational", "ate", Some(p)),
            Rule("tional", "tion", Some(p)),
            Rule("enci", "ence", Some(p)),
            Rule("anci", "ance", Some(p)),
            Rule("izer", "ize", Some(p)),
            Rule("bli", "ble", Some(p)),
            Rule("alli", "al", Some(p)),
            Rule("entli", "ent", Some(p)),
            Rule("eli", "e", Some(p)),
            Rule("ousli", "ous", Some(p)),
            Rule("ization", "ize", Some(p)),
            Rule("ation", "ate", Some(p)),
            Rule("ator", "ate", Some(p)),
            Rule("alism", "al", Some(p)),
            Rule("iveness", "ive", Some(p)),
            Rule("fulness", "ful", Some(p)),
            Rule("ousness", "ous", Some(p)),
            Rule("aliti", "al", Some(p)),
            Rule("iviti", "ive", Some(p)),
            Rule("biliti", "ble", Some(p)),
            Rule("fulli", "ful", Some(p)),
            Rule("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let p: Cond = &positive;
    apply(
        w,
        &[
            Rule("icate", "ic", Some(p)),
            Rule("ative", "", Some(p)),
            Rule("alize", "al", Some(p)),
            Rule("iciti", "ic", Some(p)),
            Rule("ical", "ic", Some(p)),
            Rule("ful", "", Some(p)),
            Rule("ness", "", Some(p)),
        ],
    )
}

fn step4(w: Vec<u8>) -> Vec<u8> {
    let gt1: Cond = &|s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    apply(
        w,
        &[
            Rule("al", "", Some(gt1)),
            Rule("ance", "", Some(gt1)),
            Rule("ence", "", Some(gt1)),
            Rule("er", "", Some(gt1)),
            Rule("ic", "", Some(gt1)),
            Rule("able", "", Some(gt1)),
            Rule("ible", "", Some(gt1)),
            Rule("ant", "", Some(gt1)),
            Rule("ement", "", Some(gt1)),
            Rule("ment", "", Some(gt1)),
            Rule("ent", "", Some(gt1)),
            Rule("ion", "", Some(&ion)),
            Rule("ou", "", Some(gt1)),
            Rule("ism", "", Some(gt1)),
            Rule("ate", "", Some(gt1)),
            Rule("iti", "", Some(gt1)),
            Rule("ous", "", Some(gt1)),
            Rule("ive", "", Some(gt1)),
            Rule("ize", "", Some(gt1)),
        ],
    )
}

fn step5a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<u8>) -> Vec<u8> {
    let whole = w[..w.len().saturating_sub(1)].to_vec();
    let cond = move |_: &[u8]| measure(&whole) > 1;
    apply(w, &[Rule("ll", "l", Some(&cond))])
}

/// The stem of a lowercase ASCII word; other input is returned unchanged.
pub fn stem(word: &str) -> String {
    if let Some(s) = irregular(word) {
        return s.to_string();
    }
    if word.len() <= 2
        || !word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return word.to_string();
    }
    let mut w = word.as_bytes().to_vec();
    for step in [step1a, step1b, step1c, step2, step3, step4, step5a, step5b] {
        w = step(w);
    }
    String::from_utf8(w).expect("ASCII in, ASCII out")
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn classic_examples() {
        for (w, s) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("cats", "cat"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("generalization", "gener"),
            ("electrical", "electr"),
            ("adjustment", "adjust"),
            ("controlling", "control"),
            ("skies", "sky"),
            ("dying", "die"),
            ("news", "news"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }
}
