"""Loading: strict, streaming ``load_into_module`` and ``load_state_dict`` (see the package docstring)."""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, KeyMismatchError, _listing
from .files import PathLike
from .keymaps import Assignment, KeyMap, Plan, Rule, _as_key_map
from .reading import CheckpointInfo, CheckpointReader, inspect_checkpoint

DERIVED_BUFFERS_HOOK = "reset_derived_buffers"


@dataclass(frozen=True)
class LoadReport:
    """What ``load_into_module`` did.

    loaded: module keys filled from the checkpoint. missing: module keys left as they were (allowed).
    unexpected: module-side names in the checkpoint the module lacks (allowed, skipped).
    dropped: checkpoint keys ignored by ``Drop`` rules.
    """

    checkpoint: Path
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    dropped: tuple[str, ...]


def _reading_order(plan: Plan, checkpoint: CheckpointInfo) -> list[Assignment]:
    """File by file, and within a file by offset, so reads are sequential and each file is opened once."""
    file_number = {file: number for number, file in enumerate(checkpoint.files)}

    def position(assignment: Assignment) -> tuple[int, int]:
        infos = [checkpoint.tensors[key] for key in assignment.sources]
        return max(file_number[i.file] for i in infos), min(i.offset for i in infos)

    return sorted(plan.assignments, key=position)


def _matches_any(names: Iterable[str], patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def _check_against_module(plan: Plan, expected: Mapping[str, tuple[int, ...]], module: nn.Module,
                          where: Path, allow_missing: Sequence[str], allow_unexpected: Sequence[str]):
    """Compare planned tensors with the module's state dict; raise one KeyMismatchError listing everything."""
    produced = {a.target: a for a in plan.assignments}
    missing = sorted(key for key in expected if key not in produced and not _matches_any([key], allow_missing))
    unexpected, skipped = [], []
    for target, assignment in produced.items():
        if target not in expected:
            allowed = _matches_any((target, *assignment.sources), allow_unexpected)
            (skipped if allowed else unexpected).append(target)
    mismatched = [(target, a.shape, expected[target], a.sources) for target, a in produced.items()
                  if target in expected and tuple(a.shape) != tuple(expected[target])]

    if not (missing or unexpected or mismatched or plan.problems):
        return sorted(skipped)
    derived = _non_persistent_buffer_names(module)
    sections = [f"checkpoint {where} does not fit {type(module).__name__}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected, {len(mismatched)} with the wrong shape"
                + (f", {len(plan.problems)} conversion problem(s)" if plan.problems else "")]
    if missing:
        sections.append("missing (the module has them, the checkpoint does not):\n" + _listing(missing))
    if unexpected:
        described = [_described(t, produced[t].sources) + ("  <- a non-persistent buffer: recomputed, never loaded;"
                                                           " drop it from the checkpoint" if t in derived else "")
                     for t in sorted(unexpected)]
        sections.append("unexpected (the checkpoint has them, the module does not):\n" + _listing(described))
    if mismatched:
        lines = [f"{_described(t, sources)}: checkpoint {tuple(got)}, module expects {tuple(want)}"
                 for t, got, want, sources in sorted(mismatched)]
        sections.append("wrong shape:\n" + _listing(lines))
    if plan.problems:
        sections.append("conversion problems:\n" + _listing(plan.problems))
    sections.append("Fix: load with the key_map for this checkpoint's layout and a module built with the "
                    "checkpoint's config, or list intentional gaps in allow_missing / allow_unexpected.")
    raise KeyMismatchError("\n".join(sections), missing=missing, unexpected=sorted(unexpected),
                           mismatched=sorted(mismatched), problems=plan.problems)


def _described(target: str, sources: Sequence[str]) -> str:
    if tuple(sources) == (target,):
        return target
    shown = ", ".join(sources[:3]) + (", ..." if len(sources) > 3 else "")
    return f"{target} (from {shown})"


def _non_persistent_buffer_names(module: nn.Module) -> set[str]:
    names = set()
    for prefix, submodule in module.named_modules(remove_duplicate=False):
        for name in submodule._non_persistent_buffers_set:
            names.add(f"{prefix}.{name}" if prefix else name)
    return names


class _Slots:
    """Finds and replaces a module's tensors by state-dict key, keeping tied aliases tied.

    A tensor that must change device or dtype, or that lives on the meta device, is replaced by a new
    one in every (module, attribute) that refers to it. Otherwise it is overwritten in place, which keeps
    its identity (optimizers and ties see the new values).
    """

    def __init__(self, module: nn.Module, device: torch.device | None, dtype: torch.dtype | None):
        self.module = module
        self.device = device
        self.dtype = dtype
        self.owners: dict[str, tuple[nn.Module, str, str]] = {}  # key -> (owner, "_parameters"|"_buffers", attr)
        self.aliases: dict[int, list[tuple[nn.Module, str, str]]] = {}
        self.derived: set[int] = set()  # ids of non-persistent buffers: they keep their dtype
        for prefix, owner in module.named_modules(remove_duplicate=False):
            for kind in ("_parameters", "_buffers"):
                for attr, tensor in getattr(owner, kind).items():
                    if tensor is None:
                        continue
                    if kind == "_buffers" and attr in owner._non_persistent_buffers_set:
                        self.derived.add(id(tensor))
                    self.owners[f"{prefix}.{attr}" if prefix else attr] = (owner, kind, attr)
                    if (owner, kind, attr) not in self.aliases.setdefault(id(tensor), []):
                        self.aliases[id(tensor)].append((owner, kind, attr))

    def current(self, key: str) -> torch.Tensor | None:
        slot = self.owners.get(key)
        return None if slot is None else getattr(slot[0], slot[1])[slot[2]]

    def wanted(self, tensor: torch.Tensor) -> tuple[torch.device, torch.dtype]:
        device = self.device or (torch.device("cpu") if tensor.is_meta else tensor.device)
        convert = self.dtype is not None and tensor.is_floating_point() and id(tensor) not in self.derived
        return device, self.dtype if convert else tensor.dtype

    def fill(self, key: str, value: torch.Tensor, fallback: torch.Tensor | None) -> None:
        current = self.current(key)
        if current is None:  # a key produced by a custom state_dict hook, not a plain attribute
            if fallback is None or fallback.is_meta:
                raise CheckpointError(f"cannot materialise {key}: it is not a parameter or buffer attribute; "
                                      "build the module on a real device to load it")
            with torch.no_grad():
                fallback.copy_(value)
            return
        device, dtype = self.wanted(current)
        with torch.no_grad():
            if not current.is_meta and current.device == device and current.dtype == dtype:
                current.copy_(value)
            else:
                fresh = torch.empty(tuple(current.shape), dtype=dtype, device=device)
                fresh.copy_(value)
                self.replace(current, fresh)

    def convert_rest(self, loaded_keys: Iterable[str]) -> None:
        """Move tensors that were not loaded to the requested device/dtype (meta ones are left alone)."""
        loaded = {id(self.current(key)) for key in loaded_keys}
        pending: dict[int, torch.Tensor] = {}  # holding references keeps the ids valid
        for key in self.owners:
            tensor = self.current(key)
            if tensor is not None and id(tensor) not in loaded and not tensor.is_meta:
                pending[id(tensor)] = tensor
        for tensor in pending.values():
            device, dtype = self.wanted(tensor)
            if tensor.device != device or tensor.dtype != dtype:
                with torch.no_grad():
                    self.replace(tensor, tensor.to(device=device, dtype=dtype))

    def replace(self, old: torch.Tensor, new: torch.Tensor) -> None:
        if isinstance(old, nn.Parameter):
            new = type(old)(new, requires_grad=old.requires_grad)
        places = self.aliases.pop(id(old), [])
        for owner, kind, attr in places:
            getattr(owner, kind)[attr] = new
        self.aliases[id(new)] = places


def load_into_module(module: nn.Module, checkpoint: PathLike | CheckpointInfo, *,
                     key_map: KeyMap | Sequence[Rule] | None = None, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None, allow_missing: Sequence[str] = (),
                     allow_unexpected: Sequence[str] = ()) -> LoadReport:
    """Load a safetensors checkpoint into ``module``, one tensor at a time, strictly.

    Args:
        module: any ``nn.Module``; may live (wholly or partly) on the meta device.
        checkpoint: a checkpoint directory, a single .safetensors file, or an ``inspect_checkpoint`` result.
        key_map: rules from checkpoint keys to the module's state-dict keys (identity when None).
        dtype: floating-point parameters and persistent buffers end up in this dtype; integer tensors
            and non-persistent (derived) buffers keep theirs, so e.g. decay slopes stay float32 in a
            bfloat16 model. None keeps each tensor's current dtype (a meta tensor's dtype included).
        device: where tensors end up. None keeps real tensors where they are and puts meta ones on CPU.
        allow_missing: module keys (``fnmatch`` patterns) the checkpoint may lack; they are left as they
            are (on the meta device, for a meta module: initialise them yourself).
        allow_unexpected: patterns of checkpoint keys (original or mapped name) the module may lack.

    Before anything is copied, every key and shape is checked and a single ``KeyMismatchError`` lists
    all missing, unexpected and mis-shaped keys. Then each tensor is read, transformed, copied into its
    parameter and dropped. If buffers are still on the meta device afterwards, every submodule that
    defines ``reset_derived_buffers()`` is called to recompute its own; any buffer still on meta after
    that raises ``CheckpointError``.
    """
    info = inspect_checkpoint(checkpoint)
    plan = _as_key_map(key_map).plan(info.shapes)
    state = module.state_dict()
    expected = {key: tuple(tensor.shape) for key, tensor in state.items()}
    skipped = _check_against_module(plan, expected, module, info.path, allow_missing, allow_unexpected)

    device = torch.device(device) if device is not None else None
    slots = _Slots(module, device, dtype)
    # Keep only state-dict tensors that are not plain attributes; holding the rest would keep tensors
    # that are about to be replaced (other device/dtype) alive for the whole load.
    fallbacks = {key: tensor for key, tensor in state.items() if key not in slots.owners}
    del state
    reader = CheckpointReader(info)
    loaded = []
    try:
        for assignment in _reading_order(plan, info):
            if assignment.target not in expected:
                continue  # allowed unexpected
            value = assignment.produce(reader)
            slots.fill(assignment.target, value, fallbacks.get(assignment.target))
            del value
            loaded.append(assignment.target)
    finally:
        reader.close()
    slots.convert_rest(loaded)
    _restore_derived_buffers(module)

    missing = tuple(sorted(set(expected) - set(loaded)))
    return LoadReport(checkpoint=info.path, loaded=tuple(loaded), missing=missing,
                      unexpected=tuple(skipped), dropped=tuple(plan.dropped))


def _meta_buffers(module: nn.Module) -> list[str]:
    return [name for name, buffer in module.named_buffers() if buffer.is_meta]


def _restore_derived_buffers(module: nn.Module) -> None:
    if not _meta_buffers(module):
        return
    for _, submodule in module.named_modules():
        hook = getattr(submodule, DERIVED_BUFFERS_HOOK, None)
        if callable(hook):
            hook()
    still_meta = _meta_buffers(module)
    if still_meta:
        classes = sorted({type(module.get_submodule(name.rpartition(".")[0])).__name__ for name in still_meta})
        raise CheckpointError(
            "after loading, these buffers are still on the meta device (they are not in the checkpoint):\n"
            + _listing(still_meta)
            + f"\nFix: define `{DERIVED_BUFFERS_HOOK}(self)` on {', '.join(classes)} to recompute them, "
            "or build the module on a real device."
        )


def load_state_dict(checkpoint: PathLike | CheckpointInfo, *, key_map: KeyMap | Sequence[Rule] | None = None,
                    device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Read a whole checkpoint into a new state dict (after ``key_map``). Holds every tensor in memory."""
    info = inspect_checkpoint(checkpoint)
    plan = _as_key_map(key_map).plan(info.shapes)
    if plan.problems:
        raise KeyMismatchError(f"cannot convert {info.path}:\n" + _listing(plan.problems), problems=plan.problems)
    reader = CheckpointReader(info)
    result = {}
    try:
        for assignment in _reading_order(plan, info):
            value = assignment.produce(reader)
            # A fresh copy: what safe_open returns may be backed by the memory map we are about to close.
            result[assignment.target] = torch.empty_like(value, device=device).copy_(value)
            del value
    finally:
        reader.close()
    return {a.target: result[a.target] for a in plan.assignments}
