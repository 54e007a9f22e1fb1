"""`lmforge chat`: a streaming terminal chat with a running `lmforge serve`, or with a local model served for it.

Plain HTTP (httpx) against the OpenAI-compatible API, so the client needs neither torch nor openai; the server
code is imported only when `--model` asks for a local one.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Callable, ContextManager, Iterable, Iterator, TextIO

from pydantic import Field, model_validator

from lmforge.config import Section

EXIT_COMMAND = "/exit"
RESET_COMMAND = "/reset"
PROMPT = "you> "
CONNECT_TIMEOUT_S = 10.0


class ChatConfig(Section):
    model: str | None = Field(None, description="local model directory, served for this session only")
    url: str | None = Field(None, description="base URL of a running `lmforge serve`, e.g. http://127.0.0.1:8000")
    adapter: list[str] = Field([], description="NAME=DIR adapters to serve next to --model")
    model_id: str | None = Field(None, description="served model id to talk to (default: the first in /v1/models)")
    api_key: str | None = Field(None, description="the server's API key, sent as a Bearer token")
    system: str | None = Field(None, description="system prompt for the whole conversation")
    max_tokens: int = Field(256, ge=1, description="longest reply in tokens")
    temperature: float = Field(0.7, ge=0, description="0 = greedy decoding")

    @model_validator(mode="after")
    def _one_server(self) -> "ChatConfig":
        if (self.model is None) == (self.url is None):
            raise ValueError("set exactly one of model (a local model directory to serve) or url (a running server)")
        if self.adapter and self.model is None:
            raise ValueError("adapter needs model: adapters load into a local server, not into one at url")
        return self


def run_chat(cfg: ChatConfig, input_fn: Callable[[str], str] = input, output: TextIO = sys.stdout) -> None:
    """Chat until /exit, end of input or Ctrl-C; the history goes with every request until /reset."""
    import httpx

    with server_url(cfg) as url, open_client(url, cfg.api_key) as client:
        try:
            model_id = cfg.model_id or first_model_id(client)
        except httpx.TransportError as err:
            raise ConnectionError(f"cannot reach the server at {url}: {err}") from None
        output.write(f"chatting with {model_id} at {url} ({RESET_COMMAND} clears the history, {EXIT_COMMAND} leaves)\n")
        with contextlib.suppress(KeyboardInterrupt):
            chat_loop(client, model_id, cfg, input_fn, output)
        output.write("\n")


def open_client(url: str, api_key: str | None):
    """An HTTP client for `url` that waits as long as a reply takes, but not for a server that is not there."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S))


def server_url(cfg: ChatConfig) -> ContextManager[str]:
    """The base URL to talk to: `url` as given, or a local server that lives as long as the chat."""
    if cfg.url is not None:
        return contextlib.nullcontext(cfg.url.rstrip("/"))
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    return running_server(ServeConfig(model=cfg.model, adapter=cfg.adapter, port=0))


def first_model_id(client) -> str:
    response = client.get("/v1/models")
    if response.status_code != 200:
        raise ValueError(f"/v1/models: {error_message(response)}")
    models = response.json()["data"]
    if not models:
        raise ValueError("the server lists no models")
    return models[0]["id"]


def chat_loop(client, model_id: str, cfg: ChatConfig, input_fn: Callable[[str], str], output: TextIO) -> None:
    history: list[dict] = []
    while (line := read_line(input_fn)) is not None:
        if line == RESET_COMMAND:
            history.clear()
            output.write("(history cleared)\n")
        elif line:
            turn = {"role": "user", "content": line}
            reply = answer(client, request_body(model_id, cfg, [*history, turn]), output)
            if reply is not None:
                history += [turn, {"role": "assistant", "content": reply}]


def read_line(input_fn: Callable[[str], str]) -> str | None:
    """The next stripped line, or None when the user leaves (/exit or end of input)."""
    try:
        line = input_fn(PROMPT).strip()
    except EOFError:
        return None
    return None if line == EXIT_COMMAND else line


def request_body(model_id: str, cfg: ChatConfig, turns: list[dict]) -> dict:
    system = [{"role": "system", "content": cfg.system}] if cfg.system else []
    return {
        "model": model_id, "messages": [*system, *turns], "stream": True,
        "max_tokens": cfg.max_tokens, "temperature": cfg.temperature,
    }


def answer(client, body: dict, output: TextIO) -> str | None:
    """Stream one reply to `output`; on a server error print it and return None, so the turn stays out of history."""
    import httpx

    try:
        return stream_reply(client, body, output)
    except (ValueError, httpx.HTTPError) as err:
        output.write(f"\nerror: {err}\n")
        return None


def stream_reply(client, body: dict, output: TextIO) -> str:
    pieces = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise ValueError(error_message(response))
        for piece in filter(None, map(delta_text, sse_events(response.iter_lines()))):
            output.write(piece)
            output.flush()
            pieces.append(piece)
    output.write("\n")
    return "".join(pieces)


def sse_events(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON payloads of an OpenAI-style event stream (`data: {...}` lines) up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise ValueError(event["error"].get("message", data))
        yield event


def delta_text(event: dict) -> str:
    """The new text in a stream chunk; chunks without choices (usage) or content (role, finish) add none."""
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def error_message(response) -> str:
    """The `{"error": {"message": ...}}` of an OpenAI-style error, else the status and body."""
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text}"
