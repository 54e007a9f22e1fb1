"""A synthetic bilingual "toy world" small enough for a tiny model to learn on CPU in minutes.

`synth_world` writes pretraining text, SFT data, held-out QA and multiple-choice benchmarks,
preference pairs, RL prompts and a retrieval corpus, all derived from one seed and byte-identical per seed.
"""

from __future__ import annotations

from pathlib import Path

from .arithmetic import make_problems
from .corpus import pretrain_passages
from .documents import changed_questions, documents, elected_mayors, library, library_questions
from .entities import SIZES, WorldSize, build_world, derived_rng
from .tasks import mc_rows, preference_records, qa_test_records, rl_prompt_records, sft_records
from .truth import ground_truth, readme
from .lessons import calculator_records, reading_records, search_records
from .writers import write_bytes, write_json, write_jsonl, write_text

__all__ = ["SIZES", "WORLD_TASKS", "WorldSize", "synth_world", "write_world"]

# Custom evaluation tasks (`lmforge eval --tasks world/tasks/world_mc.yaml`); data paths are relative to each file.
# The multiple choice is asked in the world's own question-and-answer style (its FAQ lines, "Q: ... A: ...").
WORLD_TASKS = {
    "world_mc": """\
# Four-way multiple choice on world facts: the answer text most likely after the world's own Q/A style.
name: world_mc
data: ../mc/world_test.jsonl
fewshot_data: ../mc/world_dev.jsonl
prompt: "Q: {question} A:"
choices: choices
metrics: [acc, acc_norm, acc_bytes]
""",
    "world_qa": """\
# Chat answers to held-out fact questions, by exact match; subjects split seen, new-wording and unseen facts.
name: world_qa
data: ../qa_test.jsonl
where: {kind: fact}
subject: "{group}"
prompt: "{question}"
chat: true
generate: {until: [], max_new_tokens: 32}
metrics: [exact_match, f1]
""",
    "world_arithmetic": """\
# New arithmetic word problems in chat; the answer is the last number of the reply.
name: world_arithmetic
data: ../qa_test.jsonl
where: {kind: arithmetic}
prompt: "{question}"
chat: true
generate: {until: [], max_new_tokens: 64, answer_pattern: '(-?\\d+(?:\\.\\d+)?)'}
metrics: [exact_match]
""",
}

PREFERENCE_ARITHMETIC_SHARE = 4  # one arithmetic preference pair per this many training problems


def synth_world(seed: int, out: str | Path, size: str | WorldSize = "demo") -> dict[str, int]:
    """Write every file of the world into `out`; return {relative file name: record count}."""
    size = _resolve(size)
    out = Path(out)
    world = build_world(seed, size)
    first_names = [e.name.split()[0] for e in world.entities if e.kind == "person"]
    arithmetic_rng = derived_rng(seed, "arithmetic")
    train_problems = make_problems(arithmetic_rng, size.arithmetic_train, first_names, "arith-train")
    test_problems = make_problems(arithmetic_rng, size.arithmetic_test, first_names, "arith-test",
                                  avoid=frozenset(p.question for p in train_problems))
    mc_dev, mc_test = mc_rows(world, derived_rng(seed, "mc"))
    docs, rag_questions = documents(world)
    preference_problems = train_problems[: size.arithmetic_train // PREFERENCE_ARITHMETIC_SHARE]
    rl_rng = derived_rng(seed, "rl")
    rl_problems = make_problems(rl_rng, size.arithmetic_rl, first_names, "arith-rl",
                                avoid=frozenset(p.question for p in train_problems + test_problems))
    rl_prompts = rl_prompt_records(world, rl_problems, rl_rng)
    passages = pretrain_passages(world, derived_rng(seed, "pretrain"), size.passages_per_entity)
    counts = {
        "pretrain.jsonl": write_jsonl(out / "pretrain.jsonl", [{"text": t} for t in passages]),
        "sft_train.jsonl": write_jsonl(out / "sft_train.jsonl",
                                       sft_records(world, train_problems, derived_rng(seed, "sft"),
                                                   derived_rng(seed, "sft-noise"), size.sft_noise)),
        "qa_test.jsonl": write_jsonl(out / "qa_test.jsonl",
                                     qa_test_records(world, test_problems, derived_rng(seed, "qa"))),
        "mc/world_dev.jsonl": write_jsonl(out / "mc/world_dev.jsonl", mc_dev),
        "mc/world_test.jsonl": write_jsonl(out / "mc/world_test.jsonl", mc_test),
        "preference.jsonl": write_jsonl(out / "preference.jsonl", preference_records(
            world, preference_problems, derived_rng(seed, "preference"))),
        "rl_prompts.jsonl": write_jsonl(out / "rl_prompts.jsonl", rl_prompts),
        "rl_arithmetic.jsonl": write_jsonl(out / "rl_arithmetic.jsonl",
                                           [r for r in rl_prompts if r["kind"] == "arithmetic"]),
        "rl_facts.jsonl": write_jsonl(out / "rl_facts.jsonl", [r for r in rl_prompts if r["kind"] == "fact"]),
        "docs/documents.jsonl": write_jsonl(out / "docs/documents.jsonl", docs),
        "docs/rag_qa.jsonl": write_jsonl(out / "docs/rag_qa.jsonl", rag_questions),
    }
    counts.update(_library_files(world, seed, out))
    counts["sft_reading.jsonl"] = write_jsonl(out / "sft_reading.jsonl", reading_records(
        world, derived_rng(seed, "reading"), size.reading_lessons))
    tool_lessons = calculator_records(train_problems) + search_records(world, derived_rng(seed, "search"),
                                                                       size.search_lessons)
    counts["sft_tools.jsonl"] = write_jsonl(out / "sft_tools.jsonl", tool_lessons)
    for name, text in WORLD_TASKS.items():
        write_text(out / "tasks" / f"{name}.yaml", text)
        counts[f"tasks/{name}.yaml"] = 1
    write_json(out / "world.json", ground_truth(world, size, test_problems))
    counts["world.json"] = len(world.facts)
    write_text(out / "README.md", readme(seed, counts))
    counts["README.md"] = 1
    return counts


def _library_files(world, seed: int, out: Path) -> dict[str, int]:
    """The library in two editions (the second after an election) and the questions on each."""
    mayors = elected_mayors(world, derived_rng(seed, "election"))
    counts = {}
    for edition, edition_mayors in (("library", None), ("library_v2", mayors)):
        pages = library(world, edition_mayors)
        for path, content in pages.items():
            (write_bytes if isinstance(content, bytes) else write_text)(out / "docs" / edition / path, content)
        counts[f"docs/{edition}/"] = len(pages)
    counts["docs/questions.jsonl"] = write_jsonl(out / "docs/questions.jsonl", library_questions(world))
    counts["docs/questions_changed.jsonl"] = write_jsonl(out / "docs/questions_changed.jsonl",
                                                         changed_questions(world, mayors))
    return counts


def write_world(seed: int, out: str | Path, size: str | WorldSize = "demo", overwrite: bool = False) -> dict[str, int]:
    """`synth_world` into `<out>.partial`, then one rename: never half a world, never an old one replaced unasked."""
    from lmforge.runs import fresh_partial, publish

    out = Path(out)
    partial = fresh_partial(out, overwrite)
    counts = synth_world(seed, partial, size)
    publish(partial, out)
    return counts


def _resolve(size: str | WorldSize) -> WorldSize:
    if isinstance(size, WorldSize):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}; choose one of {sorted(SIZES)} or pass a WorldSize")
    return SIZES[size]
