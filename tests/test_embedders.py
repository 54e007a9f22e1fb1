from pathlib import Path

import numpy as np
import pytest

from lmforge.embedders import SentenceEmbedder, folder_fingerprint, resolve_embedder


@pytest.fixture(scope="module")
def minilm():
    return resolve_embedder("minilm")


def test_bf16_vectors_stay_close_to_float32_and_the_fingerprint_is_the_files(minilm, tmp_path):
    texts = ["The mayor of Traa is Brondso Figond.", "Traa的市长是谁？", "a cat on a mat"]
    exact = SentenceEmbedder(minilm, "cpu", "float32")
    fast = SentenceEmbedder(minilm, "cpu", "bfloat16")
    assert not exact.autocast and fast.autocast
    a, b = exact.vectors(texts), fast.vectors(texts)
    assert a.dtype == b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999 and not np.array_equal(a, b)
    assert exact.fingerprint == fast.fingerprint == folder_fingerprint(Path(minilm))
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    assert folder_fingerprint(tmp_path) != exact.fingerprint


def test_an_unknown_embedder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither `minilm` nor a local"):
        resolve_embedder(str(tmp_path / "missing"))
