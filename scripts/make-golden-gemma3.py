#!/usr/bin/env python3
"""Golden tokenization data for Gemma 3 270M (a SentencePiece vocabulary, tokenizer.ggml.model
= llama), from llama.cpp through llama-cpp-python. Run by scripts/make-golden gemma3-tokenize.

Writes OUT/tokenize.json: for every string of make-golden.py's TOKENIZE_CASES plus
SentencePiece- and Gemma-specific ones (chat-turn tokens, whitespace runs, byte fallback),
the ids with add_bos False and True and special tokens parsed or not, and llama.cpp's
detokenization of those ids (special shown).
"""

import argparse
import hashlib
import importlib.util
import json
import os

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))


def base_cases():
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(HERE, "make-golden.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [text for text, _ in mod.TOKENIZE_CASES]


EXTRA = [
    "<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nhi<end_of_turn>",
    "text with <pad> and <unk> and <mask> inside",
    "<start_of_image> [multimodal] <end_of_image>",
    "▁already▁escaped▁spaces",
    "\u2581",
    "a\u00a0non-breaking\u2009thin space",
    "zero\u200bwidth\u200djoiner",
    "control \x01\x02\x1f chars and \x7f",
    "private use \ue000\uf8ff and plane 16 \U00100000",
    "rare CJK 𠀀𠀁 and linear B 𐀀",
    "                                ",
    "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
    "\t\t\t\t\t\tdeep indent",
    "x" * 300,
    "supercalifragilisticexpialidocious " * 3,
    "",
]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    assert llm.n_vocab() == 262144, llm.n_vocab()
    cases = []
    for text in base_cases() + EXTRA:
        for special in (False, True):
            for add_bos in (False, True):
                ids = [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)]
                shown = llm.detokenize(ids, special=True).decode("utf-8", "replace")
                cases.append({"text": text, "special": special, "add_bos": add_bos, "ids": ids,
                              "detokenized": shown})
    out = {
        "reference": {
            "package": "llama-cpp-python",
            "version": llama_cpp.__version__,
            "model": os.path.basename(args.model),
            "model_sha256": sha256_of(args.model),
            "loaded": "vocab_only=True",
            "script": "scripts/make-golden-gemma3.py",
        },
        "cases": cases,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tokenize.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
