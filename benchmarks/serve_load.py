"""Load and abuse test of `lmforge serve`: mixed good, bad and abandoned requests from many clients at once.

The server is started as a subprocess (on the model serve_throughput.py builds: a random-weight `micro` preset with
a toy-world tokenizer, or `--model DIR`) with an API key, and --concurrency closed-loop clients (httpx) send
--requests requests drawn, in a fixed shuffled order, from these kinds (expected status in brackets):
- normal: chat (non-streaming and streaming), text completion and embeddings [200]; a streamed reply must end with
  a finish_reason and carry no error event;
- bad: malformed JSON, wrong field types, no messages, an unknown model [404], max_tokens past the model's context
  length, a negative max_tokens, a prompt longer than the context, a missing or wrong API key [401], an unknown
  route [404], a 5 MiB body [413, over lmforge serve's default --max-body-bytes]; all [400] unless said;
- abandoned: a streaming chat with a long max_tokens that the client drops after its second content chunk.

Printed: counts by kind and status code, statuses other than the expected one, the number of 5xx answers and of
requests that got no HTTP answer at all, latency p50/p95 per kind, and what the server looks like after the load:
whether /health answers 200, one normal chat request still succeeds, the engine's running and waiting sequences
(/metrics) drop to 0 within 10 s, and the tokens generated during the load, less the most the normal replies can
hold (max_tokens each), stay under a quarter of the dropped streams' max_tokens (a dropped stream that kept
decoding would take all of it). The exit status is 1 if any request got a 5xx or no answer, a streamed reply
carried an error, or the server is not healthy and idle afterwards; unexpected 4xx codes are printed only.
`--server transformers` runs the same load against `transformers serve --continuous-batching` for reference (it
has no API key, no embeddings and its own error codes), and `--url` against a server that is already running
(started with --api-key KEY, or pass --api-key ''; no other traffic meanwhile, or the token count is off).

    python benchmarks/serve_load.py [--model DIR] [--requests 240] [--concurrency 32] [--max-tokens 32]
        [--server lmforge|transformers] [--url URL] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_throughput import (  # noqa: E402 - the shared model, prompts and server helpers
    build_model,
    chat_prompts,
    free_port,
    lmforge_command,
    percentile,
    running_server,
    served_model_id,
    transformers_command,
    write_world,
)

BUSY_GAUGES = ("lmforge_running_sequences", "lmforge_queue_depth")  # lmforge serve's /metrics gauges
GENERATED = "lmforge_generation_tokens_total"
NO_ANSWER = "no answer"  # the request got no HTTP status: connection refused or reset, timeout
# kind: (share of the requests, expected status)
KINDS = {
    "chat": (0.17, 200),
    "chat_stream": (0.22, 200),
    "completion": (0.08, 200),
    "embeddings": (0.05, 200),
    "malformed_json": (0.05, 400),
    "wrong_types": (0.07, 400),
    "no_messages": (0.03, 400),
    "unknown_model": (0.04, 404),
    "max_tokens_too_long": (0.04, 400),
    "negative_max_tokens": (0.03, 400),
    "prompt_too_long": (0.03, 400),
    "bad_api_key": (0.04, 401),
    "unknown_route": (0.02, 404),
    "body_too_large": (0.02, 413),
    "disconnect_stream": (0.13, 200),
}
WRONG_TYPES = [
    {"messages": "hello"},
    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"},
    {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
    {"messages": [{"role": 5, "content": "hi"}]},
    {"messages": [{"role": "user", "content": "hi"}], "stream": "yes please"},
    {"messages": [{"role": "user", "content": "hi"}], "n": [1]},
]


@dataclass
class Outcome:
    kind: str
    status: int | str
    seconds: float
    problem: str | None = None  # a 200 whose body or stream was wrong


@dataclass
class Setup:
    url: str
    model_id: str
    api_key: str | None
    context: int  # the model's max_position_embeddings
    max_tokens: int
    prompts: list[list[dict]]


def schedule(count: int, seed: int, with_key: bool, embeddings: bool) -> list[str]:
    kinds = {k: v for k, v in KINDS.items() if (with_key or k != "bad_api_key") and (embeddings or k != "embeddings")}
    total = sum(share for share, _ in kinds.values())
    plan = [kind for kind, (share, _) in kinds.items() for _ in range(max(1, round(count * share / total)))]
    plan = [plan[i % len(plan)] for i in range(count)]
    random.Random(seed).shuffle(plan)
    return plan


async def read_stream(response, stop_after: int | None = None) -> str | None:
    """Read an SSE chat stream; None if it was well formed (or dropped on purpose), else what was wrong."""
    finish, contents = None, 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            return f"unparsable event {data[:80]!r}"
        if "error" in event:
            return f"error event {data[:200]}"
        for choice in event.get("choices", []):
            delta = choice.get("delta") or {}
            contents += bool(delta.get("content") or choice.get("text"))
            finish = choice.get("finish_reason") or finish
        if stop_after is not None and contents >= stop_after:
            return None  # leaving the `stream` block closes the connection mid-reply
    if stop_after is not None:
        return None
    return None if finish else "stream ended without a finish_reason"


def disconnect_max_tokens(s: Setup) -> int:
    return min(512, s.context // 2)


def request_for(kind: str, i: int, s: Setup) -> tuple[str, str, dict, bytes | dict | None, bool]:
    """(method, path, headers, body, streams) of request number i of this kind."""
    auth = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    messages = s.prompts[i % len(s.prompts)]
    chat = {"model": s.model_id, "messages": messages, "max_tokens": s.max_tokens, "temperature": 0}
    if kind == "chat":
        return "POST", "/v1/chat/completions", auth, chat, False
    if kind == "chat_stream":
        return "POST", "/v1/chat/completions", auth, {**chat, "stream": True}, True
    if kind == "completion":
        body = {"model": s.model_id, "prompt": messages[0]["content"], "max_tokens": s.max_tokens, "temperature": 0}
        return "POST", "/v1/completions", auth, body, False
    if kind == "embeddings":
        return "POST", "/v1/embeddings", auth, {"model": s.model_id, "input": [messages[0]["content"], "Kelmar"]}, False
    if kind == "malformed_json":
        return "POST", "/v1/chat/completions", {**auth, "Content-Type": "application/json"}, \
            [b'{"model": "x", "messages": [', b"not json at all", b""][i % 3], False
    if kind == "wrong_types":
        return "POST", "/v1/chat/completions", auth, {"model": s.model_id, **WRONG_TYPES[i % len(WRONG_TYPES)]}, False
    if kind == "no_messages":
        return "POST", "/v1/chat/completions", auth, {"model": s.model_id, "max_tokens": 4}, False
    if kind == "unknown_model":
        return "POST", "/v1/chat/completions", auth, {**chat, "model": "no-such-model"}, False
    if kind == "max_tokens_too_long":
        return "POST", "/v1/chat/completions", auth, {**chat, "max_tokens": s.context + 1}, False
    if kind == "negative_max_tokens":
        return "POST", "/v1/chat/completions", auth, {**chat, "max_tokens": -5}, False
    if kind == "prompt_too_long":
        long = [{"role": "user", "content": "Kelmar " * (2 * s.context)}]
        return "POST", "/v1/chat/completions", auth, {**chat, "messages": long}, False
    if kind == "bad_api_key":
        return "POST", "/v1/chat/completions", [{}, {"Authorization": "Bearer wrong"}][i % 2], chat, False
    if kind == "unknown_route":
        return "GET", "/v1/no-such-route", auth, None, False
    if kind == "body_too_large":
        return "POST", "/v1/chat/completions", auth, {**chat, "messages": [
            {"role": "user", "content": "x" * (5 * 2**20)}]}, False
    if kind == "disconnect_stream":
        return "POST", "/v1/chat/completions", auth, \
            {**chat, "stream": True, "max_tokens": disconnect_max_tokens(s)}, True
    raise ValueError(kind)


async def send(client, kind: str, i: int, s: Setup) -> Outcome:
    import httpx

    method, path, headers, body, streams = request_for(kind, i, s)
    payload = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    start = time.perf_counter()
    try:
        if streams:
            async with client.stream(method, path, headers=headers, **payload) as response:
                status, problem = response.status_code, None
                if status == 200:
                    problem = await read_stream(response, 2 if kind == "disconnect_stream" else None)
                else:
                    await response.aread()
        else:
            response = await client.request(method, path, headers=headers, **payload)
            status, problem = response.status_code, None
            if status == 200:
                problem = check_body(kind, response)
    except httpx.HTTPError as err:
        return Outcome(kind, NO_ANSWER, time.perf_counter() - start, f"{type(err).__name__}: {err}")
    return Outcome(kind, status, time.perf_counter() - start, problem)


def check_body(kind: str, response) -> str | None:
    """What is wrong with a normal request's 200 answer, if anything (a bad request's 200 is reported as an
    unexpected status instead)."""
    if KINDS[kind][1] != 200 or kind == "disconnect_stream":
        return None
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:80]!r}"
    if kind in ("chat", "completion") and not (body.get("choices") and body["choices"][0].get("finish_reason")):
        return f"no choice with a finish_reason: {str(body)[:120]}"
    if kind == "embeddings" and not (body.get("data") and body["data"][0].get("embedding")):
        return f"no embedding: {str(body)[:120]}"
    return None


async def load(s: Setup, plan: list[str], concurrency: int, timeout: float) -> tuple[list[Outcome], float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=s.url, limits=limits, timeout=timeout) as client:
        outcomes: list[Outcome | None] = [None] * len(plan)
        numbers = iter(range(len(plan)))

        async def worker() -> None:
            for i in numbers:
                outcomes[i] = await send(client, plan[i], i, s)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return outcomes, time.perf_counter() - start


def scrape(s: Setup) -> dict[str, float] | None:
    """The unlabelled samples of the server's /metrics page (Prometheus text), or None if it has none."""
    import httpx

    auth = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    response = httpx.get(f"{s.url}/metrics", headers=auth, timeout=30)
    if response.status_code != 200:
        return None
    samples = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        if name and not line.startswith("#") and "{" not in name:
            with contextlib.suppress(ValueError):
                samples[name] = float(value)
    return samples or None


def after_load(s: Setup, outcomes: list[Outcome], before: dict[str, float] | None) -> tuple[bool, list[str]]:
    """(healthy, lines): /health answers 200, one normal chat request succeeds, and where /metrics has lmforge's
    figures, the engine goes idle and the abandoned streams did not decode on to their max_tokens."""
    import httpx

    auth = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    lines, healthy = [], True
    try:
        health = httpx.get(f"{s.url}/health", headers=auth, timeout=30)
        lines.append(f"GET /health: {health.status_code} {health.text[:100]}")
        healthy &= health.status_code == 200
        start = time.perf_counter()
        chat = httpx.post(f"{s.url}/v1/chat/completions", headers=auth, timeout=120, json={
            "model": s.model_id, "messages": s.prompts[0], "max_tokens": s.max_tokens, "temperature": 0})
        ok = chat.status_code == 200 and bool(chat.json().get("choices"))
        lines.append(f"one chat request: {chat.status_code} in {time.perf_counter() - start:.2f}s"
                     + ("" if ok else f" {chat.text[:200]}"))
        healthy &= ok
        after = scrape(s)
        deadline = time.monotonic() + 10
        while after and any(after.get(name) for name in BUSY_GAUGES) and time.monotonic() < deadline:
            time.sleep(0.25)
            after = scrape(s)
        if not after or not all(name in after for name in BUSY_GAUGES):
            lines.append("/metrics has no lmforge running/waiting gauges: engine idleness not checked")
            return healthy, lines
        idle = not any(after[name] for name in BUSY_GAUGES)
        lines.append(f"engine idle after the load: {'yes' if idle else 'NO'} ("
                     + ", ".join(f"{name} {after[name]:g}" for name in BUSY_GAUGES) + ")")
        healthy &= idle
        if before and GENERATED in before and GENERATED in after:
            healthy &= abandoned_tokens(s, outcomes, after[GENERATED] - before[GENERATED], lines)
    except httpx.HTTPError as err:
        lines.append(f"no answer: {type(err).__name__}: {err}")
        healthy = False
    return healthy, lines


def abandoned_tokens(s: Setup, outcomes: list[Outcome], generated: float, lines: list[str]) -> bool:
    """Whether the dropped streams stopped decoding: tokens generated beyond what the normal requests can account
    for (max_tokens each, the final check included) must stay under a quarter of the dropped streams' max_tokens."""
    normal = sum(o.kind in ("chat", "chat_stream", "completion") and o.status == 200 for o in outcomes) + 1
    dropped = sum(o.kind == "disconnect_stream" and o.status == 200 for o in outcomes)
    beyond = max(0.0, generated - normal * s.max_tokens)
    budget = dropped * disconnect_max_tokens(s)
    ok = beyond <= budget / 4
    lines.append(f"tokens generated: {generated:.0f}; the {normal} normal replies account for at most "
                 f"{normal * s.max_tokens}, so the {dropped} dropped streams decoded at least {beyond:.0f} of their "
                 f"{budget} max_tokens: {'cancelled' if ok else 'NOT cancelled'} (limit: a quarter)")
    return ok


def report(outcomes: list[Outcome], wall: float, healthy: bool, health_lines: list[str]) -> int:
    by_kind: dict[str, list[Outcome]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_kind[outcome.kind].append(outcome)
    statuses = sorted({str(o.status) for o in outcomes})
    print(f"\n{'kind':22} {'expect':>6} " + " ".join(f"{s:>9}" for s in statuses) + f" {'p50 s':>7} {'p95 s':>7}")
    for kind in KINDS:
        if kind not in by_kind:
            continue
        counts = collections.Counter(str(o.status) for o in by_kind[kind])
        seconds = [o.seconds for o in by_kind[kind]]
        print(f"{kind:22} {KINDS[kind][1]:>6} " + " ".join(f"{counts.get(s, 0) or '':>9}" for s in statuses)
              + f" {percentile(seconds, 0.5):7.3f} {percentile(seconds, 0.95):7.3f}")
    totals = collections.Counter(str(o.status) for o in outcomes)
    print(f"{'all':22} {'':>6} " + " ".join(f"{totals[s]:>9}" for s in statuses)
          + f" {percentile([o.seconds for o in outcomes], 0.5):7.3f} "
          + f"{percentile([o.seconds for o in outcomes], 0.95):7.3f}")

    server_errors = [o for o in outcomes if isinstance(o.status, int) and o.status >= 500]
    no_answer = [o for o in outcomes if o.status == NO_ANSWER]
    broken = [o for o in outcomes if o.status == 200 and o.problem]
    unexpected = collections.Counter((o.kind, o.status) for o in outcomes
                                     if o.status != KINDS[o.kind][1] and o.status != NO_ANSWER
                                     and not (isinstance(o.status, int) and o.status >= 500))
    print(f"\n{len(outcomes)} requests in {wall:.1f}s; 5xx: {len(server_errors)}; no answer: {len(no_answer)}; "
          f"200 with a broken body or stream: {len(broken)}")
    for (kind, status), count in sorted(unexpected.items(), key=str):
        print(f"  unexpected: {kind} answered {status} (expected {KINDS[kind][1]}) x{count}")
    for o in (server_errors + no_answer + broken)[:20]:
        print(f"  {o.kind}: {o.status} {o.problem or ''}"[:300])
    print("\nafter the load:")
    for line in health_lines:
        print(f"  {line}")
    failed = bool(server_errors or no_answer or broken or not healthy)
    print(f"\nserver still healthy: {'yes' if healthy else 'NO'}; "
          f"{'FAIL' if failed else 'PASS'} (no 5xx, every request answered, streams well formed, healthy after)")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="local HF model directory (default: a random-weight preset)")
    parser.add_argument("--preset", default="micro", help="preset for the random-weight model (default: micro)")
    parser.add_argument("--requests", type=int, default=240, help="requests in all (default: 240)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default: 32)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of normal requests (default: 32)")
    parser.add_argument("--server", choices=["lmforge", "transformers"], default="lmforge",
                        help="which server to start (default: lmforge)")
    parser.add_argument("--url", help="test a server already running at this URL instead of starting one")
    parser.add_argument("--api-key", default="bench-key",
                        help="API key the server is started with and clients send (default: bench-key; '' for none)")
    parser.add_argument("--lmforge-args", default="", help="extra flags for lmforge serve, one string")
    parser.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for /health")
    parser.add_argument("--context", type=int, help="the server's context length in tokens (default: the model's "
                        "max_position_embeddings; 2048 with --url and no --model)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds a request may take (default: 120)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request order (default: 0)")
    args = parser.parse_args()
    api_key = args.api_key or None
    if args.server == "transformers" and not args.url:
        api_key = None  # transformers serve has no API keys

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prompts = chat_prompts(write_world(work), 64, seed=args.seed)
        model_dir = Path(args.model) if args.model else None if args.url else build_model(work, args.preset)
        context = args.context or 2048
        if model_dir is not None and not args.context:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            context = int(config.get("max_position_embeddings", 2048))
        plan = schedule(args.requests, args.seed, api_key is not None, args.server == "lmforge")
        print(f"{args.requests} requests from {args.concurrency} concurrent clients against "
              f"{args.url or args.server + ' serve'}; model context {context} tokens, normal max_tokens "
              f"{args.max_tokens}; mix: " + ", ".join(f"{k} {n}" for k, n in collections.Counter(plan).items()),
              flush=True)

        def run(url: str) -> int:
            s = Setup(url, served_model_id(url, api_key), api_key, context, args.max_tokens, prompts)
            before = scrape(s)
            outcomes, wall = asyncio.run(load(s, plan, args.concurrency, args.timeout))
            healthy, lines = after_load(s, outcomes, before)
            return report(outcomes, wall, healthy, lines)

        if args.url:
            sys.exit(run(args.url.rstrip("/")))
        port = free_port()
        if args.server == "lmforge":
            command = lmforge_command(model_dir, port, None, args.lmforge_args, api_key)
        else:
            command = transformers_command(model_dir, port, 256, "")
        with running_server(command, port, work / "server.log", args.startup_timeout, api_key) as (url, _):
            code = run(url)
        sys.exit(code)


if __name__ == "__main__":
    main()
