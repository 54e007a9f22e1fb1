"""Agents: `lmforge agent run` (a tool-calling loop against a local model or any OpenAI-compatible URL),
`agent eval` (BFCL-style tool-call accuracy), `agent replay` (a trace run again) and `agent mcp-server` (lmforge's
tools for any MCP client)."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

from pydantic import Field

from lmforge.config import Section


class ToolsSection(Section):
    tools: list[str] = Field(["calculator"], description="built-in tools: calculator, search (needs --index), python")
    index: str | None = Field(None, description="`lmforge rag index` folder behind the search tool")
    mcp: list[str] = Field([], description="commands that start MCP servers (stdio) whose tools the agent may use")
    python_cpu_seconds: int = Field(5, ge=1, description="python tool: CPU-time limit per run")
    python_wall_seconds: float = Field(10.0, gt=0, description="python tool: wall-clock limit per run")
    python_memory_mb: int = Field(512, ge=64, description="python tool: address-space limit")
    device: str = Field("auto", description="auto, cpu, cuda, ... (local model and embedder)")


class ModelSection(ToolsSection):
    model: str | None = Field(None, description="local model folder (or run folder)")
    url: str | None = Field(None, description="or an OpenAI-compatible API base URL, e.g. http://127.0.0.1:8000/v1")
    served_model: str = Field("", description="model id at --url (default: the first one it lists)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key for --url")
    max_new_tokens: int = Field(256, ge=1, description="longest model message in tokens")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy)")


class AgentRunConfig(ModelSection):
    task: str = Field(description="what to do, as the user's message")
    system: str | None = Field(None, description="system prompt")
    max_steps: int = Field(8, ge=1, description="most model messages before the run stops")
    max_seconds: float = Field(120.0, gt=0, description="wall-time cap, checked before each model message")
    max_repeats: int = Field(3, ge=2, description="stop when the same call (tool and arguments) comes this often")
    trace: str | None = Field(None, description="JSONL trace file (default: runs/agent-traces/<time>.jsonl)")


class AgentEvalConfig(ModelSection):
    suite: str = Field(description="JSONL suite of cases in BFCL's ground_truth shape")
    bootstrap_iters: int = Field(1000, ge=2, description="bootstrap resamples for the 95% intervals")
    output: str | None = Field(None, description="write each case's calls and score to this JSONL file")


class AgentReplayConfig(ToolsSection):
    trace: str = Field(description="trace written by `lmforge agent run`")


class McpServerConfig(ToolsSection):
    name: str = Field("lmforge", description="server name shown to MCP clients")


@contextlib.contextmanager
def opened_tools(cfg: ToolsSection, names: list[str] | None = None):
    """The built-in tools named (default: cfg.tools) and every MCP server's tools, closed afterwards."""
    from lmforge.agent.builtins import builtin_tools
    from lmforge.agent.mcp import MCPTools
    from lmforge.agent.sandbox import Limits

    retriever = None
    if cfg.index:
        from lmforge.rag import open_retriever

        retriever = open_retriever(cfg.index, cfg.device)
    limits = Limits(cfg.python_cpu_seconds, cfg.python_wall_seconds, cfg.python_memory_mb)
    servers = []
    try:
        tools = builtin_tools(cfg.tools if names is None else names, retriever, limits)
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
    with opened_tools(cfg) as tools:
        result = run_agent(model, tools, cfg.task, Guards(cfg.max_steps, cfg.max_seconds, cfg.max_repeats),
                           Decoding(cfg.max_new_tokens, cfg.temperature), trace, cfg.system)
    return result, trace


def run_agent_eval(cfg: AgentEvalConfig) -> dict:
    import json

    from lmforge.agent.evaluate import evaluate_suite, read_suite, summary
    from lmforge.clients import Decoding, chat_model
    from lmforge.runs import atomic_write_text

    cases = read_suite(cfg.suite)
    builtin = sorted({name for case in cases for name in case["tools"] if isinstance(name, str)})
    model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
    with opened_tools(cfg, builtin) as tools:
        by_name = {t.name: t for t in tools}
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

    with opened_tools(cfg) as tools:
        serve_mcp(tools, cfg.name)
