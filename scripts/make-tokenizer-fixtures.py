#!/usr/bin/env python3
"""Record reference token ids for the tokenizer-parity test.

The reference is Hugging Face transformers' own GGUF tokenizer import
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), an implementation
independent of ours. Needs: python3 -m pip install transformers gguf sentencepiece protobuf

usage: make-tokenizer-fixtures.py NAME GGUF TEXT_FILE OUT_JSON
"""
import hashlib
import json
import os
import sys
import unicodedata

from transformers import AutoTokenizer


def main() -> None:
    name, gguf, text_file, out = sys.argv[1:5]
    text = open(text_file, encoding="utf-8").read()
    # The fixture covers the text as tarjuma feeds it to models: NFC, plus an
    # English sentence and digits, so the pre-tokenizer's branches are exercised.
    text = unicodedata.normalize("NFC", text)
    samples = {
        "article": text,
        "mixed": "Sergei Lavrov said talks start on 12 January 2022 (14,000 dead). "
        "روس نے ۲۰۱۴ میں کریمیا کو شامل کیا۔\n\n  Trailing   spaces\tand tabs. ",
    }
    tok = AutoTokenizer.from_pretrained(
        os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf)
    )
    record = {
        "model": name,
        "reference": "transformers GGUF tokenizer import",
        "samples": {
            k: {
                "sha256": hashlib.sha256(v.encode()).hexdigest(),
                "text": v if k != "article" else None,
                "ids": tok(v, add_special_tokens=False)["input_ids"],
            }
            for k, v in samples.items()
        },
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)
        f.write("\n")
    for k, v in record["samples"].items():
        print(name, k, len(v["ids"]), "ids")


if __name__ == "__main__":
    main()
