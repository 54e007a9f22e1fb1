"""Typed configs: one pydantic schema per command drives YAML recipes, `key.sub=value` overrides and `--help`.

Kept free of torch/transformers so that the CLI starts fast.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


RECIPE_DIR = Path(__file__).parent / "recipes"


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema; the message says which key and where."""


class Section(BaseModel):
    """Base of every config block: unknown keys are rejected before pydantic sees them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


Preset = Literal["nano", "micro", "mini", "small", "0.5b"]


class ModelConfig(Section):
    preset: Preset | None = Field(
        None, description="build a new Llama-architecture model of this size from scratch"
    )
    path: str | None = Field(None, description="local Hugging Face model directory to start from")
    tokenizer: str | None = Field(None, description="tokenizer directory (default: the model's own)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="compute dtype; auto = bf16 on CUDA, fp32 on CPU, and training autocasts to bf16 "
        "(fp32 master weights) on CPUs with native bf16 matmuls"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    attn_implementation: str = Field("sdpa", description="attention kernel passed to transformers")
    trust_remote_code: bool = Field(False, description="run Python code shipped inside the model directory")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        if (self.preset is None) == (self.path is None):
            raise ValueError("set exactly one of model.preset (from scratch) or model.path (a model directory)")
        if self.preset is not None and self.tokenizer is None:
            raise ValueError("model.preset needs model.tokenizer (train one with `lmforge tokenizer train`)")
        return self


def nested_section(annotation: Any) -> type[Section] | None:
    """The Section class inside an annotation such as `ModelConfig` or `ModelConfig | None`."""
    candidates = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def check_keys(data: dict, model: type[Section], where: str, prefix: str = "") -> None:
    """Fail on the first unknown key, naming it and the closest valid one."""
    fields = model.model_fields
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{dotted}'{_suggestion(key, fields, prefix)}")
        sub = nested_section(fields[key].annotation)
        if sub is not None and isinstance(value, dict):
            check_keys(value, sub, where, prefix=f"{dotted}.")


def _suggestion(key: str, fields: dict[str, Any], prefix: str) -> str:
    overlapping = [name for name in fields if key.startswith(name) or name.startswith(key)]
    close = overlapping or difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid keys here: {', '.join(prefix + name for name in fields)}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-4` -> (["train", "lr"], 3e-4); values are parsed as YAML scalars or lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        return key.split("."), yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': the value is not valid YAML ({err.problem})") from None


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


def build(model: type[Section], data: dict, where: str) -> Section:
    """Validate `data` against `model`, turning pydantic errors into messages with dotted keys."""
    check_keys(data, model, where)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in e['loc'])}': {e['msg']} (got {e.get('input')!r})" for e in err.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def load(
    model: type[Section], recipe: str | Path | None = None, overrides: list[str] = (), updates: dict | None = None
) -> Section:
    """Recipe file (optional) + `key.sub=value` overrides + programmatic {dotted key: value} updates -> a config."""
    data = read_yaml(recipe) if recipe else {}
    parsed = [parse_override(text) for text in overrides]
    parsed += [(key.split("."), value) for key, value in (updates or {}).items()]
    for path, value in parsed:
        check_keys(_nest(path, value), model, "command line")
        apply_override(data, path, value)
    return build(model, data, str(recipe) if recipe else "command line")


def _nest(path: list[str], value: Any) -> dict:
    node: Any = value
    for part in reversed(path):
        node = {part: node}
    return node


def dump_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def iter_help(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every leaf key, for `--help`."""
    for name, field in model.model_fields.items():
        sub = nested_section(field.annotation)
        if sub is not None:
            yield from iter_help(sub, prefix=f"{prefix}{name}.")
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        yield f"{prefix}{name}", _type_name(field.annotation), default, field.description or ""


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if _is_union(annotation):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if typing.get_origin(annotation) is list:
        return f"list[{_type_name(typing.get_args(annotation)[0])}]"
    return getattr(annotation, "__name__", str(annotation))


def help_table(model: type[BaseModel], prefix: str = "") -> str:
    rows = list(iter_help(model, prefix))
    width = max(len(key) for key, *_ in rows)
    lines = []
    for key, type_name, default, description in rows:
        lines.append(f"  {key.ljust(width)}  {description} [{type_name}, default: {default}]")
    return "\n".join(lines)


def resolve_recipe(name: str) -> Path:
    """A recipe path, or the name of a shipped recipe such as `demo-sft`."""
    path = Path(name)
    if path.exists():
        return path
    shipped = RECIPE_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if shipped.exists():
        return shipped
    available = ", ".join(sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
    raise ConfigError(f"recipe not found: {name} (shipped recipes: {available})")
