"""Fictional entities of the toy world: names, attributes, and the facts they imply.

Everything here is driven by one seed so that a world can be regenerated exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class WorldSize:
    """How many entities of each kind a world holds, and how much text is written about them."""

    people: int = 12
    cities: int = 6
    rivers: int = 3
    companies: int = 5
    passages_per_entity: int = 24  # pretraining passages per entity (mix of English and Chinese)
    arithmetic_train: int = 200
    arithmetic_test: int = 60
    sft_noise: float = 0.3  # share of SFT fact answers that ramble or repeat themselves
    arithmetic_rl: int = 1000  # further new problems, only in the RL prompts
    reading_lessons: int = 300  # SFT conversations answering from numbered sources (lessons.py)
    search_lessons: int = 60  # SFT conversations answering through the search tool

    def __post_init__(self):
        if min(self.people, self.cities, self.rivers, self.companies, self.passages_per_entity) < 1:
            raise ValueError(f"every entity count and passages_per_entity must be at least 1: {self}")
        if self.companies > self.people:
            raise ValueError(f"each company needs its own founder, so companies <= people: {self}")


SIZES = {
    "tiny": WorldSize(people=6, cities=4, rivers=2, companies=3, passages_per_entity=3,
                      arithmetic_train=40, arithmetic_test=10, arithmetic_rl=40, reading_lessons=20,
                      search_lessons=6),
    "demo": WorldSize(),
}

KINDS = ("river", "city", "person", "company")

# relation -> (subject kind, value kind); the order here is the order facts are listed in.
RELATIONS = {
    "length_km": ("river", "number"),
    "source": ("river", "mountain"),
    "mouth": ("river", "sea"),
    "population": ("city", "number"),
    "founded_year": ("city", "number"),
    "river": ("city", "river"),
    "country": ("city", "country"),
    "birthplace": ("person", "city"),
    "birth_year": ("person", "number"),
    "profession": ("person", "profession"),
    "residence": ("person", "city"),
    "employer": ("person", "company"),
    "hobby": ("person", "hobby"),
    "pet": ("person", "pet"),
    "established_year": ("company", "number"),
    "headquarters": ("company", "city"),
    "founder": ("company", "person"),
    "industry": ("company", "industry"),
    "employees": ("company", "number"),
}

# Closed vocabularies: English word (the answer in every language) -> Chinese word.
ENUMS = {
    "profession": {
        "painter": "画家", "engineer": "工程师", "teacher": "教师", "doctor": "医生",
        "baker": "面包师", "sailor": "水手", "poet": "诗人", "carpenter": "木匠",
        "lawyer": "律师", "farmer": "农民", "pilot": "飞行员", "architect": "建筑师",
    },
    "hobby": {
        "chess": "国际象棋", "fishing": "钓鱼", "gardening": "园艺", "archery": "射箭",
        "cycling": "骑行", "pottery": "陶艺", "astronomy": "天文观测", "rowing": "划船",
    },
    "pet": {
        "cat": "猫", "dog": "狗", "parrot": "鹦鹉", "rabbit": "兔子", "tortoise": "乌龟",
        "goat": "山羊", "owl": "猫头鹰", "hamster": "仓鼠", "canary": "金丝雀",
    },
    "industry": {
        "shipping": "航运", "textiles": "纺织", "software": "软件", "mining": "采矿",
        "publishing": "出版", "brewing": "酿造", "robotics": "机器人", "insurance": "保险",
        "furniture": "家具", "tourism": "旅游",
    },
}

# Numeric relations: (lowest, highest, step). Also used to invent plausible wrong answers.
NUMBER_RANGES = {
    "length_km": (60, 2400, 1),
    "population": (8000, 950000, 1000),
    "founded_year": (1100, 1850, 1),
    "birth_year": (1930, 1995, 1),
    "established_year": (1955, 2020, 1),
    "employees": (40, 20000, 10),
}

NAMED_KINDS = ("river", "city", "person", "company", "mountain", "sea", "country")
DECOYS_PER_KIND = 3  # invented names that only ever appear as wrong multiple-choice options

_ONSETS = ("", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "st", "tr", "th", "sh")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "k", "th", "nd", "rn")
_MIN_NAME, _MAX_NAME = 4, 8  # short names are easier for a tiny model to memorise
_COUNTRY_ENDINGS = ("ia", "and", "or")
_COMPANY_SUFFIXES = ("Works", "Labs", "Group", "Trading", "Foundry", "Industries")
# Words of the English templates that a generated name must not clash with.
_RESERVED = ("River", "Mount", "Sea", "City") + _COMPANY_SUFFIXES
_MOTTO_ADJECTIVES = ("Steady", "Bright", "Honest", "Quiet", "Bold", "Careful", "Open", "Patient",
                     "Humble", "Swift")
_MOTTO_NOUNS = ("hands", "roads", "lanterns", "harbors", "gardens", "engines", "bridges", "letters",
                "anchors", "meadows")


def derived_rng(seed: int, part: str) -> random.Random:
    """An independent random stream per part, so changing one output never reshuffles another."""
    return random.Random(f"lmforge.world:{seed}:{part}")


@dataclass
class Entity:
    kind: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fact:
    id: str
    entity: str
    kind: str
    relation: str
    value: str
    in_sft: bool = False

    @property
    def value_kind(self) -> str:
        return RELATIONS[self.relation][1]


@dataclass
class World:
    """Ground truth plus the secrets (mayors, mottos) that only the document collection may reveal."""

    seed: int
    entities: list[Entity]
    facts: list[Fact]
    landmarks: dict[str, list[str]]  # named places that are values only: mountains, seas, countries
    decoys: dict[str, list[str]]
    mayors: dict[str, str]
    mottos: dict[str, str]

    def entity(self, name: str) -> Entity | None:
        return next((e for e in self.entities if e.name == name), None)

    def names(self, kind: str) -> list[str]:
        """Real names of a kind, whether entities (cities...) or landmarks (mountains...)."""
        return [e.name for e in self.entities if e.kind == kind] or self.landmarks.get(kind, [])

    def facts_about(self, name: str) -> list[Fact]:
        return [f for f in self.facts if f.entity == name]

    def facts_pointing_to(self, name: str) -> list[Fact]:
        """Facts of other entities whose value is this entity (e.g. people born in a city)."""
        return [f for f in self.facts if f.value == name]


class NameForge:
    """Invents pronounceable Latin-script name tokens, none a prefix of another."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taken: list[str] = list(_RESERVED)

    def token(self, endings: tuple[str, ...] = ("",)) -> str:
        while True:
            syllables = self.rng.choice((1, 2, 2, 2))
            word = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                           for _ in range(syllables)) + self.rng.choice(endings)
            word = word.capitalize()
            if _MIN_NAME <= len(word) <= _MAX_NAME and not self._clashes(word):
                self.taken.append(word)
                return word

    def _clashes(self, word: str) -> bool:
        return any(word.startswith(t) or t.startswith(word) for t in self.taken)

    def name(self, kind: str) -> str:
        if kind == "person":
            return f"{self.token()} {self.token()}"
        if kind == "company":
            return f"{self.token()} {self.rng.choice(_COMPANY_SUFFIXES)}"
        if kind == "country":
            return self.token(_COUNTRY_ENDINGS)
        return self.token()


def distinct_numbers(rng: random.Random, relation: str, count: int) -> list[str]:
    """Values of a numeric relation, distinct while the range allows, so wrong options stay wrong."""
    low, high, step = NUMBER_RANGES[relation]
    values = range(low, high + 1, step)
    picked = rng.sample(values, count) if count <= len(values) else rng.choices(values, k=count)
    return [str(v) for v in picked]


def covering_choice(rng: random.Random, options: list[str], count: int) -> list[str]:
    """`count` picks from `options` that use every option once before repeating any."""
    picks = []
    while len(picks) < count:
        batch = list(options)
        rng.shuffle(batch)
        picks += batch
    return picks[:count]


def build_world(seed: int, size: WorldSize) -> World:
    """Generate entities and their facts; the split of facts into SFT-covered or not is seeded too."""
    rng = derived_rng(seed, "attributes")
    forge = NameForge(derived_rng(seed, "names"))
    mountains = [forge.name("mountain") for _ in range(size.rivers)]
    seas = [forge.name("sea") for _ in range(max(1, size.rivers // 2))]
    countries = [forge.name("country") for _ in range(max(2, size.cities // 3))]
    rivers = _rivers(rng, forge, size.rivers, mountains, seas)
    cities = _cities(rng, forge, size.cities, rivers, countries)
    people = _people(rng, forge, size.people, cities)
    companies = _companies(rng, forge, size.companies, people, cities)
    entities = rivers + cities + people + companies
    landmarks = {"mountain": mountains, "sea": seas, "country": countries}
    decoys = {kind: [forge.name(kind) for _ in range(DECOYS_PER_KIND)] for kind in NAMED_KINDS}
    mayors = {c.name: forge.name("person") for c in cities}
    mottos = dict(zip([c.name for c in companies], _mottos(rng, len(companies))))
    facts = _split_for_sft(derived_rng(seed, "split"), _facts(entities))
    return World(seed, entities, facts, landmarks, decoys, mayors, mottos)


def _rivers(rng, forge, count, mountains, seas) -> list[Entity]:
    lengths = distinct_numbers(rng, "length_km", count)
    mouths = covering_choice(rng, seas, count)
    return [Entity("river", forge.name("river"),
                   {"length_km": lengths[i], "source": mountains[i], "mouth": mouths[i]})
            for i in range(count)]


def _cities(rng, forge, count, rivers, countries) -> list[Entity]:
    populations = distinct_numbers(rng, "population", count)
    years = distinct_numbers(rng, "founded_year", count)
    on_river = covering_choice(rng, [r.name for r in rivers], count)
    in_country = covering_choice(rng, countries, count)
    return [Entity("city", forge.name("city"),
                   {"population": populations[i], "founded_year": years[i],
                    "river": on_river[i], "country": in_country[i]})
            for i in range(count)]


def _people(rng, forge, count, cities) -> list[Entity]:
    city_names = [c.name for c in cities]
    years = distinct_numbers(rng, "birth_year", count)
    people = []
    for i in range(count):
        people.append(Entity("person", forge.name("person"), {
            "birthplace": rng.choice(city_names),
            "birth_year": years[i],
            "profession": rng.choice(list(ENUMS["profession"])),
            "residence": rng.choice(city_names),
            "employer": "",  # filled in once companies exist
            "hobby": rng.choice(list(ENUMS["hobby"])),
            "pet": rng.choice(list(ENUMS["pet"])),
        }))
    return people


def _companies(rng, forge, count, people, cities) -> list[Entity]:
    """Companies are founded by people of the world, who then work there; others work anywhere."""
    founders = rng.sample(people, count)
    industries = covering_choice(rng, list(ENUMS["industry"]), count)
    staff = distinct_numbers(rng, "employees", count)
    used_years: list[str] = []
    companies = []
    for i, founder in enumerate(founders):
        year = _founding_year(rng, int(founder.attrs["birth_year"]), used_years)
        used_years.append(year)
        companies.append(Entity("company", forge.name("company"), {
            "established_year": year,
            "headquarters": rng.choice([c.name for c in cities]),
            "founder": founder.name,
            "industry": industries[i],
            "employees": staff[i],
        }))
    for person in people:
        own = [c.name for c in companies if c.attrs["founder"] == person.name]
        person.attrs["employer"] = own[0] if own else rng.choice([c.name for c in companies])
    return companies


def _founding_year(rng, founder_birth: int, used: list[str]) -> str:
    """A year when the founder was an adult, preferring one no other company has."""
    low, high, _ = NUMBER_RANGES["established_year"]
    candidates = [y for y in range(founder_birth + 25, founder_birth + 46) if low <= y <= high]
    fresh = [y for y in candidates if str(y) not in used]
    return str(rng.choice(fresh or candidates or [high]))


def _mottos(rng, count) -> list[str]:
    mottos: list[str] = []
    while len(mottos) < count:
        first, second = rng.sample(_MOTTO_ADJECTIVES, 2)
        motto = f"{first} {rng.choice(_MOTTO_NOUNS)}, {second.lower()} {rng.choice(_MOTTO_NOUNS)}"
        if motto not in mottos:
            mottos.append(motto)
    return mottos


def _facts(entities: list[Entity]) -> list[Fact]:
    facts = []
    for entity in entities:
        for relation, value in entity.attrs.items():
            facts.append(Fact(f"f{len(facts) + 1:04d}", entity.name, entity.kind, relation, value))
    return facts


def _split_for_sft(rng: random.Random, facts: list[Fact], share: float = 0.75) -> list[Fact]:
    """Mark a seeded ~75% of facts as taught by SFT; the rest measure generalisation."""
    covered = set(rng.sample([f.id for f in facts], round(share * len(facts))))
    return [replace(f, in_sft=f.id in covered) for f in facts]
