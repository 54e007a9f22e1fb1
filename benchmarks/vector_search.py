"""Dense search in a RAG index: exact numpy (what `lmforge rag` does) against faiss-cpu, exact (IndexFlatIP) and
approximate (HNSW), side by side at several collection sizes, one query at a time as `rag query` and
`serve --rag` search. Prints per size: index build seconds, query latency p50/p95, and recall@10 against exact.

Vectors are unit-norm 384-d (MiniLM's width), drawn around 2,000 random centres so that neighbourhoods exist, as
in real embeddings. Run: `python benchmarks/vector_search.py [--sizes 20000 100000 300000] [--ef-search 256]`
(needs faiss-cpu, in the bench extra).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

DIMENSIONS, QUERIES, K = 384, 200, 10


def vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((2000, DIMENSIONS), dtype=np.float32)
    points = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIMENSIONS), dtype=np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def numpy_top(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The same computation as lmforge.rag.index.Index.dense: one matrix-vector product, a partial sort."""
    scores = matrix @ query
    top = np.argpartition(-scores, K - 1)[:K]
    return top[np.argsort(-scores[top])]


def timed(search, queries: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    results, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        seconds.append(time.perf_counter() - started)
    return results, float(np.percentile(seconds, 50) * 1000), float(np.percentile(seconds, 95) * 1000)


def recall(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(found, exact)]))


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    parser.add_argument("--ef-search", type=int, default=256, help="HNSW candidates per query (recall vs speed)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'chunks':>8} | {'method':<14} | {'build s':>7} | {'p50 ms':>7} | {'p95 ms':>7} | recall@10")
    for n in args.sizes:
        matrix = vectors(n, rng)
        queries = vectors(QUERIES, rng)
        exact, p50, p95 = timed(lambda q: numpy_top(matrix, q), queries)
        print(f"{n:>8} | {'numpy exact':<14} | {0:>7.1f} | {p50:>7.2f} | {p95:>7.2f} | 1.000")
        for name, make in (("faiss flat", lambda: faiss.IndexFlatIP(DIMENSIONS)),
                           ("faiss hnsw32", lambda: _hnsw(faiss, args.ef_search))):
            started = time.perf_counter()
            index = make()
            index.add(matrix)
            build = time.perf_counter() - started
            found, p50, p95 = timed(lambda q: index.search(q[None], K)[1][0], queries)
            print(f"{n:>8} | {name:<14} | {build:>7.1f} | {p50:>7.2f} | {p95:>7.2f} | {recall(found, exact):.3f}")


def _hnsw(faiss, ef_search: int):
    index = faiss.IndexHNSWFlat(DIMENSIONS, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = ef_search
    return index


if __name__ == "__main__":
    main()
