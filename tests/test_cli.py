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
