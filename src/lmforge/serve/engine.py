"""The serving engine: continuous batching over a transformers model.

One thread owns the model. Between decode steps it admits waiting requests (each prefilled on its own, from the
longest cached prefix of its prompt, then joined to the batch's cache) and drops finished or cancelled ones, so every
request joins and leaves the running batch at any step, with its own sampling settings.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from lmforge.serve.kv import BatchKV, Layers, PrefixCache, cache_layers, new_cache
from lmforge.serve.registry import BASE_ADAPTER, ServedModel
from lmforge.serve.sampling import Picked, RowState, SamplingParams, new_generator, pick_tokens

log = logging.getLogger("lmforge.serve")


class QueueFull(RuntimeError):
    pass


class EngineDown(RuntimeError):
    pass


@dataclass
class Output:
    """New text of one choice since its last output, with the tokens that made it."""

    index: int
    text: str
    tokens: list[Picked] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class GenerationRequest:
    model: ServedModel
    prompt_ids: list[int]
    params: SamplingParams
    on_output: Callable[[Output], None]
    on_error: Callable[[str], None]
    n: int = 1
    cancelled: bool = False
    completion_tokens: int = 0

    def cancel(self) -> None:
        self.cancelled = True


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


def _cache_keyword(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); take whichever this model's forward has."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that begins `stop`."""
    return next((size for size in range(min(len(text), len(stop) - 1), 0, -1) if text.endswith(stop[:size])), 0)


@dataclass
class Sequence:
    """One choice being generated: the request's prompt, then its sampled tokens."""

    request: GenerationRequest
    index: int
    tokens: list[int]
    state: RowState
    stream: TextStream
    finish_reason: str | None = None

    @property
    def generated(self) -> int:
        return len(self.tokens) - len(self.request.prompt_ids)


class Engine:
    def __init__(self, model, max_batch_size: int = 32, max_queue: int = 256, prefix_cache_tokens: int = 32768):
        self.model = model
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.device = next(model.parameters()).device
        self.uses_adapters = hasattr(model, "peft_config")
        self.cache_keyword = _cache_keyword(model.get_base_model() if self.uses_adapters else model)
        self.prefix = PrefixCache(prefix_cache_tokens)
        self.waiting: deque[GenerationRequest] = deque()
        self.running: list[Sequence] = []
        self.batch: BatchKV | None = None
        self.wakeup = threading.Condition()
        self.stopping = False
        self.failure: str | None = None
        self.model_lock = threading.Lock()  # peft's per-call adapter hooks must not interleave (embeddings)
        self.thread: threading.Thread | None = None
        self.prompt_tokens = self.generation_tokens = self.steps = 0

    def start(self) -> "Engine":
        self.thread = threading.Thread(target=self._run, name="lmforge-engine", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.wakeup:
            self.stopping = True
            self.wakeup.notify()
        if self.thread:
            self.thread.join()

    def submit(self, request: GenerationRequest) -> None:
        if self.failure:
            raise EngineDown(self.failure)
        if request.n > self.max_batch_size:
            raise ValueError(f"n={request.n} is more than the {self.max_batch_size} sequences one batch holds "
                             f"(--max-batch-size)")
        with self.wakeup:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are already waiting (--max-queue {self.max_queue})")
            self.waiting.append(request)
            self.wakeup.notify()

    @property
    def healthy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _run(self) -> None:
        try:
            self._serve_forever()
        except BaseException as err:  # the engine is gone: nothing may wait for it
            log.exception("engine stopped")
            self.failure = f"the engine stopped: {err}"
            with self.wakeup:
                pending = [*self.waiting, *(sequence.request for sequence in self.running)]
                self.waiting.clear()
            for request in {id(request): request for request in pending}.values():
                request.on_error(self.failure)

    def _serve_forever(self) -> None:
        with torch.inference_mode():
            while True:
                with self.wakeup:
                    while not (self.stopping or self.waiting or self.running):
                        self.wakeup.wait()
                    if self.stopping:
                        return
                self._admit()
                if self.running:
                    self._guarded_step()

    def _admit(self) -> None:
        """Start the waiting requests that fit: those with a cached prefix one by one from it, the others
        prefilled together in one forward pass."""
        fresh: list[GenerationRequest] = []
        while request := self._next_request(reserved=sum(request.n for request in fresh)):
            reused, layers = self.prefix.lookup(request.model.adapter, request.prompt_ids)
            if reused:
                self._start_guarded([request], lambda: self._prefill_from(request, reused, layers))
            else:
                fresh.append(request)
        if fresh:
            self._start_guarded(fresh, lambda: self._prefill_together(fresh))

    def _next_request(self, reserved: int) -> GenerationRequest | None:
        """The first waiting request, if the batch has room for all its choices (cancelled ones are dropped)."""
        with self.wakeup:
            while self.waiting and self.waiting[0].cancelled:
                self.waiting.popleft()
            if not self.waiting or len(self.running) + reserved + self.waiting[0].n > self.max_batch_size:
                return None
            return self.waiting.popleft()

    def _start_guarded(self, requests: list[GenerationRequest], prefill) -> None:
        """Prefill, then start each request; a failure fails the requests it concerns, and the others go on."""
        try:
            prefilled = prefill()
        except Exception as err:
            self._fail(requests, err)
            return
        for request, logits, layers in prefilled:
            try:
                self._start(request, logits, layers)
            except Exception as err:
                self._fail([request], err)

    def _fail(self, requests: list[GenerationRequest], err: Exception) -> None:
        log.exception("prefill failed")
        for request in requests:
            self._drop(request)
            request.on_error(f"generation failed: {err}")

    def _drop(self, request: GenerationRequest) -> None:
        """Take a failed request's choices out of the batch, if some had joined."""
        for index in reversed(range(len(self.running))):
            if self.running[index].request is request:
                self._leave(index)

    def _leave(self, index: int) -> None:
        self.batch.leave(index)
        self.running[index] = self.running[-1]
        self.running.pop()
        if not self.running:
            self.batch = None

    def _prefill_from(self, request: GenerationRequest, reused: int, layers: Layers) -> list[tuple]:
        prompt = request.prompt_ids
        cache = new_cache(layers)
        with self.model_lock:
            out = self.model(
                input_ids=torch.tensor([prompt[reused:]], device=self.device),
                position_ids=torch.arange(reused, len(prompt), device=self.device).unsqueeze(0),
                **{self.cache_keyword: cache}, use_cache=True, logits_to_keep=1, **self._adapters([request.model]),
            )
        self.prompt_tokens += len(prompt) - reused
        return [(request, out.logits[:, -1], cache_layers(cache))]

    def _prefill_together(self, requests: list[GenerationRequest]) -> list[tuple]:
        """One left-padded forward pass over several prompts; each row's real tokens are the end of its cache."""
        from lmforge.generate import left_pad

        inputs = left_pad([request.prompt_ids for request in requests], 0, self.device)
        positions = (inputs["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
        cache = new_cache()
        with self.model_lock:
            out = self.model(**inputs, position_ids=positions, **{self.cache_keyword: cache}, use_cache=True,
                             logits_to_keep=1, **self._adapters([request.model for request in requests]))
        width = inputs["input_ids"].shape[1]
        layers = cache_layers(cache)
        self.prompt_tokens += sum(len(request.prompt_ids) for request in requests)
        return [(request, out.logits[row : row + 1, -1],
                 [(keys[row : row + 1, :, width - len(request.prompt_ids) :],
                   values[row : row + 1, :, width - len(request.prompt_ids) :]) for keys, values in layers])
                for row, request in enumerate(requests)]

    def _start(self, request: GenerationRequest, logits: torch.Tensor, layers: Layers) -> None:
        """The request's choices take their first token from its prompt's logits, then join the batch."""
        sequences = [self._sequence(request, index) for index in range(request.n)]
        picks = pick_tokens(logits.expand(request.n, -1), [sequence.state for sequence in sequences])
        for sequence, pick in zip(sequences, picks):
            self._advance(sequence, pick)
            if sequence.finish_reason is None:
                if self.batch is None:
                    self.batch = BatchKV(self.max_batch_size, layers)
                self.batch.join(layers)
                self.running.append(sequence)

    def _sequence(self, request: GenerationRequest, index: int) -> Sequence:
        params = request.params
        seed = None if params.seed is None else params.seed + index
        state = RowState(params, request.prompt_ids, new_generator(seed) if not params.greedy else None)
        if params.grammar is not None:
            from llguidance import LLMatcher

            state.matcher = LLMatcher(request.model.guidance_tokenizer(self.vocab_size), params.grammar)
            if state.matcher.is_error():
                raise ValueError(f"the output grammar is invalid: {state.matcher.get_error()}")
        return Sequence(request, index, list(request.prompt_ids), state,
                        TextStream(request.model.tokenizer, params.stop))

    def _guarded_step(self) -> None:
        try:
            self._step()
        except Exception as err:  # fail the batch, keep serving
            log.exception("decode step failed")
            for request in {id(s.request): s.request for s in self.running}.values():
                request.on_error(f"generation failed: {err}")
            self.running, self.batch = [], None

    def _step(self) -> None:
        mask, positions = self.batch.step_inputs()
        with self.model_lock:
            out = self.model(
                input_ids=torch.tensor([[sequence.tokens[-1]] for sequence in self.running], device=self.device),
                attention_mask=mask, position_ids=positions, **{self.cache_keyword: self.batch.cache},
                use_cache=True, **self._adapters([sequence.request.model for sequence in self.running]),
            )
        self.batch.advance()
        self.steps += 1
        picks = pick_tokens(out.logits[:, -1], [sequence.state for sequence in self.running])
        for index in reversed(range(len(self.running))):  # backwards: a leaving row takes the last row's place
            sequence = self.running[index]
            if not sequence.request.cancelled:
                self._advance(sequence, picks[index])
                if sequence.finish_reason is None:
                    continue
                self._remember(index, sequence)
            self._leave(index)

    def _remember(self, index: int, sequence: Sequence) -> None:
        if self.prefix.budget:
            fed = self.batch.real_tokens(index)
            self.prefix.store(sequence.request.model.adapter, sequence.tokens[:fed], self.batch.row(index))

    def _adapters(self, models: list[ServedModel]) -> dict:
        if not self.uses_adapters:
            return {}
        return {"adapter_names": [model.adapter or BASE_ADAPTER for model in models]}

    def _advance(self, sequence: Sequence, pick: Picked) -> None:
        """Take the picked token: stream its text, or end the choice (stop token, stop string, grammar, length)."""
        request, token = sequence.request, pick.token
        matcher = sequence.state.matcher
        if matcher is not None and not matcher.consume_token(token):
            log.warning("constrained decoding stopped: %s", matcher.get_error())
        if token in request.model.stop_ids:
            self._finish(sequence, "stop", [])
            return
        sequence.tokens.append(token)
        sequence.state.record(token)
        request.completion_tokens += 1
        self.generation_tokens += 1
        text, stopped = sequence.stream.add(token)
        if stopped or (matcher is not None and matcher.is_stopped()):
            self._finish(sequence, "stop", [pick], text)
        elif sequence.generated >= request.params.max_tokens or len(sequence.tokens) >= request.model.max_len:
            self._finish(sequence, "length", [pick], text)
        else:
            request.on_output(Output(sequence.index, text, [pick]))

    def _finish(self, sequence: Sequence, reason: str, picks: list[Picked], text: str | None = None) -> None:
        sequence.finish_reason = reason
        text = sequence.stream.flush() if text is None else text + sequence.stream.flush()
        sequence.request.on_output(Output(sequence.index, text, picks, reason))
