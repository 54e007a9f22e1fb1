"""The floor rule: the shared core never imports a stage, and the stages that generate sit on the engine."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lmforge

PACKAGE = Path(lmforge.__file__).parent
STAGES = ("train", "serve", "eval", "world", "demo", "sweep", "generate", "score", "export", "rewards", "tokenizer",
          "rag", "prompt", "agent")
CORE = ["config", "runs", "templates", "sequences", "losses", "models", "distributed", "plots", "answers", "engine",
        "embedders", "metrics", "reports", "prompts", "clients", "toolcalls"]


def loaded_after(statement: str) -> set[str]:
    """The lmforge modules a fresh interpreter holds after running `statement`."""
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('lmforge')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_server_does_not_load_the_training_stage():
    loaded = loaded_after("import lmforge.serve.app")
    assert "lmforge.serve.app" in loaded and "lmforge.engine" in loaded
    assert not {name for name in loaded if name.startswith(("lmforge.train", "lmforge.eval"))}


def test_the_engine_loads_no_stage():
    loaded = loaded_after("import lmforge.engine")
    assert "lmforge.engine.core" in loaded
    assert not {name for name in loaded if name.split(".")[1:2] and name.split(".")[1] in STAGES}


@pytest.mark.parametrize("core", CORE)
def test_core_modules_import_no_stage(core):
    files = [PACKAGE / f"{core}.py"] if (PACKAGE / f"{core}.py").exists() else sorted((PACKAGE / core).rglob("*.py"))
    assert files
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:  # a relative import stays inside its package
                assert node.level == 1, f"{file}: an import reaches out of its package"
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "lmforge" and len(parts) > 1 and parts[1] in STAGES), f"{file}: {name}"
