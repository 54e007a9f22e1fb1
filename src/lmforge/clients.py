"""Chat models to run prompts against: a local model folder through lmforge's engine, or any OpenAI-compatible URL.

Prompt programs, RAG answers and agents all speak to a model through `ChatModel.complete`, so each works the
same against `lmforge serve`, vLLM or a hosted API as against a model folder on disk. The URL client is a few
lines of httpx rather than the `openai` package, which stays a test and benchmark dependency.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

URL_WORKERS = 8  # requests in flight at once against a URL; a batching server answers them together


class APIError(ConnectionError):
    """A URL that did not answer, or answered with an error; the message says which and what it said."""


@dataclass
class Decoding:
    """How to sample replies, in the OpenAI API's terms."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int = 0


class ChatModel(Protocol):
    name: str

    def complete(self, conversations: list[list[dict]], decoding: Decoding, n: int = 1) -> list[list[str]]:
        """n replies to each conversation (a list of OpenAI-style messages), in order."""

    def respond(self, conversations: list[list[dict]], tools: list[list[dict]], decoding: Decoding) -> list[dict]:
        """One assistant message per conversation, given the tools it may call (OpenAI function specs): its
        `content` and, when it calls tools, `tool_calls`."""


class LocalChat:
    """A model folder (or adapter run) generating through the engine, with the chat template it was trained on."""

    def __init__(self, path: str, device: str = "auto"):
        from lmforge.models import load_for_inference

        self.name = str(path)
        self.model, self.tokenizer = load_for_inference(path, device)
        if not self.tokenizer.chat_template:
            raise ValueError(f"{path}: the tokenizer has no chat template, so it cannot take chat messages")
        config = self.model.config
        self.window = getattr(config, "max_position_embeddings", None) or 2048

    def complete(self, conversations: list[list[dict]], decoding: Decoding, n: int = 1) -> list[list[str]]:
        done = self._generate(conversations, [None] * len(conversations), decoding, n)
        return [[c.text for c in done[i * n : (i + 1) * n]] for i in range(len(conversations))]

    def respond(self, conversations: list[list[dict]], tools: list[list[dict]], decoding: Decoding) -> list[dict]:
        """Tools go through the chat template, as the server and SFT render them; calls are read back from the
        `<tool_call>` blocks of the reply."""
        from lmforge.toolcalls import parse_tool_calls

        messages = []
        for done in self._generate(conversations, tools, decoding, 1):
            content, calls = parse_tool_calls(done.text)
            messages.append({"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})})
        return messages

    def _generate(self, conversations: list[list[dict]], tools: list, decoding: Decoding, n: int):
        from lmforge.engine import SamplingParams, generate_texts
        from lmforge.templates import encode_prompt

        room = self.window - decoding.max_tokens
        prompts = [encode_prompt(self.tokenizer, messages, self.tokenizer.chat_template, tools=specs or None)
                   for messages, specs in zip(conversations, tools)]
        longest = max((len(p) for p in prompts), default=0)
        if longest > room:  # cutting the start would drop the system prompt and the tools without a word
            raise ValueError(f"a conversation of {longest} tokens does not fit {self.name}'s {self.window}-token "
                             f"window with {decoding.max_tokens} tokens left for the reply")
        params = SamplingParams(decoding.max_tokens, decoding.temperature, decoding.top_p, stop=list(decoding.stop),
                                seed=decoding.seed)
        return generate_texts(self.model, self.tokenizer, prompts, params, n=n)


class OpenAIChat:
    """Any server with `POST /v1/chat/completions`: lmforge serve, vLLM, llama.cpp, a hosted API."""

    def __init__(self, url: str, model: str = "", api_key_env: str = "OPENAI_API_KEY", timeout: float = 600):
        import httpx

        key = os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.model = self.name = model or self._first_served_model()

    def complete(self, conversations: list[list[dict]], decoding: Decoding, n: int = 1) -> list[list[str]]:
        with ThreadPoolExecutor(URL_WORKERS) as pool:
            return list(pool.map(lambda messages: self._one(messages, decoding, n), conversations))

    def respond(self, conversations: list[list[dict]], tools: list[list[dict]], decoding: Decoding) -> list[dict]:
        with ThreadPoolExecutor(URL_WORKERS) as pool:
            return list(pool.map(lambda pair: self._choices(pair[0], decoding, 1, pair[1])[0]["message"],
                                 zip(conversations, tools)))

    def _one(self, messages: list[dict], decoding: Decoding, n: int) -> list[str]:
        return [choice["message"].get("content") or "" for choice in self._choices(messages, decoding, n)]

    def _choices(self, messages: list[dict], decoding: Decoding, n: int, tools: list[dict] | None = None) -> list:
        body = {"model": self.model, "messages": messages, "n": n,
                "max_tokens": decoding.max_tokens, "temperature": decoding.temperature, "top_p": decoding.top_p,
                "seed": decoding.seed, **({"stop": decoding.stop} if decoding.stop else {}),
                **({"tools": tools} if tools else {})}
        return sorted(self._call("POST", "/chat/completions", body)["choices"], key=lambda choice: choice["index"])

    def _first_served_model(self) -> str:
        """The first model the server lists, when none was named (which also checks the URL answers)."""
        return self._call("GET", "/models")["data"][0]["id"]

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        where = str(self.client.base_url).rstrip("/") + path
        try:
            response = self.client.request(method, path, json=body)
        except httpx.TransportError as err:
            raise APIError(f"{where}: {err}") from None
        if response.status_code != 200:
            raise APIError(f"{where} answered {response.status_code}: {response.text[:300]}")
        return response.json()


def chat_model(model: str | None, url: str | None, served_name: str = "", device: str = "auto",
               api_key_env: str = "OPENAI_API_KEY") -> ChatModel:
    """The local model or the URL, whichever was given (exactly one must be)."""
    if (model is None) == (url is None):
        raise ValueError("give exactly one of --model (a local model folder) or --url (an OpenAI-compatible API)")
    return LocalChat(model, device) if model is not None else OpenAIChat(url, served_name, api_key_env)
