import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from lmforge.eval.scoring import ChoiceRequest, encode_choices, tokenize_context, score_choices
from lmforge.models import build_from_preset

CONTEXTS = [
    ("Question: Where was Alda Vorn born?\nAnswer:", [" Kelmar", " the Oruna river in the north", " 1843"]),
    ("Kelmar是一座城市。问题：它建于哪一年？\n答案：", ["1843年", "一座位于Oruna河畔的城市", "52000"]),
    ("12 + 30 =", [" 42. The answer is 42.", " 7"]),
    ("Q: Who founded Brisco Works? Think about Kelmar, the Oruna, 1843 and the 52000 people who live there. A:",
     [" Tovin Rell", " Alda Vorn", " nobody at all, it grew by itself", " Kelmar"]),
]


def naive_score(model, context: list[int], continuation: list[int]) -> float:
    """Reference: the whole sequence in one unpadded forward pass, as lm-eval scores each choice."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(logprobs[len(context) - 1 + i, token].item() for i, token in enumerate(continuation))


def tiny_models(tokenizer):
    torch.manual_seed(0)
    vocab = len(tokenizer)
    yield build_from_preset("nano", tokenizer)
    yield Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2))
    yield GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4))


@pytest.mark.parametrize("batch_tokens", [1, 300, 100_000])
def test_prefix_shared_scores_equal_naive_scores(tokenizer, batch_tokens):
    requests = [encode_choices(tokenizer, context, choices) for context, choices in CONTEXTS]
    assert any(len(c) > 1 for r in requests for c in r.continuations)
    assert any(len(c) == 1 for r in requests for c in r.continuations)
    for model in tiny_models(tokenizer):
        model.eval()
        shared = score_choices(model, requests, batch_tokens=batch_tokens)
        for request, scores in zip(requests, shared):
            naive = [naive_score(model, request.context, c) for c in request.continuations]
            assert scores == pytest.approx(naive, abs=1e-4)


@pytest.mark.parametrize("max_length", [None, 30])
def test_progress_callback_counts_every_request_once(tokenizer, max_length):
    requests = [encode_choices(tokenizer, context, choices) for context, choices in CONTEXTS]
    seen = []
    score_choices(build_from_preset("nano", tokenizer).eval(), requests, max_length=max_length, batch_tokens=200,
                  on_batch=seen.append)
    assert sum(seen) == len(requests) and len(seen) > 1


def test_continuation_tokens_come_from_the_joint_encoding(tokenizer):
    request = encode_choices(tokenizer, "Answer: ", ["Kelmar", "是一座城市"])
    head = tokenizer("Answer:", add_special_tokens=False)["input_ids"]
    assert request.context == head
    for choice, tail in zip(["Kelmar", "是一座城市"], request.continuations):
        whole = tokenizer("Answer: " + choice, add_special_tokens=False)["input_ids"]
        assert tail == whole[len(head):]
        assert tokenizer.decode(request.context + tail) == "Answer: " + choice


def test_empty_context_scores_after_the_prefix_token(tokenizer):
    request = encode_choices(tokenizer, "", ["Kelmar"])
    assert request.context == [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
    assert request.continuations == [tokenizer("Kelmar", add_special_tokens=False)["input_ids"]]


def test_a_tokenizer_that_adds_bos_gets_it_once(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, add_bos_token=True)
    request = encode_choices(tokenizer, "Answer:", [" Kelmar"])
    assert request.context[0] == tokenizer.bos_token_id and request.context.count(tokenizer.bos_token_id) == 1
    assert request.continuations[0] == tokenizer(" Kelmar", add_special_tokens=False)["input_ids"][-len(
        request.continuations[0]):]
    assert tokenize_context(tokenizer, tokenizer.bos_token + "Answer:") == request.context


def test_long_contexts_lose_their_oldest_tokens(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    context = list(range(5, 45))
    [[score]] = score_choices(model, [ChoiceRequest(context, [[7, 8, 9]])], max_length=20)
    assert score == pytest.approx(naive_score(model, context[-18:], [7, 8, 9]), abs=1e-4)
    with pytest.raises(ValueError, match="does not fit"):
        score_choices(model, [ChoiceRequest(context, [[7] * 30])], max_length=20)


def lm_eval_score(model, context: list[int], continuation: list[int], max_length: int) -> float:
    """Reference: lm-eval's HFLM cut, `(context + continuation)[-(max_length + 1):][:-1]`, and the
    continuation's log-probs read from the end of that input, one choice per forward pass."""
    ids = (context + continuation)[-(max_length + 1):][:-1]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    tail = logprobs[len(ids) - len(continuation):]
    return sum(tail[i, token].item() for i, token in enumerate(continuation))


@pytest.mark.parametrize("batch_tokens", [1, 100_000])
def test_a_context_past_the_window_is_cut_per_choice_as_lm_eval_cuts_it(tokenizer, batch_tokens):
    max_length = 20
    story = "Alda Vorn was born in Kelmar, a city on the Oruna river founded in 1843, where 52000 people live. "
    requests = [encode_choices(tokenizer, story * 2 + "Question: Where was Alda Vorn born?\nAnswer:",
                               [" Kelmar", " the Oruna river in the north", " 1843"]),
                encode_choices(tokenizer, story + "Kelmar是一座城市。问题：它建于哪一年？\n答案：",
                               ["1843年", "一座位于Oruna河畔的城市"]),
                encode_choices(tokenizer, "12 + 30 =", [" 42", " 7"])]
    lengths = {len(c) for c in requests[0].continuations}
    assert len(lengths) == 3 and max(lengths) > 3, "choices of different token lengths"
    assert len(requests[0].context) > 3 * max_length and len(requests[2].context) + 2 < max_length
    for model in tiny_models(tokenizer):
        model.eval()
        scores = score_choices(model, requests, max_length=max_length, batch_tokens=batch_tokens)
        for request, row in zip(requests, scores):
            expected = [lm_eval_score(model, request.context, c, max_length) for c in request.continuations]
            assert row == pytest.approx(expected, abs=1e-4)
        short = requests[0].continuations[0]
        once = naive_score(model, requests[0].context[-(max_length + 1 - max(lengths)):], short)
        assert abs(scores[0][0] - once) > 1e-4, "the shortest choice keeps more context than the longest allows"


def test_contexts_sharing_a_fewshot_prefix_share_its_pass_and_keep_their_scores(tokenizer, monkeypatch):
    import lmforge.eval.scoring as scoring

    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in [
        ("Where was Alda Vorn born?", "Kelmar"), ("Which river flows through Kelmar?", "the Oruna")])
    questions = ["Who founded Brisco Works?", "Kelmar是哪里？", "What is 12 + 30?"]
    requests = [encode_choices(tokenizer, shots + f"Question: {q}\nAnswer:", [" Tovin Rell", " 42", " 一座城市"], group=shots)
                for q in questions]
    requests.append(encode_choices(tokenizer, "Question: unrelated\nAnswer:", [" Kelmar", " no"]))
    seen = []
    shared_length = scoring._shared_prefix_length
    monkeypatch.setattr(scoring, "_shared_prefix_length", lambda contexts: seen.append(shared_length(contexts)) or seen[-1])
    for model in tiny_models(tokenizer):
        scores = score_choices(model.eval(), requests)
        assert max(seen) >= scoring.MIN_SHARED_PREFIX, "the few-shot group shared its prefix"
        for request, row in zip(requests, scores):
            assert row == pytest.approx([naive_score(model, request.context, c) for c in request.continuations], abs=1e-4)
