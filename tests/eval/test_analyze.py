import json

import pytest

from lmforge.eval.analyze import analyze_results, analyze_run

EN = "Question: Which river flows through Kelmar?\nAnswer:"
ZH = "问题：Alda Vorn出生在哪里？\n答案："


def sample(id, output, expected, prompt=EN, gold="Kelmar", reference="Kelmar is a city on the Oruna river",
           prediction="", correct=False, **extra):
    """A generation sample plus the set of categories analyze should put it in."""
    record = {"id": id, "subject": "", "prompt": prompt, "output": output,
              "prediction": output if prediction == "" else prediction, "gold": gold, "reference": reference,
              "finish_reason": "stop", "output_tokens": 10, "max_new_tokens": 32, "json_expected": False,
              "metrics": {"exact_match": float(correct)}, **extra}
    return record, set(expected)


CASES = [
    sample("clean", "Kelmar", [], correct=True),
    sample("clean-zh", "Kelmar", [], prompt=ZH, correct=True),  # a Latin name asked about in Chinese is fine
    sample("loop", "the Oruna river, the Oruna river, the Oruna river", ["repetition", "wrong_answer"]),
    sample("lines", "Kelmar\nKelmar", ["repetition"], correct=True),
    sample("loop-zh", "是的是的是的是的", ["repetition"], prompt=ZH, gold="是的",
           reference="是的，他出生在Kelmar。", correct=True),
    sample("cut", "Kelmar is a city on the", ["over_length"], correct=True, finish_reason="length"),
    sample("long", "Kelmar is a city on the Oruna river " * 4, ["over_length", "repetition"], reference="Kelmar",
           correct=True),
    sample("none", "Kelmar Oruna", ["format_violation", "wrong_answer"], prediction=None),
    sample("json", '{"city": "Kelmar"', ["format_violation"], correct=True, json_expected=True),
    sample("json-ok", '```json\n{"city": "Kelmar"}\n```', [], correct=True, json_expected=True),
    sample("garble", "Kelmar florbix quandle zep", ["non_words", "wrong_answer"]),
    sample("english", "Kelmar is the city", ["wrong_language", "wrong_answer"], prompt=ZH, gold="凯尔马",
           reference="他出生在凯尔马。"),
    sample("english-chat", "Kelmar is the city", ["wrong_language", "wrong_answer"], gold="凯尔马",
           reference="他出生在凯尔马。", prompt=f"<|im_start|>user\n{ZH}<|im_end|>\n<|im_start|>assistant\n"),
    sample("english-query", "Kelmar is the city", ["wrong_language", "wrong_answer"], gold="凯尔马",
           reference="他出生在凯尔马。", prompt=f"{ZH}\n\nAnswer the question above in one short sentence please",
           query=ZH),  # the prompt's last block is English, the question (query) is not
    sample("wrong", "Tovin", ["wrong_answer"]),
    # A worked answer to a short reference is not over-length, and words the model uses in 3+ outputs are words.
    *[sample(f"worked{i}", f"First, 12 + {i} = {12 + i}. The answer is {12 + i}.", [], gold=str(12 + i),
             reference=str(12 + i), correct=True) for i in range(3)],
]


def results(samples, kind="generate"):
    task = {"kind": kind, "n": len(samples), "num_fewshot": 0, "source": "test", "metrics": {}, "samples": samples}
    return {"model": "tiny", "adapter": None, "created": "2025-01-01T00:00:00", "config": {}, "tasks": {"qa": task}}


def categories_by_id(analysis):
    found = {}
    for category, tally in analysis["tasks"]["qa"]["categories"].items():
        for example in tally["examples"]:
            found.setdefault(example["id"], set()).add(category)
    return found


def test_each_crafted_sample_lands_in_exactly_its_categories():
    analysis = analyze_results(results([record for record, _ in CASES]), max_examples=len(CASES))
    found = categories_by_id(analysis)
    assert {id: found.get(id, set()) for id in (record["id"] for record, _ in CASES)} == {
        record["id"]: expected for record, expected in CASES}


def test_counts_shares_accuracy_and_evidence():
    analysis = analyze_results(results([record for record, _ in CASES]))
    overall = analysis["overall"]
    assert overall["n"] == len(CASES) == 18 and overall["accuracy"] == pytest.approx(11 / 18)
    assert overall["categories"]["wrong_answer"] == {"count": 7, "share": pytest.approx(7 / 18), "examples": []}
    task = analysis["tasks"]["qa"]["categories"]
    assert len(task["repetition"]["examples"]) == 3  # max_examples
    assert task["repetition"]["examples"][0]["evidence"] == '"the oruna river" x3'
    assert task["non_words"]["examples"][0]["evidence"] == "75% unknown words: florbix, quandle, zep"
    assert task["wrong_language"]["examples"][0]["evidence"] == "asked in cjk, answered in latin"


def test_analyze_run_writes_the_three_files(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(results([record for record, _ in CASES])), encoding="utf-8")
    md = analyze_run(tmp_path)
    assert md == tmp_path / "analysis.md"
    text = md.read_text(encoding="utf-8")
    assert "| repetition | 4 (22.2%) | 4 (22.2%) |" in text and "florbix" in text
    assert json.loads((tmp_path / "analysis.json").read_text())["overall"]["n"] == len(CASES)
    assert (tmp_path / "analysis.png").read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob("*.tmp"))


def test_analyze_run_refuses_missing_or_choice_only_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        analyze_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(results([], kind="choice")))
    with pytest.raises(ValueError, match="no generation tasks"):
        analyze_run(tmp_path)
