"""Evaluation: log-likelihood multiple choice and generation exact match over local benchmark files."""

from lmforge.eval.custom import custom_task_as_program

__all__ = ["custom_task_as_program"]
