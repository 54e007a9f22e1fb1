"""lmforge: one toolkit for a language model's whole life."""

__version__ = "0.1.0"
