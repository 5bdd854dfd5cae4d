"""Key maps: declarative rules from checkpoint keys to module keys (``Rename``, ``Drop``, ``Unfuse``, ``Fuse``).

A checkpoint key is claimed by the first rule whose source pattern matches it; keys no rule claims keep their
name. ``KeyMap.plan`` decides from key names and shapes alone what every module tensor will be made of.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Union

import torch

from .errors import KeyMismatchError, _listing


class TensorSource(Protocol):
    """Where rules read tensors from: a checkpoint on disk or an in-memory state dict."""

    def get(self, key: str) -> torch.Tensor: ...

    def get_slice(self, key: str, index: tuple) -> torch.Tensor: ...


@dataclass(frozen=True)
class Assignment:
    """How to produce one module tensor: its key and shape, the checkpoint keys it reads, and a recipe."""

    target: str
    shape: tuple[int, ...]
    sources: tuple[str, ...]
    produce: Callable[[TensorSource], torch.Tensor]


class _Pattern:
    """A key pattern such as ``model.layers.{layer}.mlp.gate.weight``; ``{name}`` matches any non-empty text."""

    _PLACEHOLDER = re.compile(r"\{(\w+)\}")

    def __init__(self, text: str):
        self.text = text
        self.names: list[str] = []
        parts, position = [], 0
        for match in self._PLACEHOLDER.finditer(text):
            parts.append(re.escape(text[position:match.start()]))
            name = match.group(1)
            parts.append(f"(?P={name})" if name in self.names else f"(?P<{name}>.+?)")
            if name not in self.names:
                self.names.append(name)
            position = match.end()
        parts.append(re.escape(text[position:]))
        self._regex = re.compile("".join(parts))

    def match(self, key: str) -> dict[str, str] | None:
        found = self._regex.fullmatch(key)
        return None if found is None else found.groupdict()

    def format(self, values: Mapping[str, object]) -> str:
        return self._PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)


def _require_names(rule: object, pattern: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    names = set(_Pattern(pattern).names)
    allowed, required = set(allowed), set(required)
    if not names <= allowed or not required <= names:
        raise ValueError(
            f"{rule}: pattern {pattern!r} uses placeholders {sorted(names)}, but may use only {sorted(allowed)}"
            + (f" and must use {sorted(required)}" if required else "")
        )


@dataclass(frozen=True)
class Rename:
    """One checkpoint key to one module key, unchanged tensor. ``target`` may use ``source``'s placeholders."""

    source: str
    target: str

    def __post_init__(self):
        _require_names(self, self.target, _Pattern(self.source).names)

    def source_patterns(self) -> tuple[str, ...]:
        return (self.source,)

    def inverse(self) -> "Rename":
        return Rename(self.target, self.source)

    def plan(self, matched: dict[str, dict[str, str]], shapes, problems) -> list[Assignment]:
        target = _Pattern(self.target)
        return [Assignment(target.format(values), tuple(shapes[key]), (key,), _reader(key))
                for key, values in matched.items()]


@dataclass(frozen=True)
class Drop:
    """Checkpoint keys to ignore on purpose (e.g. buffers another implementation persists but recomputes)."""

    pattern: str

    def source_patterns(self) -> tuple[str, ...]:
        return (self.pattern,)

    def inverse(self) -> None:
        return None  # nothing to produce in the other direction

    def plan(self, matched, shapes, problems) -> list[Assignment]:
        return []


@dataclass(frozen=True)
class Unfuse:
    """Split a stacked tensor into one tensor per index, and each of those into equal chunks.

    ``source`` has shape ``(N, *item)``. ``item`` is cut into ``len(targets)`` equal chunks along
    ``chunk_dim`` (a dimension of ``item``); chunk ``j`` of ``source[n]`` becomes ``targets[j]`` with
    placeholder ``{index}`` = n. Example: a fused ``gate_up_proj`` of shape (E, 2I, H) with targets
    ``(...experts.{expert}.w1.weight, ...experts.{expert}.w3.weight)`` gives w1 = [e, :I], w3 = [e, I:].
    Reads each piece with a sliced read, so the fused tensor is never held whole.
    """

    source: str
    targets: tuple[str, ...]
    index: str
    chunk_dim: int = 0

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        names = _Pattern(self.source).names
        if self.index in names:
            raise ValueError(f"{self}: the index placeholder {{{self.index}}} must not appear in the source")
        for target in self.targets:
            _require_names(self, target, [*names, self.index], required=[self.index])

    def source_patterns(self) -> tuple[str, ...]:
        return (self.source,)

    def inverse(self) -> "Fuse":
        return Fuse(self.targets, self.source, self.index, self.chunk_dim)

    def plan(self, matched, shapes, problems) -> list[Assignment]:
        assignments = []
        pieces = len(self.targets)
        targets = [_Pattern(target) for target in self.targets]
        for key, values in matched.items():
            shape = tuple(shapes[key])
            item = shape[1:]
            if not item or not 0 <= self.chunk_dim < len(item) or item[self.chunk_dim] % pieces:
                problems.append(
                    f"cannot unfuse {key} of shape {shape} into {pieces} chunk(s) along dim "
                    f"{self.chunk_dim + 1}: the checkpoint is not in the layout this key map expects"
                )
                continue
            width = item[self.chunk_dim] // pieces
            chunk_shape = item[:self.chunk_dim] + (width,) + item[self.chunk_dim + 1:]
            for n in range(shape[0]):
                for j, target in enumerate(targets):
                    window = (n,) + (slice(None),) * self.chunk_dim + (slice(j * width, (j + 1) * width),)
                    name = target.format({**values, self.index: n})
                    assignments.append(Assignment(name, chunk_shape, (key,), _slice_reader(key, window)))
        return assignments


@dataclass(frozen=True)
class Fuse:
    """The inverse of ``Unfuse``: stack per-index tensors, each the concatenation of ``len(sources)`` chunks.

    Every source pattern carries the ``{index}`` placeholder, whose values must be the integers 0..N-1.
    """

    sources: tuple[str, ...]
    target: str
    index: str
    chunk_dim: int = 0

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        names = set(_Pattern(self.sources[0]).names)
        for source in self.sources:
            # Every source must carry the same placeholders, or parts could not be grouped per target.
            _require_names(self, source, names, required=names | {self.index})
        _require_names(self, self.target, names - {self.index})

    def source_patterns(self) -> tuple[str, ...]:
        return self.sources

    def inverse(self) -> Unfuse:
        return Unfuse(self.target, self.sources, self.index, self.chunk_dim)

    def plan(self, matched, shapes, problems) -> list[Assignment]:
        sources = [_Pattern(source) for source in self.sources]
        groups: dict[tuple, dict[tuple[int, int], str]] = {}
        for key, values in matched.items():
            pattern_number = next(j for j, s in enumerate(sources) if s.match(key) is not None)
            if not values[self.index].isdigit():
                problems.append(f"cannot fuse {key}: its {{{self.index}}} is {values[self.index]!r}, not an integer")
                continue
            group = tuple(sorted((k, v) for k, v in values.items() if k != self.index))
            groups.setdefault(group, {})[(pattern_number, int(values[self.index]))] = key

        assignments = []
        for group, parts in groups.items():
            values = dict(group)
            target = _Pattern(self.target).format(values)
            count = 1 + max(n for _, n in parts)
            wanted = [(j, n) for n in range(count) for j in range(len(self.sources))]
            absent = [sources[j].format({**values, self.index: n})
                      for j, n in wanted if (j, n) not in parts]
            if absent:
                problems.append(f"cannot build {target}: missing " + ", ".join(absent))
                continue
            part_keys = [parts[slot] for slot in wanted]
            chunk_shapes = {tuple(shapes[key]) for key in part_keys}
            if len(chunk_shapes) != 1:
                problems.append(f"cannot build {target}: its parts have different shapes {sorted(chunk_shapes)}")
                continue
            chunk = chunk_shapes.pop()
            if not 0 <= self.chunk_dim < len(chunk):
                problems.append(f"cannot build {target}: parts of shape {chunk} have no dim {self.chunk_dim}")
                continue
            item = list(chunk)
            item[self.chunk_dim] *= len(self.sources)
            shape = (count, *item)
            assignments.append(Assignment(target, shape, tuple(part_keys),
                                          _fusing_reader(part_keys, shape, len(self.sources), self.chunk_dim)))
        return assignments


Rule = Union[Rename, Drop, Unfuse, Fuse]


def _reader(key: str) -> Callable[[TensorSource], torch.Tensor]:
    return lambda source: source.get(key)


def _slice_reader(key: str, window: tuple) -> Callable[[TensorSource], torch.Tensor]:
    return lambda source: source.get_slice(key, window)


def _fusing_reader(part_keys: list[str], shape: tuple[int, ...], pieces: int, chunk_dim: int):
    def produce(source: TensorSource) -> torch.Tensor:
        result = None
        for position, key in enumerate(part_keys):  # ordered (n, j): index-major, then chunk
            part = source.get(key)
            if result is None:
                result = torch.empty(shape, dtype=part.dtype, device=part.device)
            n, j = divmod(position, pieces)
            width = part.shape[chunk_dim]
            result[n].narrow(chunk_dim, j * width, width).copy_(part)
            del part  # keep at most one part alive next to the result
        return result
    return produce


@dataclass(frozen=True)
class KeyMap:
    """An ordered list of rules. A key is claimed by the first rule that matches it; others keep their name."""

    rules: tuple[Rule, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))

    def __add__(self, other: "KeyMap") -> "KeyMap":
        return KeyMap(self.rules + other.rules)

    def inverse(self) -> "KeyMap":
        """The map in the other direction. ``Drop`` rules have no inverse and are left out."""
        inverted = (rule.inverse() for rule in self.rules)
        return KeyMap(tuple(rule for rule in inverted if rule is not None))

    def plan(self, shapes: Mapping[str, Sequence[int]]) -> "Plan":
        """Decide, from checkpoint key names and shapes alone, what every module tensor will be made of."""
        patterns = [[_Pattern(p) for p in rule.source_patterns()] for rule in self.rules]
        claimed: list[dict[str, dict[str, str]]] = [{} for _ in self.rules]
        passthrough = []
        for key in shapes:
            for number, rule_patterns in enumerate(patterns):
                values = next((v for v in (p.match(key) for p in rule_patterns) if v is not None), None)
                if values is not None:
                    claimed[number][key] = values
                    break
            else:
                passthrough.append(key)

        problems: list[str] = []
        assignments = [Assignment(key, tuple(shapes[key]), (key,), _reader(key)) for key in passthrough]
        dropped = []
        for rule, matched in zip(self.rules, claimed):
            if isinstance(rule, Drop):
                dropped.extend(matched)
            assignments.extend(rule.plan(matched, shapes, problems))

        by_target: dict[str, list[Assignment]] = {}
        for assignment in assignments:
            by_target.setdefault(assignment.target, []).append(assignment)
        for target, producers in by_target.items():
            if len(producers) > 1:
                sources = sorted({s for a in producers for s in a.sources})
                problems.append(f"{target} would be produced from several checkpoint keys: {', '.join(sources)}")
        return Plan(tuple(assignments), tuple(dropped), tuple(problems))


@dataclass(frozen=True)
class Plan:
    """The outcome of ``KeyMap.plan``: assignments, checkpoint keys dropped on purpose, and problems."""

    assignments: tuple[Assignment, ...]
    dropped: tuple[str, ...]
    problems: tuple[str, ...]


def _as_key_map(key_map: KeyMap | Sequence[Rule] | None) -> KeyMap:
    if key_map is None:
        return KeyMap()
    return key_map if isinstance(key_map, KeyMap) else KeyMap(tuple(key_map))


class _DictSource:
    def __init__(self, state_dict: Mapping[str, torch.Tensor]):
        self.state_dict = state_dict

    def get(self, key: str) -> torch.Tensor:
        return self.state_dict[key]

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        return self.state_dict[key][index]


def convert_state_dict(state_dict: Mapping[str, torch.Tensor],
                       key_map: KeyMap | Sequence[Rule]) -> dict[str, torch.Tensor]:
    """Apply ``key_map`` to an in-memory state dict. Results may share memory with the input (views)."""
    plan = _as_key_map(key_map).plan({key: tuple(t.shape) for key, t in state_dict.items()})
    if plan.problems:
        raise KeyMismatchError("cannot convert the state dict:\n" + _listing(plan.problems),
                               problems=plan.problems)
    source = _DictSource(state_dict)
    return {a.target: a.produce(source) for a in plan.assignments}
