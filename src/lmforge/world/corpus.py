"""Encyclopedia-style pretraining passages about every entity, in English and Chinese.

Each passage states its entity's facts once each, in random order and wording (statement or Q&A line), then
facts of the entities that point to it and of the entities it points to. No fact is repeated inside a passage:
a repeated fact could be copied from the context, and the model would never have to store it in its weights,
which is what later knowledge questions need. Many differently worded passages per entity supply the
repetition instead.
"""

from __future__ import annotations

import random

from .entities import Entity, Fact, World
from .phrasing import state

ENGLISH_SHARE = 0.6
FAQ_SHARE = 0.3
FACTS_PER_RELATED_ENTITY = 2


def pretrain_passages(world: World, rng: random.Random, per_entity: int) -> list[str]:
    passages = [_passage(world, entity, lang, rng)
                for entity in world.entities for lang in _languages(rng, per_entity)]
    rng.shuffle(passages)
    return passages


def _languages(rng: random.Random, count: int) -> list[str]:
    """Exactly ~60% English per entity, so small worlds keep the intended language mix."""
    english = round(count * ENGLISH_SHARE)
    langs = ["en"] * english + ["zh"] * (count - english)
    rng.shuffle(langs)
    return langs


def _passage(world: World, entity: Entity, lang: str, rng: random.Random) -> str:
    own = _shuffled(rng, world.facts_about(entity.name))
    mentions = _shuffled(rng, world.facts_pointing_to(entity.name))
    joiner = " " if lang == "en" else ""
    blocks = [own, mentions, _related_facts(world, own, rng)]
    return "\n".join(joiner.join(_phrase(f, lang, rng) for f in block) for block in blocks if block)


def _phrase(fact: Fact, lang: str, rng: random.Random) -> str:
    return state(fact, lang, rng, "faq" if rng.random() < FAQ_SHARE else "pretrain")


def _related_facts(world: World, own: list[Fact], rng: random.Random) -> list[Fact]:
    """A couple of facts about each entity this one refers to (its city, its employer...)."""
    related = []
    for name in dict.fromkeys(f.value for f in own if world.entity(f.value)):
        facts = world.facts_about(name)
        related += rng.sample(facts, min(FACTS_PER_RELATED_ENTITY, len(facts)))
    return related


def _shuffled(rng: random.Random, facts: list[Fact]) -> list[Fact]:
    facts = list(facts)
    rng.shuffle(facts)
    return facts
