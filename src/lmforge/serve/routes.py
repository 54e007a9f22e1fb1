"""The endpoints: OpenAI's chat, text completions, embeddings and models, plus health, metrics and the web chat."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from lmforge.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from lmforge.serve.server import APIError, Choice, Generation, Server, error_body, sse
from lmforge.serve.tools import ContentDelta, ToolStreamParser, tool_grammar
from lmforge.toolcalls import parse_tool_calls

MAX_EMBEDDING_TOKENS = 32768
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STATIC = Path(__file__).parent / "static"


KNOWN_PATHS = {"/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


def add_routes(app: FastAPI, server: Server, auth) -> None:
    @app.get("/", include_in_schema=False)
    async def web_chat() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health() -> JSONResponse:
        if not server.engine.healthy:
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[auth])
    async def models() -> dict:
        base = next(iter(server.served))
        data = [{"id": model_id, "object": "model", "created": served.created, "owned_by": "lmforge",
                 "parent": base if served.adapter else None} for model_id, served in server.served.items()]
        data += [{"id": model_id, "object": "model", "created": 0, "owned_by": "lmforge", "parent": None}
                 for model_id in server.embedders if model_id not in server.served]
        data += [{"id": model_id, "object": "model", "created": 0, "owned_by": "lmforge", "parent": grounded.model_id}
                 for model_id, grounded in server.grounded.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=[auth])
    async def chat(body: ChatCompletionRequest, http: Request):
        return await chat_completion(server, body, http)

    @app.post("/v1/completions", dependencies=[auth])
    async def completions(body: CompletionRequest, http: Request):
        return await text_completion(server, body, http)

    @app.post("/v1/embeddings", dependencies=[auth])
    async def embeddings(body: EmbeddingRequest) -> dict:
        return await embed(server, body)


def _chat_grammar(body: ChatCompletionRequest, tools: list[dict] | None, server: Server, served) -> str | None:
    grammar = _requested_grammar(body, tools)
    if grammar is not None:
        from llguidance import LLMatcher

        problem = LLMatcher.validate_grammar(grammar, served.guidance_tokenizer(server.engine.vocab_size))
        if problem:
            raise APIError(400, f"cannot constrain the reply to this format: {problem}", param="response_format")
    return grammar


def _requested_grammar(body: ChatCompletionRequest, tools: list[dict] | None) -> str | None:
    from llguidance import LLMatcher

    choice = body.tool_choice.model_dump() if hasattr(body.tool_choice, "model_dump") else body.tool_choice
    try:
        forced = tool_grammar(tools, choice) if choice not in (None, "none", "auto") else None
    except ValueError as err:
        raise APIError(400, str(err), param="tool_choice") from err
    kind = body.response_format.type if body.response_format else "text"
    if kind == "text":
        return forced
    if forced:
        raise APIError(400, "response_format cannot be combined with a forced tool_choice", param="response_format")
    schema = {"type": "object"}
    if kind == "json_schema":
        if body.response_format.json_schema is None:
            raise APIError(400, "response_format json_schema needs a json_schema.schema", param="response_format")
        schema = body.response_format.json_schema.schema_ or {"type": "object"}
    return LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})


async def chat_completion(server: Server, body: ChatCompletionRequest, http: Request):
    if body.model in server.grounded:
        from lmforge.serve.grounded import grounded_completion

        return await grounded_completion(server, server.grounded[body.model], body, http)
    served = server.model_for(body.model)
    tools = [tool.model_dump() for tool in body.tools] if body.tools and body.tool_choice != "none" else None
    messages = [message.for_template() for message in body.messages]
    try:
        prompt = served.chat_prompt(messages, tools)
    except Exception as err:  # the template (user-supplied Jinja) rejects these messages
        raise APIError(400, f"the chat template cannot render these messages: {err}", param="messages") from err
    params = server.params(body, served, len(prompt), body.max_completion_tokens or body.max_tokens,
                           logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0,
                           grammar=_chat_grammar(body, tools, server, served))
    generation = Generation(server, served, prompt, params, body.n)
    meta = {"id": completion_id("chatcmpl"), "created": int(time.time()), "model": served.id}
    forced = tools is not None and body.tool_choice not in (None, "auto")
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(chat_chunks(generation, meta, tools is not None, usage, served.tokenizer, forced))
    choices = await generation.collect(http)
    if forced:
        _check_forced_calls(choices, params.max_tokens)
    return {**meta, "object": "chat.completion", "system_fingerprint": None, "usage": generation.usage,
            "choices": [_chat_choice(index, choice, tools is not None, served.tokenizer, body.logprobs)
                        for index, choice in enumerate(choices)]}


def _chat_choice(index: int, choice: Choice, parse_tools: bool, tokenizer, logprobs: bool) -> dict:
    content, calls = "".join(choice.text), []
    if parse_tools:
        content, calls = parse_tool_calls(content)
    message = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"index": index, "message": message, "finish_reason": "tool_calls" if calls else choice.finish_reason,
            "logprobs": {"content": _token_logprobs(choice.tokens, tokenizer)} if logprobs else None}


def _check_forced_calls(choices: list[Choice], max_tokens: int) -> None:
    """Every choice of a forced tool call must parse into calls alone."""
    for choice in choices:
        content, calls = parse_tool_calls("".join(choice.text))
        if content is not None or not calls:
            raise _unfinished_call(choice.finish_reason, max_tokens)


def _unfinished_call(finish_reason: str | None, max_tokens: int) -> APIError:
    """A forced call cut off before its JSON closed: the client asked for a call it can parse, so it gets this
    error, not raw `<tool_call>` text. An unbounded string parameter is the usual cause."""
    if finish_reason == "length":
        return APIError(400, f"the forced tool call did not finish within max_tokens ({max_tokens}); raise "
                        "max_tokens, or bound the function's string parameters with maxLength", param="max_tokens")
    return APIError(400, f"the forced tool call stopped (finish_reason {finish_reason!r}) before it finished; "
                    "check the stop strings", param="stop")


def _token_logprobs(picks, tokenizer) -> list[dict]:
    def entry(token: int, logprob: float) -> dict:
        text = tokenizer.decode([token])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return [{**entry(pick.token, pick.logprob), "top_logprobs": [entry(token, value) for token, value in pick.top]}
            for pick in picks]


async def chat_chunks(generation: Generation, meta: dict, parse_tools: bool, include_usage: bool,
                      tokenizer, forced: bool) -> AsyncIterator[str]:
    """OpenAI's stream: a role delta per choice, content (or tool-call) deltas, a finish chunk, optional usage.
    A `forced` tool call that does not finish ends the stream with an error event."""
    chunk = {**meta, "object": "chat.completion.chunk", "system_fingerprint": None}
    parsers = [ToolStreamParser() for _ in range(generation.request.n)] if parse_tools else None
    calls = [0] * generation.request.n
    for index in range(generation.request.n):
        yield sse({**chunk, "choices": [_delta(index, {"role": "assistant", "content": ""})]})
    forced_max_tokens = generation.request.params.max_tokens if forced else None
    async for batch in generation.outputs():
        events = _chat_events(batch, chunk, parsers, calls, generation.request.params.logprobs, tokenizer,
                              forced_max_tokens)
        if events:
            yield "".join(events)
    if include_usage:
        yield sse({**chunk, "choices": [], "usage": generation.usage})
    yield sse("[DONE]")


def _chat_events(batch, chunk: dict, parsers, calls: list[int], logprobs_wanted: bool, tokenizer,
                 forced_max_tokens: int | None) -> list[str]:
    """SSE events for one batch of outputs: each output's content (or tool-call) deltas, then its finish chunk.
    `forced_max_tokens` is set when the reply must be tool calls alone."""
    events = []
    for output in batch:
        logprobs = ({"content": _token_logprobs(output.tokens, tokenizer)}
                    if logprobs_wanted and output.tokens else None)
        parsed = parsers[output.index].feed(output.text) if parsers else [ContentDelta(output.text)]
        if output.finish_reason is not None and parsers:
            parsed += parsers[output.index].finish()
        deltas = _deltas(parsed, calls, output.index)
        if forced_max_tokens is not None and (any("content" in delta for delta in deltas) or
                                              (output.finish_reason is not None and not calls[output.index])):
            raise _unfinished_call(output.finish_reason, forced_max_tokens)
        for delta in deltas:
            events.append(sse({**chunk, "choices": [_delta(output.index, delta, logprobs)]}))
            logprobs = None
        if logprobs:
            events.append(sse({**chunk, "choices": [_delta(output.index, {}, logprobs)]}))
        if output.finish_reason is not None:
            reason = "tool_calls" if calls[output.index] else output.finish_reason
            events.append(sse({**chunk, "choices": [_delta(output.index, {}, None, reason)]}))
    return events


def _deltas(events, calls: list[int], index: int) -> list[dict]:
    deltas = []
    for event in events:
        if isinstance(event, ContentDelta):
            if event.text:
                deltas.append({"content": event.text})
            continue
        function = event.call["function"]
        deltas.append({"tool_calls": [{"index": calls[index], "id": event.call["id"], "type": "function",
                                       "function": {"name": function["name"], "arguments": function["arguments"]}}]})
        calls[index] += 1
    return deltas


def _delta(index: int, delta: dict, logprobs: dict | None = None, finish_reason: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def _stream(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_reporting_errors(chunks), media_type="text/event-stream", headers=SSE_HEADERS)


async def _reporting_errors(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """An error after the stream began can only be told in the stream, as OpenAI does."""
    try:
        async for chunk in chunks:
            yield chunk
    except APIError as err:
        yield sse(error_body(err.message, err.kind, err.param, err.code))
        yield sse("[DONE]")


async def text_completion(server: Server, body: CompletionRequest, http: Request):
    served = server.model_for(body.model)
    prompts = _text_prompts(body.prompt, served, server)
    if len(prompts) * body.n > 64:
        raise APIError(400, "at most 64 prompts x n per request", param="prompt")
    params = [server.params(body, served, len(ids), body.max_tokens, logprobs=body.logprobs is not None,
                            top_logprobs=body.logprobs or 0) for ids, _ in prompts]
    generations = []
    try:
        for (prompt_ids, _), prompt_params in zip(prompts, params):
            generations.append(Generation(server, served, prompt_ids, prompt_params, body.n))
    except APIError:
        for generation in generations:
            generation.request.cancel()
        raise
    meta = {"id": completion_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": served.id}
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return _stream(text_chunks(generations, prompts, meta, body, usage, served.tokenizer))
    try:
        choices = []
        for number, (generation, (_, text)) in enumerate(zip(generations, prompts)):
            for index, choice in enumerate(await generation.collect(http)):
                logprobs = _text_logprobs(choice.tokens, served.tokenizer) if body.logprobs is not None else None
                choices.append({"index": number * body.n + index, "finish_reason": choice.finish_reason,
                                "text": (text if body.echo else "") + "".join(choice.text), "logprobs": logprobs})
    finally:  # a client gone or a failed prompt: the other prompts stop too
        for generation in generations:
            generation.request.cancel()
    return {**meta, "choices": choices, "usage": _sum_usage(generations)}


def _text_prompts(prompt, served, server: Server) -> list[tuple[list[int], str]]:
    """Each prompt as tokens and text: a string, a list of strings, token ids, or a list of token id lists."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt is empty", param="prompt")
    prompts = []
    for item in prompt:
        ids = served.text_prompt(item) if isinstance(item, str) else list(item)
        if not ids:
            raise APIError(400, "a prompt has no tokens", param="prompt")
        server.check_token_ids(ids, "prompt")
        prompts.append((ids, item if isinstance(item, str) else served.tokenizer.decode(ids)))
    return prompts


def _text_logprobs(picks, tokenizer) -> dict:
    tokens = [tokenizer.decode([pick.token]) for pick in picks]
    offsets, position = [], 0
    for text in tokens:
        offsets.append(position)
        position += len(text)
    return {"tokens": tokens, "token_logprobs": [pick.logprob for pick in picks], "text_offset": offsets,
            "top_logprobs": [{tokenizer.decode([token]): value for token, value in pick.top} for pick in picks]}


async def text_chunks(generations: list[Generation], prompts, meta: dict, body: CompletionRequest,
                      include_usage: bool, tokenizer) -> AsyncIterator[str]:
    for number, (generation, (_, text)) in enumerate(zip(generations, prompts)):
        if body.echo:
            for index in range(body.n):
                yield sse({**meta, "choices": [_text_delta(number * body.n + index, text)]})
        async for batch in generation.outputs():
            events = _text_events(batch, meta, number * body.n, body.logprobs is not None, tokenizer)
            if events:
                yield "".join(events)
    if include_usage:
        yield sse({**meta, "choices": [], "usage": _sum_usage(generations)})
    yield sse("[DONE]")


def _text_events(batch, meta: dict, first_index: int, logprobs_wanted: bool, tokenizer) -> list[str]:
    events = []
    for output in batch:
        logprobs = _text_logprobs(output.tokens, tokenizer) if logprobs_wanted else None
        if output.text or output.finish_reason or logprobs:
            events.append(sse({**meta, "choices": [_text_delta(first_index + output.index, output.text, logprobs,
                                                               output.finish_reason)]}))
    return events


def _text_delta(index: int, text: str, logprobs: dict | None = None, finish_reason: str | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def _sum_usage(generations: list[Generation]) -> dict:
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for generation in generations:
        for key, value in generation.usage.items():
            totals[key] += value
    return totals


async def embed(server: Server, body: EmbeddingRequest) -> dict:
    import asyncio

    if body.model not in server.embedders:
        raise APIError(404, f"model {body.model!r} does not exist; embedding models: {', '.join(server.embedders)}",
                       param="model", code="model_not_found")
    embedder = server.embedders[body.model]
    inputs = [body.input] if isinstance(body.input, str) or (body.input and isinstance(body.input[0], int)) \
        else body.input
    if not inputs or any(len(item) == 0 for item in inputs):
        raise APIError(400, "input must not be empty", param="input")
    if len(inputs) > 256:
        raise APIError(400, "at most 256 inputs per request", param="input")
    vectors, tokens = await asyncio.to_thread(_embed_inputs, embedder, inputs, server)
    if body.dimensions is not None and body.dimensions != len(vectors[0]):
        raise APIError(400, f"this model's embeddings have {len(vectors[0])} dimensions, not {body.dimensions}",
                       param="dimensions")
    data = [{"object": "embedding", "index": index, "embedding": encode_embedding(vector, body.encoding_format)}
            for index, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _embed_inputs(embedder, inputs: list, server: Server) -> tuple[list[list[float]], int]:
    from lmforge.embedders import SentenceEmbedder

    if isinstance(embedder, SentenceEmbedder):
        if not all(isinstance(item, str) for item in inputs):
            raise APIError(400, "this embedding model takes text input, not token ids", param="input")
        return embedder.embed(inputs), embedder.count_tokens(inputs)
    served = embedder.served
    ids = [served.text_prompt(item) if isinstance(item, str) else list(item) for item in inputs]
    limit = served.max_len
    if any(len(item) > limit or not item for item in ids):
        raise APIError(400, f"each input must have 1 to {limit} tokens", param="input")
    server.check_token_ids([token for item in ids for token in item], "input")
    if sum(len(item) for item in ids) > MAX_EMBEDDING_TOKENS:
        raise APIError(400, f"at most {MAX_EMBEDDING_TOKENS} input tokens per request", param="input")
    return embedder.embed(ids), sum(len(item) for item in ids)


def encode_embedding(vector: list[float], encoding: str):
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
