"""Serving throughput: `lmforge serve` against sequential HF `generate` and `transformers serve --continuous-batching`,
side by side in one run, on the same model, prompts and decoding.

Model: by default a randomly initialised `micro` preset Llama with a byte-level BPE trained on the toy world (chatml
template; EOS and `<|im_end|>` as stop tokens, as an SFT run saves them), in a temporary folder; `--model DIR`
serves any local HF model folder instead. Prompts: --requests chat questions from the toy world's held-out QA
(English and Chinese facts and arithmetic, shuffled with a fixed seed), each one user turn.

Backends, run one after the other (never at the same time), each after a warm-up round that is not timed:
- lmforge: `lmforge serve --model DIR` as a subprocess on a free port, ready once /health answers 200;
- lookup: the same with `--prompt-lookup N` (--lookup-tokens), speculative decoding by prompt lookup; greedy, so the
  replies must not change, and the share of draft tokens the server confirmed is printed;
- sequential: plain transformers in this process, one `model.generate` at a time, the prompt rendered with
  `tokenizer.apply_chat_template(messages, add_generation_prompt=True)`: what a naive FastAPI + generate server
  does. Its clients are simulated: requests are served in arrival order, and request i (i >= concurrency) arrives
  when request i - concurrency finished, exactly as --concurrency closed-loop clients would see a one-at-a-time
  server. No HTTP is involved, which only flatters this baseline;
- transformers: `transformers serve --continuous-batching DIR` (the positional argument pins the model) as a
  subprocess; its KV cache is sized to the workload with --cb-num-blocks (on a CPU it otherwise takes a share of
  system RAM).

The HTTP backends get --concurrency closed-loop streaming clients (`openai.AsyncOpenAI`, one shared connection
pool): each sends its next request as soon as its previous one finished. All backends load the weights in one dtype
(--dtype), on the GPU if there is one; decoding is greedy (temperature 0) with the same max_tokens everywhere. A reply may end early at a stop token, so throughput is completion tokens per
second of wall time, with completion tokens as each backend reports them: the `usage` of the last streamed chunk
(asked for with stream_options where the server accepts it), and for sequential generate the new token ids less a
final stop token, as lmforge's usage counts them.

TTFT is from sending a request to its first streamed chunk with content (for sequential generate: from its
simulated arrival, queue wait included, to the streamer's first new token). Any request that raises, returns an
error or ends without a finish_reason counts as failed and is printed. "same text" counts replies identical to
sequential generate's for the same prompt: greedy decoding of the same weights, but batching may change the last
bits of a float and so a near-tied token, so it is a sanity check, not a pass/fail. "other CPU" is the share of
all cores that processes other than the benchmark and the server used during the timed run: on a shared machine,
repeat a run where it is high. The benchmark's own clients run on the same cores as the servers, which costs the
HTTP backends and not the in-process sequential one.

    python benchmarks/serve_throughput.py [--model DIR] [--requests 64] [--concurrency 16] [--max-tokens 64]
        [--backends lmforge,lookup,sequential,transformers] [--max-batch-size N] [--lmforge-args "..."]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BIN = Path(sys.executable).parent
GOALS = {"sequential": 4.0, "transformers": 1.5}
LABELS = {"lmforge": "lmforge serve", "lookup": "lmforge serve, lookup", "sequential": "sequential generate",
          "transformers": "transformers serve --cb"}


# ---------------------------------------------------------------- model and prompts


def build_model(work: Path, preset: str = "micro", seed: int = 0) -> Path:
    """A random-weight preset with a BPE trained on the toy world, saved as an SFT run would save it."""
    import torch

    from lmforge.models import build_from_preset, save_model, set_stop_tokens
    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.tokenizer import record_texts, train_bpe

    texts = [text for name in ("pretrain.jsonl", "sft_train.jsonl")
             for line in (work / "world" / name).read_text(encoding="utf-8").splitlines()
             for text in record_texts(json.loads(line))]
    tokenizer = train_bpe(texts, vocab_size=4096)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    torch.manual_seed(seed)
    model = build_from_preset(preset, tokenizer)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])
    save_model(model, tokenizer, work / "model")
    return work / "model"


def write_world(work: Path) -> Path:
    from lmforge.world import write_world as synth

    synth(0, work / "world", "tiny")
    return work / "world"


def chat_prompts(world: Path, count: int, seed: int = 0) -> list[list[dict]]:
    """`count` one-turn conversations from the world's held-out questions (cycled if there are fewer)."""
    questions = [json.loads(line)["question"] for line in (world / "qa_test.jsonl").read_text("utf-8").splitlines()]
    random.Random(seed).shuffle(questions)
    return [[{"role": "user", "content": questions[i % len(questions)]}] for i in range(count)]


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def log_tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server(command: list[str], port: int, log: Path, startup_timeout: float, api_key: str | None = None):
    """Start a server subprocess, wait until GET /health answers 200, yield (base URL, process); stop it after."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env(),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{shlex.join(command)} exited with {proc.returncode} before /health answered; "
                                   f"last lines of {log}:\n{log_tail(log)}")
            try:
                if httpx.get(f"{url}/health", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{shlex.join(command)}: no 200 from /health within {startup_timeout:.0f}s; "
                                   f"last lines of {log}:\n{log_tail(log)}")
            time.sleep(0.5)
        yield url, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lmforge_command(model: Path, port: int, max_batch_size: int | None, extra: str, api_key: str | None = None,
                    dtype: str | None = None):
    command = [str(BIN / "lmforge"), "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    if dtype:
        command += ["--dtype", dtype]
    if max_batch_size:
        command += ["--max-batch-size", str(max_batch_size)]
    if api_key:
        command += ["--api-key", api_key]
    return command + shlex.split(extra)


def transformers_command(model: Path, port: int, num_blocks: int, extra: str, dtype: str | None = None) -> list[str]:
    command = [str(BIN / "transformers"), "serve", "--continuous-batching", "--host", "127.0.0.1",
               "--port", str(port)]
    if dtype:
        command += ["--dtype", dtype]
    if num_blocks:
        command += ["--cb-num-blocks", str(num_blocks)]
    return command + shlex.split(extra) + [str(model)]


def served_model_id(url: str, api_key: str | None = None) -> str:
    """The first model /v1/models lists: the name requests must use."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{url}/v1/models", headers=headers, timeout=10)
    response.raise_for_status()
    return response.json()["data"][0]["id"]


# ---------------------------------------------------------------- measurement


@dataclass
class Reply:
    tokens: int = 0
    text: str = ""
    ttft: float | None = None  # seconds to the first content
    seconds: float = 0.0
    error: str | None = None
    usage: bool = True  # tokens as the server's usage said (False: the streamed text re-tokenized)


@dataclass
class Result:
    backend: str
    replies: list[Reply] = field(default_factory=list)
    wall: float = 0.0
    count_source: str = ""
    other_cpu: float = math.nan  # share of all cores that other processes used during the timed run
    skipped: str | None = None  # why the backend did not run
    note: str = ""

    @property
    def failed(self) -> list[Reply]:
        return [r for r in self.replies if r.error is not None]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.replies if r.error is None)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (no interpolation), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def stream_one(client, model_id: str, messages: list[dict], max_tokens: int, usage_option: bool,
                     tokenizer) -> Reply:
    reply, start = Reply(), time.perf_counter()
    extra = {"stream_options": {"include_usage": True}} if usage_option else {}
    try:
        stream = await client.chat.completions.create(model=model_id, messages=messages, max_tokens=max_tokens,
                                                      temperature=0, stream=True, **extra)
        finish, usage, pieces = None, None, []
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    if reply.ttft is None:
                        reply.ttft = time.perf_counter() - start
                    pieces.append(choice.delta.content)
                finish = choice.finish_reason or finish
        reply.text = "".join(pieces)
        if finish is None:
            reply.error = "the stream ended without a finish_reason"
        elif usage is None:
            reply.tokens, reply.usage = len(tokenizer(reply.text, add_special_tokens=False)["input_ids"]), False
        else:
            reply.tokens = usage.completion_tokens
    except Exception as err:  # noqa: BLE001 - every failure is counted and printed
        reply.error = f"{type(err).__name__}: {err}"
    reply.seconds = time.perf_counter() - start
    return reply


async def closed_loop(url: str, model_id: str, prompts: list[list[dict]], concurrency: int, max_tokens: int,
                      usage_option: bool, tokenizer, api_key: str | None = None) -> tuple[list[Reply], float]:
    """`concurrency` clients, each sending its next prompt when its previous reply has finished."""
    import httpx
    from openai import AsyncOpenAI

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key=api_key or "none", max_retries=0, timeout=600,
                           http_client=httpx.AsyncClient(limits=limits, timeout=600)) as client:
        replies: list[Reply | None] = [None] * len(prompts)
        next_index = iter(range(len(prompts)))

        async def worker() -> None:
            for i in next_index:
                replies[i] = await stream_one(client, model_id, prompts[i], max_tokens, usage_option, tokenizer)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return replies, time.perf_counter() - start


class CpuWatch:
    """The share of all cores that processes other than ours (this one and the server's) used: a noisy machine."""

    def __init__(self, pids: list[int]):
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]

    @staticmethod
    def _busy() -> float:
        import psutil

        times = psutil.cpu_times()  # guest time is already inside user time on Linux
        idle = sum(getattr(times, name, 0.0) for name in ("idle", "iowait", "guest", "guest_nice"))
        return sum(times) - idle

    def _own(self) -> float:
        return sum(t.user + t.system + t.children_user + t.children_system
                   for t in (p.cpu_times() for p in self.procs))

    def __enter__(self) -> "CpuWatch":
        self.start, self.busy, self.own = time.perf_counter(), self._busy(), self._own()
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        seconds = time.perf_counter() - self.start
        other = (self._busy() - self.busy) - (self._own() - self.own)
        self.share = max(0.0, other) / (seconds * (psutil.cpu_count() or 1))


def run_http(backend: str, url: str, pid: int, prompts, warm, args, usage_option: bool, tokenizer) -> Result:
    model_id = served_model_id(url)
    asyncio.run(closed_loop(url, model_id, warm, args.concurrency, min(args.max_tokens, 8), usage_option, tokenizer))
    with CpuWatch([os.getpid(), pid]) as cpu:
        replies, wall = asyncio.run(closed_loop(url, model_id, prompts, args.concurrency, args.max_tokens,
                                                usage_option, tokenizer))
    retokenized = sum(not r.usage for r in replies if r.error is None)
    source = "the usage of the last streamed chunk" + (
        f" ({retokenized} replies without usage: their streamed text re-tokenized)" if retokenized else "")
    return Result(backend, replies, wall, source, cpu.share)


class FirstTokenTimer:
    """A generate() streamer that notes when the first new token arrives (the first put() is the prompt)."""

    def __init__(self):
        self.puts, self.first = 0, None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def run_sequential(model_dir: Path, prompts, warm, args) -> Result:
    """One generate() at a time, in arrival order, with closed-loop clients simulated from the finish times."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, args.dtype),
                                                 local_files_only=True).to(device).eval()
    eos = model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos])

    def generate(messages, max_tokens: int, timer=None) -> tuple[int, str]:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"].to(device)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, streamer=timer, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        if new and new[-1] in stop_ids:  # counted as the servers' usage counts: the reply, not its stop token
            new = new[:-1]
        return len(new), tokenizer.decode(new, skip_special_tokens=True)

    generate(warm[0], min(args.max_tokens, 8))
    replies, finished = [], []
    with CpuWatch([os.getpid()]) as cpu:
        start = time.perf_counter()
        for i, messages in enumerate(prompts):
            arrival = start if i < args.concurrency else finished[i - args.concurrency]
            timer, reply = FirstTokenTimer(), Reply()
            try:
                reply.tokens, reply.text = generate(messages, args.max_tokens, timer)
            except Exception as err:  # noqa: BLE001 - counted and printed
                reply.error = f"{type(err).__name__}: {err}"
            finished.append(time.perf_counter())
            reply.seconds = finished[-1] - arrival
            reply.ttft = timer.first - arrival if timer.first is not None and reply.text else None
            replies.append(reply)
    return Result("sequential", replies, finished[-1] - start, "the generated token ids, less a final stop token",
                  cpu.share)


def run_backend(backend: str, model_dir: Path, tokenizer, prompts, warm, work: Path, args) -> Result:
    try:
        if backend == "sequential":
            return run_sequential(model_dir, prompts, warm, args)
        port = free_port()
        if backend in ("lmforge", "lookup"):
            extra = args.lmforge_args + (f" --prompt-lookup {args.lookup_tokens}" if backend == "lookup" else "")
            command = lmforge_command(model_dir, port, args.max_batch_size, extra, dtype=args.dtype)
        else:
            command = transformers_command(model_dir, port, args.cb_num_blocks, args.transformers_args, args.dtype)
        with running_server(command, port, work / f"{backend}.log", args.startup_timeout) as (url, proc):
            # transformers serve rejects stream_options but sends usage with its last chunk anyway
            result = run_http(backend, url, proc.pid, prompts, warm, args, backend != "transformers", tokenizer)
            if backend == "lookup":
                result.note = draft_acceptance(url)
            return result
    except Exception as err:  # noqa: BLE001 - one backend failing to start still reports the others
        return Result(backend, skipped=f"{type(err).__name__}: {err}")


def draft_acceptance(url: str) -> str:
    """The share of prompt-lookup draft tokens the server confirmed, from its /metrics (warm-up included)."""
    import httpx

    counts = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("lmforge_draft_tokens_total", "lmforge_draft_tokens_accepted_total"):
            counts[name] = float(value)
    drafted, accepted = counts.get("lmforge_draft_tokens_total", 0), counts.get("lmforge_draft_tokens_accepted_total", 0)
    return f"; {accepted:.0f} of {drafted:.0f} draft tokens confirmed" if drafted else "; no draft tokens"


def cb_blocks(tokenizer, prompts, args) -> int:
    """KV-cache blocks (256-token pages) for every concurrent request's prompt plus max_tokens, twice over."""
    longest = max(len(tokenizer.apply_chat_template(p, add_generation_prompt=True)) for p in prompts)
    return max(64, 2 * args.concurrency * math.ceil((longest + args.max_tokens) / 256))


# ---------------------------------------------------------------- report


def report(results: dict[str, Result], args) -> None:
    base = results.get("sequential")
    print(f"\n{'backend':24} {'requests':>8} {'failed':>6} {'tokens':>7} {'wall s':>7} {'tokens/s':>9} "
          f"{'TTFT p50':>9} {'TTFT p95':>9} {'same text':>10} {'other CPU':>10}")
    for name, result in results.items():
        if result.skipped:
            print(f"{LABELS[name]:24} not run: {result.skipped.splitlines()[0]}")
            continue
        ttfts = [r.ttft for r in result.replies if r.error is None and r.ttft is not None]
        same = "-"
        if base is not None and not base.skipped and name != "sequential":
            agree = sum(a.error is None and a.text == b.text for a, b in zip(result.replies, base.replies))
            same = f"{agree}/{len(result.replies)}"
        print(f"{LABELS[name]:24} {len(result.replies):8d} {len(result.failed):6d} {result.tokens:7d} "
              f"{result.wall:7.2f} {result.tokens_per_s:9.1f} {percentile(ttfts, 0.5):9.3f} "
              f"{percentile(ttfts, 0.95):9.3f} {same:>10} {result.other_cpu:10.0%}")
    print()
    for name, result in results.items():
        if result.skipped:
            print(f"{LABELS[name]} did not run:\n{result.skipped}\n")
            continue
        no_content = sum(r.error is None and not r.text for r in result.replies)
        print(f"{LABELS[name]}: completion tokens from {result.count_source}; mean "
              f"{result.tokens / max(1, len(result.replies) - len(result.failed)):.1f} per reply"
              + (f"; {no_content} replies without content (no TTFT)" if no_content else "") + result.note)
        for i, reply in enumerate(result.replies):
            if reply.error is not None:
                print(f"  failed request {i}: {reply.error[:300]}")
    for ours_name, other, goal in [(name, other, goal) for name in ("lmforge", "lookup") for other, goal in GOALS.items()]:
        ours, theirs = results.get(ours_name), results.get(other)
        if ours is None or theirs is None:
            continue
        label = f"{LABELS[ours_name]}/{LABELS[other]}"
        if ours.skipped or theirs.skipped or not theirs.tokens_per_s:
            print(f"{label}: not measured")
            continue
        ratio = ours.tokens_per_s / theirs.tokens_per_s
        verdict = "met" if ratio >= goal and not ours.failed else "NOT met"
        caveat = f" (it depends on how much the replies copy or repeat{ours.note})" if ours_name == "lookup" else ""
        print(f"{label}: {ratio:.2f}x tokens/s (goal >= {goal:g}x: {verdict}){caveat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="local HF model directory (default: a random-weight preset)")
    parser.add_argument("--preset", default="micro", help="preset for the random-weight model (default: micro)")
    parser.add_argument("--requests", type=int, default=64, help="chat requests per backend (default: 64)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent streaming clients (default: 16)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request (default: 64)")
    parser.add_argument("--backends", default="lmforge,lookup,sequential,transformers",
                        help="comma-separated subset of lmforge,lookup,sequential,transformers (default: all four; "
                        "lookup is lmforge serve --prompt-lookup)")
    parser.add_argument("--lookup-tokens", type=int, default=4,
                        help="--prompt-lookup of the lookup backend: draft tokens per step (default: 4)")
    parser.add_argument("--max-batch-size", type=int,
                        help="lmforge serve --max-batch-size (default: --concurrency; 0 leaves the server default)")
    parser.add_argument("--cb-num-blocks", type=int,
                        help="transformers serve --cb-num-blocks (default: sized to the workload; 0: its own)")
    parser.add_argument("--lmforge-args", default="", help="extra flags for lmforge serve, one string")
    parser.add_argument("--transformers-args", default="", help="extra flags for transformers serve, one string")
    parser.add_argument("--dtype", help="weights dtype for every backend (default: bfloat16 on a GPU that "
                        "supports it, else float32: what lmforge serve's auto picks)")
    parser.add_argument("--startup-timeout", type=float, default=300, help="seconds to wait for /health")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - set(LABELS):
        sys.exit(f"--backends: unknown {sorted(unknown)}; choose from {', '.join(LABELS)}")
    if args.max_batch_size == 0:
        args.max_batch_size = None
    elif args.max_batch_size is None:
        args.max_batch_size = args.concurrency

    import torch
    from transformers import AutoTokenizer

    if args.dtype is None:
        args.dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # warm-up prompts are not among the timed ones, so that no prefix cache has seen a timed prompt
        every = chat_prompts(write_world(work), args.requests + args.concurrency)
        prompts, warm = every[: args.requests], every[args.requests :]
        model_dir = Path(args.model) if args.model else build_model(work, args.preset)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        if args.cb_num_blocks is None:
            args.cb_num_blocks = cb_blocks(tokenizer, every, args)
        what = f"{args.preset} preset (random weights)" if not args.model else str(model_dir)
        print(f"model: {what}; {args.requests} chat requests, {args.concurrency} concurrent streaming clients, "
              f"max_tokens {args.max_tokens}, greedy, {args.dtype}; torch threads {torch.get_num_threads()}, "
              f"{'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
        results = {}
        for backend in backends:
            print(f"running {LABELS[backend]} ...", flush=True)
            results[backend] = run_backend(backend, model_dir, tokenizer, prompts, warm, work, args)
        report(results, args)


if __name__ == "__main__":
    main()
