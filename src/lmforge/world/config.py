"""The schema of `lmforge data synth-world`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmforge.config import Section


class SynthWorldConfig(Section):
    out: str = Field(description="output folder for the world's files")
    seed: int = Field(0, description="world seed; the same seed gives byte-identical files")
    size: Literal["tiny", "demo"] = Field("demo", description="how many entities and how much text")
