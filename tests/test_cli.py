import subprocess
import sys

import pytest

from lmforge.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lmforge.cli", *args], capture_output=True, text=True)


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from lmforge.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_help_lists_recipe_keys():
    out = run_cli("train", "--help").stdout
    assert "data.max_length" in out and "train.lr" in out and "--overwrite" in out and "--nproc N" in out


def test_generate_help_explains_every_option():
    out = run_cli("generate", "--help").stdout
    for flag in ("--model", "--prompt", "--temperature", "--top-p", "--max-new-tokens", "--system"):
        assert flag in out


def test_config_errors_exit_2_with_a_message(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d}\n")
    assert main(["train", str(recipe), "train.lrr=1"]) == 2
    assert "unknown key 'train.lrr'; did you mean 'train.lr'" in capsys.readouterr().err


def test_unknown_recipe_lists_the_shipped_ones(capsys):
    assert main(["train", "no-such-recipe"]) == 2
    assert "demo-sft" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["train", "generate", "demo", "data synth-world", "tokenizer train", "eval", "analyze",
                                  "compare", "sweep", "rag index", "rag query", "rag eval", "prompt run", "agent run",
                                  "agent eval", "agent replay", "agent mcp-server"])
def test_every_verb_has_help(verb):
    assert run_cli(*verb.split(), "--help").returncode == 0


def test_synth_world_is_deterministic_and_never_replaced_unasked(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["data", "synth-world", "--seed", "3", "--size", "tiny", "--out", str(first)]) == 0
    assert main(["data", "synth-world", "--seed", "3", "--size", "tiny", "--out", str(second)]) == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert main(["data", "synth-world", "--seed", "4", "--size", "tiny", "--out", str(first)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "synth-world", "--seed", "4", "--size", "tiny", "--out", str(first), "--overwrite"]) == 0
    assert (first / "world.json").read_bytes() != (second / "world.json").read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_bad_override_value_is_a_config_error(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d}\n")
    assert main(["train", str(recipe), "data.train=[a,"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_eval_then_analyze_then_compare(nano_model_dir, tiny_world, tmp_path, capsys):
    tasks = [str(tiny_world / "tasks" / name) for name in ("world_mc.yaml", "world_qa.yaml")]
    for name, limit in (("a", "4"), ("b", "6")):
        args = ["eval", "--model", str(nano_model_dir), "--tasks", *tasks, "--limit", limit, "--max-new-tokens", "6",
                "--output-dir", str(tmp_path), "--name", name]
        assert main(args) == 0
        assert "| world_mc | acc |" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "b")]) == 0
    assert "| wrong_answer |" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    assert "| world_mc | acc |" in out and "compared on the 4 samples" in out
    assert (tmp_path / "ab" / "comparison.md").exists()


def test_eval_errors_exit_2_naming_the_problem(nano_model_dir, tmp_path, capsys):
    assert main(["eval", "--model", str(nano_model_dir), "--tasks", f"mmlu={tmp_path / 'missing'}"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err
