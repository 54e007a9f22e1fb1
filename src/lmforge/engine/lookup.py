"""Prompt-lookup drafts for speculative decoding: the tokens that followed the latest earlier occurrence of a
sequence's last n-gram (in its prompt or its own reply) are proposed as its next tokens, and one forward pass checks
them all. Greedy decoding keeps exactly the tokens it would have picked one at a time, so a good guess saves steps
and a bad one costs only the wider pass. It pays where replies copy from the prompt (retrieved passages, code
edits, quoting) or repeat themselves.

Written here because transformers' `PromptLookupCandidateGenerator` drafts for one sequence held in a tensor, from
inside `generate`; the engine drafts for every row of a running batch from the token lists it already keeps.
"""

from __future__ import annotations

MAX_NGRAM = 3  # the longest tail matched; shorter ones are tried when it has no earlier occurrence


class NgramIndex:
    """Where each n-gram (1 to MAX_NGRAM tokens) of a growing token list last ended, updated token by token as the
    list grows, so that a draft costs the same at any length (a scan of a long prompt per step would not)."""

    def __init__(self, tokens: list[int], max_ngram: int = MAX_NGRAM):
        self.tokens, self.max_ngram = tokens, max_ngram  # `tokens` is the caller's list, read as it grows
        self.ends: dict[tuple[int, ...], int] = {}
        self.matches: list[int | None] = [None] * (max_ngram + 1)  # by size: the tail's latest earlier end
        self.indexed = 0
        self._catch_up()

    def draft(self, count: int) -> list[int]:
        """`count` tokens copied from after the latest earlier occurrence of the longest tail that occurred before
        (none when no tail did). A copy that reaches the end goes on over what it has copied, as LZ77 does, so a
        reply caught in a loop of p tokens is drafted as that loop continuing."""
        self._catch_up()
        for size in range(self.max_ngram, 0, -1):
            end = self.matches[size]
            if end is not None:
                source = self.tokens[end + 1 :]
                return [source[index % len(source)] for index in range(count)]
        return []

    def _catch_up(self) -> None:
        tokens, ends = self.tokens, self.ends
        for end in range(self.indexed, len(tokens)):
            for size in range(1, self.max_ngram + 1):
                if size > end + 1:
                    self.matches[size] = None
                    continue
                key = tuple(tokens[end - size + 1 : end + 1])
                self.matches[size] = ends.get(key)
                ends[key] = end
        self.indexed = len(tokens)


class Drafter:
    """One sequence's drafts, held back after misses: a draft the model rejects outright costs a wider forward pass
    for nothing, so after m such misses in a row the sequence skips 2^m - 1 steps (at most MAX_WAIT) before drafting
    again, and any confirmed draft token resets the count."""

    MAX_WAIT = 15

    def __init__(self, tokens: list[int]):
        self.index = NgramIndex(tokens)
        self.misses = self.waiting = 0

    def draft(self, count: int) -> list[int]:
        if self.waiting:
            self.waiting -= 1
            return []
        return self.index.draft(count)

    def confirmed(self, kept: int) -> None:
        """How many tokens of the latest draft the model confirmed."""
        self.misses = 0 if kept else self.misses + 1
        self.waiting = min(2**self.misses - 1, self.MAX_WAIT)


class DraftGate:
    """Whether the next step drafts at all, decided by measurement: a drafted step feeds several tokens per row to
    every row, which costs little where decoding is bound by memory (GPUs) but in proportion where it is bound by
    arithmetic (CPUs). The gate keeps a moving average of seconds per generated token for drafted and plain steps
    and takes the faster. It tries drafting again after `explore` plain steps, a wait that doubles (up to
    MAX_EXPLORE) each time drafting is still the slower, so a workload that changes is followed at a bounded cost."""

    EXPLORE, MAX_EXPLORE = 8, 128
    SMOOTHING = 0.2

    def __init__(self):
        self.pace: dict[bool, float | None] = {True: None, False: None}
        self.explore, self.since = self.EXPLORE, 0

    def open(self) -> bool:
        drafted, plain = self.pace[True], self.pace[False]
        if drafted is None or plain is None:
            return drafted is None
        if drafted <= plain:
            return True
        self.since += 1
        return self.since >= self.explore

    def record(self, drafted: bool, seconds: float, tokens: int) -> None:
        pace, old = seconds / max(tokens, 1), self.pace[drafted]
        self.pace[drafted] = pace if old is None else old + self.SMOOTHING * (pace - old)
        if drafted and self.pace[False] is not None:
            slower = self.pace[True] > self.pace[False]
            self.explore = min(2 * self.explore, self.MAX_EXPLORE) if slower else self.EXPLORE
            self.since = 0
