#!/usr/bin/env python3
"""Record reference token ids for the tokenizer-parity test (tests/all/tokenizer_parity.rs).

The reference is llama.cpp's own tokenizer, through the llama-cpp-python package, loading
only the vocabulary of the same GGUF file tarjuma reads. Text is tokenized as plain text
(special=False, no BOS), which is how tarjuma encodes article text.

Setup (outside the repo, it compiles llama.cpp for about 10 minutes):
  python3 -m venv /tmp/refenv
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    /tmp/refenv/bin/pip install --no-binary llama-cpp-python llama-cpp-python

usage: make-tokenizer-fixtures.py NAME GGUF SEED_ARTICLE OUT_JSON
"""
import hashlib
import json
import sys
import unicodedata

from llama_cpp import Llama, __version__ as llama_cpp_version

# Extra samples that exercise the pre-tokenizer's branches: Latin words, numbers,
# Urdu digits, runs of spaces and newlines, tabs.
MIXED = (
    "Sergei Lavrov said talks start on 12 January 2022 (14,000 dead). "
    "روس نے ۲۰۱۴ میں کریمیا کو شامل کیا۔\n\n  Trailing   spaces\tand tabs. "
    "It's the U.S.'s 3.5% share — “quoted” text…\n\n\nEnd."
)


def main() -> None:
    name, gguf, article_file, out = sys.argv[1:5]
    article = unicodedata.normalize("NFC", open(article_file, encoding="utf-8").read())
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    samples = {}
    for key, text in {"article": article, "mixed": MIXED}.items():
        samples[key] = {
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            # The article itself stays in ../shared; only its digest is recorded.
            "text": None if key == "article" else text,
            "ids": llm.tokenize(text.encode(), add_bos=False, special=False),
        }
    record = {
        "model": name,
        "reference": f"llama.cpp via llama-cpp-python {llama_cpp_version}",
        "samples": samples,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)
        f.write("\n")
    for k, v in samples.items():
        print(name, k, len(v["ids"]), "ids")


if __name__ == "__main__":
    main()
