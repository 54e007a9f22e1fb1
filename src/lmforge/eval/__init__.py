"""Evaluation: log-likelihood multiple choice and generation exact match over local benchmark files."""
