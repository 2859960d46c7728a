//! The text stages on the seed article and on hand-made edge cases.

use proptest::prelude::*;
use tarjuma::pipeline::job::prepare;
use tarjuma::text::{normalize, paragraphs, sentences, tag_paragraphs, Chunker, Kind};

use crate::util::seed;

/// Token stand-in for model-free tests: one token per 4 bytes, at least one.
fn approx_tokens(s: &str) -> usize {
    s.len().div_ceil(4).max(1)
}

#[test]
fn seed_article_paragraphs_and_boilerplate() {
    let paras = prepare(&seed());
    let kinds: Vec<Kind> = paras.iter().map(|p| p.kind).collect();
    let boiler: Vec<&str> = paras
        .iter()
        .filter(|p| p.kind == Kind::Boilerplate)
        .map(|p| p.text.as_str())
        .collect();
    // Headline, dateline, the 2 caption lines (one run), 17 story paragraphs, 3
    // read-more lines and the comment footer.
    assert_eq!(
        paras.len(),
        24,
        "{:#?}",
        paras.iter().map(|p| &p.text).collect::<Vec<_>>()
    );
    assert_eq!(boiler.len(), 5, "{boiler:#?}");
    assert_eq!(
        boiler
            .iter()
            .filter(|t| t.starts_with("مزید پڑھیں"))
            .count(),
        2
    );
    assert_eq!(
        boiler
            .iter()
            .filter(|t| t.starts_with("یہ بھی پڑھیں"))
            .count(),
        1
    );
    assert!(boiler
        .iter()
        .any(|t| t.contains("فوٹو: اے پی") && t.lines().count() == 2));
    assert_eq!(*boiler.last().unwrap(), "تبصرے (0) بند ہیں");
    assert_eq!(kinds[0], Kind::Body, "the headline is story text");
    assert_eq!(paras[1].text, "28 دسمبر 2021");
}

#[test]
fn seed_article_nothing_is_lost() {
    let doc = normalize(&seed());
    let paras = prepare(&seed());
    // Paragraph spans point into the normalized document, in order, and what lies
    // between them is whitespace only.
    let mut prev = 0;
    for p in &paras {
        assert_eq!(&doc[p.start..p.end], p.text);
        assert!(doc[prev..p.start].trim().is_empty());
        prev = p.end;
    }
    assert!(doc[prev..].trim().is_empty());
    // Sentences reproduce every paragraph; chunks reproduce it at every budget.
    for p in &paras {
        assert_eq!(sentences(&p.text).concat(), p.text);
    }
    for budget in [4, 16, 64, 256, 4096] {
        let c = Chunker::new(budget, approx_tokens);
        for (i, p) in paras.iter().enumerate() {
            let ch = c.paragraph_chunks(i, &p.text);
            assert_eq!(
                ch.iter().map(|c| c.text.as_str()).collect::<String>(),
                p.text
            );
            assert!(ch
                .iter()
                .all(|c| c.tokens <= budget || c.text.chars().count() == 1));
        }
        let all: Vec<_> = c.chunks(&paras).collect();
        assert_eq!(all.iter().filter(|c| c.last).count(), paras.len());
    }
}

#[test]
fn seed_article_sentences() {
    let paras = prepare(&seed());
    let n: usize = paras.iter().map(|p| sentences(&p.text).len()).sum();
    // Every sentence ends at ۔ or a line end; `،` never splits and neither does the
    // wire spelling جی۔سیون.
    let all: Vec<&str> = paras.iter().flat_map(|p| sentences(&p.text)).collect();
    assert!(all.iter().any(|s| s.contains("جی۔سیون")));
    assert!(all.iter().all(|s| !s.trim_end().ends_with('،')));
    // One sentence per paragraph, and each caption line on its own.
    assert_eq!(n, 25, "{all:#?}");
}

#[test]
fn normalizes_arabic_forms_in_the_seed() {
    let arabic = seed().replace('ی', "ي").replace('ک', "ك");
    assert_eq!(normalize(&arabic), normalize(&seed()));
}

#[test]
fn twenty_thousand_characters_without_punctuation() {
    let words = "لفظ ".repeat(5000);
    assert_eq!(words.chars().count(), 20000);
    let no_space = "ب".repeat(20000);
    for text in [words.trim_end().to_string(), no_space] {
        let paras = prepare(&text);
        assert_eq!(paras.len(), 1);
        let c = Chunker::new(100, approx_tokens);
        let ch = c.paragraph_chunks(0, &paras[0].text);
        assert!(ch.len() >= 90, "{}", ch.len());
        assert!(ch.iter().all(|c| c.tokens <= 100));
        assert_eq!(
            ch.iter().map(|c| c.text.as_str()).collect::<String>(),
            paras[0].text
        );
    }
}

#[test]
fn mixed_urdu_and_english() {
    let t = "Sergei Lavrov said talks start on 12 January. روس نے کہا، مذاکرات ہوں گے۔ U.S. officials agreed? جی ہاں! Mr. Putin spoke.";
    let s = sentences(t);
    assert_eq!(
        s,
        vec![
            "Sergei Lavrov said talks start on 12 January. ",
            "روس نے کہا، مذاکرات ہوں گے۔ ",
            "U.S. officials agreed? ",
            "جی ہاں! ",
            "Mr. Putin spoke."
        ]
    );
}

#[test]
fn urdu_digits_are_kept_and_never_split() {
    let t = "یوکرین میں ۱۴٬۰۰۰ سے زائد اور ۳.۵ فیصد، یعنی 14,000 افراد۔";
    assert_eq!(normalize(t), t);
    assert_eq!(sentences(t).len(), 1);
}

#[test]
fn empty_input_gives_no_paragraphs() {
    for t in ["", "   ", "\u{FEFF}\u{200B}\n\n \t\n"] {
        assert!(prepare(t).is_empty(), "{t:?}");
    }
    assert!(tag_paragraphs("", paragraphs("")).is_empty());
}

fn urdu_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "روس",
        "کے",
        "امریکا",
        "۔",
        "؟",
        "!",
        ".",
        "،",
        " ",
        " ",
        "\n",
        "\n\n",
        "3.5",
        "۱۴",
        "news",
        "a@b.org",
        "؛",
        "مزید پڑھیں: ",
        "---فوٹو: اے پی",
        "\u{200B}",
        "ي",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn chunks_reproduce_paragraphs(text in urdu_text(), budget in 1usize..40) {
        let paras = prepare(&text);
        let c = Chunker::new(budget, approx_tokens);
        for (i, p) in paras.iter().enumerate() {
            let ch = c.paragraph_chunks(i, &p.text);
            prop_assert_eq!(ch.iter().map(|c| c.text.as_str()).collect::<String>(), p.text.clone());
            prop_assert!(!ch.is_empty());
        }
    }

    #[test]
    fn paragraphs_cover_all_text(text in urdu_text()) {
        let doc = normalize(&text);
        let paras = prepare(&text);
        let kept: String = paras.iter().map(|p| p.text.as_str()).collect();
        let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        prop_assert_eq!(strip(&kept), strip(&doc));
    }
}
