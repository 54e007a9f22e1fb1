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
    assert "data.max_length" in out and "train.lr" in out and "--overwrite" in out


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


@pytest.mark.parametrize("verb", ["train", "generate", "demo", "data synth-world", "tokenizer train"])
def test_every_verb_has_help(verb):
    assert run_cli(*verb.split(), "--help").returncode == 0
