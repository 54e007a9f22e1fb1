"""The `lmforge` command. Heavy libraries are imported inside each command, so `--help` stays instant."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import typing
from pathlib import Path

from lmforge import __version__
from lmforge.config import ConfigError, Section, build, help_table, load, resolve_recipe

REPLACE_RUN = "replace a finished run of the same name"


def add_schema_flags(parser: argparse.ArgumentParser, schema: type[Section], skip: tuple[str, ...] = ()) -> None:
    """One `--flag` per field of a flat schema (but `skip`), with its description, type and default as help."""
    for name, field in schema.model_fields.items():
        if name in skip:
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        help_text = f"{field.description} (default: {default})".replace("%", "%%")  # argparse formats help with %
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(field.annotation) is list:
            parser.add_argument(flag, dest=name, nargs="+", action="extend", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def schema_command(parent, name: str, schema: type[Section], func, overwrite: str | None = None, **parser_kwargs):
    """A sub-command whose flags are the fields of `schema`, with `--overwrite` (its help text) if given."""
    command = parent.add_parser(name, **parser_kwargs)
    add_schema_flags(command, schema)
    if overwrite:
        command.add_argument("--overwrite", action="store_true", help=overwrite)
    command.set_defaults(func=func)
    return command


def schema_from_args(schema: type[Section], args: argparse.Namespace) -> Section:
    data = {name: getattr(args, name) for name in schema.model_fields if getattr(args, name, None) is not None}
    return build(schema, data, "command line")


def cmd_train(args: argparse.Namespace) -> None:
    from lmforge.distributed import is_main_process
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    recipe = load(TrainRecipe, resolve_recipe(args.recipe), args.overrides)  # config errors once, before a launch
    if args.nproc:
        relaunch(torchrun_command(args))
    finished = train(recipe, overwrite=args.overwrite)
    if is_main_process():
        print(f"finished: {finished}")


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """This `lmforge train` as `--nproc` processes on this machine under torchrun (standalone rendezvous)."""
    if "LOCAL_RANK" in os.environ:
        raise ValueError("--nproc launches torchrun itself; leave it out when starting lmforge under a launcher")
    train = ["train", args.recipe, *args.overrides, *(["--overwrite"] if args.overwrite else [])]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
            "-m", "lmforge.cli", *(["--verbose"] if args.verbose else []), *train]


def relaunch(command: list[str]) -> typing.NoReturn:
    """Become `command`: the launcher gets this process's signals (Ctrl-C stops every worker) and exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def cmd_generate(args: argparse.Namespace) -> None:
    from lmforge.generate import GenerateConfig, run_generate

    cfg = schema_from_args(GenerateConfig, args)
    for prompt, reply in zip(cfg.prompt, run_generate(cfg)):
        print(f">>> {prompt}\n{reply}\n")


def cmd_eval(args: argparse.Namespace) -> None:
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.report import read_results
    from lmforge.eval.runner import evaluate, results_table

    run_dir = evaluate(schema_from_args(EvalConfig, args), overwrite=args.overwrite)
    print(results_table(read_results(run_dir)))
    print(f"finished: {run_dir}")


def cmd_analyze(args: argparse.Namespace) -> None:
    from lmforge.eval.analyze import analyze_run

    report = analyze_run(Path(args.run))
    print(report.read_text(encoding="utf-8"))


def cmd_compare(args: argparse.Namespace) -> None:
    from lmforge.eval.compare import compare_runs

    _, table = compare_runs(Path(args.run_a), Path(args.run_b), Path(args.out) if args.out else None, args.threshold)
    print(table)


def cmd_sweep(args: argparse.Namespace) -> None:
    from lmforge.sweep import SweepConfig, run_sweep

    run_dir = run_sweep(schema_from_args(SweepConfig, args), overwrite=args.overwrite)
    print((run_dir / "sweep.md").read_text(encoding="utf-8"))
    print(f"finished: {run_dir}")


def cmd_export(args: argparse.Namespace) -> None:
    from lmforge.export import ExportConfig, export

    print(f"finished: {export(schema_from_args(ExportConfig, args), overwrite=args.overwrite)}")


def cmd_score(args: argparse.Namespace) -> None:
    from lmforge.score import ScoreConfig, run_score

    cfg = schema_from_args(ScoreConfig, args)
    summary = run_score(cfg, overwrite=args.overwrite)
    print(json.dumps(summary))
    print(f"finished: {cfg.output}")


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    print(f"finished: {train_tokenizer(schema_from_args(TokenizerConfig, args), overwrite=args.overwrite)}")


def cmd_synth_world(args: argparse.Namespace) -> None:
    from lmforge.world import write_world
    from lmforge.world.config import SynthWorldConfig

    cfg = schema_from_args(SynthWorldConfig, args)
    for name, count in write_world(cfg.seed, cfg.out, cfg.size, overwrite=args.overwrite).items():
        print(f"{count:8d}  {Path(cfg.out) / name}")


def cmd_rag_index(args: argparse.Namespace) -> None:
    from lmforge.rag import RagIndexConfig, run_index

    cfg = schema_from_args(RagIndexConfig, args)
    print(json.dumps(run_index(cfg)))
    print(f"finished: {cfg.index}")


def cmd_rag_query(args: argparse.Namespace) -> None:
    from lmforge.rag import RagQueryConfig, run_query

    for result in run_query(schema_from_args(RagQueryConfig, args)):
        print(json.dumps(result, ensure_ascii=False))


def cmd_rag_eval(args: argparse.Namespace) -> None:
    from lmforge.rag import RagEvalConfig, run_eval
    from lmforge.rag.evaluate import answers_table, results_table

    results = run_eval(schema_from_args(RagEvalConfig, args))
    print(results_table(results["retrieval"]))
    if "answers" in results:
        print("\n" + answers_table(results["answers"]))
    print(json.dumps({key: value for key, value in results.items() if key != "samples"}))


def cmd_prompt_run(args: argparse.Namespace) -> None:
    from lmforge.prompt import PromptRunConfig, run_prompt

    run_dir = run_prompt(schema_from_args(PromptRunConfig, args), overwrite=args.overwrite)
    print((run_dir / "results.md").read_text(encoding="utf-8"))
    print(f"finished: {run_dir}")


def cmd_agent_run(args: argparse.Namespace) -> None:
    from lmforge.agent import AgentRunConfig, run_agent_command, run_agent_data

    cfg = schema_from_args(AgentRunConfig, args)
    if cfg.data:
        print(json.dumps(run_agent_data(cfg)))
        return
    result, trace = run_agent_command(cfg)
    print(result.answer if result.reason == "answer" else f"(stopped: {result.reason} after {result.steps} steps)")
    print(f"trace: {trace}")


def cmd_agent_eval(args: argparse.Namespace) -> None:
    from lmforge.agent import AgentEvalConfig, run_agent_eval
    from lmforge.agent.evaluate import summary_table

    results = run_agent_eval(schema_from_args(AgentEvalConfig, args))
    print(summary_table(results))
    print(json.dumps(results))


def cmd_agent_replay(args: argparse.Namespace) -> None:
    from lmforge.agent import AgentReplayConfig, run_replay

    report = run_replay(schema_from_args(AgentReplayConfig, args))
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if report["differences"] or not report["same_end"]:
        raise ValueError(f"the replay differs from the trace in {len(report['differences'])} tool result(s)")


def cmd_agent_mcp_server(args: argparse.Namespace) -> None:
    from lmforge.agent import McpServerConfig, run_mcp_server

    run_mcp_server(schema_from_args(McpServerConfig, args))


def cmd_demo(args: argparse.Namespace) -> None:
    from lmforge.demo import DemoConfig, run_demo

    print(f"report: {run_demo(schema_from_args(DemoConfig, args), overwrite=args.overwrite)}")


def cmd_serve(args: argparse.Namespace) -> None:
    from lmforge.serve.app import run_serve
    from lmforge.serve.config import ServeConfig

    run_serve(schema_from_args(ServeConfig, args))


def cmd_chat(args: argparse.Namespace) -> None:
    from lmforge.serve.chat import ChatConfig, run_chat

    run_chat(schema_from_args(ChatConfig, args))


def _train_epilog() -> str:
    from lmforge.train.config import TrainRecipe

    return "recipe keys (set in the YAML file or as key.sub=value overrides):\n" + help_table(TrainRecipe)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, at least 1: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    from lmforge.agent import AgentEvalConfig, AgentReplayConfig, AgentRunConfig, McpServerConfig
    from lmforge.demo import DemoConfig
    from lmforge.eval.config import EvalConfig
    from lmforge.export import ExportConfig
    from lmforge.generate import GenerateConfig
    from lmforge.prompt import PromptRunConfig
    from lmforge.rag import RagEvalConfig, RagIndexConfig, RagQueryConfig
    from lmforge.score import ScoreConfig
    from lmforge.serve.chat import ChatConfig
    from lmforge.serve.config import ServeConfig
    from lmforge.sweep import SweepConfig
    from lmforge.tokenizer import TokenizerConfig
    from lmforge.world.config import SynthWorldConfig

    parser = argparse.ArgumentParser(prog="lmforge", description="Pretrain, fine-tune, align, evaluate and serve LMs.")
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    formatter = argparse.RawDescriptionHelpFormatter

    train = verbs.add_parser(
        "train", help="run a training stage from a recipe", epilog=_train_epilog(), formatter_class=formatter
    )
    train.add_argument("recipe", help="recipe YAML file, or a shipped recipe name (e.g. demo-sft)")
    train.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.lr=1e-4")
    train.add_argument("--overwrite", action="store_true", help=REPLACE_RUN)
    train.add_argument(
        "--nproc", type=_positive, metavar="N",
        help="train data-parallel in N processes on this machine (relaunches itself under torchrun; "
        "train.batch_size is per process)",
    )
    train.set_defaults(func=cmd_train)

    schema_command(verbs, "generate", GenerateConfig, cmd_generate, help="sample replies from a model")

    sweep = verbs.add_parser(
        "sweep", help="train and evaluate a recipe at several data sizes (and other settings)",
        epilog="example: lmforge sweep demo-sft --data-fractions 0.1,0.25,0.5,1.0 --tasks world/tasks/world_qa.yaml",
    )
    sweep.add_argument("recipe", help="recipe YAML file, or a shipped recipe name")
    sweep.add_argument("overrides", nargs="*", help="key.sub=value overrides for every variant")
    add_schema_flags(sweep, SweepConfig, skip=("recipe", "overrides"))
    sweep.add_argument("--overwrite", action="store_true", help="replace a finished sweep of the same name")
    sweep.set_defaults(func=cmd_sweep)

    schema_command(
        verbs, "export", ExportConfig, cmd_export, "replace an existing output folder",
        help="merge a LoRA/DoRA adapter into its base: a plain transformers model folder",
        epilog="example: lmforge export --model runs/sft-lora --output runs/sft-merged --dtype bfloat16",
    )
    schema_command(
        verbs, "eval", EvalConfig, cmd_eval, REPLACE_RUN, help="evaluate a model on benchmarks or custom tasks",
        epilog="example: lmforge eval --model runs/sft --tasks cmmlu=data/cmmlu gsm8k=data/gsm8k --limit 50",
    )

    schema_command(
        verbs, "score", ScoreConfig, cmd_score, "replace an existing output file",
        help="score answers with a reward model (pairwise accuracy on preference pairs)",
        epilog="example: lmforge score --rm runs/rm --data world/preference.jsonl --output scores.jsonl",
    )

    analyze = verbs.add_parser("analyze", help="error analysis of an eval run's generations")
    analyze.add_argument("run", help="eval run folder (holds results.json)")
    analyze.set_defaults(func=cmd_analyze)

    compare = verbs.add_parser("compare", help="per-task deltas between two eval runs (forgetting check)")
    compare.add_argument("run_a", help="baseline eval run folder, e.g. before fine-tuning")
    compare.add_argument("run_b", help="eval run folder to compare against the baseline")
    compare.add_argument("--threshold", type=float, default=0.01, help="smallest delta that counts (default: 0.01)")
    compare.add_argument("--out", help="folder for comparison.json/.md/.png (default: print only)")
    compare.set_defaults(func=cmd_compare)

    tokenizer = verbs.add_parser("tokenizer", help="tokenizer tools").add_subparsers(dest="action", required=True)
    schema_command(tokenizer, "train", TokenizerConfig, cmd_tokenizer_train, REPLACE_RUN,
                   help="train a byte-level BPE tokenizer on text data")

    data = verbs.add_parser("data", help="data tools").add_subparsers(dest="action", required=True)
    schema_command(data, "synth-world", SynthWorldConfig, cmd_synth_world, "replace an existing world folder",
                   help="write the deterministic bilingual toy world")
    schema_command(
        verbs, "serve", ServeConfig, cmd_serve, help="serve models over an OpenAI-compatible HTTP API (web chat at /)",
        epilog="example: lmforge serve --model runs/sft --adapter lora=runs/sft-lora --port 8000 --api-key KEY",
    )
    schema_command(
        verbs, "chat", ChatConfig, cmd_chat, help="chat in the terminal with a model or a running server",
        epilog="example: lmforge chat --model runs/sft --system 'Answer briefly.'   (/reset clears, /exit quits)",
    )
    rag = verbs.add_parser("rag", help="retrieval: index documents, search them").add_subparsers(
        dest="action", required=True)
    schema_command(rag, "index", RagIndexConfig, cmd_rag_index,
                   help="build or update an index of documents (chunks, BM25 terms, vectors) in a folder",
                   epilog="example: lmforge rag index --source docs/ notes.md --index runs/docs-index")
    schema_command(rag, "query", RagQueryConfig, cmd_rag_query,
                   help="search an index, or answer from it with citations given --model/--url (one JSON line per "
                   "question)",
                   epilog="example: lmforge rag query --index runs/docs-index --query 'Who is the mayor of Traa?'")
    schema_command(rag, "eval", RagEvalConfig, cmd_rag_eval,
                   help="score retrieval (recall@k, MRR@k, nDCG@k per search mode) and, given a model, answers (exact "
                   "match, F1, citation precision, refusal accuracy)",
                   epilog="example: lmforge rag eval --index runs/docs-index --questions world/docs/rag_qa.jsonl")
    prompt = verbs.add_parser("prompt", help="prompt programs: few-shot, chain of thought, self-consistency"
                              ).add_subparsers(dest="action", required=True)
    prompt_run = prompt.add_parser(
        "run", help="run a prompt program over a data set and score it (optionally under several formats)",
        epilog="example: lmforge prompt run qa.yaml --model runs/sft --data questions.jsonl --formats 5")
    prompt_run.add_argument("program", help="prompt program YAML (a `template`), or an eval custom task YAML")
    add_schema_flags(prompt_run, PromptRunConfig, skip=("program",))
    prompt_run.add_argument("--overwrite", action="store_true", help=REPLACE_RUN)
    prompt_run.set_defaults(func=cmd_prompt_run)
    agent = verbs.add_parser("agent", help="tool-calling agents: run, evaluate, replay, serve tools over MCP"
                             ).add_subparsers(dest="action", required=True)
    schema_command(agent, "run", AgentRunConfig, cmd_agent_run, help="run one task with tools, writing a trace",
                   epilog="example: lmforge agent run --task 'What is 1234 * 5678?' --model runs/demo/sft "
                   "--tools calculator python")
    schema_command(agent, "eval", AgentEvalConfig, cmd_agent_eval, help="BFCL-style tool-call accuracy on a suite",
                   epilog="example: lmforge agent eval --suite calls.jsonl --url http://127.0.0.1:8000/v1")
    schema_command(agent, "replay", AgentReplayConfig, cmd_agent_replay,
                   help="run a trace again with its recorded model messages; fails if a tool answers differently",
                   epilog="example: lmforge agent replay --trace runs/agent-traces/20261204-101500-000000.jsonl")
    schema_command(agent, "mcp-server", McpServerConfig, cmd_agent_mcp_server,
                   help="serve lmforge's tools to MCP clients over stdio",
                   epilog="example (Claude Desktop, Cursor, ...): command `lmforge agent mcp-server --tools calculator "
                   "python`")
    schema_command(verbs, "demo", DemoConfig, cmd_demo, "replace a finished demo",
                   help="the whole lifecycle on the toy world, with a report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ConfigError, OSError, ValueError, sqlite3.Error) as err:
        if args.verbose:
            raise
        print(f"lmforge {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
