"""What the HTTP routes share: the loaded models and engine (`Server`), a request in the engine seen from the event
loop (`Generation`), and OpenAI-style errors. The app (`app.py`) wires routes (`routes.py`) to it; this module
imports neither."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from fastapi import Request
from fastapi.responses import JSONResponse

from lmforge.engine import Engine, EngineDown, GenerationRequest, Output, QueueFull, SamplingParams
from lmforge.serve.config import ServeConfig
from lmforge.serve.protocol import Sampling


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code


def error_body(message: str, kind: str, param: str | None = None, code: str | int | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                   code: str | int | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, param, code), status_code=status)


@dataclass
class Choice:
    """What one choice has produced so far."""

    text: list[str] = field(default_factory=list)
    tokens: list = field(default_factory=list)
    finish_reason: str | None = None


class Dispatcher:
    """Hands the engine thread's outputs to the event loop with one wake-up per decode step, not one per token."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: list[tuple[asyncio.Queue, object]] = []
        self.lock = threading.Lock()

    def put(self, queue: asyncio.Queue, item) -> None:
        with self.lock:
            self.pending.append((queue, item))
            first = len(self.pending) == 1
        if first:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for queue, item in pending:
            queue.put_nowait(item)


class Generation:
    """A request in the engine, seen from the event loop: outputs arrive on an asyncio queue."""

    def __init__(self, server: "Server", served, prompt: list[int], params: SamplingParams, n: int):
        self.dispatcher = server.dispatcher()
        self.on_first_token = server.metrics.first_token.observe
        self.queue: asyncio.Queue = asyncio.Queue()
        self.request = GenerationRequest(served, prompt, params, self._output, self._error, n=n)
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.open = n
        try:
            server.engine.submit(self.request)
        except QueueFull as err:
            raise APIError(429, f"server busy: {err}; retry later", "rate_limit_error") from err
        except EngineDown as err:
            raise APIError(503, str(err), "server_error") from err
        except ValueError as err:
            raise APIError(400, str(err), param="n") from err

    def _output(self, output: Output) -> None:
        self.dispatcher.put(self.queue, output)

    def _error(self, message: str) -> None:
        self.dispatcher.put(self.queue, APIError(500, message, "server_error"))

    async def outputs(self) -> AsyncIterator[list[Output]]:
        """Every output until each choice has finished, in the batches they arrived in; the request is cancelled
        if the consumer goes away."""
        try:
            while self.open:
                batch = [await self.queue.get()]
                while not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                for item in batch:
                    if isinstance(item, APIError):
                        raise item
                    self.open -= item.finish_reason is not None
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                    self.on_first_token(self.first_token_at - self.started)
                yield batch
        finally:
            if self.open:
                self.request.cancel()

    async def collect(self, http: Request) -> list[Choice]:
        """All choices, or a cancelled request if the client hangs up first."""
        choices = [Choice() for _ in range(self.request.n)]

        async def gather() -> None:
            async for batch in self.outputs():
                for output in batch:
                    choice = choices[output.index]
                    choice.text.append(output.text)
                    choice.tokens += output.tokens
                    choice.finish_reason = output.finish_reason or choice.finish_reason

        done = asyncio.ensure_future(gather())
        watch = asyncio.ensure_future(_disconnected(http))
        await asyncio.wait({done, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if not done.done():
            done.cancel()
            self.request.cancel()
            raise APIError(499, "client closed the request")
        done.result()
        return choices

    @property
    def usage(self) -> dict:
        prompt, completion = len(self.request.prompt_ids), self.request.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _disconnected(http: Request) -> None:
    while not await http.is_disconnected():
        await asyncio.sleep(0.05)


class Server:
    """The loaded models, the engine, and the route handlers' shared logic."""

    def __init__(self, cfg: ServeConfig):
        from lmforge.serve.embeddings import HiddenStateEmbedder
        from lmforge.serve.metrics import Metrics
        from lmforge.serve.registry import load_served

        self.cfg = cfg
        self._dispatcher: Dispatcher | None = None
        self.model, self.served = load_served(cfg)
        self.engine = Engine(self.model, cfg.max_batch_size, cfg.max_queue, cfg.prefix_cache_tokens,
                             route_adapters=True, prompt_lookup=cfg.prompt_lookup)
        self.metrics = Metrics(self.engine)
        self.embedders = {model_id: HiddenStateEmbedder(self.model, served, self.engine.model_lock)
                          for model_id, served in self.served.items()}
        if cfg.embedding_model:
            from lmforge.embedders import SentenceEmbedder, embedding_model_id

            name, path = embedding_model_id(cfg.embedding_model)
            self.embedders[name] = SentenceEmbedder(path, cfg.device, "float32")
        self.grounded = {}
        if cfg.rag:
            from lmforge.serve.grounded import load_grounded

            self.grounded = load_grounded(cfg.rag, self.served, cfg.device, cfg.rag_program, set(self.embedders))

    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(asyncio.get_running_loop())
        return self._dispatcher

    def check_token_ids(self, ids: list[int], param: str) -> None:
        vocabulary = min(len(next(iter(self.served.values())).tokenizer), self.engine.vocab_size)
        if any(token < 0 or token >= vocabulary for token in ids):
            raise APIError(400, f"token ids must lie in [0, {vocabulary})", param=param)

    def model_for(self, model_id: str):
        if model_id not in self.served:
            raise APIError(404, f"model {model_id!r} does not exist; served: {', '.join(self.served)}",
                           param="model", code="model_not_found")
        return self.served[model_id]

    def params(self, body: Sampling, served, prompt_tokens: int, max_tokens: int | None, **extra) -> SamplingParams:
        room = served.max_len - prompt_tokens
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = "leaves no room for a reply" if max_tokens is None else \
                f"asks for {max_tokens} more ({prompt_tokens + max_tokens} in all)"
            raise APIError(
                400, f"this model's maximum context length is {served.max_len} tokens; the request has "
                f"{prompt_tokens} prompt tokens and {asked}", param="messages" if max_tokens is None else
                "max_tokens", code="context_length_exceeded",
            )
        max_tokens = room if max_tokens is None else max_tokens
        return SamplingParams(
            max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
            top_p=body.top_p or 1.0, top_k=max(body.top_k or 0, 0), stop=body.stops(), seed=body.seed,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty, **extra,
        )


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"
