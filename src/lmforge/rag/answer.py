"""Grounded answers: retrieve, show the model numbered sources through a prompt program, and map the `[n]` it cites
back to chunk ids; or say "I don't know" when nothing retrieved supports an answer.

Refusal has two triggers. A score threshold (`min_score`, the best cosine similarity between the question and a
chunk) refuses before the model runs, which is what keeps a small model from answering from nothing. Otherwise the
prompt asks the model to reply "I don't know", and a reply that says so counts as a refusal.

A small model often answers right but forgets the `[n]`. Such a reply is attributed after the fact to the
best-ranked source that contains the answer, and the citation says it was attributed, not cited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.answers import normalize_answer
from lmforge.prompts import IDK, RAG_PROGRAM

_REFUSALS = ("i don't know", "i do not know", "i dont know", "不知道", "无法回答")
_CITATION = re.compile(r"\s*\[(\d+)\]")
REFUSAL_LEAD = 12  # characters a refusal phrase may come after ("sorry, ", "抱歉，我")



@dataclass
class Answer:
    question: str
    text: str  # the reply without its citation markers
    reply: str  # the reply as the model wrote it ("" when refused before the model ran)
    refused: bool
    citations: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    best_score: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def load_rag_program(path: str | None):
    """The user's prompt program (its template gets `sources` and `question`), or the built-in one."""
    from lmforge.prompts import load_program, program_from_dict

    return load_program(path) if path else program_from_dict(RAG_PROGRAM, Path.cwd(), "built-in RAG prompt")


class Retriever:
    """An index with the embedder it was built with, safe to share between threads (the server's)."""

    def __init__(self, index, embedder=None):
        import threading

        self.index, self.embedder, self.lock = index, embedder, threading.Lock()

    def retrieve(self, question: str, k: int, mode: str = "hybrid") -> tuple[list, float]:
        """The k best chunks, and the best cosine similarity of any chunk to the question (1.0 without an
        embedder: BM25 alone has nothing to threshold on)."""
        from lmforge.rag.index import search

        with self.lock:
            hits = search(self.index, self.embedder, question, k, mode)
            if self.embedder is None:
                return hits, 1.0
            top = self.index.dense(self.embedder.vectors([question])[0], 1)
        return hits, float(top[0][1]) if top else 0.0


def open_retriever(folder: str | Path, device: str = "auto") -> Retriever:
    """The index in `folder` with the embedder its manifest names, in float32 (a server's precision)."""
    from lmforge.embedders import SentenceEmbedder, resolve_embedder
    from lmforge.rag.index import Index

    index = Index(folder)
    embedder = SentenceEmbedder(resolve_embedder(index.manifest["embedder"]), device, "float32")
    index.check_embedder(embedder)
    return Retriever(index, embedder)


def rag_conversation(program, question: str, hits: list, history: list[dict] | None = None) -> list[dict]:
    """The program's conversation for a question and its sources, after any earlier turns of a chat."""
    from lmforge.prompts import conversation

    messages = conversation(program, {"question": question, "sources": [h.as_dict() for h in hits],
                                      "_source": "question"}, [])
    if not history:
        return messages
    own = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    theirs = "\n\n".join(m["content"] or "" for m in history if m["role"] == "system")
    system = "\n\n".join(text for text in (own, theirs) if text)  # the client's system text never drops ours
    turns = [m for m in history if m["role"] != "system"]
    return [*([{"role": "system", "content": system}] if system else []), *turns, messages[-1]]


def answer_questions(index, embedder, model, questions: list[str], k: int = 5, mode: str = "hybrid",
                     min_score: float = 0.0, program=None) -> list[Answer]:
    """Retrieve, refuse below `min_score`, ask the model for the rest in one batch, and read its citations."""
    from lmforge.clients import Decoding

    if not questions:
        return []
    program = program or load_rag_program(None)
    retriever = Retriever(index, embedder)
    retrieved, best = zip(*(retriever.retrieve(question, k, mode) for question in questions))
    asked = [i for i, hits in enumerate(retrieved) if hits and best[i] >= min_score]
    conversations = [rag_conversation(program, questions[i], retrieved[i]) for i in asked]
    spec = program.spec
    replies = model.complete(conversations, Decoding(spec.max_new_tokens, spec.temperature, stop=spec.stop))
    by_question = {i: reply[0] for i, reply in zip(asked, replies)}
    return [read_reply(question, retrieved[i], by_question.get(i), best[i]) for i, question in enumerate(questions)]


def read_reply(question: str, hits: list, reply: str | None, best_score: float) -> Answer:
    """An Answer from the model's reply (None: refused before asking): citations mapped to the hits' chunks."""
    sources = [hit.as_dict() for hit in hits]
    if reply is None:
        return Answer(question, IDK, "", True, [], sources, best_score)
    text = _CITATION.sub("", reply).strip()
    if is_refusal(reply):
        return Answer(question, text, reply, True, [], sources, best_score)
    numbers = list(dict.fromkeys(int(n) for n in _CITATION.findall(reply)))
    citations = [_citation(hits[n - 1], n, attributed=False) for n in numbers if 1 <= n <= len(hits)]
    if not citations:
        citations = [_citation(hit, n, attributed=True) for n, hit in enumerate(hits, 1)
                     if text and normalize_answer(text) in normalize_answer(hit.text)][:1]
    return Answer(question, text, reply, False, citations, sources, best_score)


def is_refusal(text: str) -> bool:
    """A reply that declines: a refusal phrase near its start ("I don't know.", "Sorry, I don't know who...",
    "我不知道。"), without a citation (a reply that declines one detail and cites an answer is an answer)."""
    plain = normalize_answer(text).replace("’", "'")
    return not _CITATION.search(text) and any(0 <= plain.find(phrase) <= REFUSAL_LEAD for phrase in _REFUSALS)


def _citation(hit, number: int, attributed: bool) -> dict:
    return {"number": number, "chunk_id": hit.id, "doc_id": hit.doc_id, "title": hit.title,
            "headings": hit.headings, "location": hit.location, "attributed": attributed}


def with_references(answer: Answer) -> str:
    """The reply followed by its numbered references, as a chat client shows it."""
    if answer.refused or not answer.citations:
        return answer.reply or answer.text
    lines = [f"[{c['number']}] {c['title']}" + (f" > {' > '.join(c['headings'])}" if c["headings"] else "")
             + (f" ({c['location']})" if c["location"] else "") for c in answer.citations]
    body = answer.reply if not answer.citations[0]["attributed"] else f"{answer.text} [{answer.citations[0]['number']}]"
    return body + "\n\n" + "\n".join(lines)
