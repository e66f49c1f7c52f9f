#!/usr/bin/env python3
"""Golden tokenization for the BPE pre-tokenizers other than SmolLM2's, from llama.cpp
through llama-cpp-python: SmolLM2's vocabulary and merges loaded with tokenizer.ggml.pre
overridden (kv_overrides) to each pre-tokenizer llama.cpp knows by that name, over
make-golden.py's TOKENIZE_CASES. Writes OUT/pretok.json. Run by scripts/make-golden pretok.

The tests build the same vocabulary (the fetched SmolLM2's metadata with the key replaced)
with qgraph's GGUF writer and compare.
"""

import argparse
import importlib.util
import json
import os

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
PRES = ["llama-bpe", "qwen2"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(HERE, "make-golden.py"))
    mg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mg)
    out = {"reference": {"package": "llama-cpp-python", "version": llama_cpp.__version__,
                         "model": os.path.basename(args.model), "model_sha256": mg.sha256_of(args.model),
                         "loaded": "vocab_only=True, kv_overrides tokenizer.ggml.pre",
                         "script": "scripts/make-golden-pretok.py"},
           "pre": {}}
    for pre in PRES:
        llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False,
                              kv_overrides={"tokenizer.ggml.pre": pre})
        out["pre"][pre] = [{"text": text, "special": special,
                            "ids": [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)]}
                           for text, special in mg.TOKENIZE_CASES]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pretok.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
