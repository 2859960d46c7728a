#!/usr/bin/env python3
"""Records the reference metrics for `tarjuma eval`'s parity tests.

sacrebleu (corpus BLEU, chrF, chrF++ with its defaults, and the 13a tokenizer) and
rouge-score (RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True), with NLTK's
Porter stemmer) score small adversarial corpora; the Rust tests in tests/all/eval.rs must
give the same numbers to 4 decimal places (they are held to 1e-9 where the arithmetic is
the same).

    python3 -m pip install sacrebleu==2.6.0 rouge-score==0.1.2 nltk
    python3 scripts/make-eval-fixtures.py     # writes tests/fixtures/eval/metrics.json

The output is deterministic: run it twice and the file is byte-identical.
"""
import json
import os
import random
import re
import sys

import nltk
import rouge_score
import sacrebleu
from nltk.stem import porter
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval", "metrics.json")


def long_line(seed, n):
    rng = random.Random(seed)
    vocab = ("the talks in Geneva on 10 January , Russia and the United States NATO "
             "troops 14,000 people died since 2014 - 2022 ; security guarantees were "
             "discussed by Mr. Lavrov ( foreign minister ) and “officials” said — again").split()
    return " ".join(rng.choice(vocab) for _ in range(n))


CORPORA = {
    "news": (
        [
            "Russia and the US will hold talks in Geneva on January 10.",
            "The Russian foreign minister said that “NATO’s expansion” is a threat.",
            "More than 14,000 people have died in the conflict since 2014.",
            "Officials — speaking on condition of anonymity — said the talks were 'serious'.",
            "Prices rose by 3.5 per cent, the bureau said.",
            "The meeting (the first since June) will last two days.",
        ],
        [
            "Russia and the United States will hold talks in Geneva on 10 January.",
            "Russia's foreign minister said NATO's expansion was a threat.",
            "Over 14 000 people have been killed in the conflict since 2014.",
            "Officials, speaking on condition of anonymity, said the talks were “serious”.",
            "Prices rose 3.5 percent, according to the bureau.",
            "The meeting, the first since June, is to last two days.",
        ],
    ),
    "adversarial": (
        [
            "",
            "THE TALKS WILL OPEN IN GENEVA",
            "the the the the the the the the",
            "Numbers: 1,000,000 and 2,500.75 and 2014-2022 and -5 and 3.14.",
            "He said: \"We won't go back\" – and left… &amp; &quot;quoted&quot; <skipped>",
            "Tabs\tand\u00a0non-breaking\u2009spaces\u3000and\u001fseparators",
            "روس اور امریکہ untranslated Urdu left in",
            "Kelvin \u212a and \u0130stanbul and café naïve résumé",
            "emoji 🙂 and CJK 漢字 and ‘single’ «guillemets»",
            long_line(1, 2500),
            ".",
            "a",
        ],
        [
            "The talks will open in Geneva",
            "the talks will open in Geneva",
            "the cat sat on the mat",
            "Numbers: 1 000 000 and 2,500.75 and 2014–2022 and −5 and 3.14.",
            "He said: “We won’t go back” — and left... & \"quoted\"",
            "Tabs and non-breaking spaces and separators",
            "Russia and America untranslated Urdu left in",
            "Kelvin K and Istanbul and cafe naive resume",
            "emoji and CJK and 'single' \"guillemets\"",
            long_line(2, 2400),
            "Nothing.",
            "a",
        ],
    ),
    "summaries": (
        [
            "Russia and the US will hold security talks in Geneva on 10 January. "
            "Moscow wants guarantees that NATO will not expand eastward.",
            "Heavy rain flooded roads across Karachi; two people died. The city's "
            "drainage failed again.",
            "Lahore's metro fares will rise by 20 rupees from Monday, officials said.",
            "",
            "Pakistan beat Sri Lanka by 6 wickets; the series is level at 1-1.",
        ],
        [
            "Russian and American officials are to meet in Geneva on January 10 to "
            "discuss security; Moscow is demanding that NATO stop expanding east.",
            "Two people were killed as heavy rains flooded Karachi's roads.",
            "Metro fares in Lahore are increasing by Rs20 starting Monday.",
            "Nothing happened.",
            "Pakistan won by six wickets over Sri Lanka, levelling the series 1-1.",
        ],
    ),
    "tiny": (["hello world"], ["hello there world"]),
    "all-empty-hyps": (["", ""], ["some reference", "another one"]),
    "no-match": (["alpha beta gamma delta"], ["one two three four five"]),
}


def porter_words():
    """A deterministic English vocabulary: the words of Python's standard library
    sources and of the corpora above."""
    words = set()
    stdlib = os.path.dirname(os.__file__)
    for name in sorted(os.listdir(stdlib)):
        if name.endswith(".py"):
            with open(os.path.join(stdlib, name), encoding="utf-8", errors="ignore") as f:
                words.update(re.findall(r"[a-z]{4,}", f.read()))
    for hyps, refs in CORPORA.values():
        for line in hyps + refs:
            words.update(re.findall(r"[a-z0-9]{4,}", line.lower()))
    words.update(["skies", "dying", "lying", "tying", "innings", "outings", "cannings",
                  "proceeding", "exceeded", "succeeding", "generalizations", "analogies",
                  "hopefulli", "fulli", "archaeologi", "triplicate", "formalities",
                  "oscillators", "sensibility", "controll", "rolling", "filling", "agreed",
                  "feed", "bled", "sing", "conflated", "troubled", "sized", "hopping", "tanned",
                  "falling", "hissing", "fizzed", "failing", "filing", "cried", "ties", "dies"])
    words = sorted(words)
    rng = random.Random(7)
    return sorted(rng.sample(words, min(6000, len(words))))


def main():
    bleu, chrf, chrfpp = BLEU(), CHRF(), CHRF(word_order=2)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    tok = Tokenizer13a()
    out = {
        "versions": {
            "sacrebleu": sacrebleu.__version__,
            "rouge_score": getattr(rouge_score, "__version__", "0.1.2"),
            "nltk": nltk.__version__,
        },
        "corpora": [],
    }
    for name, (hyps, refs) in CORPORA.items():
        segs = []
        for h, r in zip(hyps, refs):
            s = scorer.score(r, h)
            segs.append({
                "tok13a": tok(h.rstrip()),
                "chrf": chrf.sentence_score(h, [r]).score,
                "chrf_pp": chrfpp.sentence_score(h, [r]).score,
                "rouge1": s["rouge1"].fmeasure,
                "rouge2": s["rouge2"].fmeasure,
                "rougeL": s["rougeL"].fmeasure,
                "rouge_tokens": scorer._tokenizer.tokenize(h),
            })
        n = len(hyps)
        out["corpora"].append({
            "name": name,
            "hyps": hyps,
            "refs": refs,
            "bleu": bleu.corpus_score(hyps, [refs]).score,
            "chrf": chrf.corpus_score(hyps, [refs]).score,
            "chrf_pp": chrfpp.corpus_score(hyps, [refs]).score,
            "rouge1": sum(s["rouge1"] for s in segs) / n,
            "rouge2": sum(s["rouge2"] for s in segs) / n,
            "rougeL": sum(s["rougeL"] for s in segs) / n,
            "segments": segs,
        })
    # Signatures are known once a metric has scored something.
    out["signatures"] = {
        "bleu": str(bleu.get_signature()),
        "chrf": str(chrf.get_signature()),
        "chrf_pp": str(chrfpp.get_signature()),
    }
    stemmer = porter.PorterStemmer()
    out["porter"] = {w: stemmer.stem(w) for w in porter_words()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
