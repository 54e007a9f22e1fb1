import torch

from lmforge.generate import chat_replies, generate_batch
from lmforge.models import build_from_preset
from lmforge.templates import BUILTIN_TEMPLATES, encode_prompt


def test_greedy_batched_replies_equal_hf_generate(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"]
    conversations = [[{"role": "user", "content": q}] for q in ("Where was Alda Vorn born?", "计算 7 * 6。", "Hi")]
    replies = chat_replies(model, tokenizer, conversations, max_new_tokens=12, batch_size=3)
    for messages, reply in zip(conversations, replies):
        prompt = torch.tensor([encode_prompt(tokenizer, messages, tokenizer.chat_template)])
        expected = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert reply == tokenizer.decode(expected[0, prompt.shape[1] :], skip_special_tokens=True)


def test_sampling_is_seeded(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    prompt = [tokenizer("Kelmar", add_special_tokens=False)["input_ids"]]
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        draws.append(generate_batch(model, tokenizer, prompt, max_new_tokens=16, temperature=1.0, top_p=0.9))
    assert draws[0] == draws[1]


def test_stop_strings_cut_the_text_and_set_the_finish_reason(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in ("Kelmar", "Alda Vorn", "计算")]
    free = generate_batch(model, tokenizer, prompts, max_new_tokens=24)
    assert [(c.finish_reason, c.tokens) for c in free] == [("length", 24)] * 3
    stop = free[0].text[3:5]
    cut = generate_batch(model, tokenizer, prompts, max_new_tokens=24, stop=[stop], batch_size=2)
    assert cut[0].text == free[0].text[: free[0].text.find(stop)]
    assert cut[0].finish_reason == "stop" and cut[0].tokens < 24
