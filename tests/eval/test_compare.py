import json

import pytest

from lmforge.eval.compare import compare_results, compare_runs, verdict


def task(correct: list[bool], ids=None, kind="choice"):
    """A task whose per-sample acc follows `correct`; prediction/gold labels make f1_macro computable too."""
    ids = ids or [f"q{i}" for i in range(len(correct))]
    samples = [{"id": id, "gold": ["neg", "pos"][i % 2], "prediction": ["neg", "pos"][(i + (not ok)) % 2],
                "metrics": {"acc": float(ok)}} for i, (id, ok) in enumerate(zip(ids, correct))]
    return {"kind": kind, "n": len(samples), "metrics": {"acc": {}, "f1_macro": {}}, "samples": samples}


def run(tasks, adapter=None):
    return {"model": "base", "adapter": adapter, "tasks": tasks}


def flips(n_right: int, n: int = 200) -> list[bool]:
    return [i < n_right for i in range(n)]


A = run({"forgot": task(flips(180)), "learned": task(flips(100)), "steady": task(flips(150)),
         "partial": task(flips(100)), "disjoint": task(flips(10)), "only_a": task(flips(10))})
B = run({"forgot": task(flips(120)), "learned": task(flips(160)),
         # same accuracy, five items flipped each way: noise, not change
         "steady": task([True] * 145 + [False] * 50 + [True] * 5),
         "partial": task(flips(50), ids=[f"q{i}" for i in range(50)]),
         "disjoint": task(flips(10), ids=[f"x{i}" for i in range(200)]), "only_b": task(flips(10))}, adapter="lora")


@pytest.fixture(scope="module")
def comparison():
    return compare_results(A, B)


def rows_by_key(comparison):
    return {(row["task"], row["metric"]): row for row in comparison["rows"]}


def test_regression_improvement_and_noise_are_told_apart(comparison):
    rows = rows_by_key(comparison)
    assert rows["forgot", "acc"]["delta"] == pytest.approx(-0.3) and rows["forgot", "acc"]["verdict"] == "regressed"
    assert rows["learned", "acc"]["delta"] == pytest.approx(0.3) and rows["learned", "acc"]["verdict"] == "improved"
    assert rows["learned", "f1_macro"]["verdict"] == "improved"
    assert rows["steady", "acc"]["delta"] == 0 and rows["steady", "acc"]["verdict"] == "unchanged"
    low, high = rows["steady", "acc"]["ci"]
    assert low < 0 < high and high - low < 0.1  # paired: only the 10 flipped items vary
    for row in comparison["rows"]:
        assert row["ci"][0] <= row["delta"] <= row["ci"][1]
    assert comparison["summary"] == {"improved": 2, "regressed": 2, "unchanged": 4}


def test_runs_with_different_samples_compare_on_the_intersection(comparison):
    rows = rows_by_key(comparison)
    assert rows["partial", "acc"]["n"] == 50 and rows["partial", "acc"]["delta"] == 0
    assert not any(row["task"] == "disjoint" for row in comparison["rows"])
    assert comparison["notes"] == [
        "partial: compared on the 50 samples in common (A 200, B 50)", "disjoint: no sample ids in common, skipped",
        "only_a: only in A", "only_b: only in B"]


def test_threshold_needs_both_size_and_significance():
    assert verdict(0.005, 0.001, 0.009, threshold=0.01) == "unchanged"  # significant but small
    assert verdict(0.05, -0.01, 0.11, threshold=0.01) == "unchanged"  # large but uncertain
    assert verdict(-0.05, -0.08, -0.02, threshold=0.01) == "regressed"


def test_compare_runs_writes_json_markdown_and_chart(tmp_path):
    for name, results in (("a", A), ("b", B)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results), encoding="utf-8")
    comparison, markdown = compare_runs(tmp_path / "a", tmp_path / "b", out=tmp_path / "cmp")
    assert "| forgot | acc | 0.9000 | 0.6000 | -0.3000 | [" in markdown and "| 200 | **regressed** |" in markdown
    assert "A = base, B = base + lora" in markdown and "- only_b: only in B" in markdown
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text()) == comparison
    assert (tmp_path / "cmp" / "comparison.md").read_text(encoding="utf-8") == markdown
    assert (tmp_path / "cmp" / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert compare_runs(tmp_path / "a", tmp_path / "b")[1] == markdown  # without out: nothing written
    assert not (tmp_path / "b" / "comparison.md").exists()
    with pytest.raises(FileNotFoundError, match="results.json"):
        compare_runs(tmp_path / "a", tmp_path / "missing")
