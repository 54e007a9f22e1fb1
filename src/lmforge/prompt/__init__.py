"""`lmforge prompt run`: a prompt program (or an eval custom task) over a data set, against a local model or any
OpenAI-compatible URL, scored with the eval metrics, optionally under several prompt formats to show the spread."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from pydantic import Field

from lmforge.config import Section


class PromptRunConfig(Section):
    program: str = Field(description="prompt program YAML (a `template`), or an eval custom task YAML (a `prompt`)")
    data: str | None = Field(None, description="data file (default: the program's `data`)")
    model: str | None = Field(None, description="local model folder (or run folder)")
    url: str | None = Field(None, description="OpenAI-compatible API base URL instead, e.g. http://127.0.0.1:8000/v1")
    served_model: str = Field("", description="model id at --url (default: the first one it lists)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key for --url")
    formats: int = Field(1, ge=1, description="rerun under N prompt formats that mean the same thing (label "
                         "casing, separators, spacing) and report the min/median/max spread")
    limit: int = Field(0, ge=0, description="only the first N records (0: all)")
    seed: int = Field(0, description="seed of sampling and of the format draw")
    bootstrap_iters: int = Field(1000, ge=2, description="bootstrap resamples for the 95% intervals")
    name: str | None = Field(None, description="run folder name (default: prompt-<program name>)")
    output_dir: str = Field("runs", description="folder that holds run folders")
    device: str = Field("auto", description="auto, cpu, cuda, ...")


def load_any_program(path: str):
    """A prompt program, or an eval custom task read as one."""
    from lmforge.config import read_yaml
    from lmforge.eval import custom_task_as_program
    from lmforge.prompts import is_prompt_program, load_program

    return load_program(path) if is_prompt_program(read_yaml(path)) else custom_task_as_program(path)


def run_prompt(cfg: PromptRunConfig, overwrite: bool = False) -> Path:
    """Score the program under each format and publish results.json / .md / .png in a run folder."""
    from lmforge.clients import chat_model
    from lmforge.prompt.formats import format_variants
    from lmforge.prompts import read_records
    from lmforge.reports import write_report
    from lmforge.runs import Run

    program = load_any_program(cfg.program)
    data = cfg.data or (str(program.folder / program.spec.data) if program.spec.data else None)
    if data is None:
        raise ValueError(f"{cfg.program} names no data; pass --data FILE")
    records = read_records(Path(data))
    records = records[: cfg.limit] if cfg.limit else records
    if not records:
        raise ValueError(f"{data}: no records")
    formats = format_variants(cfg.formats, cfg.seed)
    with Run(cfg.output_dir, cfg.name or f"prompt-{program.spec.name}", overwrite).start(cfg) as run:
        model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
        results = {"program": cfg.program, "model": model.name, "data": data, "n": len(records),
                   "formats": [score_format(program, model, records, fmt, cfg) for fmt in formats]}
        results["spread"] = spread(results["formats"], program.spec.metrics)
        bars = [(f"format {i}", row["metrics"][program.spec.metrics[0]]["value"], 0.0)
                for i, row in enumerate(results["formats"])]
        chart = {"labels": [b[0] for b in bars], "values": [b[1] for b in bars], "errors": [b[2] for b in bars],
                 "title": f"{program.spec.name} by prompt format", "ylabel": program.spec.metrics[0]}
        write_report(run.dir, "results", results, results_markdown(results), chart)
        return run.finish()


def score_format(program, model, records: list[dict], fmt, cfg: PromptRunConfig) -> dict:
    """One pass over the records in one format: replies, the voted answer, per-sample and aggregate metrics."""
    from lmforge.clients import Decoding
    from lmforge.metrics import bootstrap_interval, generation_sample_metrics, summarize
    from lmforge.prompts import conversation, extract, gold_text, majority, restyled, select_examples

    spec = program.spec
    shots = select_examples(program, records, _embed_function(program))
    styled = restyled(program, fmt.apply(spec.template))  # labels of the template itself, never the data
    conversations = [conversation(styled, record, examples) for record, examples in zip(records, shots)]
    decoding = Decoding(spec.max_new_tokens, spec.temperature, stop=spec.stop, seed=cfg.seed)
    replies = model.complete(conversations, decoding, n=spec.samples)
    samples = []
    for record, messages, outputs in zip(records, conversations, replies):
        gold = gold_text(program, record, record["_source"])
        answers = [extract(program, output, gold) for output in outputs]
        prediction = majority(answers)
        samples.append({"source": record["_source"], "messages": messages, "outputs": outputs, "answers": answers,
                        "prediction": prediction, "gold": gold,
                        "metrics": generation_sample_metrics(spec.metrics, prediction, gold, outputs[0])})
    summary = summarize(spec.metrics, samples, iters=cfg.bootstrap_iters)
    for name, values in summary["metrics"].items():
        values["interval"] = bootstrap_interval(name, samples, cfg.bootstrap_iters)
    return {"format": fmt.label, **summary, "samples": samples}


def _embed_function(program):
    """Texts to unit vectors, for the `similar` few-shot selector only."""
    fewshot = program.spec.fewshot
    if fewshot is None or fewshot.selector != "similar":
        return None
    from lmforge.embedders import SentenceEmbedder, resolve_embedder

    return SentenceEmbedder(resolve_embedder(fewshot.embedder)).vectors


def spread(rows: list[dict], metrics: list[str]) -> dict:
    """min / median / max of each metric across formats."""
    return {name: {"min": min(v), "median": median(v), "max": max(v)}
            for name in metrics for v in [[row["metrics"][name]["value"] for row in rows]]}


def results_markdown(results: dict) -> str:
    from lmforge.reports import markdown_table

    metrics = list(results["spread"])
    rows = [[i, row["format"], *(_with_interval(row["metrics"][m]) for m in metrics)]
            for i, row in enumerate(results["formats"])]
    parts = [f"# {results['program']} on {results['model']} ({results['n']} records)",
             markdown_table(["#", "format", *metrics], rows)]
    if len(rows) > 1:
        spread_rows = [[m, *(f"{results['spread'][m][k]:.4f}" for k in ("min", "median", "max"))] for m in metrics]
        parts += ["## Spread across formats", markdown_table(["metric", "min", "median", "max"], spread_rows)]
    return "\n\n".join(parts) + "\n"


def _with_interval(values: dict) -> str:
    low, high = values["interval"]
    return f"{values['value']:.4f} [{low:.4f}, {high:.4f}]"
