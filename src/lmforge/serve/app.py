"""The OpenAI-compatible HTTP API over the engine (FastAPI + uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lmforge.serve.config import ServeConfig
from lmforge.serve.engine import Engine, EngineDown, GenerationRequest, Output, QueueFull
from lmforge.serve.protocol import Sampling
from lmforge.serve.sampling import SamplingParams

log = logging.getLogger("lmforge.serve")
STATIC = Path(__file__).parent / "static"


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
        self.engine = Engine(self.model, cfg.max_batch_size, cfg.max_queue, cfg.prefix_cache_tokens)
        self.metrics = Metrics(self.engine)
        self.embedders = {model_id: HiddenStateEmbedder(self.model, served, self.engine.model_lock)
                          for model_id, served in self.served.items()}
        if cfg.embedding_model:
            from lmforge.serve.embeddings import SentenceEmbedder, embedding_model_id

            name, path = embedding_model_id(cfg.embedding_model)
            self.embedders[name] = SentenceEmbedder(path, cfg.device)

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
        if max_tokens is None:
            max_tokens = room
        if max_tokens > room or room < 1:
            raise APIError(
                400, f"this model's maximum context length is {served.max_len} tokens; the request has "
                f"{prompt_tokens} prompt tokens and asks for {max_tokens} more ({prompt_tokens + max_tokens} in all)",
                param="max_tokens", code="context_length_exceeded",
            )
        return SamplingParams(
            max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
            top_p=body.top_p or 1.0, top_k=max(body.top_k or 0, 0), stop=body.stops(), seed=body.seed,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty, **extra,
        )


def create_app(cfg: ServeConfig) -> FastAPI:
    server = Server(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        server.engine.start()
        yield
        server.engine.stop()

    app = FastAPI(title="lmforge", description="OpenAI-compatible API of an lmforge model", lifespan=lifespan)
    app.state.server = server
    _install_errors(app)
    from lmforge.serve.routes import KNOWN_PATHS, add_routes

    add_routes(app, server, Depends(_api_key_check(cfg.api_key)))
    app.add_middleware(Observed, server=server, known_paths=KNOWN_PATHS)
    return app


def _api_key_check(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error",
                           code="invalid_api_key")

    return check


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request: Request, err: APIError) -> JSONResponse:
        return error_response(err.status, err.message, err.kind, err.param, err.code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        return error_response(400, _describe(err.errors()), param=_first_param(err.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, err: HTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return error_response(err.status_code, str(err.detail), kind)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(err).__name__}", "server_error")


def _describe(errors) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        if error.get("type") == "json_invalid":
            return f"malformed JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}"
        parts.append(f"{where or 'body'}: {error.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def _first_param(errors) -> str | None:
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if loc:
            return ".".join(loc)
    return None


class Observed:
    """Pure ASGI middleware (streams pass straight through): request counts and latencies by endpoint, and 413 for
    a body over the limit, declared or not."""

    def __init__(self, app, server: Server, known_paths: set[str]):
        self.app, self.server, self.known_paths = app, server, known_paths
        self.limit = server.cfg.max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), 500
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self._declared_length(scope) > self.limit:
                raise BodyTooLarge(self.limit)
            await self.app(scope, limited_receive, observed_send)
        except BodyTooLarge as err:
            await error_response(413, err.detail)(scope, receive, observed_send)
        finally:
            endpoint = scope["path"] if scope["path"] in self.known_paths else "other"
            self.server.metrics.requests.labels(endpoint, str(status)).inc()
            self.server.metrics.latency.labels(endpoint).observe(time.monotonic() - started)

    @staticmethod
    def _declared_length(scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                return int(value) if value.isdigit() else 2**63
        return 0


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI passes it on when the body read fails (chunked uploads) instead of a 400."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body over the {limit}-byte limit (--max-body-bytes)")


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


@contextlib.contextmanager
def running_server(cfg: ServeConfig) -> Iterator[str]:
    """A server on a background thread for as long as the block runs (tests, `lmforge chat --model`, the demo);
    yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host=cfg.host, port=cfg.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="lmforge-http", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {cfg.host}:{cfg.port}")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{cfg.host}:{port}"
    finally:
        server.should_exit = True
        thread.join()


def run_serve(cfg: ServeConfig) -> None:
    import uvicorn

    app = create_app(cfg)
    log.info("serving %s on http://%s:%d (web chat at /)", ", ".join(app.state.server.served), cfg.host, cfg.port)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
