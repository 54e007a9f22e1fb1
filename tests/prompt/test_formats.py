"""Prompt formats: same content, different labels, separators and spacing."""

import pytest

from lmforge.prompt.formats import Format, format_variants

PROMPT = "Context: Kelmar lies on the Oruna.\nQuestion: Which river?\nAnswer:"


def test_the_first_format_is_the_template_as_written():
    assert format_variants(1)[0].apply(PROMPT) == PROMPT


def test_a_format_restyles_labels_and_lines_but_keeps_the_content():
    fmt = Format("upper", " - ", "blank line")
    assert fmt.apply(PROMPT) == "CONTEXT - Kelmar lies on the Oruna.\n\nQUESTION - Which river?\n\nANSWER -"
    assert Format("lower", ":\n", "space").apply("问题：Kelmar在哪里？\nAnswer:") == "问题:\nKelmar在哪里？ answer:"


def test_variants_are_distinct_seeded_and_bounded():
    variants = format_variants(8, seed=1)
    assert len(set(variants)) == 8 and variants == format_variants(8, seed=1)
    assert len({v.apply(PROMPT) for v in variants}) == 8
    with pytest.raises(ValueError, match="at most"):
        format_variants(1000)
