"""Reply text as it is generated: incremental detokenisation with stop strings."""

from __future__ import annotations


class TextStream:
    """Incremental detokenisation that never sends half a UTF-8 character or the start of a stop string. Each token
    is decoded in the context of the few before it (not the whole reply again), as tokenizers join pieces
    differently at the start of a text."""

    CONTEXT = 6

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, [stop for stop in stops if stop]
        self.ids: list[int] = []
        self.text, self.sent = "", 0
        self.decoded = 0  # tokens whose text is in self.text

    def add(self, token: int) -> tuple[str, bool]:
        """The text that is safe to send now, and whether a stop string ended the reply."""
        self.ids.append(token)
        self._decode_new()
        cut = self._stop_position()
        if cut is not None:
            self.text = self.text[:cut]
            return self.flush(), True
        safe = len(self.text) - max((_overlap(self.text, stop) for stop in self.stops), default=0)
        delta, self.sent = self.text[self.sent : max(safe, self.sent)], max(safe, self.sent)
        return delta, False

    def flush(self) -> str:
        if self.decoded < len(self.ids):
            self.text += self.tokenizer.decode(self.ids[self.decoded :], skip_special_tokens=True)
            self.decoded = len(self.ids)
        delta, self.sent = self.text[self.sent :], len(self.text)
        return delta

    def _decode_new(self) -> None:
        context = max(0, self.decoded - self.CONTEXT)
        before = self.tokenizer.decode(self.ids[context : self.decoded], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[context:], skip_special_tokens=True)
        if after.endswith("\ufffd") or not after.startswith(before):
            return  # half a character so far: wait for the rest of its bytes
        self.text += after[len(before) :]
        self.decoded = len(self.ids)

    def _stop_position(self) -> int | None:
        start = max(0, self.sent - max((len(stop) for stop in self.stops), default=0))
        found = [position for stop in self.stops if (position := self.text.find(stop, start)) >= 0]
        return min(found) if found else None


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that begins `stop`."""
    return next((size for size in range(min(len(text), len(stop) - 1), 0, -1) if text.endswith(stop[:size])), 0)
