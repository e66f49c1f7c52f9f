#!/usr/bin/env python3
"""Golden data for the tiny random-weight architectures (Llama 3, Qwen2, OLMo 2 with and
without a window on every layer) from llama.cpp through llama-cpp-python. Run by
scripts/make-golden tiny, which first writes each model with qgraph's own GGUF writer
(examples/write_tiny_model.rs; qgraph::gguf::tiny::reference_model).

For each model NAME, tests/golden/tiny/NAME.json holds:
  reference   the package, the model's sha256 (the test rewrites the model and checks it)
  tokenize    make-golden.py's TOKENIZE_CASES through the model's BPE vocabulary and its
              pre-tokenizer (llama-bpe or qwen2), BOS as the model says: exact ids
  sequences   teacher-forced logits of prompts and llama.cpp's greedy continuation, as
              make-golden.py's logits.json (every prompt is longer than the 8-position
              window of the OLMo models and reaches positions where Llama 3's rope factors
              turn the angles by radians)
"""

import argparse
import hashlib
import importlib.util
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

PROMPTS = [
    ("plain", "The old bridge over the river was built of grey stone and it has stood there"),
    ("code", "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n"),
    ("numbers", "In 1234 there were 56789 people; by 2024, 1000000 more."),
]
CONTINUATION = 16
TOP_K = 40


def make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(HERE, "make-golden.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the tiny GGUF")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, help="the JSON file to write")
    args = ap.parse_args()
    mg = make_golden()
    llm = mg.load_model(args.model)
    add_bos = bool(llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true")
    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    import llama_cpp

    ref = {
        "package": "llama-cpp-python",
        "version": llama_cpp.__version__,
        "model": args.name,
        "model_sha256": sha,
        "n_ctx": mg.N_CTX,
        "n_threads": mg.N_THREADS,
        "flash_attn": False,
        "use_extra_bufts": False,
        "kv_cache": "f16/f16",
        "add_bos": add_bos,
    }
    tokenize = []
    for text, special in mg.TOKENIZE_CASES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
        tokenize.append({"text": text, "special": special, "ids": [int(t) for t in ids]})
    seqs = []
    for name, prompt in PROMPTS:
        ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=False)
        cont, _ = mg.greedy(llm, ptoks, CONTINUATION)
        tokens = list(ptoks) + cont
        mg.eval_fresh(llm, tokens)
        positions = []
        for i in range(len(tokens)):
            r = mg.row(llm, i)
            order = np.argsort(-r, kind="stable")[:TOP_K]
            positions.append(
                {
                    "ids": [int(t) for t in order],
                    "logits": [round(float(r[t]), 4) for t in order],
                    "lse": mg.lse64(r),
                    "argmax": int(np.argmax(r)),
                    "margin": mg.top2_margin(r),
                }
            )
        seqs.append({"name": name, "prompt": prompt, "tokens": [int(t) for t in tokens],
                     "n_prompt": len(ptoks), "positions": positions})
        print(f"make-golden-tiny: {args.name} {name}: {len(tokens)} positions", file=sys.stderr)
    out = {
        "reference": ref,
        "top_k": TOP_K,
        "note": "tokenize: llm.tokenize(text, add_bos=reference.add_bos, special); sequences: as "
        "make-golden.py's logits.json (positions[i] is the distribution for tokens[i+1])",
        "tokenize": tokenize,
        "sequences": seqs,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
