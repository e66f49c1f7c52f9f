#!/usr/bin/env python3
"""Writes golden reference data from llama.cpp (through llama-cpp-python) for qgraph's tests.

    .venv-golden/bin/python scripts/make-golden.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/golden

Normally run through `scripts/make-golden`, by hand, never by CI. It writes into --out:

  tokenize.json    token ids for many strings (llm.tokenize, add_bos=False, special on/off)
  logits.json      teacher-forced top-k logits, log-sum-exp, argmax and top-2 margin per position
  greedy.json      greedy (argmax) continuations of 64 tokens with per-step top-2 margins
  perplexity.json  perplexity of perplexity.txt computed the way `llama-perplexity -c 512` does

perplexity.txt (the text that is measured) is hand-written and must already be in --out.
Every file carries a "reference" object that says how it was produced.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import llama_cpp

N_CTX = 512
N_THREADS = 2
N_BATCH = 512
N_UBATCH = 512
LOGITS_TOP_K = 100
LOGITS_CONTINUATION = 24
GREEDY_STEPS = 64
PPL_CTX = 512


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# JSON output: structure is indented, lists of scalars stay on one line (small, still diffable).


def _dump(value, indent, level):
    pad = " " * (indent * level)
    inner = " " * (indent * (level + 1))
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            inner + json.dumps(k, ensure_ascii=False) + ": " + _dump(v, indent, level + 1)
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return "[" + ",".join(_scalar(v) for v in value) + "]"
        items = [inner + _dump(v, indent, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return _scalar(value)


def _scalar(v):
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"non-finite float {v!r} in output")
        return repr(float(v))
    return json.dumps(v, ensure_ascii=False)


def write_json(path, obj):
    text = _dump(obj, 1, 0) + "\n"
    json.loads(text)  # sanity: what we wrote parses
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"make-golden: wrote {path} ({len(text.encode('utf-8'))} bytes)", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Inputs.

TOKENIZE_CASES = [
    # plain English
    ("Hello world", False),
    ("The quick brown fox jumps over the lazy dog.", False),
    ("Hello", False),
    ("a", False),
    ("antidisestablishmentarianism", False),
    ("HELLO WORLD, THIS IS LOUD.", False),
    ("camelCaseIdentifier and snake_case_name", False),
    # spaces and whitespace
    (" Hello", False),
    ("Hello ", False),
    ("   three leading spaces", False),
    ("trailing spaces   ", False),
    ("a  b   c    d", False),
    (" ", False),
    ("  ", False),
    ("          ", False),
    ("\t", False),
    ("\ttab\tseparated\tvalues", False),
    ("mixed \t \n  whitespace\t\t\n\n run", False),
    # newlines
    ("line one\nline two", False),
    ("paragraph one\n\nparagraph two", False),
    ("windows\r\nline endings\r\n", False),
    ("\n", False),
    ("\n\n\n\n", False),
    ("ends with newline\n", False),
    # digits and numbers
    ("1234567890123", False),
    ("3.14159", False),
    ("1,000,000", False),
    ("2024-01-15 12:34:56", False),
    ("-42 +17 0x1F 1e-9 007", False),
    ("The year 1999 had 365 days.", False),
    # code
    ("def add(a, b):\n    return a + b\n", False),
    ("for i in range(10):\n\tprint(f\"{i:>3}\")", False),
    ("fn main() {\n    let x: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}", False),
    ("impl<'a> Iterator for Iter<'a> { type Item = &'a str; }", False),
    ('{"name": "qgraph", "version": [0, 1, 2], "ok": true, "none": null}', False),
    ("if (x != 0 && y >= 1) { return x->next; } // comment", False),
    ("<div class=\"box\">Hello &amp; welcome</div>", False),
    # unicode accents and other scripts
    ("café naïve résumé", False),
    ("Über die Straße fährt ein Bär.", False),
    ("Ça coûte 5 € à l'hôtel.", False),
    ("你好，世界！", False),
    ("日本語のテキストです。カタカナも。", False),
    ("안녕하세요 세계", False),
    ("Привет, мир!", False),
    ("مرحبا بالعالم", False),
    ("नमस्ते दुनिया", False),
    ("∑ x² ≥ 0 → ∞", False),
    # emoji
    ("😀", False),
    ("I love pizza 🍕🍕!", False),
    ("👨‍👩‍👧", False),
    ("🇺🇸🇯🇵🇫🇷", False),
    ("👍🏽 thumbs up", False),
    # apostrophes and contractions
    ("don't", False),
    ("I'm", False),
    ("they'll", False),
    ("We've seen it, you'd agree, she's here, it's John's.", False),
    ("DON'T YOU'LL I'D", False),
    ("don’t curly apostrophe", False),
    # punctuation
    ("!!!???...", False),
    ("Wait... what?! (Really.) [yes] {no} <maybe>", False),
    ("--- *** ___ === ~~~", False),
    ("\"quoted\" 'single' `backtick`", False),
    # URLs and emails
    ("https://example.com/path/to/page?q=1&x=two#frag", False),
    ("mail me at someone@example.org", False),
    # empty
    ("", False),
    ("", True),
    # special tokens
    ("<|im_start|>user\nHi<|im_end|>", True),
    ("<|im_start|>user\nHi<|im_end|>", False),
    ("<|endoftext|>", True),
    ("<|endoftext|>", False),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("Hello<|im_end|>\n<|im_start|>assistant\n", True),
    ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
     "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", True),
    ("plain text with special=True", True),
    ("<|im_start|><|im_end|><|endoftext|>", True),
]

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(user, system=SYSTEM):
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


LOGITS_PROMPTS = [
    ("chat_capital", chat("What is the capital of France?"), True),
    ("plain_sentence", "The old bridge over the river was built of grey stone and", False),
    ("code_python", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
    ("list_numbers", "Shopping list:\n1. eggs\n2. milk\n3. bread\n4.", False),
    ("factual_question", "Q: How many legs does a spider have?\nA:", False),
    (
        "long_paragraph",
        "In the early morning the market square was still quiet. A baker carried trays of warm "
        "bread from his oven to a small wooden stall, and a woman with a red scarf arranged "
        "apples in careful rows. Pigeons walked between the cobblestones, looking for crumbs, "
        "while the church clock struck six. Slowly, as the sun rose over the rooftops,",
        False,
    ),
]

GREEDY_PROMPTS = [
    ("chat_capital", chat("What is the capital of France?"), True),
    ("chat_haiku", chat("Write a haiku about the sea."), True),
    ("chat_explain", chat("Explain in two sentences why the sky is blue."), True),
    ("chat_code", chat("Write a Python function that reverses a string."), True),
    ("chat_math", chat("What is 12 times 7?"), True),
    ("chat_no_system", "<|im_start|>user\nGive me three tips for learning to cook.<|im_end|>\n<|im_start|>assistant\n", True),
    ("plain_story", "Once upon a time, in a small village by the mountains,", False),
    ("plain_science", "Photosynthesis is the process by which plants", False),
    ("plain_code_rust", "fn main() {\n    let numbers = vec![1, 2, 3, 4, 5];\n", False),
    ("plain_list", "The planets of the solar system, in order from the Sun, are:", False),
    ("plain_recipe", "To make a simple tomato sauce, you will need", False),
    ("plain_history", "The Roman Empire was", False),
    ("plain_single_word", "Hello", False),
    ("plain_json", '{"name": "Alice", "age": 30, "city":', False),
    # confident continuations, so that greedy prefixes before the first small margin are long
    ("plain_counting", "1, 2, 3, 4, 5, 6, 7, 8,", False),
    ("plain_alphabet", "A B C D E F G", False),
    ("chat_repeat", chat("Repeat after me: the cat sat on the mat."), True),
]


# ---------------------------------------------------------------------------------------------
# Helpers on llama.cpp's logits.


def row(llm, i):
    """Logit row i (the distribution for the token at i+1) as float32, copied."""
    return np.array(llm.scores[i, :], dtype=np.float32, copy=True)


def top2_margin(r):
    top = np.partition(r, -2)[-2:]
    return float(np.float64(max(top)) - np.float64(min(top)))


def lse64(r):
    r = r.astype(np.float64)
    m = r.max()
    return float(m + np.log(np.exp(r - m).sum()))


def eval_fresh(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    assert llm.n_tokens == len(tokens)


def greedy(llm, prompt_tokens, steps):
    """Eval the prompt, then repeatedly take llama.cpp's argmax and eval it. Never stops early."""
    llm.reset()
    llm.eval(prompt_tokens)
    out, margins = [], []
    for _ in range(steps):
        r = row(llm, llm.n_tokens - 1)
        tok = int(np.argmax(r))
        out.append(tok)
        margins.append(top2_margin(r))
        llm.eval([tok])
    return out, margins


# ---------------------------------------------------------------------------------------------
# Producers.


def make_tokenize(llm, ref):
    cases = []
    for text, special in TOKENIZE_CASES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        cases.append({"text": text, "special": special, "ids": [int(t) for t in ids]})
    return {"reference": ref, "add_bos": False, "cases": cases}


def make_logits(llm, ref):
    seqs = []
    for name, prompt, special in LOGITS_PROMPTS:
        ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=special)
        cont, _ = greedy(llm, ptoks, LOGITS_CONTINUATION)
        tokens = list(ptoks) + cont
        eval_fresh(llm, tokens)
        positions = []
        for i in range(len(tokens)):
            r = row(llm, i)
            order = np.argsort(-r, kind="stable")[:LOGITS_TOP_K]
            positions.append(
                {
                    "ids": [int(t) for t in order],
                    "logits": [round(float(r[t]), 4) for t in order],
                    "lse": lse64(r),
                    "argmax": int(np.argmax(r)),
                    "margin": top2_margin(r),
                }
            )
        seqs.append(
            {
                "name": name,
                "prompt": prompt,
                "special": special,
                "tokens": [int(t) for t in tokens],
                "n_prompt": len(ptoks),
                "positions": positions,
            }
        )
        print(f"make-golden: logits {name}: {len(tokens)} positions", file=sys.stderr)
    return {
        "reference": ref,
        "top_k": LOGITS_TOP_K,
        "n_continuation": LOGITS_CONTINUATION,
        "note": "continuation = llama.cpp greedy (incremental eval); rows = one teacher-forced "
        "llm.eval(tokens) after llm.reset(); positions[i] is the distribution for tokens[i+1]; "
        "logits rounded to 4 decimals, lse (float64 log-sum-exp of the full row) and margin "
        "(top1 - top2 logit) unrounded; ids sorted by logit descending, ties by lower id",
        "sequences": seqs,
    }


def make_greedy(llm, ref):
    out = []
    for name, prompt, special in GREEDY_PROMPTS:
        ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=special)
        cont, margins = greedy(llm, ptoks, GREEDY_STEPS)
        out.append(
            {
                "name": name,
                "prompt": prompt,
                "special": special,
                "prompt_tokens": [int(t) for t in ptoks],
                "continuation": cont,
                "margins": margins,
                "text": llm.detokenize(cont, prev_tokens=list(ptoks), special=True).decode(
                    "utf-8", errors="replace"
                ),
            }
        )
        print(f"make-golden: greedy {name}: {len(ptoks)} prompt tokens", file=sys.stderr)
    return {
        "reference": ref,
        "n_steps": GREEDY_STEPS,
        "note": "after llm.reset(): eval prompt, then 64 times take argmax of the last logit row "
        "(ties -> lowest id) and eval it; margins[k] = top1 - top2 logit at step k; no stop on "
        "end-of-sequence tokens; 'text' is informational only",
        "prompts": out,
    }


def make_perplexity(llm, ref, text_path):
    with open(text_path, "rb") as f:
        data = f.read()
    tokens = llm.tokenize(data, add_bos=False, special=False)
    n_chunks = len(tokens) // PPL_CTX
    if n_chunks < 4:
        raise SystemExit(f"make-golden: perplexity text has only {len(tokens)} tokens")
    first = PPL_CTX // 2
    total_nll, total_count, chunk_ppl = 0.0, 0, []
    for c in range(n_chunks):
        chunk = tokens[c * PPL_CTX : (c + 1) * PPL_CTX]
        eval_fresh(llm, chunk)
        logits = np.array(llm.scores[:PPL_CTX, :], dtype=np.float64)
        nll, count = 0.0, 0
        for j in range(first, PPL_CTX - 1):
            r = logits[j]
            m = r.max()
            lse = m + math.log(np.exp(r - m).sum())
            nll += lse - r[chunk[j + 1]]
            count += 1
        chunk_ppl.append(math.exp(nll / count))
        total_nll += nll
        total_count += count
        print(f"make-golden: perplexity chunk {c}: {chunk_ppl[-1]:.4f}", file=sys.stderr)
    ppl = math.exp(total_nll / total_count)
    return {
        "reference": ref,
        "file": os.path.basename(text_path),
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "add_bos": False,
        "n_ctx": PPL_CTX,
        "n_chunks": n_chunks,
        "n_tokens_scored": total_count,
        "nll_sum": total_nll,
        "ppl": ppl,
        "chunk_ppl": chunk_ppl,
        "tokens": len(tokens),
        "note": "as llama-perplexity -c 512: tokenize whole text (add_bos=False, the model's "
        "add_bos_token is false), consecutive 512-token chunks (tail dropped), each evaluated "
        "from scratch, score j in [256, 511): -log softmax(logits[j])[tokens[j+1]], float64; "
        "ppl = exp(nll_sum / n_tokens_scored)",
    }


def load_model(path, **overrides):
    """llama_cpp.Llama with use_extra_bufts=False, which its constructor does not expose: the
    default model params are patched for the duration of the call only. `overrides` replace
    the settings below (make-golden-long.py: n_ctx, flash_attn, the cache types)."""
    orig = llama_cpp.llama_cpp.llama_model_default_params

    def patched():
        params = orig()
        params.use_extra_bufts = False
        return params

    settings = dict(
        model_path=path,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_UBATCH,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        n_gpu_layers=0,
        logits_all=True,
        flash_attn=False,
        seed=0,
        verbose=False,
    )
    settings.update(overrides)
    llama_cpp.llama_cpp.llama_model_default_params = patched
    try:
        return llama_cpp.Llama(**settings)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = orig


def main():
    global LOGITS_TOP_K
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="tokenize,logits,greedy,perplexity",
                    help="comma-separated files to write (default: all four)")
    ap.add_argument("--top-k", type=int, default=100, help="logits kept per position")
    ap.add_argument("--text", help="the perplexity text (default: OUT/perplexity.txt)")
    args = ap.parse_args()
    LOGITS_TOP_K = args.top_k
    only = set(args.only.split(","))

    text_path = args.text or os.path.join(args.out, "perplexity.txt")
    if not os.path.isfile(text_path):
        raise SystemExit(f"make-golden: {text_path} is missing (it is hand-written, not generated)")

    llm = load_model(args.model)
    assert llm.n_vocab() == 49152, llm.n_vocab()
    assert llm.model_params.use_extra_bufts is False

    ref = {
        "package": "llama-cpp-python",
        "version": llama_cpp.__version__,
        "model": os.path.basename(args.model),
        "model_sha256": sha256_of(args.model),
        "n_ctx": N_CTX,
        "settings": {
            "n_threads": N_THREADS,
            "n_threads_batch": N_THREADS,
            "n_batch": N_BATCH,
            "n_ubatch": N_UBATCH,
            "n_gpu_layers": 0,
            "logits_all": True,
            "flash_attn": False,
            "type_k": "f16 (default)",
            "type_v": "f16 (default)",
            "seed": 0,
            "seed_note": "unused: nothing is sampled (argmax only); llama-cpp-python maps 0 to "
            "LLAMA_DEFAULT_SEED",
            "add_bos": False,
            "use_mmap": True,
            "use_extra_bufts": False,
            "use_extra_bufts_why": "llama_model_params.use_extra_bufts=False (llama.cpp's "
            "--no-extra-bufts): weights stay in the plain CPU buffer, so no AMX/repack kernels. "
            "ggml's AMX kernels crash (ldtilecfg, general protection fault) on the VM this was "
            "made on; the plain kernels also depend less on the CPU that runs them",
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        },
        "script": "scripts/make-golden.py",
    }

    os.makedirs(args.out, exist_ok=True)
    makers = [("tokenize", lambda: make_tokenize(llm, ref)), ("logits", lambda: make_logits(llm, ref)),
              ("greedy", lambda: make_greedy(llm, ref)),
              ("perplexity", lambda: make_perplexity(llm, ref, text_path))]
    for name, make in makers:
        if name in only:
            write_json(os.path.join(args.out, name + ".json"), make())


if __name__ == "__main__":
    main()
