"""Generation for `MiniMaxText01ForCausalLM` on token ids (or prompt embeddings): the text model alone can chat.

    engine = Generator(model, decode=tokenizer.decode)
    out = engine.generate(prompt_ids, max_new_tokens=64)               # -> GenerationOutput
    prefix = engine.prefill(system_ids)                                  # -> PrefixState, computed once
    answer = engine.generate(prefix, question_ids, do_sample=True, seed=0)   # continues from a COPY of prefix
    for piece in engine.stream(prompt_ids, stop_strings=["\\n\\n"]):       # text pieces as they are decided
        print(piece, end="")

The work is done by small functions (gpt-fast style) that the engine strings together:
`prefill` (prompt in chunks), `decode_one_token`, `process_logits` (repetition penalty, min-new-tokens) and
`sample` (greedy / temperature / top-k / top-p). Decoding cost per token is constant in the lightning layers
(a [B, H, D, D] state) and linear in the context only in the softmax layers (text_backbone/cache.py).

Batches are left padded (`attention_mask` [B, T], 1 = token): pads never touch a lightning state or an attention
score, and positions count real tokens only, so a padded row generates exactly what it would alone. Rows that
finish are dropped from the batch (`HybridCache.select_rows`), so they cost nothing afterwards.

Shapes: B batch rows, T prompt tokens, V vocabulary, C hidden size.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

from text_backbone.cache import HybridCache
from text_backbone.weights_io import atomic_write_text

GENERATION_CONFIG_NAME = "generation_config.json"

Decode = Callable[[list[int]], str]


# ----------------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class GenerationConfig:
    """How to pick the next tokens and when to stop. Validated on construction and on `replace`.

    Defaults are greedy decoding of up to 256 tokens. `top_k = 0` and `top_p = 1.0` switch those filters off;
    they and `temperature` only act when `do_sample` is true. Stop strings need a `decode` function.
    """

    max_new_tokens: int = 256
    min_new_tokens: int = 0  # end-of-sequence ids are forbidden until this many tokens were generated
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0  # > 1 discourages every token already in the prompt ids or the output
    eos_token_id: list[int] = field(default_factory=list)
    stop_strings: list[str] = field(default_factory=list)
    pad_token_id: int | None = None  # fills `GenerationOutput.sequences` after a row ended
    prefill_chunk_size: int = 2048  # prompt tokens per forward: bounds prefill memory
    seed: int | None = None  # seeds a private torch.Generator for sampling; None uses torch's global RNG

    def __post_init__(self) -> None:
        if isinstance(self.eos_token_id, int):
            self.eos_token_id = [self.eos_token_id]
        self.eos_token_id = list(self.eos_token_id or [])
        if isinstance(self.stop_strings, str):
            self.stop_strings = [self.stop_strings]
        self.stop_strings = list(self.stop_strings or [])
        problems = []

        def is_int(x):
            return isinstance(x, int) and not isinstance(x, bool)

        for name in ("max_new_tokens", "min_new_tokens", "top_k"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                problems.append(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if is_int(self.min_new_tokens) and is_int(self.max_new_tokens) and self.min_new_tokens > self.max_new_tokens:
            problems.append(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        if not isinstance(self.do_sample, bool):
            problems.append(f"do_sample must be true or false, got {self.do_sample!r}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature!r}; for greedy decoding set "
                            "do_sample=False")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}")
        if not all(is_int(t) and t >= 0 for t in self.eos_token_id):
            problems.append(f"eos_token_id must be token ids >= 0, got {self.eos_token_id!r}")
        if not all(isinstance(s, str) and s for s in self.stop_strings):
            problems.append(f"stop_strings must be non-empty strings, got {self.stop_strings!r}")
        if self.pad_token_id is not None and (not is_int(self.pad_token_id) or self.pad_token_id < 0):
            problems.append(f"pad_token_id must be None or a token id >= 0, got {self.pad_token_id!r}")
        if not is_int(self.prefill_chunk_size) or self.prefill_chunk_size < 1:
            problems.append(f"prefill_chunk_size must be an integer >= 1, got {self.prefill_chunk_size!r}")
        if self.seed is not None and not is_int(self.seed):
            problems.append(f"seed must be None or an integer, got {self.seed!r}")
        if problems:
            raise ValueError("invalid GenerationConfig: " + "; ".join(problems))

    def replace(self, **changes: Any) -> "GenerationConfig":
        """A validated copy with some fields changed (unknown names raise TypeError naming them)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; known: "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "GenerationConfig":
        """Reads our fields; other keys (transformers writes `transformers_version`, `bos_token_id`, ...) are
        ignored with one warning naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(raw) - known)
        if ignored:
            warnings.warn(f"generation config: ignoring unsupported key(s) {ignored}", stacklevel=2)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, directory: str | Path) -> Path:
        """Writes `directory/generation_config.json` atomically (a reader never sees half a file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / GENERATION_CONFIG_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GenerationConfig":
        """Reads `generation_config.json` from a folder (or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / GENERATION_CONFIG_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            message = f"no {GENERATION_CONFIG_NAME} at {path}; write one with GenerationConfig.save"
            raise FileNotFoundError(message) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
        return cls.from_dict(raw)


# ----------------------------------------------------------------------------------------------------------------------
# The small functions
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def prefill(
    model,
    input_ids: torch.Tensor | None = None,
    *,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    cache: HybridCache,
    chunk_size: int = 2048,
    backend: str = "auto",
) -> torch.Tensor:
    """Runs a prompt (ids [B, T] or embeddings [B, T, C]) through the model `chunk_size` tokens at a time,
    extending `cache`; returns the logits of the last position [B, V] (fp32).

    Lightning layers carry their state from chunk to chunk through the chunked op (never token by token), and
    softmax layers attend to the cached keys, so the result equals one forward over the whole prompt while
    activations stay bounded by the chunk. attention_mask [B, T] covers this call's tokens (left padding).
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    tokens = input_ids if input_ids is not None else inputs_embeds
    B, T = tokens.shape[:2]
    if T == 0:
        raise ValueError("the prompt is empty; prefill needs at least one token")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if attention_mask is not None:
        if attention_mask.shape != (B, T):
            raise ValueError(f"attention_mask must be [B, T] = {(B, T)} for this prompt, "
                             f"got {tuple(attention_mask.shape)}")
        if not bool(attention_mask[:, -1].all()):
            raise ValueError("the last prompt position is padding in some row: generation needs LEFT padding "
                             "(pads before the tokens), so every row ends with a real token")
    logits = None
    for start in range(0, T, chunk_size):
        end = min(T, start + chunk_size)
        out = model(
            input_ids[:, start:end] if input_ids is not None else None,
            inputs_embeds=inputs_embeds[:, start:end] if inputs_embeds is not None else None,
            attention_mask=attention_mask[:, start:end] if attention_mask is not None else None,
            cache=cache, logits_to_keep=1, backend=backend,
        )
        logits = out.logits[:, -1]
    return logits


@torch.no_grad()
def decode_one_token(model, tokens: torch.Tensor, cache: HybridCache, *, backend: str = "auto") -> torch.Tensor:
    """tokens [B] (the last sampled token of every row) -> logits for the next position [B, V] (fp32)."""
    return model(tokens[:, None], cache=cache, logits_to_keep=1, backend=backend).logits[:, -1]


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: the logit of every seen token moves toward "less likely" (divided by the penalty when
    positive, multiplied when negative). logits [B, V]; seen [B, V] bool."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def process_logits(
    logits: torch.Tensor, config: GenerationConfig, *, num_generated: int, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """Rules that apply before sampling: repetition penalty (with `seen` [B, V]) and no end-of-sequence before
    `min_new_tokens`. logits [B, V] -> [B, V]."""
    if config.repetition_penalty != 1.0 and seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if num_generated < config.min_new_tokens and config.eos_token_id:
        logits = logits.index_fill(-1, torch.tensor(config.eos_token_id, device=logits.device), float("-inf"))
    return logits


def sample(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> next tokens [B]: argmax when not sampling, else temperature, top-k, top-p, then a draw."""
    if not config.do_sample:
        return logits.argmax(dim=-1)
    logits = logits / config.temperature
    if config.top_k:
        kth_best = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the better tokens
        # Keep the smallest head of the ranking whose mass reaches top_p (the best token always survives).
        sorted_logits = sorted_logits.masked_fill(mass_before >= config.top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------------------------------------------------
# Text: incremental decoding and stop strings
# ----------------------------------------------------------------------------------------------------------------------


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text pieces whose concatenation is the decoded text.

    Decoding ids one by one is wrong for byte-level vocabularies (a character split over two tokens) and for
    decoders that drop a leading space at the start of a decode call. So we decode a short window: the ids
    since the previous piece's start (`prefix`) with and without the new ids, emit the difference, and wait
    while the text ends in U+FFFD (an unfinished multi-byte character).
    """

    def __init__(self, decode: Decode) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # ids up to here are already emitted

    def push(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        done = self.decode(self.ids[self._prefix : self._read])
        now = self.decode(self.ids[self._prefix :])
        if len(now) > len(done) and not now.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return now[len(done) :]
        return ""

    def flush(self) -> str:
        """The rest of the text, including an unfinished character (as U+FFFD)."""
        done = self.decode(self.ids[self._prefix : self._read])
        now = self.decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return now[len(done) :]


class _RowText:
    """Text of one generated row: stop-string search and what may be streamed yet."""

    def __init__(self, decode: Decode, stop_strings: list[str]) -> None:
        self.detokenizer = IncrementalDetokenizer(decode)
        self.stop_strings = stop_strings
        self.hold_back = max((len(s) for s in stop_strings), default=1) - 1  # a stop string may be half written
        self.text = ""
        self.emitted = 0

    def add(self, token: int) -> bool:
        """Appends a token; True when a stop string appeared (the text is cut before it)."""
        return self._extend(self.detokenizer.push([token]))

    def finish(self) -> bool:
        return self._extend(self.detokenizer.flush())

    def _extend(self, piece: str) -> bool:
        searched_from = max(0, len(self.text) - self.hold_back)
        self.text += piece
        hits = [i for i in (self.text.find(s, searched_from) for s in self.stop_strings) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
        return bool(hits)

    def take(self, final: bool) -> str:
        """New text that is safe to show: all of it at the end, else all but a possible stop-string prefix."""
        ready = len(self.text) if final else max(self.emitted, len(self.text) - self.hold_back)
        piece, self.emitted = self.text[self.emitted : ready], ready
        return piece


# ----------------------------------------------------------------------------------------------------------------------
# Engine
# ----------------------------------------------------------------------------------------------------------------------


class TokenStreamer(Protocol):
    """transformers' streamer protocol: `put` gets each step's new token ids, `end` is called once at the end.
    `text_backbone.streamers` has two: print as text arrives, or iterate over it from another thread."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


@dataclass
class PrefixState:
    """A processed prompt: the cache after it, the logits for the next position, and the prompt ids.

    `Generator.generate(state, ...)` never changes a state (it works on a copy), so one state serves many
    continuations. token_ids [B, L] are the ids of the cached positions, -1 where the position was padding
    or came from `inputs_embeds` (they feed the repetition penalty).
    """

    cache: HybridCache
    last_logits: torch.Tensor  # [B, V] fp32
    token_ids: torch.Tensor  # [B, L] int64

    @property
    def length(self) -> int:
        """Positions in the cache, padding included."""
        return self.cache.seq_len

    @property
    def batch_size(self) -> int:
        return self.last_logits.shape[0]

    def copy(self, *, capacity: int | None = None) -> "PrefixState":
        """An independent copy; `capacity` sizes its softmax buffers (see `HybridCache.copy`)."""
        return PrefixState(self.cache.copy(capacity=capacity), self.last_logits.clone(), self.token_ids.clone())

    def select_rows(self, indices: list[int]) -> "PrefixState":
        """A new state holding rows `indices` of this one (repeats allowed: `[0] * n` fans a prompt out)."""
        cache = self.cache.copy()
        cache.select_rows(indices)
        index = torch.as_tensor(indices, dtype=torch.long, device=self.last_logits.device)
        return PrefixState(cache, self.last_logits.index_select(0, index), self.token_ids.index_select(0, index))


@dataclass
class GenerationOutput:
    """What `Generator.generate` returns, one entry per input row."""

    tokens: list[list[int]]  # new tokens; the end-of-sequence token that ended a row is included
    finish_reasons: list[str]  # "eos", "stop_string" or "length"
    texts: list[str] | None = None  # decoded new text (no eos, cut before a stop string) when decode is given
    logits: list[torch.Tensor] | None = None  # per row [N, V] processed logits of each step (return_logits=True)

    def sequences(self, pad_token_id: int) -> torch.Tensor:
        """New tokens as one [B, max N] tensor, right-padded with `pad_token_id`."""
        width = max((len(t) for t in self.tokens), default=0)
        return torch.tensor([t + [pad_token_id] * (width - len(t)) for t in self.tokens], dtype=torch.long)


class Generator:
    """Generation for one `MiniMaxText01ForCausalLM` (or any model with its forward and `new_cache`).

    decode: ids -> str, needed for text output, streaming text and stop strings.
    config: default settings; every call may override fields by keyword (`generate(ids, top_p=0.9)`).
    """

    def __init__(self, model, *, decode: Decode | None = None, config: GenerationConfig | None = None,
                 backend: str = "auto") -> None:
        self.model = model
        self.decode = decode
        self.config = config or GenerationConfig()
        self.backend = backend

    # ------------------------------------------------------------------ prompts
    def prefill(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        reserve: int = 0,
    ) -> PrefixState:
        """Processes a prompt from scratch. `reserve` extra positions are allocated in the softmax buffers now
        (e.g. the tokens you will generate), so decoding never reallocates them."""
        cache = self.model.new_cache()
        tokens = input_ids if input_ids is not None else inputs_embeds
        if tokens is None:
            raise ValueError("pass input_ids or inputs_embeds")
        cache.reserve(tokens.shape[1] + reserve)
        logits = prefill(
            self.model, input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache,
            chunk_size=chunk_size or self.config.prefill_chunk_size, backend=self.backend,
        )
        return PrefixState(cache, logits, _known_ids(input_ids, attention_mask, tokens))

    def extend(
        self,
        state: PrefixState,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
        reserve: int = 0,
    ) -> PrefixState:
        """A new state: `state` followed by more tokens (state is not changed). A one-row state is fanned out to
        the batch of the new tokens; rows of different lengths are left padded with `attention_mask`."""
        tokens = input_ids if input_ids is not None else inputs_embeds
        if tokens is None:
            raise ValueError("pass input_ids or inputs_embeds")
        B, total = tokens.shape[0], state.length + tokens.shape[1] + reserve
        if state.batch_size == B:
            state = state.copy(capacity=total)
        elif state.batch_size == 1:
            state = state.select_rows([0] * B)
        else:
            raise ValueError(f"the prefix has {state.batch_size} rows and the continuation {B}; they must match, "
                             "or the prefix must have one row (it is then shared by every continuation)")
        state.cache.reserve(total)
        logits = prefill(
            self.model, input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=state.cache,
            chunk_size=chunk_size or self.config.prefill_chunk_size, backend=self.backend,
        )
        token_ids = torch.cat([state.token_ids, _known_ids(input_ids, attention_mask, tokens)], dim=1)
        return PrefixState(state.cache, logits, token_ids)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompt: torch.Tensor | PrefixState | None = None,
        continuation_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        config: GenerationConfig | None = None,
        streamer: TokenStreamer | None = None,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        **overrides: Any,
    ) -> GenerationOutput:
        """Generates for a prompt: ids [B, T], `inputs_embeds` [B, T, C], or a `PrefixState` optionally followed
        by `continuation_ids` [B, T'] (attention_mask then covers the continuation only).

        Settings come from `config` (or the engine's), with keyword overrides (`max_new_tokens=32`, ...).
        `generator` overrides `seed`. `return_logits` keeps each step's logits after the repetition penalty and
        the min-new-tokens rule, before temperature / top-k / top-p.
        """
        cfg = self._settings(config, overrides)
        state = self._start(prompt, continuation_ids, inputs_embeds, attention_mask, cfg)
        if streamer is not None and state.batch_size != 1:
            raise ValueError(f"a streamer follows one sequence, but the batch has {state.batch_size} rows")
        steps = self._decode_loop(state, cfg, streamer=streamer, generator=generator, return_logits=return_logits)
        while True:  # run the loop to its end; its return value is the output
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def stream(
        self,
        prompt: torch.Tensor | PrefixState | None = None,
        continuation_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        config: GenerationConfig | None = None,
        generator: torch.Generator | None = None,
        **overrides: Any,
    ) -> Iterator[str]:
        """Like `generate` for one row, but yields text pieces as soon as they are final (a possible start of a
        stop string is held back). Joined, the pieces equal `generate(...).texts[0]`."""
        if self.decode is None:
            raise ValueError("streaming text needs a decode function: Generator(model, decode=tokenizer.decode)")
        cfg = self._settings(config, overrides)
        state = self._start(prompt, continuation_ids, inputs_embeds, attention_mask, cfg)
        if state.batch_size != 1:
            raise ValueError(f"stream() follows one row, got {state.batch_size}; use generate() for batches")
        for pieces in self._decode_loop(state, cfg, streamer=None, generator=generator, return_logits=False):
            if pieces[0]:
                yield pieces[0]

    def _settings(self, config: GenerationConfig | None, overrides: dict[str, Any]) -> GenerationConfig:
        cfg = config or self.config
        cfg = cfg.replace(**overrides) if overrides else cfg
        if cfg.stop_strings and self.decode is None:
            raise ValueError("stop_strings need a decode function: Generator(model, decode=tokenizer.decode)")
        return cfg

    def _decode_loop(self, state: PrefixState, cfg: GenerationConfig, *, streamer, generator, return_logits):
        """The decode loop as a Python generator over a private `state`: yields each step's new text per input
        row (a list of str, all empty without decode) and returns the GenerationOutput."""
        B, device = state.batch_size, state.last_logits.device
        if generator is None and cfg.seed is not None and cfg.do_sample:
            generator = torch.Generator(device=device).manual_seed(cfg.seed)
        cache, logits = state.cache, state.last_logits
        active = list(range(B))  # the input row of each cache row; finished rows leave the cache
        tokens: list[list[int]] = [[] for _ in range(B)]
        reasons: list[str | None] = [None] * B
        texts = [_RowText(self.decode, cfg.stop_strings) for _ in range(B)] if self.decode else None
        kept_logits: list[list[torch.Tensor]] = [[] for _ in range(B)]
        seen = _seen_tokens(state.token_ids, logits.shape[-1]) if cfg.repetition_penalty != 1.0 else None
        eos = set(cfg.eos_token_id)
        try:
            for step in range(cfg.max_new_tokens):
                scores = process_logits(logits, cfg, num_generated=step, seen=seen)
                next_tokens = sample(scores, cfg, generator)  # [b]
                if streamer is not None:
                    streamer.put(next_tokens.cpu())
                if seen is not None:
                    seen[torch.arange(len(active), device=seen.device), next_tokens] = True
                pieces = [""] * B
                for j, (row, token) in enumerate(zip(active, next_tokens.tolist())):
                    tokens[row].append(token)
                    if return_logits:
                        kept_logits[row].append(scores[j])
                    if token in eos:
                        reasons[row] = "eos"
                    elif texts is not None and texts[row].add(token):
                        reasons[row] = "stop_string"
                    elif step + 1 == cfg.max_new_tokens:
                        reasons[row] = "length"
                    if texts is not None:
                        if reasons[row] in ("eos", "length") and texts[row].finish():
                            reasons[row] = "stop_string"  # the final flush completed a stop string
                        pieces[row] = texts[row].take(final=reasons[row] is not None)
                yield pieces
                keep = [j for j, row in enumerate(active) if reasons[row] is None]
                if not keep:
                    break
                if len(keep) < len(active):  # drop finished rows: they cost nothing from now on
                    cache.select_rows(keep)
                    index = torch.tensor(keep, device=device)
                    next_tokens = next_tokens.index_select(0, index)
                    seen = seen.index_select(0, index) if seen is not None else None
                    active = [active[j] for j in keep]
                logits = decode_one_token(self.model, next_tokens, cache, backend=self.backend)
        finally:
            if streamer is not None:
                streamer.end()
        return GenerationOutput(
            tokens=tokens,
            finish_reasons=[r or "length" for r in reasons],  # r is None only when max_new_tokens == 0
            texts=[t.text for t in texts] if texts is not None else None,
            logits=[torch.stack(rows) if rows else logits.new_zeros(0, logits.shape[-1]) for rows in kept_logits]
            if return_logits else None,
        )

    def _start(self, prompt, continuation_ids, inputs_embeds, attention_mask, cfg) -> PrefixState:
        """A fresh PrefixState of the prompt with room for max_new_tokens more positions."""
        if isinstance(prompt, PrefixState):
            if continuation_ids is None and inputs_embeds is None:
                if attention_mask is not None:
                    raise ValueError("attention_mask was given without continuation tokens; a PrefixState "
                                     "already holds its mask")
                state = prompt.copy(capacity=prompt.length + cfg.max_new_tokens)
                state.cache.reserve(state.length + cfg.max_new_tokens)
                return state
            return self.extend(prompt, continuation_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               chunk_size=cfg.prefill_chunk_size, reserve=cfg.max_new_tokens)
        if continuation_ids is not None:
            raise ValueError("continuation_ids continue a PrefixState; pass a plain prompt as the first argument")
        if (prompt is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one prompt: input ids, inputs_embeds=..., or a PrefixState")
        return self.prefill(prompt, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            chunk_size=cfg.prefill_chunk_size, reserve=cfg.max_new_tokens)


def _known_ids(input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, tokens: torch.Tensor):
    """Prompt ids [B, T] with -1 where a position is padding or was given as an embedding."""
    if input_ids is None:
        return torch.full(tokens.shape[:2], -1, dtype=torch.long, device=tokens.device)
    ids = input_ids.long()
    return ids if attention_mask is None else ids.masked_fill(attention_mask == 0, -1)


def _seen_tokens(token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, L] ids (-1 = unknown) -> [B, V] bool: which tokens each row has seen."""
    seen = torch.zeros(token_ids.shape[0], vocab_size + 1, dtype=torch.bool, device=token_ids.device)
    seen.scatter_(1, token_ids.masked_fill(token_ids < 0, vocab_size), True)  # unknowns land in a spare column
    return seen[:, :vocab_size].contiguous()
