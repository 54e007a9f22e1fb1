import queue
import time

import pytest
import torch

from lmforge.engine import Engine, EngineDown, GenerationRequest, QueueFull, SamplingParams, target_for
from lmforge.engine.lookup import DraftGate
from lmforge.engine.text import TextStream
from lmforge.models import load_for_inference
from lmforge.templates import encode_prompt

QUESTIONS = ["Where was Alda Vorn born?", "Which river flows through Kelmar?", "Alda Vorn出生在哪里？",
             "What is 12 + 30? Explain every step of the sum, slowly and carefully.", "Hi"]


@pytest.fixture(scope="module")
def served(nano_model_dir):
    model, tokenizer = load_for_inference(str(nano_model_dir), "cpu")
    return model, target_for(model, tokenizer)


def chat_prompt(target, question: str) -> list[int]:
    return encode_prompt(target.tokenizer, [{"role": "user", "content": question}], target.tokenizer.chat_template)


class Collector:
    """Outputs of requests, by request, until each has finished all its choices."""

    def __init__(self):
        self.done = queue.Queue()

    def request(self, served_model, prompt, params, n=1, key=None):
        tokens, texts, finished = [[] for _ in range(n)], [[] for _ in range(n)], []

        def on_output(output):
            tokens[output.index] += [pick.token for pick in output.tokens]
            texts[output.index].append(output.text)
            if output.finish_reason:
                finished.append(output.finish_reason)
                if len(finished) == n:
                    self.done.put((key, tokens, ["".join(t) for t in texts], finished))

        return GenerationRequest(served_model, prompt, params, on_output, lambda message: self.done.put(message), n=n)

    def wait(self, count: int) -> dict:
        results = {}
        for _ in range(count):
            key, tokens, texts, finished = self.done.get(timeout=60)
            results[key] = (tokens, texts, finished)
        return results


def hf_greedy(model, served_model, prompt, max_new_tokens):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=served_model.stop_ids, pad_token_id=served_model.tokenizer.pad_token_id)
    reply = out[0, len(prompt):].tolist()
    return reply[: next((i for i, token in enumerate(reply) if token in served_model.stop_ids), len(reply))]


def run(engine, collector, requests):
    for request in requests:
        engine.submit(request)
    return collector.wait(len(requests))


@pytest.mark.parametrize("prefix_cache_tokens, prompt_lookup", [(0, 0), (4096, 0), (4096, 4)])
def test_greedy_equals_hf_generate_single_and_concurrent(served, prefix_cache_tokens, prompt_lookup, monkeypatch):
    model, served_model = served
    monkeypatch.setattr(DraftGate, "open", lambda self: True)  # draft at every step, however fast it is here
    prompts = [chat_prompt(served_model, question) for question in QUESTIONS]
    expected = [hf_greedy(model, served_model, prompt, 24) for prompt in prompts]
    engine = Engine(model, max_batch_size=4, prefix_cache_tokens=prefix_cache_tokens,
                    prompt_lookup=prompt_lookup).start()
    collector = Collector()
    try:
        alone = run(engine, collector, [collector.request(served_model, prompts[0], SamplingParams(24, 0), key=0)])
        assert alone[0][0][0] == expected[0]
        # more requests than batch slots, twice over: rows join and leave mid-generation
        requests = [collector.request(served_model, prompt, SamplingParams(24 - 3 * (i % 3), 0), key=(r, i))
                    for r in range(2) for i, prompt in enumerate(prompts)]
        together = run(engine, collector, requests)
    finally:
        engine.stop()
    for (repeat, index), (tokens, _, _) in together.items():
        assert tokens[0] == expected[index][: 24 - 3 * (index % 3)], (repeat, index)
    if prefix_cache_tokens:
        assert engine.prefix.hits > 0
    if prompt_lookup:  # drafts were kept: fewer steps than tokens, and the same text
        assert 0 < engine.accepted <= engine.drafted and engine.steps < engine.generation_tokens


def test_prompt_lookup_drafts_only_for_plain_greedy_rows(served, monkeypatch):
    """A sampled row and a log-prob row get the same tokens in a drafted batch as without drafts, and are never
    drafted themselves."""
    model, target = served
    monkeypatch.setattr(DraftGate, "open", lambda self: True)
    prompts = [chat_prompt(target, question) for question in QUESTIONS[:3]]
    settings = [SamplingParams(24, 0), SamplingParams(24, 1.0, seed=5), SamplingParams(24, 0, logprobs=True)]
    plain = Engine(model).generate(target, prompts, settings)
    engine = Engine(model, prompt_lookup=4)
    drafted = engine.generate(target, prompts, settings)
    assert [c.token_ids for c in drafted] == [c.token_ids for c in plain]
    assert engine.drafted > 0
    others = Engine(model, prompt_lookup=4)  # the sampled and the log-prob rows alone: nothing to draft
    assert [c.token_ids for c in others.generate(target, prompts[1:], settings[1:])] == [
        c.token_ids for c in plain[1:]]
    assert others.drafted == 0 and others.steps > 0


def test_partly_wrong_drafts_keep_the_greedy_reply(served, monkeypatch):
    """Drafts that are right for two tokens and then wrong: each step keeps three tokens, and the rejected columns
    left in the batch's cache change nothing that follows."""
    model, target = served
    prompts = [chat_prompt(target, question) for question in QUESTIONS[:2]]
    expected = [hf_greedy(model, target, prompt, 20) for prompt in prompts]

    class HalfRight:
        def __init__(self, tokens):
            self.tokens = tokens
            self.prompt = next(index for index, prompt in enumerate(prompts) if tokens[: len(prompt)] == prompt)

        def draft(self, count):
            reply = expected[self.prompt]
            done = len(self.tokens) - len(prompts[self.prompt])
            if done >= len(reply):
                return []
            return (reply[done : done + 2] + [(reply[done] + 1) % 50] * count)[:count]

    monkeypatch.setattr("lmforge.engine.lookup.NgramIndex", HalfRight)
    monkeypatch.setattr(DraftGate, "open", lambda self: True)
    engine = Engine(model, prompt_lookup=4)
    assert [c.token_ids for c in engine.generate(target, prompts, SamplingParams(20, 0))] == expected
    assert 0 < engine.accepted < engine.drafted and engine.steps <= 8


def test_seeded_sampling_repeats_whatever_shares_the_batch(served):
    model, served_model = served
    prompt = chat_prompt(served_model, QUESTIONS[0])
    params = SamplingParams(16, temperature=1.0, top_p=0.9, seed=1234)
    engine = Engine(model, max_batch_size=8).start()
    collector = Collector()
    try:
        alone = run(engine, collector, [collector.request(served_model, prompt, params, key="alone")])
        crowd = [collector.request(served_model, chat_prompt(served_model, q), SamplingParams(16, 1.0), key=q)
                 for q in QUESTIONS[1:]]
        crowded = run(engine, collector, crowd + [collector.request(served_model, prompt, params, key="again")])
        other_seed = run(engine, collector, [collector.request(served_model, prompt, SamplingParams(
            16, temperature=1.0, top_p=0.9, seed=99), key="other")])
    finally:
        engine.stop()
    assert alone["alone"][0] == crowded["again"][0]
    assert other_seed["other"][0] != alone["alone"][0]


def test_n_choices_share_one_prefill_and_differ(served):
    model, served_model = served
    engine = Engine(model).start()
    collector = Collector()
    try:
        result = run(engine, collector, [collector.request(served_model, chat_prompt(served_model, "Hi"),
                                                           SamplingParams(12, temperature=1.0, seed=5), n=3, key=0)])
    finally:
        engine.stop()
    tokens = result[0][0]
    assert len(tokens) == 3 and len({tuple(t) for t in tokens}) > 1
    assert engine.prompt_tokens == len(chat_prompt(served_model, "Hi"))


def test_cancelled_request_leaves_the_batch(served):
    model, served_model = served
    engine = Engine(model).start()
    outputs = queue.Queue()
    request = GenerationRequest(served_model, chat_prompt(served_model, "Hi"), SamplingParams(10_000, 1.0),
                                outputs.put, outputs.put)
    try:
        engine.submit(request)
        outputs.get(timeout=30)
        request.cancel()
        for _ in range(500):
            if not engine.running:
                break
            time.sleep(0.01)
        assert not engine.running
    finally:
        engine.stop()
    assert request.completion_tokens < 10_000


def test_a_failing_request_fails_alone(served):
    model, served_model = served
    engine = Engine(model)
    collector = Collector()
    prompt = chat_prompt(served_model, "Hi")
    engine.submit(collector.request(served_model, prompt, SamplingParams(4, 0, grammar="not a grammar"), key="bad"))
    engine.submit(collector.request(served_model, prompt, SamplingParams(4, 0), key="good"))
    engine.start()  # both are admitted, and prefilled, together
    try:
        outcomes = [collector.done.get(timeout=30) for _ in range(2)]
    finally:
        engine.stop()
    assert any(isinstance(outcome, str) and "grammar" in outcome for outcome in outcomes)
    assert any(isinstance(outcome, tuple) and outcome[0] == "good" and outcome[3] == ["length"]
               for outcome in outcomes)


def test_a_dead_engine_fails_its_requests_and_refuses_new_ones(served, monkeypatch):
    model, served_model = served
    engine = Engine(model)
    collector = Collector()

    def broken_admission():
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "_admit", broken_admission)
    engine.submit(collector.request(served_model, chat_prompt(served_model, "Hi"), SamplingParams(4, 0)))
    engine.start()
    assert "out of memory" in collector.done.get(timeout=30)
    engine.thread.join(timeout=30)
    assert not engine.healthy
    with pytest.raises(EngineDown):
        engine.submit(collector.request(served_model, chat_prompt(served_model, "Hi"), SamplingParams(4, 0)))


def test_stop_tokens_hold_the_template_end_of_turn_and_eos(served):
    _, served_model = served
    tokenizer = served_model.tokenizer
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in served_model.stop_ids
    assert tokenizer.eos_token_id in served_model.stop_ids


def test_queue_full_is_refused(served):
    model, served_model = served
    engine = Engine(model, max_queue=1)  # not started: nothing leaves the queue
    collector = Collector()
    prompt = chat_prompt(served_model, "Hi")
    engine.submit(collector.request(served_model, prompt, SamplingParams(4, 0)))
    with pytest.raises(QueueFull):
        engine.submit(collector.request(served_model, prompt, SamplingParams(4, 0)))


def test_length_limit_and_stop_string(served):
    model, served_model = served
    prompt = chat_prompt(served_model, QUESTIONS[3])
    engine = Engine(model).start()
    collector = Collector()
    try:
        free = run(engine, collector, [collector.request(served_model, prompt, SamplingParams(20, 0), key=0)])
        text = free[0][1][0]
        assert free[0][2] == ["length"] and len(free[0][0][0]) == 20
        stop = text[len(text) // 2 : len(text) // 2 + 2]
        cut = run(engine, collector, [collector.request(served_model, prompt, SamplingParams(20, 0, stop=[stop]),
                                                        key=1)])
    finally:
        engine.stop()
    assert cut[1][2] == ["stop"]
    assert cut[1][1][0] == text[: text.find(stop)]


class CharTokenizer:
    """Token id = a code point; decoding an id over 0x10FFFF gives the replacement character (a partial byte)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) if i <= 0x10FFFF else "\ufffd" for i in ids)


def test_text_stream_holds_back_a_possible_stop_and_partial_characters():
    stream = TextStream(CharTokenizer(), ["END"])
    sent = [stream.add(ord(c))[0] for c in "abE"]
    assert "".join(sent) == "ab"  # "E" may begin "END"
    assert stream.add(ord("x")) == ("Ex", False)
    assert stream.add(0x110000) == ("", False)  # half a character
    stream.ids[-1] = ord("é")
    assert stream.add(ord("E"))[0] == "é"
    assert stream.add(ord("N")) == ("", False)
    assert stream.add(ord("D")) == ("", True)
    assert stream.text == "abExé"


def test_offline_generate_equals_hf_generate_single_and_n(served):
    model, target = served
    prompts = [chat_prompt(target, question) for question in QUESTIONS]
    engine = Engine(model, max_batch_size=4)  # fewer slots than prompts: rows join and leave
    alone = engine.generate(target, prompts[:1], SamplingParams(20, 0))
    together = engine.generate(target, prompts, SamplingParams(20, 0), n=2)
    assert alone[0].token_ids == hf_greedy(model, target, prompts[0], 20)
    assert [(c.prompt_index, c.index) for c in together] == [(p, i) for p in range(len(prompts)) for i in range(2)]
    for completion in together:
        expected = hf_greedy(model, target, prompts[completion.prompt_index], 20)
        assert completion.token_ids == expected
        assert completion.text == target.tokenizer.decode(expected, skip_special_tokens=True)
        assert completion.finish_reason == ("length" if len(expected) == 20 else "stop")
    assert engine.thread is None and not engine.running and not engine.waiting


def test_offline_n_samples_share_the_prefill_and_are_seeded(served):
    model, target = served
    prompt = chat_prompt(target, "Hi")
    engine = Engine(model)
    params = SamplingParams(12, temperature=1.0, seed=3)
    first = engine.generate(target, [prompt], params, n=4)
    assert engine.prompt_tokens == len(prompt)
    assert len({tuple(c.token_ids) for c in first}) > 1
    assert [c.token_ids for c in engine.generate(target, [prompt], params, n=4)] == [c.token_ids for c in first]
    twice = Engine(model).generate(target, [prompt, prompt], params, n=2)  # prompt k, choice i: seed 3 + 2k + i
    assert [c.token_ids for c in twice] == [c.token_ids for c in first]


def test_offline_generate_restores_training_mode_and_raises_on_failure(served):
    model, target = served
    model.train()
    try:
        with pytest.raises(RuntimeError, match="grammar"):
            Engine(model).generate(target, [chat_prompt(target, "Hi")], SamplingParams(4, 0, grammar="nonsense"))
        assert model.training
    finally:
        model.eval()


def test_a_stop_token_ends_the_completion_and_is_reported_apart(served):
    from dataclasses import replace

    model, target = served
    prompt = chat_prompt(target, QUESTIONS[0])
    free = Engine(model).generate(target, [prompt], SamplingParams(8, 0))[0]
    stopping = replace(target, stop_ids=[free.token_ids[3]])
    cut = Engine(model).generate(stopping, [prompt], SamplingParams(8, 0))[0]
    assert (cut.finish_reason, cut.stop_token) == ("stop", free.token_ids[3])
    assert cut.token_ids == free.token_ids[: free.token_ids.index(free.token_ids[3])]


def test_prompt_lookup_is_off_for_a_sliding_window_model(served, monkeypatch):
    model, _ = served
    assert Engine(model, prompt_lookup=4).prompt_lookup == 4
    monkeypatch.setattr(model.config, "sliding_window", 16, raising=False)
    assert Engine(model, prompt_lookup=4).prompt_lookup == 0  # masked draft columns would shift its window
