"""The one generation engine of lmforge: the server, GRPO rollouts, `lmforge generate` and eval generation tasks
all generate through it (see `core`)."""

from lmforge.engine.core import (BASE_ADAPTER, Completion, Engine, EngineDown, GenerationRequest, Output, QueueFull,
                                 Target, generate_texts, stop_ids_for, target_for)
from lmforge.engine.sampling import SamplingParams

__all__ = ["BASE_ADAPTER", "Completion", "Engine", "EngineDown", "GenerationRequest", "Output", "QueueFull",
           "SamplingParams", "Target", "generate_texts",
           "stop_ids_for", "target_for"]
