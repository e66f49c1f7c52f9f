"""The official openai client against `qgraph serve` (run by scripts/test-serve-openai).

Starts the server itself on a free port with the real model, checks what apps rely on,
sends SIGTERM, and fails loudly (non-zero exit, the assertion's message) on any mismatch.
"""
import argparse
import json
import signal
import subprocess
import sys
import threading
import urllib.request

import openai

ap = argparse.ArgumentParser()
ap.add_argument("--qgraph", required=True)
ap.add_argument("--model", required=True)
args = ap.parse_args()

server = subprocess.Popen(
    [args.qgraph, "serve", "-m", args.model, "--port", "0", "--parallel", "4",
     "--ctx", "512", "-t", "2", "--api-key", "test-key"],
    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
port = None
for line in server.stderr:
    if line.startswith("qgraph serve: listening on http://"):
        port = int(line.rsplit(":", 1)[1])
        break
assert port, "the server did not say where it listens"
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
base = f"http://127.0.0.1:{port}"

def health():
    try:
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

import time
deadline = time.time() + 120
while health()[0] != 200:
    assert time.time() < deadline, "never healthy"
    time.sleep(0.05)

try:
    client = openai.OpenAI(base_url=base + "/v1", api_key="test-key", max_retries=0)
    models = client.models.list()
    model = models.data[0].id
    assert model.endswith(".gguf"), model

    q = [{"role": "user", "content": "List three fruits."}]
    whole = client.chat.completions.create(model=model, messages=q, max_tokens=24, temperature=0)
    text = whole.choices[0].message.content
    reason = whole.choices[0].finish_reason
    assert text and reason in ("stop", "length"), (text, reason)
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    def streamed():
        parts, finish, usage, roles = [], None, None, []
        stream = client.chat.completions.create(
            model=model, messages=q, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.role:
                    roles.append(c.delta.role)
                if c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
        return "".join(parts), finish, usage, roles

    s_text, s_reason, s_usage, roles = streamed()
    assert (s_text, s_reason) == (text, reason), (s_text, text)
    assert roles == ["assistant"], roles
    assert s_usage.completion_tokens == whole.usage.completion_tokens

    # Eight concurrent streams: every one gets the lone request's text.
    results = [None] * 8
    def worker(i):
        results[i] = streamed()[:2]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == (text, reason) for r in results), results

    c = client.completions.create(model=model, prompt="The capital of France is",
                                  max_tokens=6, temperature=0)
    assert c.choices[0].text and c.choices[0].finish_reason in ("stop", "length")

    # Errors become the client's exceptions.
    for bad, exc in [
        (dict(messages=[{"role": "wizard", "content": "x"}]), openai.BadRequestError),
        (dict(messages=q, max_tokens=-1), openai.BadRequestError),
        (dict(messages=[{"role": "user", "content": "word " * 600}]), openai.BadRequestError),
    ]:
        try:
            client.chat.completions.create(model=model, **bad)
            raise AssertionError(f"no error for {bad}")
        except exc as e:
            assert e.status_code == 400, e
    try:
        openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
        raise AssertionError("a wrong key was taken")
    except openai.AuthenticationError:
        pass

    assert health() == (200, {"status": "ok"}), health()
finally:
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=60)
assert code == 0, f"exit {code} after SIGTERM"
print("openai client: all checks passed")
