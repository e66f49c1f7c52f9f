"""Serving benchmark behind scripts/bench-serve (see there)."""
import argparse
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.request

import openai

ap = argparse.ArgumentParser()
ap.add_argument("--qgraph", required=True)
ap.add_argument("--model", required=True)
ap.add_argument("-t", type=int, default=2)
ap.add_argument("--parallel", type=int, default=4)
ap.add_argument("--tokens", type=int, default=96)
ap.add_argument("--ctx", type=int, default=1024, help="positions per slot")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--requests", type=int, default=3, help="completions per client, back to back")
ap.add_argument("--llama-server")
ap.add_argument("--load", action="store_true")
a = ap.parse_args()

TOPICS = ["rivers", "bread", "volcanoes", "libraries", "trains", "bees", "glass", "tides"]
LONG = ("The committee met on Tuesday to discuss the budget, the schedule for the new library, "
        "and a proposal to rename the main square after the town's first mayor. ") * 5


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    flags = open("/proc/cpuinfo").read()
    fam = re.search(r"cpu family\s*:\s*(\d+)", flags).group(1)
    mod = re.search(r"model\s*:\s*(\d+)", flags).group(1)
    avx512 = "avx512_vnni" in flags
    return f"{name} family {fam} model {mod}, {os.cpu_count()} CPUs, AVX-512 VNNI: {avx512}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_healthy(base, proc):
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit("server never healthy")


def start(kind):
    port = free_port()
    if kind == "qgraph":
        cmd = [a.qgraph, "serve", "-m", a.model, "--port", str(port), "-t", str(a.t),
               "--parallel", str(a.parallel), "--ctx", str(a.ctx)]
    else:
        cmd = [a.llama_server, "-m", a.model, "--port", str(port), "--host", "127.0.0.1",
               "-t", str(a.t), "-tb", str(a.t), "-np", str(a.parallel),
               "-c", str(a.ctx * a.parallel), "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    return proc, base


def stream_once(client, prompt, max_tokens, marks=None):
    """One streamed completion; returns (tokens, seconds, time to first text)."""
    t0 = time.perf_counter()
    first = None
    n = 0
    stream = client.completions.create(
        model="m", prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.text and first is None:
                first = time.perf_counter() - t0
                if marks is not None:
                    marks.set()
    dt = time.perf_counter() - t0
    n = usage.completion_tokens if usage else max_tokens
    return n, dt, first


def throughput(base, streams):
    """Aggregate t/s of `streams` clients, each streaming --requests completions back to back
    (a steady load: the first prompts and the last stragglers weigh little)."""
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
    results = [None] * streams
    def worker(i):
        got = [stream_once(client, f"Write about {TOPICS[(i + k) % len(TOPICS)]}, part {k}.",
                           a.tokens) for k in range(a.requests)]
        results[i] = (sum(g[0] for g in got),)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return sum(r[0] for r in results) / wall


def ttft(base, busy, tag):
    """Time to first token of a ~150-token prompt no slot has cached (`tag` makes it new)."""
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
    others = []
    if busy:
        started = [threading.Event() for _ in range(busy)]
        for i in range(busy):
            th = threading.Thread(target=stream_once, args=(
                client, f"Write about {TOPICS[i]}.", 400, started[i]))
            th.start()
            others.append(th)
        for e in started:
            e.wait()
        time.sleep(0.2)
    _, _, first = stream_once(client, f"Item {tag}. " + LONG, 4)
    for th in others:
        th.join()
    return first


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def load_test(proc, base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=300)
    errors, done = [], [0]
    lock = threading.Lock()
    def client_run(c):
        for r in range(8):
            want = 8 + (c * 7 + r * 13) % 57
            try:
                if r % 2:
                    n, _, _ = stream_once(client, f"Client {c} request {r}: {TOPICS[r]}", want)
                else:
                    out = client.completions.create(
                        model="m", prompt=f"Client {c} request {r}: {TOPICS[r]}",
                        max_tokens=want, temperature=0.7, seed=c * 100 + r,
                        extra_body={"ignore_eos": True})
                    n = out.usage.completion_tokens
                    assert out.choices[0].finish_reason == "length"
                if n != want:
                    raise AssertionError(f"{n} tokens of {want}")
                with lock:
                    done[0] += 1
            except openai.APIStatusError as e:
                if e.status_code != 503:
                    with lock:
                        errors.append(f"client {c} request {r}: {e}")
                else:
                    with lock:
                        done[0] += 1  # a clear refusal, not a loss
            except Exception as e:
                with lock:
                    errors.append(f"client {c} request {r}: {e!r}")
    def wave():
        ths = [threading.Thread(target=client_run, args=(c,)) for c in range(16)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
    wave()
    after_warmup = rss_kb(proc.pid)
    t0 = time.perf_counter()
    wave()
    wall = time.perf_counter() - t0
    end = rss_kb(proc.pid)
    print(f"load: 2 waves of 16 clients x 8 requests: {done[0]} of 256 answered, "
          f"{len(errors)} errors; second wave {wall:.1f} s; RSS after the first wave "
          f"{after_warmup / 1024:.1f} MiB, after the second {end / 1024:.1f} MiB")
    for e in errors[:10]:
        print("  ", e)


print(f"CPU: {cpu()}")
print(f"model {os.path.basename(a.model)}, {a.t} threads, {a.parallel} slots of {a.ctx}, "
      f"{a.tokens} tokens per completion, {a.requests} per client back to back, "
      f"{a.rounds} rounds alternating")
kinds = ["qgraph"] + (["llama-server"] if a.llama_server else [])
figs = {k: {"one": [], "many": [], "idle": [], "busy": []} for k in kinds}
for r in range(a.rounds):
    for k in kinds:
        proc, base = start(k)
        try:
            throughput(base, 1)  # warm
            figs[k]["one"].append(throughput(base, 1))
            figs[k]["many"].append(throughput(base, a.parallel))
            figs[k]["idle"].append(ttft(base, 0, f"{r}a"))
            figs[k]["busy"].append(ttft(base, a.parallel - 1, f"{r}b"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        f = figs[k]
        print(f"round {r + 1} {k:12s}: 1 stream {f['one'][-1]:6.1f} t/s, {a.parallel} streams "
              f"{f['many'][-1]:6.1f} t/s aggregate, TTFT idle {f['idle'][-1] * 1e3:6.1f} ms, "
              f"with {a.parallel - 1} streaming {f['busy'][-1] * 1e3:6.1f} ms", flush=True)
med = {k: {m: statistics.median(v) for m, v in f.items()} for k, f in figs.items()}
# Ratios within a round (one server, minutes apart at most) are the side-by-side figures;
# the host's speed moves between rounds.
for k in kinds:
    per = [m / o for m, o in zip(figs[k]["many"], figs[k]["one"])]
    print(f"  {k}: {a.parallel} streams / 1 per round: {', '.join(f'{r:.2f}' for r in per)}; "
          f"median {statistics.median(per):.2f}x")
print("\nmedians:")
for k in kinds:
    m = med[k]
    print(f"  {k:12s}: 1 stream {m['one']:6.1f} t/s, {a.parallel} streams {m['many']:6.1f} t/s "
          f"({m['many'] / m['one']:.2f}x), TTFT busy/idle {m['busy'] / m['idle']:.2f}x "
          f"({m['idle'] * 1e3:.0f} -> {m['busy'] * 1e3:.0f} ms)")
if a.llama_server:
    q, l = med["qgraph"], med["llama-server"]
    print(f"  qgraph / llama-server: 1 stream {q['one'] / l['one']:.2f}x, "
          f"{a.parallel} streams {q['many'] / l['many']:.2f}x")
if a.load:
    proc, base = start("qgraph")
    try:
        load_test(proc, base)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        print(f"load: qgraph exited {code} after SIGTERM")
