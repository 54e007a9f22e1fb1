"""Supervised, evaluation and preference records built from the world's facts and arithmetic problems."""

from __future__ import annotations

import random

from .arithmetic import FINAL_SENTENCE, Problem
from .entities import ENUMS, NUMBER_RANGES, Fact, World
from .phrasing import ANSWER_SENTENCE, FILLERS, LANGS, QUESTION_FRAMES, ask, templates

LETTERS = "ABCD"
MC_DEV_ROWS = 5
REJECTION_RULES = ("rambling", "repetitive", "wrong")
NOISE_RULES = ("rambling", "repetitive")


def sft_records(world: World, problems: list[Problem], rng: random.Random, noise_rng: random.Random,
                noise: float) -> list[dict]:
    """Every covered fact in every "train" phrasing but its held-out one, each in a random framing, plus
    worked arithmetic. Like real instruction data, a share `noise` of the fact answers ramble or repeat
    themselves (the habits preference data then trains away)."""
    records = [_chat(rng.choice(QUESTION_FRAMES[lang]).format(q=template.format(s=fact.entity)),
                     _noisy(noise_rng, noise, fact.value, lang))
               for index, fact in enumerate(world.facts) if fact.in_sft for lang in LANGS
               for template in _sft_templates(fact, index, lang)]
    records += [_chat(p.question, p.working) for p in problems]
    rng.shuffle(records)
    return records


def _noisy(rng: random.Random, noise: float, value: str, lang: str) -> str:
    if rng.random() >= noise:
        return value
    sentence = ANSWER_SENTENCE[lang].format(v=value)
    return _breaking(rng, rng.choice(NOISE_RULES), sentence, sentence, lang)


def qa_test_records(world: World, problems: list[Problem], rng: random.Random) -> list[dict]:
    """Per fact and language: the held-out "train" phrasing of each covered fact (a question from the SFT
    distribution that SFT never saw), and a question in a phrasing no training file uses; then new arithmetic."""
    records = [_qa_record(fact, lang, _held_out(fact, index, lang).format(s=fact.entity), "train")
               for index, fact in enumerate(world.facts) if fact.in_sft for lang in LANGS]
    records += [_qa_record(fact, lang, ask(fact, lang, rng, "test"), "new")
                for fact in world.facts for lang in LANGS]
    records += [{"id": p.id, "question": p.question, "answer": str(p.answer), "lang": p.lang,
                 "kind": "arithmetic", "seen_in_sft": False, "phrasing": "new", "group": "arithmetic"} for p in problems]
    return records


def rl_prompt_records(world: World, problems: list[Problem], rng: random.Random) -> list[dict]:
    """Prompts with short gold answers for RL: new arithmetic, and every covered fact per language asked in a
    phrasing SFT used (never the held-out one: qa_test.jsonl asks that)."""
    records = [_rl_record(p.question, str(p.answer), "arithmetic", p.lang, p.id) for p in problems]
    records += [_rl_record(rng.choice(_sft_templates(fact, index, lang)).format(s=fact.entity), fact.value, "fact",
                           lang, f"{fact.id}-{lang}-rl")
                for index, fact in enumerate(world.facts) if fact.in_sft for lang in LANGS]
    rng.shuffle(records)
    return records


def _rl_record(prompt: str, answer: str, kind: str, lang: str, record_id: str) -> dict:
    return {"prompt": prompt, "answer": answer, "kind": kind, "lang": lang, "id": record_id}


def _sft_templates(fact: Fact, index: int, lang: str) -> list[str]:
    """The "train" templates SFT asks this fact in: all but the held-out one."""
    return [t for t in templates(fact.relation, "train", lang) if t != _held_out(fact, index, lang)]


def _held_out(fact: Fact, index: int, lang: str) -> str:
    """The one "train" template kept out of SFT for this fact, rotating so every template is held out somewhere."""
    family = templates(fact.relation, "train", lang)
    return family[index % len(family)]


def _qa_record(fact: Fact, lang: str, question: str, phrasing: str) -> dict:
    group = "fact-unseen" if not fact.in_sft else "fact-seen" if phrasing == "train" else "fact-new-wording"
    return {"id": f"{fact.id}-{lang}-{phrasing}", "question": question, "answer": fact.value, "lang": lang,
            "kind": "fact", "seen_in_sft": fact.in_sft, "phrasing": phrasing, "group": group}


def mc_rows(world: World, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """One four-option question per fact, split into (dev, test) with no row in both."""
    facts = list(world.facts)
    rng.shuffle(facts)
    rows = []
    for fact in facts:
        lang = "en" if rng.random() < 0.6 else "zh"
        choices = distractors(world, fact, rng, 3)
        answer_at = rng.randrange(4)
        choices.insert(answer_at, fact.value)
        rows.append({"id": f"{fact.id}-mc", "question": ask(fact, lang, rng, "mc"), "choices": choices,
                     "answer": LETTERS[answer_at], "lang": lang})
    return rows[:MC_DEV_ROWS], rows[MC_DEV_ROWS:]


def distractors(world: World, fact: Fact, rng: random.Random, count: int) -> list[str]:
    """Wrong values of the same type: other entities' values of this relation first, then others of the kind."""
    same_relation = _shuffled(rng, [f.value for f in world.facts if f.relation == fact.relation])
    same_kind = _shuffled(rng, _values_of_kind(world, fact.value_kind))
    picked: list[str] = []
    for value in same_relation + same_kind:
        if value != fact.value and value not in picked and len(picked) < count:
            picked.append(value)
    while len(picked) < count:  # only numbers can run short; invent plausible ones
        low, high, step = NUMBER_RANGES[fact.relation]
        value = str(rng.randrange(low, high + 1, step))
        if value != fact.value and value not in picked:
            picked.append(value)
    return picked


def preference_records(world: World, problems: list[Problem], rng: random.Random) -> list[dict]:
    """Chosen = concise correct answer; rejected breaks one rule (rambling, repetitive or wrong)."""
    records = []
    for fact in (f for f in world.facts if f.in_sft):
        lang = rng.choice(LANGS)
        sentence = ANSWER_SENTENCE[lang].format(v=fact.value)
        wrong = distractors(world, fact, rng, 1)[0]
        records.append(_preference(rng, ask(fact, lang, rng, "train"), fact.value, sentence, sentence, wrong, lang))
    for problem in problems:
        final = FINAL_SENTENCE[problem.lang]
        wrong = final.format(r=problem.answer + rng.choice((-10, -2, -1, 1, 2, 10)))
        records.append(_preference(rng, problem.question, problem.working, problem.working,
                                   final.format(r=problem.answer), wrong, problem.lang))
    rng.shuffle(records)
    return records


def _preference(rng: random.Random, prompt: str, chosen: str, padded: str, repeated: str, wrong: str,
                lang: str) -> dict:
    """`padded` is the correct answer as a sentence to bury in filler; `repeated` the phrase to loop."""
    rule = rng.choice(REJECTION_RULES)
    rejected = wrong if rule == "wrong" else _breaking(rng, rule, padded, repeated, lang)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "rule": rule}


def _breaking(rng: random.Random, rule: str, padded: str, repeated: str, lang: str) -> str:
    """An answer that breaks `rule`: `padded` buried in filler (rambling) or `repeated` looped (repetitive)."""
    joiner = " " if lang == "en" else ""
    if rule == "rambling":
        filler = rng.sample(FILLERS[lang], 4)
        return joiner.join(filler[:2] + [padded] + filler[2:])
    return joiner.join([repeated] * rng.randint(4, 7))


def _chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _values_of_kind(world: World, kind: str) -> list[str]:
    if kind in ENUMS:
        return list(ENUMS[kind])
    return world.names(kind) + world.decoys.get(kind, [])


def _shuffled(rng: random.Random, values: list[str]) -> list[str]:
    values = list(values)
    rng.shuffle(values)
    return values
