"""An OpenAI-compatible server for lmforge models: chat completions with streaming, tool calls and LoRA adapters."""
