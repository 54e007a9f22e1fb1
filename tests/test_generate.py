import torch

from lmforge.engine import SamplingParams, generate_texts
from lmforge.generate import GenerateConfig, run_generate
from lmforge.models import build_from_preset
from lmforge.templates import encode_prompt


def test_generate_command_replies_equal_hf_generate(nano_model_dir):
    from lmforge.models import load_for_inference

    questions = ["Where was Alda Vorn born?", "计算 7 * 6。", "Hi"]
    replies = run_generate(GenerateConfig(model=str(nano_model_dir), prompt=questions, max_new_tokens=12))
    model, tokenizer = load_for_inference(str(nano_model_dir), "cpu")
    for question, reply in zip(questions, replies):
        prompt = torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": question}],
                                             tokenizer.chat_template)])
        expected = model.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert reply == tokenizer.decode(expected[0, prompt.shape[1] :], skip_special_tokens=True)


def test_sampling_is_seeded(nano_model_dir):
    config = dict(model=str(nano_model_dir), prompt=["Kelmar"], raw=True, max_new_tokens=16, temperature=1.0)
    first, again = (run_generate(GenerateConfig(**config, seed=7)) for _ in range(2))
    assert first == again and first != run_generate(GenerateConfig(**config, seed=8))


def test_stop_strings_cut_the_text_and_set_the_finish_reason(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in ("Kelmar", "Alda Vorn", "计算")]
    free = generate_texts(model, tokenizer, prompts, SamplingParams(24, 0))
    assert [(c.finish_reason, len(c.token_ids)) for c in free] == [("length", 24)] * 3
    stop = free[0].text[3:5]
    cut = generate_texts(model, tokenizer, prompts, SamplingParams(24, 0, stop=[stop]), batch_size=2)
    assert cut[0].text == free[0].text[: free[0].text.find(stop)]
    assert cut[0].finish_reason == "stop" and len(cut[0].token_ids) < 24
