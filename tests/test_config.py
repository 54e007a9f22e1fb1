import pytest

from lmforge.config import RECIPE_DIR
from lmforge.config import ConfigError, help_table, load, parse_override
from lmforge.train.config import TrainRecipe

MINIMAL = {"stage": "sft", "name": "r", "model": {"path": "m"}, "data": {"train": "d.jsonl"}}


def write_recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_are_typed_and_nested(tmp_path):
    path = write_recipe(tmp_path, "stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d.jsonl}\n")
    recipe = load(TrainRecipe, path, ["train.lr=1e-3", "data.packing=true", "data.train=[a.jsonl, b.jsonl]"])
    assert recipe.train.lr == pytest.approx(1e-3)
    assert recipe.data.packing is True
    assert recipe.data.train == ["a.jsonl", "b.jsonl"]
    assert recipe.train.batch_size == 8  # untouched default


def test_unknown_key_in_file_names_key_and_suggestion(tmp_path):
    path = write_recipe(tmp_path, "stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d, max_lenght: 9}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.max_lenght'; did you mean 'data.max_length'"):
        load(TrainRecipe, path)


def test_unknown_override_key_suggests_closest(tmp_path):
    path = write_recipe(tmp_path, "stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.lr_rate'.*did you mean 'train.lr'"):
        load(TrainRecipe, path, ["train.lr_rate=1"])


def test_wrong_type_names_the_dotted_key(tmp_path):
    path = write_recipe(tmp_path, "stage: sft\nname: r\nmodel: {path: m}\ndata: {train: d}\ntrain: {batch_size: many}\n")
    with pytest.raises(ConfigError, match=r"'train.batch_size'"):
        load(TrainRecipe, path)


def test_model_needs_exactly_one_source(tmp_path):
    path = write_recipe(tmp_path, "stage: sft\nname: r\nmodel: {}\ndata: {train: d}\n")
    with pytest.raises(ConfigError, match="exactly one of model.preset"):
        load(TrainRecipe, path)


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("train.lr")


def test_help_lists_every_leaf_key_with_description():
    table = help_table(TrainRecipe)
    for key in ("stage", "model.preset", "data.max_length", "data.packing", "train.lr", "train.save_total_limit"):
        assert f"  {key} " in table
    assert "peak learning rate" in table


@pytest.mark.parametrize("recipe", sorted(RECIPE_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_loads(recipe):
    loaded = load(TrainRecipe, recipe)
    assert loaded.name


def test_shipped_recipes_exist():
    assert len(list(RECIPE_DIR.glob("*.yaml"))) >= 2
