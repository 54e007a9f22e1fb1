"""Agents: `lmforge agent run` (a tool-calling loop against a local model or any OpenAI-compatible URL),
`agent eval` (BFCL-style tool-call accuracy), `agent replay` (a trace run again) and `agent mcp-server` (lmforge's
tools for any MCP client)."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

from pydantic import Field, model_validator

from lmforge.config import Section


class ToolsSection(Section):
    index: str | None = Field(None, description="`lmforge rag index` folder behind the search tool")
    mcp: list[str] = Field([], description="commands that start MCP servers (stdio) whose tools the agent may use")
    python_cpu_seconds: int = Field(5, ge=1, description="python tool: CPU-time limit per run")
    python_wall_seconds: float = Field(10.0, gt=0, description="python tool: wall-clock limit per run")
    python_memory_mb: int = Field(512, ge=64, description="python tool: address-space limit")
    python_unconfined: bool = Field(False, description="python tool: run code even where namespaces, Landlock or "
                                    "seccomp are missing, i.e. with NO sandbox (limits and an audit hook only; "
                                    "docs/agents.md)")
    device: str = Field("auto", description="auto, cpu, cuda, ... (local model and embedder)")


class ModelSection(ToolsSection):
    model: str | None = Field(None, description="local model folder (or run folder)")
    url: str | None = Field(None, description="or an OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1")
    served_model: str = Field("", description="model id at --url (default: the first one it lists)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key for --url")
    max_new_tokens: int = Field(256, ge=1, description="longest model message in tokens")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")


class AgentRunConfig(ModelSection):
    tools: list[str] = Field(["calculator"], description="built-in tools: calculator, search (needs --index), python")
    task: str | None = Field(None, description="what to do, as the user's message")
    data: str | None = Field(None, description="or a jsonl of {question, answer}: every question run (batched, "
                             "no traces) and the final answers scored by exact match")
    system: str | None = Field(None, description="system prompt")
    max_steps: int = Field(8, ge=1, description="most model messages before the run stops")
    max_seconds: float = Field(120.0, gt=0, description="wall-time cap, checked before each model message")
    max_repeats: int = Field(3, ge=2, description="stop when the same call (tool and arguments) comes this often")
    trace: str | None = Field(None, description="JSONL trace file (default: runs/agent-traces/<time>.jsonl); with "
                              "--data, the jsonl of every question's messages, answer and score")

    @model_validator(mode="after")
    def _task_or_data(self):
        if (self.task is None) == (self.data is None):
            raise ValueError("give exactly one of --task (one run, traced) or --data (a jsonl of questions)")
        return self


class AgentEvalConfig(ModelSection):
    suite: str = Field(description="JSONL suite of cases in BFCL's ground_truth shape; its tools are OpenAI specs, "
                       "built-in names, or names of --mcp servers' tools")
    bootstrap_iters: int = Field(1000, ge=2, description="bootstrap resamples for the 95% intervals")
    output: str | None = Field(None, description="write each case's calls and score to this JSONL file")


class AgentReplayConfig(ToolsSection):
    trace: str = Field(description="trace written by `lmforge agent run`")


class McpServerConfig(ToolsSection):
    tools: list[str] = Field(["calculator"], description="built-in tools: calculator, search (needs --index), python")
    name: str = Field("lmforge", description="server name shown to MCP clients")


@contextlib.contextmanager
def opened_tools(cfg: ToolsSection, names: list[str]):
    """The built-in tools named and every MCP server's tools, closed afterwards."""
    from lmforge.agent.builtins import builtin_tools
    from lmforge.agent.mcp import MCPTools
    from lmforge.agent.sandbox import Limits

    retriever = None
    if cfg.index:
        from lmforge.rag import open_retriever

        retriever = open_retriever(cfg.index, cfg.device)
    limits = Limits(cfg.python_cpu_seconds, cfg.python_wall_seconds, cfg.python_memory_mb,
                    confined_only=not cfg.python_unconfined)
    servers = []
    try:
        tools = builtin_tools(names, retriever, limits)
        for command in cfg.mcp:
            servers.append(MCPTools(command))
            tools += servers[-1].tools
        _unique_names(tools)
        yield tools
    finally:
        for server in servers:
            server.close()


def _unique_names(tools) -> None:
    names = [t.name for t in tools]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"two tools are named {', '.join(repeated)}; an MCP server repeats a tool name")


def run_agent_command(cfg: AgentRunConfig):
    from lmforge.agent.loop import Guards, run_agent
    from lmforge.clients import Decoding, chat_model

    trace = Path(cfg.trace or f"runs/agent-traces/{datetime.datetime.now():%Y%m%d-%H%M%S-%f}.jsonl")
    trace.parent.mkdir(parents=True, exist_ok=True)
    model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
    with opened_tools(cfg, cfg.tools) as tools:
        result = run_agent(model, tools, cfg.task, Guards(cfg.max_steps, cfg.max_seconds, cfg.max_repeats),
                           Decoding(cfg.max_new_tokens, cfg.temperature), trace, cfg.system)
    return result, trace


def run_agent_data(cfg: AgentRunConfig) -> dict:
    """Every question of --data through the agent, batched; exact match of the final answers with a 95% interval."""
    import json

    from lmforge.agent.loop import Guards, run_agents
    from lmforge.answers import extract_answer, same_answer
    from lmforge.clients import Decoding, chat_model
    from lmforge.metrics import aggregate, bootstrap_interval
    from lmforge.prompts import read_records
    from lmforge.runs import atomic_write_text

    records = read_records(Path(cfg.data))
    model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
    with opened_tools(cfg, cfg.tools) as tools:
        results = run_agents(model, tools, [r["question"] for r in records],
                             Guards(cfg.max_steps, cfg.max_seconds, cfg.max_repeats),
                             Decoding(cfg.max_new_tokens, cfg.temperature), cfg.system)
    samples = []
    for record, result in zip(records, results):
        gold = str(record.get("answer", ""))
        prediction = extract_answer(result.answer, gold) if result.answer is not None else None
        called = sum(len(m.get("tool_calls") or []) for m in result.messages if m["role"] == "assistant")
        samples.append({"question": record["question"], "answer": gold, "final": result.answer,
                        "prediction": prediction, "reason": result.reason, "steps": result.steps,
                        "tool_calls": called, "messages": result.messages,
                        "metrics": {"exact_match": float(same_answer(prediction, gold)),
                                    "used_tools": float(called > 0)}})
    trace = Path(cfg.trace or f"runs/agent-traces/{datetime.datetime.now():%Y%m%d-%H%M%S-%f}-data.jsonl")
    trace.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(trace, "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    return {"n": len(samples), "trace": str(trace), **{name: {"value": aggregate(name, samples),
            "interval": bootstrap_interval(name, samples)} for name in ("exact_match", "used_tools")}}


def run_agent_eval(cfg: AgentEvalConfig) -> dict:
    import json

    from lmforge.agent.evaluate import evaluate_suite, read_suite, summary
    from lmforge.clients import Decoding, chat_model
    from lmforge.runs import atomic_write_text

    from lmforge.agent.builtins import BUILTINS

    cases = read_suite(cfg.suite)
    named = sorted({name for case in cases for name in case["tools"] if isinstance(name, str)})
    model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
    with opened_tools(cfg, [name for name in named if name in BUILTINS]) as tools:
        by_name = {t.name: t for t in tools}
        missing = sorted(set(named) - set(by_name))
        if missing:
            raise ValueError(f"{cfg.suite}: no tool named {', '.join(missing)} (built-ins: {', '.join(BUILTINS)}; "
                             "or start an MCP server that has it with --mcp)")
        samples = evaluate_suite(model, cases, lambda specs: [by_name[s] if isinstance(s, str) else s for s in specs],
                                 Decoding(cfg.max_new_tokens, cfg.temperature))
    if cfg.output:
        atomic_write_text(Path(cfg.output), "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    return summary(samples, cfg.bootstrap_iters)


def run_replay(cfg: AgentReplayConfig) -> dict:
    from lmforge.agent.builtins import BUILTINS
    from lmforge.agent.loop import read_trace, replay

    recorded = [spec["function"]["name"] for spec in read_trace(cfg.trace)[0]["tools"]]

    with opened_tools(cfg, [name for name in recorded if name in BUILTINS]) as tools:
        return replay(cfg.trace, tools)


def run_mcp_server(cfg: McpServerConfig) -> None:
    from lmforge.agent.mcp import serve_mcp

    with opened_tools(cfg, cfg.tools) as tools:
        serve_mcp(tools, cfg.name)
