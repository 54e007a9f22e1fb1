"""The OpenAI-compatible HTTP API over the engine (FastAPI + uvicorn)."""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from typing import Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lmforge.serve.config import ServeConfig
from lmforge.serve.routes import KNOWN_PATHS, add_routes
from lmforge.serve.server import APIError, Server, error_response

log = logging.getLogger("lmforge.serve")


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
    """The field the first error is about; None for a body that is not JSON (its location is a character offset)."""
    for error in errors:
        if error.get("type") == "json_invalid":
            return None
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
