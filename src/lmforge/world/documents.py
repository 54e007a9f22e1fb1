"""A small document collection for retrieval: it alone knows each city's mayor and each company's motto.

Those extra facts appear nowhere else (not in pretraining, not in world.json), so a model can only
answer `docs/rag_qa.jsonl` by retrieving the right document.
"""

from __future__ import annotations

from .entities import Entity, World
from .phrasing import with_article

CITY_DOC = ("The mayor of {s} is {mayor}. {mayor} leads the city council of {s}, a city on the {river} River "
            "with a population of {population}. Citizens of {s} can meet {mayor} at the town hall every Monday.")
COMPANY_DOC = ('The motto of {s} is "{motto}". {s} is {industry} company based in {headquarters}. '
               'Every new employee of {s} learns the motto "{motto}" on the first day.')
RAG_QUESTIONS = {
    "mayor": ("Who is the mayor of {s}?", "{s}的市长是谁？"),
    "motto": ("What is the motto of {s}?", "{s}的座右铭是什么？"),
}


def documents(world: World) -> tuple[list[dict], list[dict]]:
    """(documents, retrieval questions), one document per city and per company."""
    docs, questions = [], []
    for city in (e for e in world.entities if e.kind == "city"):
        mayor = world.mayors[city.name]
        docs.append(_document(city, "city council", CITY_DOC.format(s=city.name, mayor=mayor, **city.attrs)))
        questions += _questions(docs[-1]["id"], "mayor", city.name, mayor)
    for company in (e for e in world.entities if e.kind == "company"):
        motto = world.mottos[company.name]
        text = COMPANY_DOC.format(s=company.name, motto=motto, industry=with_article(company.attrs["industry"]),
                                  headquarters=company.attrs["headquarters"])
        docs.append(_document(company, "company profile", text))
        questions += _questions(docs[-1]["id"], "motto", company.name, motto)
    return docs, questions


def _document(entity: Entity, title_suffix: str, text: str) -> dict:
    slug = entity.name.lower().replace(" ", "-")
    return {"id": f"{entity.kind}-{slug}", "title": f"{entity.name} {title_suffix}", "text": text}


def _questions(doc_id: str, relation: str, subject: str, answer: str) -> list[dict]:
    return [{"question": q.format(s=subject), "answer": answer, "doc_id": doc_id} for q in RAG_QUESTIONS[relation]]
