"""RAG model ids (`lmforge serve --rag NAME=INDEX[:MODEL]`): a chat request to NAME retrieves from INDEX with the
user's last message, asks MODEL (a served id; default the base model) with numbered sources, and answers with the
citations twice: as `[n]` references in the message text, which any client shows, and as a `citations` field on
the message for clients that want the chunk ids."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

from lmforge.serve.server import APIError, Generation, sse

RAG_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$")


@dataclass
class GroundedModel:
    id: str
    model_id: str  # the served id that writes the answers
    retriever: object  # lmforge.rag.Retriever
    program: object  # the RAG prompt program


def parse_rag_spec(spec: str, served_ids: list[str]) -> tuple[str, str, str]:
    """NAME=INDEX[:MODEL] as (name, index folder, model id); a trailing `:x` is a model only if x is served."""
    match = RAG_SPEC.match(spec)
    if not match:
        raise ValueError(f"--rag {spec!r} must be NAME=INDEX or NAME=INDEX:MODEL, e.g. docs=runs/docs-index")
    name, rest = match.groups()
    index, _, model = rest.rpartition(":")
    if index and model in served_ids:
        return name, index, model
    if index and not Path(rest).exists():
        raise ValueError(f"--rag {spec!r}: {model!r} is not a served model id ({', '.join(served_ids)})")
    return name, rest, served_ids[0]


def load_grounded(specs: list[str], served: dict, device: str, program_path: str | None,
                  taken: set[str] = frozenset()) -> dict[str, GroundedModel]:
    from lmforge.rag import load_rag_program, open_retriever

    program = load_rag_program(program_path)
    grounded = {}
    for spec in specs:
        name, folder, model_id = parse_rag_spec(spec, list(served))
        if name in served or name in grounded or name in taken:
            raise ValueError(f"--rag name {name!r} is already a served model id; pick another")
        grounded[name] = GroundedModel(name, model_id, open_retriever(folder, device), program)
    return grounded


async def grounded_completion(server, grounded: GroundedModel, body, http):
    """Retrieve, answer (or refuse below the score threshold without generating), and reply with citations."""
    from lmforge.rag import read_reply, rag_conversation, with_references

    served = server.model_for(grounded.model_id)
    messages = [message.for_template() for message in body.messages]
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"]:
        raise APIError(400, "a RAG model answers the last message, which must be the user's question",
                       param="messages")
    question = messages[-1]["content"]
    hits, best = await asyncio.to_thread(grounded.retriever.retrieve, question, server.cfg.rag_k)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    reply = None
    if hits and best >= server.cfg.rag_min_score:
        prompt = served.chat_prompt(rag_conversation(grounded.program, question, hits, messages[:-1]))
        spec = grounded.program.spec  # the program's reply length and stop strings, unless the request says
        params = server.params(body, served, len(prompt), body.max_completion_tokens or body.max_tokens
                               or spec.max_new_tokens)
        params.stop = params.stop or list(spec.stop)
        generation = Generation(server, served, prompt, params, 1)
        [choice] = await generation.collect(http)
        reply, usage = "".join(choice.text), generation.usage
    answer = read_reply(question, hits, reply, best)
    message = {"role": "assistant", "content": with_references(answer), "citations": answer.citations}
    meta = {"id": f"chatcmpl-{time.time_ns():x}", "created": int(time.time()), "model": grounded.id}
    if body.stream:
        return _one_chunk_stream(meta, message)
    return {**meta, "object": "chat.completion", "system_fingerprint": None, "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]}


def _one_chunk_stream(meta: dict, message: dict):
    """The grounded answer as a stream: the whole text in one delta (citations are known only at the end)."""
    from fastapi.responses import StreamingResponse

    chunk = {**meta, "object": "chat.completion.chunk", "system_fingerprint": None}
    events = [sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": message["content"],
                                                               "citations": message["citations"]},
                                         "logprobs": None, "finish_reason": None}]}),
              sse({**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}),
              sse("[DONE]")]

    async def stream():
        for event in events:
            yield event

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
