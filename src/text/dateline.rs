//! Datelines: the date (and place) a wire story opens with, as its own line ("28 دسمبر
//! 2021", "December 28, 2021") or as a prefix ("KARACHI, Dec 28 (AP) —", "28 December
//! 2021: …"). The date belongs once in the record (`dateline`), never at the head of every
//! bullet (issue 10).

use std::sync::OnceLock;

use regex::Regex;

const MONTHS_EN: &str = "January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec";
const MONTHS_UR: &str = "جنوری|فروری|مارچ|اپریل|مئی|جون|جولائی|اگست|ستمبر|اکتوبر|نومبر|دسمبر";
const WEEKDAYS: &str =
    "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|پیر|منگل|بدھ|جمعرات|جمعہ|ہفتہ|اتوار";

fn date_re() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        let d = r"[0-9۰-۹]{1,2}(?:st|nd|rd|th)?";
        let y = r"[0-9۰-۹]{4}";
        format!(
            r"(?:(?:{WEEKDAYS}),?\s+)?(?:{d}\s+(?:{MONTHS_EN}|{MONTHS_UR})\.?(?:,?\s+{y})?|(?:{MONTHS_EN})\.?\s+{d}(?:,?\s+{y})?|{d}[/.-]{d}[/.-](?:{y}|[0-9]{{2}}))"
        )
    })
}

/// Whether a whole paragraph is just a date (a dateline line).
pub fn is_dateline(s: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(&format!(
            r"(?i)^\s*(?:[\p{{L}} ]{{2,30}},\s*)?{}\s*[.۔]?\s*$",
            date_re()
        ))
        .expect("dateline regex")
    });
    s.split_whitespace().count() <= 8 && re.is_match(s)
}

/// Splits a dateline prefix off a sentence: `("KARACHI, Dec 28 (AP)", "Heavy rain…")`.
pub fn split_prefix(s: &str) -> (Option<&str>, &str) {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let date = date_re();
        // A place in capitals, a date, or both; an agency in brackets; then a colon or dash.
        Regex::new(&format!(
            r"^\s*((?:[A-Z][A-Z .'-]{{2,30}}(?:,\s*(?i:{date}))?|(?i:{date}))\s*(?:\([A-Za-z]{{1,12}}\))?)\s*(?:[:—–]|--+|-\s)\s*"
        ))
        .expect("dateline prefix regex")
    });
    match re.captures(s) {
        Some(c) => {
            let whole = c.get(0).expect("match");
            let rest = &s[whole.end()..];
            // Something must remain, and a plain capitalised word is not a place name.
            if rest.split_whitespace().count() < 3 {
                return (None, s);
            }
            (Some(c.get(1).expect("group").as_str().trim()), rest)
        }
        None => (None, s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dateline_lines() {
        for s in [
            "28 دسمبر 2021",
            "28 December 2021",
            "December 28, 2021",
            "Dec. 28",
            "Tuesday, 28 December 2021",
            "Karachi, 28 December 2021",
            "28/12/2021",
        ] {
            assert!(is_dateline(s), "{s}");
        }
        for s in [
            "Russia will hold talks with the US on 10 January.",
            "2021 was a hard year for the economy of the country.",
            "May the best team win",
        ] {
            assert!(!is_dateline(s), "{s}");
        }
    }

    #[test]
    fn dateline_prefixes() {
        assert_eq!(
            split_prefix("28 December 2021: Russia will hold talks next month."),
            (
                Some("28 December 2021"),
                "Russia will hold talks next month."
            )
        );
        assert_eq!(
            split_prefix("KARACHI, Dec 28 (AP) — Heavy rain flooded the city's roads."),
            (
                Some("KARACHI, Dec 28 (AP)"),
                "Heavy rain flooded the city's roads."
            )
        );
        assert_eq!(
            split_prefix("ISLAMABAD: The government raised fares on Monday."),
            (Some("ISLAMABAD"), "The government raised fares on Monday.")
        );
        let s = "Russia: the talks will open in Geneva.";
        assert_eq!(
            split_prefix(s),
            (None, s),
            "a capitalised word is not a place"
        );
        let s = "The talks will open in Geneva on 10 January.";
        assert_eq!(split_prefix(s), (None, s));
    }
}
