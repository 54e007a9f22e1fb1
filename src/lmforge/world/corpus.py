"""Encyclopedia-style pretraining passages about every entity, in English and Chinese.

A passage opens with an infobox line, restates all of its entity's facts in random order and
wording, says which other entities point to it, summarises entities it points to, and ends with
FAQ lines, so that a tiny model sees every fact many times in many phrasings.
"""

from __future__ import annotations

import random

from .entities import Entity, Fact, World
from .phrasing import FAQ_HEADING, infobox, state

ENGLISH_SHARE = 0.6
FAQ_LINES = 4
FACTS_PER_RELATED_ENTITY = 4


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
    faq = [state(f, lang, rng, "faq") for f in rng.sample(own, min(FAQ_LINES, len(own)))]
    blocks = [entity.name,
              infobox(entity.name, _shuffled(rng, own), lang),
              joiner.join(state(f, lang, rng) for f in own),
              joiner.join(state(f, lang, rng) for f in mentions),
              joiner.join(state(f, lang, rng) for f in _related_facts(world, own, rng)),
              FAQ_HEADING[lang], *faq]
    return "\n".join(block for block in blocks if block)


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
