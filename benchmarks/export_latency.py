"""Greedy generation latency of a base model, its merged `lmforge export`, and the unmerged peft adapter model.

A randomly initialised `mini` preset with a BPE tokenizer trained on synthetic lines; a LoRA adapter with random
(non-zero) B matrices on every block projection, merged with `lmforge.export.export`. Each variant generates
--new-tokens tokens (batch 1, same prompt, EOS ignored); the median of --runs timed runs (interleaved across the
variants, after one warm-up each) is reported with the ratios merged/base and adapter/base. Merging should cost
nothing at inference time; the unmerged adapter pays for an extra low-rank matmul in every adapted layer.

    python benchmarks/export_latency.py [--device auto] [--new-tokens 64] [--runs 7] [--rank 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPT = "Kelmar is a city on the Oruna river, founded in 1843. Its people"


def synthetic_lines(count: int = 400) -> list[str]:
    cities, rivers = ["Kelmar", "Brisco", "Tovin", "Alda", "Oruna"], ["Oruna", "Vell", "Sarn"]
    return [f"{cities[i % 5]} lies on the {rivers[i % 3]} river and has {1000 + 37 * i} people in year {1800 + i}."
            for i in range(count)]


def build_base(work: Path) -> Path:
    import torch

    from lmforge.models import build_from_preset, save_model, set_stop_tokens
    from lmforge.tokenizer import train_bpe

    tokenizer = train_bpe(synthetic_lines(), vocab_size=1000)
    torch.manual_seed(0)
    model = build_from_preset("mini", tokenizer)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id])
    save_model(model, tokenizer, work / "base")
    return work / "base"


def build_adapter(base: Path, work: Path, rank: int) -> Path:
    import torch

    from lmforge.models import load_model, save_model
    from lmforge.train.adapters import apply_finetuning, trainable_summary
    from lmforge.train.config import TrainRecipe

    recipe = TrainRecipe.model_validate({
        "stage": "sft", "name": "bench", "model": {"path": str(base), "device": "cpu"},
        "data": {"train": ["unused.jsonl"]}, "finetuning": "lora", "lora": {"r": rank},
    })
    model, tokenizer = load_model(recipe.model)
    model = apply_finetuning(model, recipe)
    print(f"adapter: {trainable_summary(model)}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    save_model(model, tokenizer, work / "adapter")
    return work / "adapter"


def generate(model, prompt_ids, new_tokens: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    if prompt_ids.device.type == "cuda":
        torch.cuda.synchronize()
    return out[0, prompt_ids.shape[1] :].tolist()


def median_latencies(variants: dict, prompt_ids, new_tokens: int, runs: int) -> dict[str, tuple[float, list[int]]]:
    """Runs interleave the variants, so a noisy neighbour on the machine slows all of them alike."""
    tokens = {name: generate(model, prompt_ids, new_tokens) for name, model in variants.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, model in variants.items():
            start = time.perf_counter()
            generate(model, prompt_ids, new_tokens)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), tokens[name]) for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()

    import torch
    from peft import PeftModel

    from lmforge.export import ExportConfig, export
    from lmforge.models import load_for_inference

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_base(work)
        adapter = build_adapter(base, work, args.rank)
        merged = export(ExportConfig(model=str(adapter), output=str(work / "merged")))
        base_model, tokenizer = load_for_inference(base, args.device)
        variants = {
            "base": base_model,
            "merged": load_for_inference(merged, args.device)[0],
            "adapter": PeftModel.from_pretrained(load_for_inference(base, args.device)[0], str(adapter)).eval(),
        }
        prompt_ids = torch.tensor([tokenizer(PROMPT)["input_ids"]], device=base_model.device)
        print(f"device: {base_model.device}, torch threads: {torch.get_num_threads()}, mini preset "
              f"({sum(p.numel() for p in base_model.parameters()) / 1e6:.1f}M parameters), prompt "
              f"{prompt_ids.shape[1]} tokens, {args.new_tokens} new tokens, median of {args.runs} runs\n")
        results = median_latencies(variants, prompt_ids, args.new_tokens, args.runs)

    base_s = results["base"][0]
    print(f"{'variant':8} {'median s':>9} {'tokens/s':>9} {'vs base':>8}")
    for name, (seconds, _) in results.items():
        print(f"{name:8} {seconds:9.3f} {args.new_tokens / seconds:9.1f} {seconds / base_s:7.2f}x")
    print(f"\nmerged/base: {results['merged'][0] / base_s:.2f}x   adapter/base: {results['adapter'][0] / base_s:.2f}x")
    print(f"merged and adapter greedy tokens identical: {results['merged'][1] == results['adapter'][1]}")


if __name__ == "__main__":
    main()
