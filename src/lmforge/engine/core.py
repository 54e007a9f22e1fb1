"""The generation engine: continuous batching over a transformers model, for every part of lmforge that generates.

Between decode steps it admits waiting requests (prefilled together, or one by one from the longest cached prefix of
their prompt) and drops finished or cancelled ones, so every request joins and leaves the running batch at any step,
with its own sampling settings; the n choices of a request share its prompt's prefill.

Two ways to drive it: `start()` runs the loop on a thread of its own and `submit` feeds it (the server), and
`generate` runs the same loop in the caller's thread until a list of prompts is done (GRPO rollouts, `lmforge
generate`, eval generation tasks). Written here rather than taken from vLLM or transformers' continuous batching
because it must run on the very model object a stage is training, on CPUs, with peft adapters per row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from lmforge.engine.kv import BatchKV, Layers, PrefixCache, cache_layers, new_cache
from lmforge.engine.lookup import Drafter, DraftGate
from lmforge.engine.sampling import Picked, RowState, SamplingParams, new_generator, pick_tokens
from lmforge.engine.text import TextStream
from lmforge.models import cache_keyword, sliding_window

log = logging.getLogger("lmforge.engine")

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@dataclass(kw_only=True)
class Target:
    """What the engine needs to know of the model a request is for: its tokenizer, the tokens that end a reply, its
    context length, and the peft adapter to apply (None: the base model, or the only adapter when the engine does
    not route adapters)."""

    tokenizer: object
    stop_ids: list[int]
    max_len: int
    adapter: str | None = None
    _guidance: object = field(default=None, repr=False)

    def guidance_tokenizer(self, vocab_size: int):
        """llguidance's view of the vocabulary, built on first use (constrained decoding)."""
        if self._guidance is None:
            import llguidance.hf

            self._guidance = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=vocab_size,
                                                          eos_token=self.stop_ids)
        return self._guidance


def target_for(model, tokenizer, template: str | None = None) -> Target:
    """The target of a loaded model, with the stop tokens of `stop_ids_for`."""
    from lmforge.templates import resolve_template

    template = template or resolve_template(tokenizer, "auto")
    return Target(tokenizer=tokenizer, stop_ids=stop_ids_for(tokenizer, model.generation_config, template),
                  max_len=int(getattr(model.config, "max_position_embeddings", 2048)))


def stop_ids_for(tokenizer, generation_config, template: str) -> list[int]:
    """Replies end at the generation config's EOS tokens, the tokenizer's EOS and the chat template's end-of-turn
    marker, when that marker is one token of its own (a base model without the template's markers would otherwise
    stop at the first piece of one, such as "<")."""
    from lmforge.models import as_id_list
    from lmforge.templates import end_of_turn_ids

    stops = as_id_list(getattr(generation_config, "eos_token_id", None)) + [tokenizer.eos_token_id]
    own_tokens = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    stops += [token for token in end_of_turn_ids(tokenizer, template)[:1] if token in own_tokens]
    return sorted({token for token in stops if token is not None})


@dataclass
class Completion:
    """One finished choice of an offline `generate` call. `stop_token` is the token that ended it, when one did
    (it is not part of `token_ids` or `text`)."""

    prompt_index: int
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str
    stop_token: int | None = None


def generate_texts(model, tokenizer, prompts: list[list[int]], params, n: int = 1, batch_size: int = 32,
                   on_done: Callable[[int], None] | None = None) -> list[Completion]:
    """Completions of token prompts through the engine (continuous batching, n samples sharing a prompt's
    prefill), ending at the model's stop tokens, its chat template's end of turn, or a stop string in `params`."""
    engine = Engine(model, max_batch_size=max(batch_size, n))
    return engine.generate(target_for(model, tokenizer), prompts, params, n, on_done)


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
    stop_token: int | None = None


@dataclass
class GenerationRequest:
    model: Target
    prompt_ids: list[int]
    params: SamplingParams
    on_output: Callable[[Output], None]
    on_error: Callable[[str], None]
    n: int = 1
    cancelled: bool = False
    completion_tokens: int = 0

    def cancel(self) -> None:
        self.cancelled = True


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
    """`route_adapters`: each request names its peft adapter (a served base model and its adapters in one batch);
    off, every request runs the model as it is, with its active adapter (a LoRA stage's policy)."""

    def __init__(self, model, max_batch_size: int = 32, max_queue: int = 256, prefix_cache_tokens: int = 32768,
                 route_adapters: bool = False, prompt_lookup: int = 0):
        """`prompt_lookup`: draft tokens proposed per step for greedy rows by prompt lookup (0: off)."""
        self.model = model
        if prompt_lookup and sliding_window(model.config):
            log.warning("prompt lookup is off: this model attends over a sliding window, which counts cache columns, "
                        "and rejected draft tokens leave masked columns behind")
            prompt_lookup = 0
        self.prompt_lookup, self.gate = prompt_lookup, DraftGate()
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.device = next(model.parameters()).device
        self.uses_adapters = route_adapters and hasattr(model, "peft_config")
        self.cache_keyword = cache_keyword(model)
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
        self.drafted = self.accepted = 0  # prompt-lookup draft tokens proposed, and those the model confirmed
        self.expected: tuple[int, int] | None = None  # rows and tokens per row of an offline call, to size the cache

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

    def generate(self, target: Target, prompts: list[list[int]], params: SamplingParams | list[SamplingParams],
                 n: int = 1, on_done: Callable[[int], None] | None = None) -> list[Completion]:
        """Every prompt's n completions, prompt by prompt, generated in the calling thread (no thread, event loop or
        HTTP). The model runs in eval mode under no_grad, so a training stage samples from the very weights it is
        training; its train/eval mode is restored afterwards (a model whose weights change between calls wants
        `prefix_cache_tokens=0`, or cached prefixes would be stale). `on_done(k)` is told of k prompts finished.
        `params` holds for every prompt (seeded, prompt k's choice i gets the seed `seed + k * n + i`), or is a
        list with one per prompt (a seeded one gives choice i the seed `seed + i`)."""
        if self.thread is not None:
            raise RuntimeError("this engine runs on its own thread; submit requests to it instead")
        if n > self.max_batch_size:
            raise ValueError(f"n={n} is more than the {self.max_batch_size} sequences one batch holds")
        if not prompts:
            return []
        collected = [_Collected(index, n, on_done) for index in range(len(prompts))]
        errors: list[str] = []
        with self.wakeup:
            per_prompt = params if isinstance(params, list) else _seeded_per_prompt(params, len(prompts), n)
            if len(per_prompt) != len(prompts):
                raise ValueError(f"{len(per_prompt)} sampling settings for {len(prompts)} prompts")
            longest = max(len(prompt) + settings.max_tokens for prompt, settings in zip(prompts, per_prompt))
            self.expected = (len(prompts) * n, min(longest, target.max_len))
            self.waiting.extend(GenerationRequest(target, list(prompt), per_prompt[index], collected[index].add,
                                                  errors.append, n=n) for index, prompt in enumerate(prompts))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                while self.waiting or self.running:
                    self._admit()
                    if self.running:
                        self._guarded_step()
                    if errors:
                        raise RuntimeError(errors[0])
        finally:
            self.waiting.clear()
            self.running, self.batch, self.expected = [], None, None
            self.model.train(was_training)
        return [completion for item in collected for completion in item.completions()]

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
        from lmforge.sequences import left_pad

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
                    self.batch = BatchKV(self.max_batch_size, layers, self.expected)
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
        """One forward pass over the running batch: each row feeds its last token, and rows with a prompt-lookup
        draft feed the draft after it, keeping the longest prefix the model confirms plus the model's own next
        token."""
        drafting = bool(self.prompt_lookup) and self.gate.open()
        drafts = [self._draft(sequence) if drafting else [] for sequence in self.running]
        width = 1 + max(map(len, drafts))
        started = time.perf_counter()
        fed = torch.tensor([1 + len(draft) for draft in drafts], device=self.device) if width > 1 else None
        mask, positions = self.batch.step_inputs(width, fed)
        rows = [[sequence.tokens[-1], *draft] for sequence, draft in zip(self.running, drafts)]
        with self.model_lock:
            out = self.model(
                input_ids=torch.tensor([row + row[-1:] * (width - len(row)) for row in rows], device=self.device),
                attention_mask=mask, position_ids=positions, **{self.cache_keyword: self.batch.cache},
                use_cache=True, **self._adapters([sequence.request.model for sequence in self.running]),
            )
        self.steps += 1
        picks = pick_tokens(out.logits[:, 0], [sequence.state for sequence in self.running])
        if width == 1:
            self.batch.advance()
            taken = [[pick] for pick in picks]
        else:
            chosen = out.logits.float().argmax(dim=-1).tolist()  # rows x width: the greedy choice after each column
            taken = [_confirmed(draft, chosen[index], pick) for index, (draft, pick) in enumerate(zip(drafts, picks))]
            self.batch.advance(width, torch.tensor([len(tokens) for tokens in taken], device=self.device))
            for sequence, draft, tokens in zip(self.running, drafts, taken):
                if draft and not sequence.request.cancelled:
                    sequence.state.lookup.confirmed(len(tokens) - 1)
                    self.drafted, self.accepted = self.drafted + len(draft), self.accepted + len(tokens) - 1
        if self.prompt_lookup:
            self.gate.record(width > 1, time.perf_counter() - started, sum(map(len, taken)))
        for index in reversed(range(len(self.running))):  # backwards: a leaving row takes the last row's place
            sequence = self.running[index]
            if not sequence.request.cancelled:
                for pick in taken[index]:
                    self._advance(sequence, pick)
                    if sequence.finish_reason is not None:
                        break
                if sequence.finish_reason is None:
                    continue
                self._remember(index, sequence)
            self._leave(index)

    def _draft(self, sequence: Sequence) -> list[int]:
        """Prompt-lookup draft tokens for a row whose next tokens are plain argmaxes (greedy, no penalty, grammar
        or log-probs), within its token budget."""
        state, request = sequence.state, sequence.request
        if not state.params.greedy or state.params.penalised or state.params.logprobs or state.matcher is not None:
            return []
        if state.lookup is None:
            state.lookup = Drafter(sequence.tokens)
        room = min(request.params.max_tokens - sequence.generated, request.model.max_len - len(sequence.tokens)) - 1
        return state.lookup.draft(min(self.prompt_lookup, room))

    def _remember(self, index: int, sequence: Sequence) -> None:
        if self.prefix.budget:
            fed = min(self.batch.real_tokens(index), len(sequence.tokens))
            self.prefix.store(sequence.request.model.adapter, sequence.tokens[:fed], self.batch.row(index, fed))

    def _adapters(self, models: list[Target]) -> dict:
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
            self._finish(sequence, "stop", [], stop_token=token)
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

    def _finish(self, sequence: Sequence, reason: str, picks: list[Picked], text: str | None = None,
                stop_token: int | None = None) -> None:
        sequence.finish_reason = reason
        text = sequence.stream.flush() if text is None else text + sequence.stream.flush()
        sequence.request.on_output(Output(sequence.index, text, picks, reason, stop_token))


def _confirmed(draft: list[int], chosen: list[int], first: Picked) -> list[Picked]:
    """The tokens a row keeps from a drafted step: the model's greedy choice after each fed token (`chosen`), for as
    long as the draft agrees with it (the choice after the last agreeing token is the model's own next token)."""
    taken = [first]
    for guess, token in zip(draft, chosen[1:]):
        if guess != taken[-1].token:
            break
        taken.append(Picked(token))
    return taken


def _seeded_per_prompt(params: SamplingParams, prompts: int, n: int) -> list[SamplingParams]:
    """One seed per choice of every prompt, so no two prompts draw the same random numbers."""
    from dataclasses import replace

    if params.seed is None:
        return [params] * prompts
    return [replace(params, seed=params.seed + index * n) for index in range(prompts)]


class _Collected:
    """The outputs of one prompt's choices in an offline `generate` call, until all have finished."""

    def __init__(self, prompt_index: int, n: int, on_done: Callable[[int], None] | None):
        self.prompt_index, self.on_done = prompt_index, on_done
        self.texts: list[list[str]] = [[] for _ in range(n)]
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.finished: list[Output | None] = [None] * n

    def add(self, output: Output) -> None:
        self.texts[output.index].append(output.text)
        self.tokens[output.index] += [pick.token for pick in output.tokens]
        if output.finish_reason is not None:
            self.finished[output.index] = output
            if self.on_done and all(self.finished):
                self.on_done(1)

    def completions(self) -> list[Completion]:
        return [Completion(self.prompt_index, index, "".join(texts), tokens, end.finish_reason, end.stop_token)
                for index, (texts, tokens, end) in enumerate(zip(self.texts, self.tokens, self.finished))]
