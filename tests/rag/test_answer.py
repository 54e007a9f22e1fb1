"""Grounded answers: citations map to chunks, refusals by threshold and by the model, and the answer metrics."""

import re

import pytest

from lmforge.rag.answer import IDK, answer_questions, read_reply
from lmforge.rag.evaluate import answer_samples, answer_summary
from lmforge.rag.index import Index, build_index, search


class Reader:
    """A chat model that answers from the numbered sources in its prompt, in the way `reply_style` says."""

    name = "reader"

    def __init__(self, reply_style="cite"):
        self.reply_style, self.asked = reply_style, []

    def complete(self, conversations, decoding, n=1):
        self.asked += [messages[-1]["content"] for messages in conversations]
        return [[self._reply(messages[-1]["content"])] for messages in conversations]

    def _reply(self, prompt):
        sources = re.findall(r"^\[(\d+)\] .*\n(.*)$", prompt, re.MULTILINE)
        for number, text in sources:
            found = re.search(r"mayor of Traa is ([A-Z]\w+ [A-Z]\w+)", text)
            if found and "Traa" in prompt.rsplit("Question:", 1)[1]:
                return {"cite": f"{found.group(1)} [{number}]", "bare": found.group(1),
                        "wrong": f"{found.group(1)} [9]"}[self.reply_style]
        return IDK


@pytest.fixture(scope="module")
def index(tmp_path_factory, embedder):
    from conftest import RAG_DOCS

    folder = tmp_path_factory.mktemp("answer")
    for name, text in RAG_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    build_index([str(folder)], folder / "index", embedder, chunk_tokens=64, overlap=8)
    return Index(folder / "index")


def test_a_cited_number_maps_to_its_chunk(index, embedder):
    [answer] = answer_questions(index, embedder, Reader(), ["Who is the mayor of Traa?"], k=3)
    hits = search(index, embedder, "Who is the mayor of Traa?", 3)
    number = answer.citations[0]["number"]
    assert answer.text == "Brondso Figond" and not answer.refused
    assert answer.citations[0]["chunk_id"] == hits[number - 1].id and answer.citations[0]["doc_id"] == "traa.md"
    assert answer.citations[0]["headings"] == ["Traa"] and not answer.citations[0]["attributed"]


def test_an_uncited_answer_is_attributed_and_a_number_past_the_sources_is_dropped(index, embedder):
    [bare] = answer_questions(index, embedder, Reader("bare"), ["Who is the mayor of Traa?"], k=3)
    assert [(c["doc_id"], c["attributed"]) for c in bare.citations] == [("traa.md", True)]
    [wrong] = answer_questions(index, embedder, Reader("wrong"), ["Who is the mayor of Traa?"], k=3)
    assert [(c["doc_id"], c["attributed"]) for c in wrong.citations] == [("traa.md", True)]


def test_refusal_by_threshold_skips_the_model_and_by_the_model_counts(index, embedder):
    reader = Reader()
    questions = ["Who is the mayor of Traa?", "What is the boiling point of tungsten?", "Who is the mayor of Garhal?"]
    answers = answer_questions(index, embedder, reader, questions, k=3, min_score=0.3)
    assert [a.refused for a in answers] == [False, True, True]
    assert answers[1].best_score < 0.3 <= answers[2].best_score
    assert len(reader.asked) == 2 and answers[2].reply == IDK  # the model was asked about Garhal and declined


def test_answer_metrics_by_hand(index, embedder):
    hits = search(index, embedder, "Who is the mayor of Traa?", 3)
    traa = next(n for n, hit in enumerate(hits, 1) if hit.doc_id == "traa.md")
    other = next(n for n, hit in enumerate(hits, 1) if hit.doc_id != "traa.md")
    questions = [{"question": "q1", "gold": ["traa.md"], "answerable": True, "answer": "Brondso Figond"},
                 {"question": "q2", "gold": ["traa.md"], "answerable": True, "answer": "Brondso Figond"},
                 {"question": "q3", "gold": [], "answerable": False, "answer": None},
                 {"question": "q4", "gold": [], "answerable": False, "answer": None}]
    answers = [read_reply("q1", hits, f"Brondso Figond [{traa}][{other}]", 0.5),
               read_reply("q2", hits, "Figond [2]", 0.5),
               read_reply("q3", hits, "I don't know.", 0.1),
               read_reply("q4", hits, "Thin Hetho", 0.1)]
    summary = answer_summary(answer_samples(questions, answers), iters=200)
    assert summary["exact_match"]["value"] == 0.5
    assert summary["f1"]["value"] == pytest.approx((1 + 2 / 3) / 2)  # "figond" vs "brondso figond": P 1, R 1/2
    assert summary["citation_precision"]["value"] == pytest.approx((0.5 + float(hits[1].doc_id == "traa.md")) / 2)
    assert summary["refusal_accuracy"] == {"value": 0.5, "interval": summary["refusal_accuracy"]["interval"], "n": 2}
    assert summary["false_refusal"]["value"] == 0.0


def test_rag_eval_with_a_local_model(index, nano_model_dir, tmp_path):
    import json

    from lmforge.rag import RagEvalConfig, run_eval

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Who is the mayor of Traa?", "doc_id": "traa.md",
                                     "answer": "Brondso Figond"}) + "\n"
                         + json.dumps({"question": "What is the boiling point of tungsten?", "answerable": False})
                         + "\n", encoding="utf-8")
    results = run_eval(RagEvalConfig(index=str(index.folder), questions=str(questions), model=str(nano_model_dir),
                                     min_score=0.3, k=2, device="cpu", bootstrap_iters=50))
    assert results["retrieval"]["hybrid"]["recall@2"] == 1.0 and results["retrieval"]["hybrid"]["n"] == 1
    assert results["answers"]["refusal_accuracy"]["value"] == 1.0  # below the threshold, whatever the model says
    assert results["samples"][0]["reply"]  # the random model was asked and wrote something


@pytest.mark.parametrize("reply, refused", [
    ("I don't know.", True), ("I do not know", True), ("不知道。", True), ("我不知道。", True),
    ("Sorry, I don't know.", True), ("I don't know who the mayor of Traa is.", True), ("抱歉，无法回答。", True),
    ("I don't know the date, but the mayor is Ola Berg [1]", False), ("Ola Berg [1]", False),
    ("The council said: we do not know yet, ask again later", False)])
def test_a_refusal_is_a_reply_that_only_declines(reply, refused):
    from lmforge.rag.answer import is_refusal

    assert is_refusal(reply) is refused


def test_a_clients_system_text_joins_the_programs(index, embedder):
    from lmforge.rag.answer import load_rag_program, rag_conversation

    hits = search(index, embedder, "Who is the mayor of Traa?", 2)
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
               {"role": "assistant", "content": "Hello."}]
    messages = rag_conversation(load_rag_program(None), "Who is the mayor of Traa?", hits, history)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "cite the source" in messages[0]["content"] and messages[0]["content"].endswith("Be brief.")


def test_attributed_citations_are_scored_apart(index, embedder):
    hits = search(index, embedder, "Who is the mayor of Traa?", 3)
    question = {"question": "q", "gold": ["traa.md"], "answerable": True, "answer": "Brondso Figond"}
    [sample] = answer_samples([question], [read_reply("q", hits, "Brondso Figond", 0.5)])
    assert sample["metrics"]["attribution_precision"] == 1.0 and "citation_precision" not in sample["metrics"]
