#!/usr/bin/env python3
"""Golden data for Gemma 3 270M from llama.cpp through llama-cpp-python. Run by
scripts/make-golden gemma3-tokenize and scripts/make-golden gemma3.

  tokenize.json    for every string of make-golden.py's TOKENIZE_CASES plus SentencePiece-
                   and Gemma-specific ones (chat-turn tokens, whitespace runs, byte fallback):
                   the ids with add_bos False and True, special tokens parsed or not, and
                   llama.cpp's detokenization of those ids (special shown). Vocabulary only.
  logits.json      teacher-forced top-k logits of prompts (BOS first) and llama.cpp's greedy
                   continuation, as make-golden.py's logits.json.
  perplexity.json  perplexity at a 1024-token context (the first token of each chunk
                   replaced by BOS, as llama-perplexity does for a model that adds BOS) over
                   tests/golden/long/long.txt, positions 512..1022 scored: every scored
                   position of a sliding-window layer sees its window cut.
"""

import argparse
import hashlib
import importlib.util
import json
import math
import os

import numpy as np

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))


def make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(HERE, "make-golden.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def base_cases():
    return [text for text, _ in make_golden().TOKENIZE_CASES]


LOGITS_PROMPTS = [
    ("chat_capital", "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n", True),
    ("plain_sentence", "The old bridge over the river was built of grey stone and", False),
    ("code_python", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    ("list", "Three things to pack for a hike:\n1.", False),
    ("french", "La ville de Lyon est connue pour", False),
    ("numbers", "2, 4, 8, 16, 32,", False),
    ("story", "Once upon a time, in a village at the edge of a great forest, there lived", False),
    ("facts", "Water boils at 100 degrees Celsius at sea level. At higher altitudes,", False),
]
PPL_CTX = 1024
PPL_CHUNKS = 3


def make_logits(mg, llm, ref):
    seqs = []
    for name, prompt, special in LOGITS_PROMPTS:
        ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=special)
        cont, _ = mg.greedy(llm, ptoks, mg.LOGITS_CONTINUATION)
        tokens = list(ptoks) + cont
        mg.eval_fresh(llm, tokens)
        positions = []
        for i in range(len(tokens)):
            r = mg.row(llm, i)
            order = np.argsort(-r, kind="stable")[:40]
            positions.append({"ids": [int(t) for t in order],
                              "logits": [round(float(r[t]), 4) for t in order],
                              "lse": mg.lse64(r), "argmax": int(np.argmax(r)), "margin": mg.top2_margin(r)})
        seqs.append({"name": name, "prompt": prompt, "special": special,
                     "tokens": [int(t) for t in tokens], "n_prompt": len(ptoks), "positions": positions})
    return {"reference": ref, "top_k": 40, "n_continuation": mg.LOGITS_CONTINUATION,
            "note": "as make-golden.py's logits.json, prompts tokenized with BOS (Gemma's add_bos_token)",
            "sequences": seqs}


def make_perplexity(mg, llm, ref, text_path):
    with open(text_path, "rb") as f:
        data = f.read()
    tokens = llm.tokenize(data, add_bos=False, special=False)
    assert len(tokens) >= PPL_CTX * PPL_CHUNKS, len(tokens)
    first = PPL_CTX // 2
    total_nll, total_count, chunk_ppl = 0.0, 0, []
    for c in range(PPL_CHUNKS):
        chunk = list(tokens[c * PPL_CTX:(c + 1) * PPL_CTX])
        chunk[0] = llm.token_bos()
        mg.eval_fresh(llm, chunk)
        logits = np.array(llm.scores[:PPL_CTX, :], dtype=np.float64)
        nll, count = 0.0, 0
        for j in range(first, PPL_CTX - 1):
            r = logits[j]
            m = r.max()
            nll += m + math.log(np.exp(r - m).sum()) - r[chunk[j + 1]]
            count += 1
        chunk_ppl.append(math.exp(nll / count))
        total_nll += nll
        total_count += count
        print(f"make-golden-gemma3: perplexity chunk {c}: {chunk_ppl[-1]:.4f}")
    return {"reference": ref, "file": os.path.basename(text_path),
            "file_sha256": hashlib.sha256(data).hexdigest(), "add_bos": True, "n_ctx": PPL_CTX,
            "n_chunks": PPL_CHUNKS, "n_tokens_scored": total_count, "nll_sum": total_nll,
            "ppl": math.exp(total_nll / total_count), "chunk_ppl": chunk_ppl,
            "note": "as llama-perplexity -c 1024 --chunks 3: consecutive 1024-token chunks of the "
                    "text tokenized without BOS, the first token of each replaced by BOS, each "
                    "evaluated from scratch, positions [512, 1023) scored"}


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
    ap.add_argument("--only", default="tokenize", help="tokenize and/or logits,perplexity")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only & {"logits", "perplexity"}:
        mg = make_golden()
        llm = mg.load_model(args.model, n_ctx=PPL_CTX, n_batch=PPL_CTX, n_ubatch=PPL_CTX)
        assert llm.n_vocab() == 262144
        ref = {"package": "llama-cpp-python", "version": llama_cpp.__version__,
               "model": os.path.basename(args.model), "model_sha256": sha256_of(args.model),
               "settings": {"n_ctx": PPL_CTX, "n_threads": mg.N_THREADS, "flash_attn": False,
                            "use_extra_bufts": False, "type_k": "f16", "type_v": "f16",
                            "swa": "llama.cpp's full-size SWA cache (ubatch <= n_ctx)"},
               "script": "scripts/make-golden-gemma3.py"}
        os.makedirs(args.out, exist_ok=True)
        if "logits" in only:
            mg.write_json(os.path.join(args.out, "logits.json"), make_logits(mg, llm, ref))
        if "perplexity" in only:
            text = os.path.join(HERE, "..", "tests", "golden", "long", "long.txt")
            mg.write_json(os.path.join(args.out, "perplexity.json"), make_perplexity(mg, llm, ref, text))
        if "tokenize" not in only:
            return
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
