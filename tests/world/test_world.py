"""The toy world generator: determinism, held-out phrasings, secret document facts, correct answers."""

from __future__ import annotations

import ast
import json
import operator
import re
from pathlib import Path

import pytest

from lmforge.world import SIZES, WorldSize, synth_world

CJK = re.compile(r"[\u4e00-\u9fff]")
EQUATION = re.compile(r"(\d+) ([+\-×]) (\d+) = (\d+)")
FINAL = re.compile(r"(?:The answer is |答案是 )(\d+)[.。]$")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _mc(path: Path) -> list[list[str]]:
    """Multiple-choice rows as [question, *choices, answer letter]."""
    return [[r["question"], *r["choices"], r["answer"]] for r in _jsonl(path)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    synth_world(7, out, "tiny")
    return out


@pytest.fixture(scope="module")
def truth(tiny) -> dict:
    return json.loads((tiny / "world.json").read_text(encoding="utf-8"))


def _sft_text(folder: Path) -> str:
    return "\n".join(m["content"] for r in _jsonl(folder / "sft_train.jsonl") for m in r["messages"])


def _pretrain_text(folder: Path) -> str:
    return "\n".join(r["text"] for r in _jsonl(folder / "pretrain.jsonl"))


def test_same_seed_gives_identical_bytes_and_counts(tmp_path):
    first = synth_world(3, tmp_path / "a", "tiny")
    second = synth_world(3, tmp_path / "b", "tiny")
    assert first == second
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    folders = [name for name in first if name.endswith("/")]  # a folder of files counts its files
    listed = {next((f for f in folders if name.startswith(f)), name) for name in _files(tmp_path / "a")}
    assert sorted(first) == sorted(listed)
    assert all(first[f] == sum(name.startswith(f) for name in _files(tmp_path / "a")) for f in folders)
    assert first["pretrain.jsonl"] == len(_jsonl(tmp_path / "a" / "pretrain.jsonl"))


def test_another_seed_gives_another_world(tmp_path):
    synth_world(3, tmp_path / "a", "tiny")
    synth_world(4, tmp_path / "b", "tiny")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() - b.keys() == {n for n in a if n.startswith("docs/library")} - b.keys()  # pages named by entity
    assert [name for name in a if a[name] == b.get(name) and not name.startswith("tasks/")] == []


def test_files_are_unix_utf8(tiny):
    for name, data in _files(tiny).items():
        if not name.endswith(".pdf"):
            assert b"\r" not in data, name
            data.decode("utf-8")


def test_custom_size_and_unknown_size(tmp_path):
    counts = synth_world(1, tmp_path / "w", WorldSize(people=5, cities=3, rivers=1, companies=2,
                                                      passages_per_entity=1, arithmetic_train=4, arithmetic_test=2))
    assert counts["world.json"] == 5 * 7 + 3 * 4 + 1 * 3 + 2 * 5
    with pytest.raises(ValueError):
        synth_world(1, tmp_path / "x", "huge")
    with pytest.raises(ValueError):
        WorldSize(people=2, companies=3)


def test_names_are_unique_and_not_prefixes(truth):
    names = [e["name"] for kind in truth["entities"].values() for e in kind]
    names += [n for group in ("landmarks", "decoys") for group_names in truth[group].values() for n in group_names]
    assert len(names) == len(set(names))
    for a in names:
        for b in names:
            assert a == b or not b.startswith(a), (a, b)


def _mc_facts(truth: dict) -> dict[str, dict]:
    """Every possible multiple-choice question text -> the fact it asks about."""
    mc = truth["templates"]["mc"]
    return {t.format(s=f["entity"]): f for f in truth["facts"] for lang in mc for t in mc[lang][f["relation"]]}


def _values_of_kind(truth: dict, kind: str) -> set[str]:
    if kind in truth["vocabularies"]:
        return set(truth["vocabularies"][kind])
    real = [e["name"] for e in truth["entities"].get(kind, [])] + truth["landmarks"].get(kind, [])
    return set(real) | set(truth["decoys"][kind])


def test_mc_rows_have_four_distinct_choices_and_correct_letter(tiny, truth):
    dev = _mc(tiny / "mc/world_dev.jsonl")
    test = _mc(tiny / "mc/world_test.jsonl")
    assert len(dev) == 5 and len(dev) + len(test) == len(truth["facts"])
    assert not {tuple(r) for r in dev} & {tuple(r) for r in test}
    facts = _mc_facts(truth)
    assert len({facts[row[0]]["id"] for row in dev + test}) == len(truth["facts"])
    for question, *choices, letter in dev + test:
        assert len(choices) == 4 and len(set(choices)) == 4
        assert choices["ABCD".index(letter)] == facts[question]["value"]
    assert {row[-1] for row in dev + test} == set("ABCD")


def test_mc_distractors_have_the_answers_type(tiny, truth):
    facts = _mc_facts(truth)
    for question, *choices, _ in _mc(tiny / "mc/world_test.jsonl"):
        kind = truth["relations"][facts[question]["relation"]]["value"]
        if kind == "number":
            assert all(c.isdigit() for c in choices), choices
        else:
            assert set(choices) <= _values_of_kind(truth, kind), choices


def test_held_out_questions_never_appear_in_training_text(tiny):
    sft, pretrain = _sft_text(tiny), _pretrain_text(tiny)
    held_out = [r["question"] for r in _jsonl(tiny / "qa_test.jsonl") if r["kind"] == "fact"]
    held_out += [row[0] for row in _mc(tiny / "mc/world_test.jsonl") + _mc(tiny / "mc/world_dev.jsonl")]
    for question in held_out:
        assert question not in sft, question
        assert question not in pretrain, question
    arithmetic = [r["question"] for r in _jsonl(tiny / "qa_test.jsonl") if r["kind"] == "arithmetic"]
    assert not [q for q in arithmetic if q in sft]


def test_template_sets_are_disjoint():
    from lmforge.world.phrasing import LANGS, SETS, TEMPLATES, templates

    for relation in TEMPLATES:
        for lang in LANGS:
            seen = [t for s in SETS for t in templates(relation, s, lang)]
            assert len(seen) == len(set(seen)), (relation, lang)
            assert len(templates(relation, "pretrain", lang) + templates(relation, "faq", lang)) >= (
                6 if lang == "en" else 4)
            assert len(templates(relation, "train", lang)) >= 2


def test_document_facts_stay_in_the_documents(tiny):
    rag = _jsonl(tiny / "docs/rag_qa.jsonl")
    docs = {d["id"]: d for d in _jsonl(tiny / "docs/documents.jsonl")}
    secrets = {r["answer"] for r in rag}
    assert len(secrets) == SIZES["tiny"].cities + SIZES["tiny"].companies
    for record in rag:
        assert record["answer"] in docs[record["doc_id"]]["text"]
    elsewhere = {name: data.decode("utf-8") for name, data in _files(tiny).items() if not name.startswith("docs/")}
    for secret in secrets:
        for name, text in elsewhere.items():
            assert secret not in text, (secret, name)


def test_chinese_everywhere_it_should_be(tiny):
    passages = [r["text"] for r in _jsonl(tiny / "pretrain.jsonl")]
    chinese = sum(bool(CJK.search(p)) for p in passages)
    assert 0.25 <= chinese / len(passages) <= 0.5
    assert CJK.search(_sft_text(tiny))
    assert any(CJK.search(row[0]) for row in _mc(tiny / "mc/world_test.jsonl"))
    assert {r["lang"] for r in _jsonl(tiny / "qa_test.jsonl")} == {"en", "zh"}


def test_sft_arithmetic_working_is_correct(tiny):
    worked = [r["messages"][1]["content"] for r in _jsonl(tiny / "sft_train.jsonl")
              if EQUATION.search(r["messages"][1]["content"])]
    assert len(worked) == SIZES["tiny"].arithmetic_train
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b}
    for text in worked:
        equations = EQUATION.findall(text)
        for a, op, b, result in equations:
            assert ops[op](int(a), int(b)) == int(result), text
        assert FINAL.search(text).group(1) == equations[-1][3], text


def test_arithmetic_test_answers_are_correct(tiny, truth):
    questions = {r["id"]: r for r in _jsonl(tiny / "qa_test.jsonl") if r["kind"] == "arithmetic"}
    assert len(questions) == SIZES["tiny"].arithmetic_test
    for item in truth["arithmetic_test"]:
        assert str(_evaluate(ast.parse(item["expression"], mode="eval").body)) == item["answer"]
        record = questions[item["id"]]
        assert record["answer"] == item["answer"]
        numbers = re.findall(r"\d+", item["expression"])
        assert re.findall(r"\d+", record["question"]) == numbers


def _evaluate(node: ast.AST) -> int:
    """Integer arithmetic from a parsed expression, without eval."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    operations = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
    assert isinstance(node, ast.BinOp) and type(node.op) in operations, ast.dump(node)
    return operations[type(node.op)](_evaluate(node.left), _evaluate(node.right))


def test_seen_in_sft_flags_are_accurate(tiny, truth):
    asked = [tuple(m["content"] for m in record["messages"]) for record in _jsonl(tiny / "sft_train.jsonl")]
    train = truth["templates"]["train"]
    facts = {f["id"]: f for f in truth["facts"]}
    covered = 0
    for fact in truth["facts"]:
        phrasings = [t.format(s=fact["entity"]) for lang in train for t in train[lang][fact["relation"]]]
        hits = [q for q in phrasings if any(q in framed and fact["value"] in answer for framed, answer in asked)]
        expected = len(phrasings) - len(train) if fact["seen_in_sft"] else 0  # one held out per language
        assert len(hits) == expected, fact
        assert len(phrasings) >= 2
        covered += fact["seen_in_sft"]
    assert 0.7 <= covered / len(facts) <= 0.8
    fact_questions = [r for r in _jsonl(tiny / "qa_test.jsonl") if r["kind"] == "fact"]
    for record in fact_questions:
        assert record["seen_in_sft"] == facts[record["id"].split("-")[0]]["seen_in_sft"]
    held_out = [r for r in fact_questions if r["phrasing"] == "train"]
    assert len(held_out) == len(train) * covered and all(r["seen_in_sft"] for r in held_out)


def test_preference_pairs(tiny, truth):
    pairs = _jsonl(tiny / "preference.jsonl")
    assert {p["rule"] for p in pairs} == {"rambling", "repetitive", "wrong"}
    for pair in pairs:
        assert pair["chosen"] != pair["rejected"]
        if pair["rule"] == "rambling":
            assert len(pair["rejected"]) > len(pair["chosen"])
    fact_answers = {f["value"] for f in truth["facts"]}
    named_kinds = {r["value"] for r in truth["relations"].values()} - {"number"}
    plausible = fact_answers.union(*(_values_of_kind(truth, kind) for kind in named_kinds))
    for pair in pairs:
        if pair["rule"] == "wrong" and pair["chosen"] in fact_answers:
            assert pair["rejected"] in plausible or pair["rejected"].isdigit(), pair


def test_demo_size_numbers(tmp_path):
    counts = synth_world(0, tmp_path, "demo")
    characters = len(_pretrain_text(tmp_path))
    mc_rows = counts["mc/world_dev.jsonl"] + counts["mc/world_test.jsonl"]
    print(f"\ndemo world: {characters} pretraining characters, {counts['world.json']} facts, {mc_rows} MC rows")
    assert 120 <= counts["world.json"] <= 200
    assert 200_000 <= characters <= 400_000
    assert mc_rows == counts["world.json"]


def _rl_problems(folder: Path, seed: int, size: WorldSize) -> list:
    """The RL arithmetic problems regenerated from their own stream, to read each one's expression."""
    from lmforge.world.arithmetic import make_problems
    from lmforge.world.entities import derived_rng

    truth = json.loads((folder / "world.json").read_text(encoding="utf-8"))
    first_names = [person["name"].split()[0] for person in truth["entities"]["person"]]
    used = {r["question"] for r in _jsonl(folder / "qa_test.jsonl") if r["kind"] == "arithmetic"}
    used |= {r["messages"][0]["content"] for r in _jsonl(folder / "sft_train.jsonl")}
    return make_problems(derived_rng(seed, "rl"), size.arithmetic_rl, first_names, "arith-rl", frozenset(used))


def test_rl_arithmetic_prompts_are_new_and_correctly_answered(tiny):
    records = [r for r in _jsonl(tiny / "rl_prompts.jsonl") if r["kind"] == "arithmetic"]
    assert len(records) == SIZES["tiny"].arithmetic_rl and {r["lang"] for r in records} == {"en", "zh"}
    trained_or_tested = {r["question"] for r in _jsonl(tiny / "qa_test.jsonl")} | set(_sft_text(tiny).split("\n"))
    assert not [r for r in records if r["prompt"] in trained_or_tested]
    by_id = {r["id"]: r for r in records}
    problems = _rl_problems(tiny, 7, SIZES["tiny"])
    assert sorted(by_id) == sorted(p.id for p in problems)
    for problem in problems:
        record = by_id[problem.id]
        assert (record["prompt"], record["lang"]) == (problem.question, problem.lang)
        assert record["answer"] == str(_evaluate(ast.parse(problem.expression, mode="eval").body))
        assert re.findall(r"\d+", record["prompt"]) == re.findall(r"\d+", problem.expression)


def test_rl_fact_prompts_ask_covered_facts_in_sft_phrasings(tiny, truth):
    records = [r for r in _jsonl(tiny / "rl_prompts.jsonl") if r["kind"] == "fact"]
    facts = {f["id"]: f for f in truth["facts"]}
    covered = [f for f in truth["facts"] if f["seen_in_sft"]]
    assert sorted(r["id"] for r in records) == sorted(f"{f['id']}-{lang}-rl" for f in covered for lang in ("en", "zh"))
    held_out = {r["question"] for r in _jsonl(tiny / "qa_test.jsonl")}
    sft = _sft_text(tiny)
    for record in records:
        fact = facts[record["id"].split("-")[0]]
        assert record["answer"] == fact["value"]
        train = truth["templates"]["train"][record["lang"]][fact["relation"]]
        assert record["prompt"] in {t.format(s=fact["entity"]) for t in train}
        assert record["prompt"] not in held_out and record["prompt"] in sft, record
    assert any(CJK.search(r["prompt"]) for r in records if r["lang"] == "zh")


def test_rl_prompts_are_shuffled_and_leave_every_other_file_alone(tmp_path):
    from dataclasses import replace

    counts = synth_world(5, tmp_path / "a", "tiny")
    synth_world(5, tmp_path / "b", replace(SIZES["tiny"], arithmetic_rl=3))
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    changed = ["README.md", "rl_arithmetic.jsonl", "rl_facts.jsonl", "rl_prompts.jsonl", "world.json"]
    assert [name for name in a if a[name] != b[name]] == changed
    kinds = [r["kind"] for r in _jsonl(tmp_path / "a" / "rl_prompts.jsonl")]
    assert counts["rl_prompts.jsonl"] == len(kinds) and kinds != sorted(kinds)
    assert "| `rl_prompts.jsonl` |" in a["README.md"].decode("utf-8")


def test_some_sft_answers_ramble_or_repeat_like_real_instruction_data(tmp_path):
    from lmforge.world.judge import violations

    synth_world(0, tmp_path, "demo")
    facts = [[m["content"] for m in r["messages"]] for r in _jsonl(tmp_path / "sft_train.jsonl")
             if not r["messages"][1]["content"].startswith(("First", "先算")) and "=" not in r["messages"][1]["content"]]
    noisy = [answer for _, answer in facts if len(answer) > 40]
    assert abs(len(noisy) / len(facts) - SIZES["demo"].sft_noise) < 0.05
    assert all({"rambling", "repetitive"} & set(violations(answer, "x", "fact")) for answer in noisy)



def test_the_library_has_every_format_with_headings_and_its_secrets(tiny, tmp_path):
    from lmforge.rag.ingest import read_documents, source_files

    library = tiny / "docs/library"
    assert {p.suffix for p in library.rglob("*.*")} == {".md", ".html", ".txt", ".pdf"}
    sections = {(doc.doc_id, tuple(section.headings)): section.text for path, name in source_files([str(library)])
                for doc in read_documents(path, name) for section in doc.sections}
    questions = _jsonl(tiny / "docs/questions.jsonl")
    assert {q["kind"] for q in questions} == {"same", "paraphrased", "unanswerable"}
    assert {q["lang"] for q in questions} == {"en", "zh"}
    for question in (q for q in questions if q["answerable"]):
        holding = [key for key, text in sections.items() if question["answer"] in text]
        assert [doc for doc, _ in holding] == [question["doc_id"]], question
        assert holding[0][1][-1] in ("City council", "Motto")  # the answer sits under its heading
    rivers = [key for key in sections if key[0].endswith(".pdf")]
    assert rivers and all(text for key, text in sections.items() if key in rivers)


def test_the_second_edition_changes_some_mayors_and_only_them(tiny):
    changed = _jsonl(tiny / "docs/questions_changed.jsonl")
    before = {q["doc_id"]: q["answer"] for q in _jsonl(tiny / "docs/questions.jsonl") if q["answerable"]}
    assert changed and all(before[q["doc_id"]] != q["answer"] for q in changed)
    first, second = _files(tiny / "docs/library"), _files(tiny / "docs/library_v2")
    differing = sorted(name for name in first if first[name] != second[name])
    assert differing == sorted({q["doc_id"] for q in changed})
    for question in changed:
        assert question["answer"] in second[question["doc_id"]].decode("utf-8")


def test_reading_lessons_cite_the_source_that_answers(tiny):
    lessons = _jsonl(tiny / "sft_reading.jsonl")
    refusals, names = 0, set()
    for lesson in lessons:
        prompt, reply = lesson["messages"][-2]["content"], lesson["messages"][-1]["content"]
        question = prompt.rsplit("Question: ", 1)[1]
        club = next(c for c in re.findall(r"^\[\d\] (.+?) > ", prompt, re.MULTILINE) + [question] if c in question)
        sources = dict(re.findall(r"^\[(\d)\] .*\n(.*)$", prompt, re.MULTILINE))
        if reply == "I don't know.":
            refusals += 1
            assert "treasurer" in question or "财务" in question or not any(club in t for t in sources.values())
            continue
        answer, number = re.fullmatch(r"(.+) \[(\d)\]", reply).groups()
        assert club in sources[number] and answer in sources[number]
        names.add(answer)
    assert 0 < refusals < len(lessons) / 2
    assert len(names) > len(lessons) / 2  # a new answer nearly every time: read, not remembered


def test_tool_lessons_call_the_tools_lmforge_agent_sends(tiny):
    from lmforge.agent.builtins import calculator, search_tool
    from lmforge.agent.tools import tool
    from lmforge.world.lessons import CALCULATOR_SPEC, SEARCH_SPEC

    assert tool(calculator).spec == CALCULATOR_SPEC and search_tool(retriever=None).spec == SEARCH_SPEC
    for lesson in _jsonl(tiny / "sft_tools.jsonl"):
        call = lesson["messages"][1]["tool_calls"][0]["function"]
        result = lesson["messages"][2]["content"]
        if call["name"] == "calculator":
            assert calculator(json.loads(call["arguments"])["expression"]) == result
            assert FINAL.search(lesson["messages"][3]["content"]).group(1) == result
        else:
            assert lesson["messages"][3]["content"] in result
