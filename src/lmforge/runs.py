"""Run folders: everything a command produces lands in `<output_dir>/<name>/`, and only when it finished.

Work happens in `<name>.partial/`; the final rename makes a run visible, so a crash never leaves a folder that
looks finished, and a finished run is never replaced without `overwrite`. In a distributed run only the main
process (global rank 0) writes the folder; the others wait for it where they depend on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel

from lmforge.config import dump_yaml
from lmforge.distributed import barrier, is_main_process


class RunExistsError(FileExistsError):
    pass


class Run:
    """One run folder. `writes` is whether this process writes it: the main one (global rank 0) of a distributed
    run, the only one otherwise; the others train alongside and leave the folder alone."""

    def __init__(self, output_dir: str | Path, name: str, overwrite: bool = False):
        self.final = Path(output_dir) / name
        self.dir = partial_path(self.final)
        self.overwrite = overwrite
        self.writes = is_main_process()
        self._log_handler: logging.Handler | None = None

    def start(self, config: BaseModel, resume_from: Path | None = None) -> "Run":
        """Open the `.partial` work folder. Resuming from a checkpoint inside it keeps the folder (an interrupted
        run continues); otherwise it starts empty. The main process prepares it once every process has looked at
        it as it was (to choose a checkpoint); the others wait until it is ready."""
        keep = resume_from is not None and self.dir.resolve() in resume_from.resolve().parents
        refuse_to_replace(self.final, self.overwrite)  # in every process, so that all of them stop alike
        barrier()
        if self.writes:
            self.dir = fresh_partial(self.final, self.overwrite, keep)
            (self.dir / "config.yaml").write_text(dump_yaml(config), encoding="utf-8")
            self._log_handler = attach_log_file(self.dir / "run.log")
        barrier()
        return self

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Detach the run's log file, also when the run failed."""
        if self._log_handler is not None:
            logging.getLogger("lmforge").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def log_metrics(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}, ensure_ascii=False) + "\n")

    def rewind_metrics(self, step: int) -> None:
        """Drop records logged after `step`, which a run resumed from that step logs again, and a line torn by a
        crash."""
        path = self.dir / "metrics.jsonl"
        if not self.writes or not path.exists():
            return
        records = [_parse(line) for line in path.read_text(encoding="utf-8").splitlines()]
        kept = [r for r in records if r is not None and r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

    def finish(self) -> Path:
        """Publish the run (the main process) and return its final folder once it is there (every process)."""
        self.close()
        if self.writes:
            publish(self.dir, self.final)
        barrier()
        return self.final


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def fresh_partial(final: Path, overwrite: bool, keep: bool = False) -> Path:
    """A `<final>.partial` folder to work in, after refusing to replace finished output: emptied, unless `keep`
    (resuming the interrupted work in it)."""
    refuse_to_replace(final, overwrite)
    partial = partial_path(final)
    if partial.exists() and not keep:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    return partial


def refuse_to_replace(final: Path, overwrite: bool) -> None:
    if final.exists() and not overwrite:
        raise RunExistsError(f"{final} already exists; pass --overwrite to replace it")


def publish(partial: Path, final: Path) -> Path:
    """Make finished work visible in one rename, replacing an older version."""
    stale = final.with_name(final.name + ".replaced")
    if stale.exists():
        shutil.rmtree(stale)
    if final.exists():
        final.rename(stale)
    partial.rename(final)
    if stale.exists():
        shutil.rmtree(stale)
    return final


def attach_log_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("lmforge")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_record(run_dir: str | Path, key: str) -> dict:
    """The newest `key` record a training run logged (a resumed run logs its data and parameters again)."""
    for record in reversed(read_metrics(run_dir)):
        if key in record:
            return record[key]
    raise ValueError(f"{Path(run_dir) / 'metrics.jsonl'} has no '{key}' record: is {run_dir} a finished training run?")


def model_card(
    stage: str, parent: str, data_files: Iterable[Path], metrics: dict[str, Any], template: str,
    sections: dict[str, str] | None = None, facts: dict[str, str] | None = None, adapter: bool = False,
) -> str:
    """A Hugging Face style README.md that records where a model came from; `facts` adds lines to its header,
    `sections` titled markdown. An adapter's card says how to load it on its base."""
    header = ["library_name: peft", f"base_model: {parent}"] if adapter else ["library_name: transformers"]
    lines = [
        "---",
        *header,
        "tags: [lmforge, " + stage + "]",
        "---",
        f"# {stage} run",
        "",
        f"- **stage**: {stage}",
        f"- **parent model**: {parent}",
        f"- **chat template**: {template}",
        *(f"- **{key}**: {value}" for key, value in (facts or {}).items()),
        "",
        "## Data",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| {path} | `{sha256_file(path)}` |" for path in data_files]
    lines += ["", "## Final metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in metrics.items()]
    for title, body in (sections or {}).items():
        lines += ["", f"## {title}", "", body.strip()]
    if adapter:
        lines += ["", "A peft adapter on the parent model: "
                  "`peft.AutoPeftModelForCausalLM.from_pretrained(<this folder>)`, or `lmforge export` to merge it "
                  "into a plain transformers model.", ""]
    else:
        lines += ["", "Load it with transformers: `Auto*.from_pretrained(<this folder>)`.", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
