"""qgraph vs llama.cpp, alternating in one run (see scripts/bench-vs-llama)."""
import argparse
import ctypes
import json
import statistics
import subprocess
import time

import llama_cpp


def load_llama(model, threads, extra_bufts=False, n_ctx=512, flash_attn=False, cache=None):
    # --no-extra-bufts by default (see tests/golden/README.md): patch the default model
    # params while the constructor runs. --extra-bufts keeps llama.cpp's repacked ("CPU_REPACK")
    # weight layouts, its fastest Q4_0 path, where the CPU runs them.
    orig = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = orig()
        p.use_extra_bufts = extra_bufts
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        kw = {}
        if cache is not None:
            kw = {"type_k": GGML_TYPES[cache], "type_v": GGML_TYPES[cache]}
        llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=512, n_threads=threads,
                              n_threads_batch=threads, logits_all=False, verbose=False,
                              flash_attn=flash_attn, **kw)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = orig
    assert llm.model_params.use_extra_bufts is extra_bufts
    return llm


# ggml's type ids for the KV cache types qgraph has.
GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}


def fill_depth(llm, n_depth):
    """Evaluates n_depth tokens (llama-bench's n_depth) once; rounds rewind to it."""
    vocab = llm.n_vocab()
    llm.reset()
    if n_depth:
        llm.eval([(i * 104729 + 17) % vocab for i in range(n_depth)])


def llama_round(llm, n_prompt, n_gen, n_depth=0):
    """One pp and one tg measurement after n_depth tokens (fill_depth made them): eval
    drops the cache past n_tokens, so setting it rewinds."""
    vocab = llm.n_vocab()
    prompt = [(i * 7919) % vocab for i in range(n_prompt)]
    out = {}
    if n_prompt:
        llm.n_tokens = n_depth
        t = time.perf_counter()
        llm.eval(prompt)
        out["pp"] = n_prompt / (time.perf_counter() - t)
    if n_gen:
        llm.n_tokens = n_depth
        tok = 1
        t = time.perf_counter()
        for i in range(n_gen):
            llm.eval([tok])
            tok = 1 + (i * 131) % (vocab - 1)
        out["tg"] = n_gen / (time.perf_counter() - t)
    return out


def qgraph_round(exe, model, n_prompt, n_gen, threads, n_depth=0, cache=None):
    cmd = [exe, "bench", "-m", model, "-p", str(n_prompt), "-n", str(n_gen), "-t", str(threads),
           "-d", str(n_depth), "-r", "1", "--json"]
    if cache is not None:
        cmd += ["--cache-type", cache]
    rows = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    out = {}
    for r in rows:
        out["pp" if r["n_prompt"] else "tg"] = r["avg_ts"]
        if r["n_gen"]:
            out["roofline"] = r["roofline_fraction"]
            out["bandwidth"] = r["read_bandwidth_gbs"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qgraph", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", type=int, default=1)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("-d", type=int, default=0, help="tokens in the context first (n_depth)")
    ap.add_argument("--cache-type", choices=sorted(GGML_TYPES), default=None,
                    help="both engines' K and V cache type (default: each one's, f16)")
    ap.add_argument("--flash-attn", action="store_true", help="llama.cpp with flash attention")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="let llama.cpp repack weights (its Q4_0/Q8_0 fast path)")
    a = ap.parse_args()
    n_ctx = max(512, a.d + max(a.p, a.n) + 8)
    llm = load_llama(a.model, a.t, a.extra_bufts, n_ctx, a.flash_attn, a.cache_type)
    llama_round(llm, 8, 8)  # warm
    fill_depth(llm, a.d)
    rounds = {"qgraph": [], "llama.cpp": []}
    for _ in range(a.r):
        rounds["qgraph"].append(qgraph_round(a.qgraph, a.model, a.p, a.n, a.t, a.d, a.cache_type))
        rounds["llama.cpp"].append(llama_round(llm, a.p, a.n, a.d))
    bufts = "with" if a.extra_bufts else "without"
    fa = "on" if a.flash_attn else "off"
    print(f"model {a.model}, {a.t} thread(s), depth {a.d}, {a.r} alternating rounds, llama.cpp "
          f"{bufts} its repacked layouts, flash attention {fa}, cache {a.cache_type or 'f16'}; "
          f"medians (min..max), t/s\n")
    print("| engine | test | t/s | range |")
    print("| --- | --- | ---: | --- |")
    med = {}
    for eng, rs in rounds.items():
        for test, n in (("pp", a.p), ("tg", a.n)):
            v = [r[test] for r in rs if test in r]
            if not v:
                continue
            med[(eng, test)] = statistics.median(v)
            print(f"| {eng} | {test}{n} | {med[(eng, test)]:.1f} | {min(v):.1f}..{max(v):.1f} |")
    print()
    for test, n in (("pp", a.p), ("tg", a.n)):
        if ("qgraph", test) in med:
            print(f"{test}{n}: qgraph / llama.cpp = {med[('qgraph', test)] / med[('llama.cpp', test)]:.2f}x")
    roof = [r["roofline"] for r in rounds["qgraph"] if r.get("roofline")]
    bw = [r["bandwidth"] for r in rounds["qgraph"] if r.get("bandwidth")]
    if roof:
        print(f"qgraph tg{a.n}: {100 * statistics.median(roof):.0f}% of the read-bandwidth roofline "
              f"(bandwidth {statistics.median(bw):.1f} GB/s, measured in each round)")


if __name__ == "__main__":
    main()
