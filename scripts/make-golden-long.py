#!/usr/bin/env python3
"""Golden data at long context from llama.cpp (through llama-cpp-python), one file per KV cache
type, for tests/long_context.rs:

    .venv-golden/bin/python scripts/make-golden-long.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/golden/long

Run through `scripts/make-golden long`, by hand, never by CI. For each cache type (f16: llama.cpp's
default, flash attention off as in the other golden files; q8_0: a quantized V cache needs flash
attention in llama.cpp, so on) it writes OUT/TYPE.json with:

  tokens       the first 4096 tokens of OUT/long.txt (the GNU GPL v3 then v2, verbatim)
  positions    teacher-forced top-32 logits, log-sum-exp, argmax and top-2 margin at every 8th
               position from 2048 to 4095 (what the model predicts after 2k-4k tokens)
  perplexity   as llama-perplexity -c 4096: consecutive 4096-token chunks of the whole text, each
               from an empty context, second half scored

The helpers (row, lse64, top2_margin, write_json, load settings) are make-golden.py's.
"""

import argparse
import hashlib
import importlib.util
import math
import os
import sys

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_golden", os.path.join(HERE, "make-golden.py"))
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)

N_CTX = 4096
FIRST, STEP = 2048, 8
TOP_K = 32
GGML_TYPES = {"f16": 1, "q8_0": 8}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    text_path = os.path.join(args.out, "long.txt")
    data = open(text_path, "rb").read()
    for cache, fa in (("f16", False), ("q8_0", True)):
        llm = mg.load_model(args.model, n_ctx=N_CTX, flash_attn=fa, type_k=GGML_TYPES[cache],
                            type_v=GGML_TYPES[cache])
        tokens = llm.tokenize(data, add_bos=False, special=False)
        assert len(tokens) >= 2 * N_CTX, len(tokens)
        head = tokens[:N_CTX]
        mg.eval_fresh(llm, head)
        positions = []
        for i in range(FIRST, N_CTX, STEP):
            r = mg.row(llm, i)
            order = np.argsort(-r, kind="stable")[:TOP_K]
            positions.append({
                "at": i,
                "ids": [int(t) for t in order],
                "logits": [round(float(r[t]), 4) for t in order],
                "lse": mg.lse64(r),
                "argmax": int(np.argmax(r)),
                "margin": mg.top2_margin(r),
            })
        n_chunks = len(tokens) // N_CTX
        first = N_CTX // 2
        total, count, chunk_ppl = 0.0, 0, []
        for c in range(n_chunks):
            chunk = tokens[c * N_CTX:(c + 1) * N_CTX]
            mg.eval_fresh(llm, chunk)
            nll, n = 0.0, 0
            for j in range(first, N_CTX - 1):
                r = np.array(llm.scores[j], dtype=np.float64)
                m = r.max()
                nll += m + math.log(np.exp(r - m).sum()) - r[chunk[j + 1]]
                n += 1
            chunk_ppl.append(math.exp(nll / n))
            total += nll
            count += n
        ppl = math.exp(total / count)
        print(f"make-golden-long: {cache}: ppl {ppl:.4f} over {n_chunks} chunks", file=sys.stderr)
        ref = {
            "package": "llama-cpp-python",
            "version": llama_cpp.__version__,
            "model": os.path.basename(args.model),
            "model_sha256": mg.sha256_of(args.model),
            "n_ctx": N_CTX,
            "settings": {
                "n_threads": mg.N_THREADS, "n_batch": mg.N_BATCH, "n_ubatch": mg.N_UBATCH,
                "flash_attn": fa, "type_k": cache, "type_v": cache, "use_extra_bufts": False,
                "add_bos": False,
                "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            },
            "text": os.path.basename(text_path),
            "text_sha256": hashlib.sha256(data).hexdigest(),
            "script": "scripts/make-golden-long.py",
        }
        mg.write_json(os.path.join(args.out, cache + ".json"), {
            "reference": ref,
            "cache_type": cache,
            "tokens": [int(t) for t in head],
            "positions": positions,
            "perplexity": {"n_ctx": N_CTX, "n_chunks": n_chunks, "n_tokens_scored": count,
                           "nll_sum": total, "ppl": ppl, "chunk_ppl": chunk_ppl},
        })
        del llm


if __name__ == "__main__":
    main()
