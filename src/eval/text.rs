//! Python's string primitives, as the reference metrics use them: `str.split()` and
//! `str.rstrip()` treat more characters as whitespace than Rust's `char::is_whitespace`
//! (the ASCII information separators U+001C–U+001F), and the scores must not differ on
//! such input.

/// Python's `str.isspace()` for one character.
pub fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no arguments.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_space).filter(|w| !w.is_empty())
}

/// Python's `str.rstrip()` with no arguments.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        let s = "a\u{1f}b\u{a0}c\u{3000}d \u{200b}e\u{85}";
        assert_eq!(
            py_split(s).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "\u{200b}e"]
        );
        assert_eq!(py_rstrip("x \u{1c}\t"), "x");
    }
}
