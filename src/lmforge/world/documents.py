"""The world's document library, for retrieval: a handbook page per entity in the formats users index (cities in
Markdown, companies in HTML, people in plain text, rivers in PDF), each with headings, and news pages that name
the cities and companies without answering the library's questions.

Only the library states each city's mayor and each company's motto; those facts appear nowhere else (not in
pretraining, not in world.json), so a model answers questions about them only by retrieving. Questions come in
three kinds: the library's own wording, paraphrased (other words for the same question, where keyword search
struggles), and unanswerable (about things no page says). A second edition of the library changes some mayors
(an election), with questions whose answers changed.

Reading lessons, for SFT, teach answering from numbered sources with a citation, and "I don't know." when no
source says; they are about invented clubs, never about the library, so that answering the library's questions
stays a test of retrieval.
"""

from __future__ import annotations

import html
import random

from .entities import Entity, World
from .phrasing import with_article

CITY_PAGE = """# {s}

## City council

The mayor of {s} is {mayor}. {mayor} leads the city council of {s} and meets citizens at the town hall every Monday.

## Geography

{s} is a city in {country} on the {river} River, with a population of {population}.

## History

{s} was founded in {founded_year}.
"""
COMPANY_PAGE = """<html><head><title>{s}</title></head><body>
<h1>{s}</h1>
<h2>Profile</h2>
<p>{s} is {industry} company based in {headquarters}, established in {established_year}, with {employees} \
employees.</p>
<h2>Motto</h2>
<p>The motto of {s} is "{motto}". Every new employee of {s} learns the motto on the first day.</p>
</body></html>
"""
PERSON_PAGE = """{s}

{s} was born in {birthplace} in {birth_year} and lives in {residence}. {s} works as {profession_article} at \
{employer}. In free time {s} enjoys {hobby} and looks after a pet {pet}.
"""
RIVER_LINES = ("{s} River", "Course", "The {s} River rises on Mount {source} and flows into the {mouth} Sea.",
               "Length", "The {s} River is {length_km} km long.")

# News pages: many pages name each city and company (and talk about its council or its staff) without giving its
# mayor or motto, as in a real library, so that finding the one page that answers is not just matching the name.
CITY_NEWS = (
    "# {s} council votes on the budget\n\nThe city council of {s} met on {day} and voted on next year's budget for "
    "roads, schools and the harbour. Council members of {s} argued for two hours before the vote.\n",
    "# Market day in {s}\n\nThe weekly market of {s} reopened on {day}. Traders from across {country} came to {s} "
    "to sell fish from the {river} River.\n",
    "# {s} elects new school leaders\n\nParents in {s} chose new leaders for the city's schools on {day}. The "
    "local government of {s} thanked the volunteers who counted the votes.\n",
)
COMPANY_NEWS = (
    "# {s} opens an office\n\n{s} opened a new office in {headquarters} on {day}. New staff at {s} will start "
    "next month, and the company is hiring in {industry_word}.\n",
    "# A good year for {s}\n\n{s} reported a good year. Its {employees} employees will get a bonus, and the "
    "company plans to grow in {industry_word}.\n",
)
NEWS_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

QUESTIONS = {  # relation -> kind -> (English, Chinese)
    "mayor": {"same": ("Who is the mayor of {s}?", "{s}的市长是谁？"),
              "paraphrased": ("Which person heads the local government of {s}?", "谁领导{s}的地方政府？")},
    "motto": {"same": ("What is the motto of {s}?", "{s}的座右铭是什么？"),
              "paraphrased": ("Which saying do new staff at {s} have to learn?", "{s}的新员工要学会哪句口号？")},
}
UNANSWERABLE = {"city": ("Who is the police chief of {s}?", "{s}的警察局长是谁？"),
                "company": ("Who is the head of research at {s}?", "{s}的研究主管是谁？")}
CHANGED_SHARE = 2  # every second city elects a new mayor in the second edition


def library(world: World, mayors: dict[str, str] | None = None) -> dict[str, str | bytes]:
    """{relative path: content} of the library; `mayors` overrides the mayors (the second edition)."""
    mayors = mayors or world.mayors
    pages: dict[str, str | bytes] = {}
    for entity in world.entities:
        attrs = {"s": entity.name, **entity.attrs}
        if entity.kind == "city":
            pages[f"cities/{_slug(entity)}.md"] = CITY_PAGE.format(mayor=mayors[entity.name], **attrs)
        elif entity.kind == "company":
            fields = {key: html.escape(str(value)) for key, value in attrs.items()}
            fields["industry"] = with_article(entity.attrs["industry"])
            pages[f"companies/{_slug(entity)}.html"] = COMPANY_PAGE.format(motto=html.escape(world.mottos[entity.name]),
                                                                           **fields)
        elif entity.kind == "person":
            pages[f"people/{_slug(entity)}.txt"] = PERSON_PAGE.format(
                profession_article=with_article(entity.attrs["profession"]), **attrs)
        elif entity.kind == "river":
            pages[f"rivers/{_slug(entity)}.pdf"] = _pdf([line.format(**attrs) for line in RIVER_LINES])
        news = {"city": CITY_NEWS, "company": COMPANY_NEWS}.get(entity.kind, ())
        for number, page in enumerate(news, 1):
            pages[f"news/{_slug(entity)}-{number}.md"] = page.format(
                day=NEWS_DAYS[(number + len(entity.name)) % len(NEWS_DAYS)],
                industry_word=entity.attrs.get("industry", ""), **attrs)
    return pages


def elected_mayors(world: World, rng: random.Random) -> dict[str, str]:
    """The second edition's mayors: every CHANGED_SHARE-th city elects one of the world's people."""
    people = [e.name for e in world.entities if e.kind == "person"]
    cities = [e.name for e in world.entities if e.kind == "city"]
    return {city: rng.choice(people) if i % CHANGED_SHARE == 0 else world.mayors[city] for i, city in enumerate(cities)}


def library_questions(world: World, mayors: dict[str, str] | None = None) -> list[dict]:
    """Same-wording and paraphrased questions on every mayor and motto, in both languages, and unanswerable ones."""
    mayors = mayors or world.mayors
    questions = []
    for entity in world.entities:
        if entity.kind not in ("city", "company"):
            continue
        relation, answer = ("mayor", mayors[entity.name]) if entity.kind == "city" else ("motto",
                                                                                       world.mottos[entity.name])
        doc_id = f"{'cities' if entity.kind == 'city' else 'companies'}/{_slug(entity)}." + (
            "md" if entity.kind == "city" else "html")
        for kind, wordings in QUESTIONS[relation].items():
            questions += [{"question": wording.format(s=entity.name), "answer": answer, "doc_id": doc_id,
                           "kind": kind, "lang": lang, "answerable": True}
                          for lang, wording in zip(("en", "zh"), wordings)]
        questions += [{"question": wording.format(s=entity.name), "kind": "unanswerable", "lang": lang,
                       "answerable": False} for lang, wording in zip(("en", "zh"), UNANSWERABLE[entity.kind])]
    return questions


def changed_questions(world: World, mayors: dict[str, str]) -> list[dict]:
    """The library's questions whose answer the second edition changed."""
    changed = {city for city, mayor in mayors.items() if mayor != world.mayors[city]}
    return [q for q in library_questions(world, mayors) if q["answerable"] and q["doc_id"].startswith("cities/")
            and any(q["doc_id"] == f"cities/{_slug(world.entity(city))}.md" for city in changed)]


def documents(world: World) -> tuple[list[dict], list[dict]]:
    """The mayor and motto pages as jsonl records ({id, title, text}) and their same-wording questions."""
    docs, questions = [], []
    for path, page in library(world).items():
        if path.startswith(("cities/", "companies/")):
            text = page if path.endswith(".md") else _html_text(page)
            docs.append({"id": path, "title": text.splitlines()[0].lstrip("# "), "text": text})
    questions = [{"question": q["question"], "answer": q["answer"], "doc_id": q["doc_id"]}
                 for q in library_questions(world) if q.get("kind") == "same"]
    return docs, questions


def _html_text(page: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", "\n", page)).strip().replace("\n\n", "\n")


def _slug(entity: Entity) -> str:
    return entity.name.lower().replace(" ", "-")


def _pdf(lines: tuple[str, ...] | list[str]) -> bytes:
    """A one-page PDF: a title, then headings and paragraphs, with a fixed date (the world is byte-stable)."""
    import datetime

    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
    pdf.set_title(lines[0])
    pdf.add_page()
    for number, line in enumerate(lines):
        heading = number == 0 or number % 2 == 1
        pdf.set_font("helvetica", "B" if heading else "", 16 if number == 0 else 12)
        pdf.multi_cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
