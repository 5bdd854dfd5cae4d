"""Checkpoint I/O: sharded safetensors that save atomically and load streaming and strict.

On disk (the Hugging Face convention, so other tools read our checkpoints and we read theirs)::

    model.safetensors                              everything, when it fits in one shard
    model-00001-of-00003.safetensors, ...          otherwise, plus
    model.safetensors.index.json                   {"metadata": {"total_size": N}, "weight_map": {key: file}}

Only safetensors is read or written. Pickle checkpoints (``pytorch_model.bin``, ``*.pt``) are refused and
never unpickled, because unpickling a file runs whatever code it contains.

Public API
    save_safetensors(state_dict, directory, *, max_shard_size="5GB", metadata=None) -> list[Path]
    load_into_module(module, checkpoint, *, key_map=None, dtype=None, device=None,
                     allow_missing=(), allow_unexpected=()) -> LoadReport
    load_state_dict(checkpoint, *, key_map=None, device="cpu") -> dict[str, Tensor]
    inspect_checkpoint(checkpoint) -> CheckpointInfo          (headers only; reads no tensor data)
    convert_state_dict(state_dict, key_map) -> dict[str, Tensor]
    KeyMap, Rename, Drop, Unfuse, Fuse                          (declarative key-mapping rules)
    read_json(path), write_json(path, obj)                      (write_json is atomic)
    parse_size("5GB") -> int
    CheckpointError and its subclasses

Key maps. A checkpoint key is claimed by the first rule whose source pattern matches it; keys no rule
claims keep their name. Patterns hold named placeholders such as ``{layer}`` that match any non-empty text::

    KeyMap([
        Drop("model.layers.{layer}.self_attn.slope_rate"),
        Rename("model.layers.{layer}.mlp.gate.weight", "model.layers.{layer}.block_sparse_moe.gate.weight"),
        Unfuse("model.layers.{layer}.mlp.experts.down_proj",
               ["model.layers.{layer}.block_sparse_moe.experts.{expert}.w2.weight"], index="expert"),
    ])

Streaming. Loading reads one tensor at a time (``safetensors.safe_open``), transforms it, copies it into
its parameter and drops it; at most one file is memory-mapped at a time, and it is re-opened after every
``REMAP_BYTES`` read so that the mapped pages already copied stop counting against the process. Peak memory
is therefore about the model plus the largest tensor plus ``REMAP_BYTES``.

Meta-device modules. A module built under ``torch.device("meta")`` is materialised tensor by tensor on
``device`` (default CPU) with ``dtype``. Non-persistent buffers are not in checkpoints, so after loading,
every submodule that defines ``reset_derived_buffers(self) -> None`` is called to recompute its derived
buffers (slopes, rotary tables, ...), in the precision it wants, on the device of its (now materialised)
parameters; a buffer still on the meta device after that is an error that names the module to fix.
Parameters that are allowed to be missing stay on the meta device: initialise them yourself.

Atomic saves. Every file is written under a hidden temporary name in the target directory and fsynced;
only when all are written are they renamed into place (shards first, the index last), then files of a
previous checkpoint that no longer belong are removed. An interrupted save leaves the previous checkpoint
loadable. Each save stamps a ``save_id`` into every file's metadata and into the index, so a directory
that mixes shards from two saves is detected at load time instead of silently loading mixed weights.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

__all__ = [
    "SINGLE_FILE", "INDEX_FILE", "DERIVED_BUFFERS_HOOK", "REMAP_BYTES",
    "CheckpointError", "CheckpointNotFoundError", "PickleCheckpointError", "NotSafetensorsError",
    "CorruptFileError", "TruncatedFileError", "MissingShardError", "InconsistentCheckpointError",
    "KeyMismatchError",
    "TensorInfo", "CheckpointInfo", "LoadReport",
    "KeyMap", "Rename", "Drop", "Unfuse", "Fuse", "Assignment", "Plan", "TensorSource",
    "save_safetensors", "load_into_module", "load_state_dict", "inspect_checkpoint", "convert_state_dict",
    "read_safetensors_header",
    "read_json", "write_json", "parse_size",
]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SHARD_NAME = "model-{index:05d}-of-{count:05d}.safetensors"
_SHARD_NAME_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

DERIVED_BUFFERS_HOOK = "reset_derived_buffers"
REMAP_BYTES = 1 << 30  # re-open a memory-mapped file after this many bytes were read from it

_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
_MAX_LISTED = 100  # keys per category spelled out in an error message (all are kept on the exception)

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------

class CheckpointError(Exception):
    """Base class for everything that is wrong with a checkpoint or with loading it."""


class CheckpointNotFoundError(CheckpointError):
    """No safetensors checkpoint at the given path."""


class PickleCheckpointError(CheckpointNotFoundError):
    """The path holds only pickle checkpoints, which are never loaded."""


class NotSafetensorsError(CheckpointError):
    """A file that should be safetensors is something else (text, pickle, another format)."""


class CorruptFileError(CheckpointError):
    """A file is in the right format but its contents are inconsistent (bad JSON, trailing bytes, ...)."""


class TruncatedFileError(CorruptFileError):
    """A safetensors file is shorter than its header says: an interrupted download or copy."""


class MissingShardError(CheckpointError):
    """The index names shard files that are not there."""


class InconsistentCheckpointError(CheckpointError):
    """Index and shards disagree, or the directory mixes files from different saves."""


class KeyMismatchError(CheckpointError):
    """The checkpoint's keys or shapes do not match the module's. Raised once, listing every problem.

    Attributes:
        missing: module keys the checkpoint does not provide.
        unexpected: module-side names the checkpoint provides but the module lacks.
        mismatched: ``(module_key, checkpoint_shape, module_shape, source_keys)`` for wrong shapes.
        problems: other conversion problems (a rule that cannot apply, two sources for one key).
    """

    def __init__(self, message: str, *, missing=(), unexpected=(), mismatched=(), problems=()):
        super().__init__(message)
        self.missing = tuple(missing)
        self.unexpected = tuple(unexpected)
        self.mismatched = tuple(mismatched)
        self.problems = tuple(problems)


# ----------------------------------------------------------------------------------------------------------
# JSON helpers and small utilities
# ----------------------------------------------------------------------------------------------------------

def read_json(path: PathLike):
    """Parse the JSON file at ``path``; invalid JSON raises ``CorruptFileError`` naming file and position."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "the file is damaged or was only partly written: restore or regenerate it"
        ) from None


def write_json(path: PathLike, obj, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: temp file in the same directory, fsync, rename."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same directory, fsync, rename."""
    path = Path(path)
    temp = _temp_path(path)
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string such as "5GB" (10**9) or "500MiB" (2**20)."""
    if isinstance(size, bool):
        raise TypeError("size must be an int or a string such as '5GB', not a bool")
    if isinstance(size, int):
        value = size
    else:
        match = _SIZE_RE.match(str(size))
        if match is None:
            raise ValueError(f"cannot read {size!r} as a size; write e.g. 5000000, '5GB' or '500MiB'")
        value = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if value < 1:
        raise ValueError(f"size must be at least 1 byte, got {size!r}")
    return value


def _temp_path(final: Path) -> Path:
    # Hidden and unique, in the final file's own directory so that os.replace is an atomic rename.
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the renames themselves durable. Not possible on every platform (Windows); harmless to skip there.
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listing(keys: Sequence, indent: str = "    ") -> str:
    lines = [f"{indent}{key}" for key in list(keys)[:_MAX_LISTED]]
    if len(keys) > _MAX_LISTED:
        lines.append(f"{indent}... and {len(keys) - _MAX_LISTED} more")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# Reading headers: what a checkpoint holds, checked before any tensor data is read
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its file, safetensors dtype code (e.g. "BF16"), shape and byte offset."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class CheckpointInfo:
    """A validated checkpoint: its files and, for every key, a ``TensorInfo``. Holds no tensor data."""

    path: Path
    files: tuple[Path, ...]
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: info.shape for key, info in self.tensors.items()}

    @property
    def total_size(self) -> int:
        return sum(_nbytes(info.dtype, info.shape) or 0 for info in self.tensors.values())


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int | None:
    if dtype not in _DTYPE_BYTES:
        return None
    count = 1
    for dim in shape:
        count *= dim
    return count * _DTYPE_BYTES[dtype]


def read_safetensors_header(path: PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and check the header of one safetensors file without reading tensor data.

    Returns ``(tensors, metadata)``. Raises ``NotSafetensorsError`` for a file that does not start with a
    safetensors header, ``TruncatedFileError`` when the header promises more bytes than the file has, and
    ``CorruptFileError`` for inconsistent offsets or trailing bytes.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise TruncatedFileError(f"{path} is empty; re-download or re-save it")
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise NotSafetensorsError(f"{path} is {size} bytes long, too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        first = handle.read(1)
        if first != b"{" or header_len > _MAX_HEADER_BYTES or header_len < 2:
            raise NotSafetensorsError(
                f"{path} is not a safetensors file (it does not start with an 8-byte header length followed "
                "by a JSON header); only safetensors checkpoints are supported"
            )
        if 8 + header_len > size:
            raise TruncatedFileError(
                f"{path} is truncated: its header alone is {header_len} bytes but the file has {size} bytes; "
                "re-download or re-save it"
            )
        raw_header = first + handle.read(header_len - 1)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NotSafetensorsError(f"{path} is not a safetensors file: its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise NotSafetensorsError(f"{path} is not a safetensors file: its header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    for key, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            valid = (isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)
                     and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            raise NotSafetensorsError(f"{path} is not a safetensors file: header entry {key!r} is malformed")
        expected = _nbytes(dtype, shape)
        if expected is not None and expected != end - begin:
            raise CorruptFileError(
                f"{path}: tensor {key!r} ({dtype}, shape {list(shape)}) needs {expected} bytes but the header "
                f"gives it {end - begin}; the file is corrupt: re-download or re-save it"
            )
        tensors[key] = TensorInfo(file=path, dtype=dtype, shape=shape, offset=data_start + begin)
        data_end = max(data_end, end)
    if data_start + data_end > size:
        raise TruncatedFileError(
            f"{path} is truncated: its header describes {data_end} bytes of tensor data but only "
            f"{size - data_start} follow the header (an interrupted download or copy?); re-download or re-save it"
        )
    if data_start + data_end < size:
        raise CorruptFileError(
            f"{path} has {size - data_start - data_end} bytes after its last tensor; the file is corrupt"
        )
    return tensors, dict(metadata)


def inspect_checkpoint(checkpoint: PathLike | CheckpointInfo) -> CheckpointInfo:
    """Find and validate a checkpoint: a directory (single file or index + shards) or one .safetensors file.

    Every file's header is checked (format, truncation), every shard the index names must exist and hold
    the keys the index says it holds, and shards must come from the same save as the index.
    """
    if isinstance(checkpoint, CheckpointInfo):
        return checkpoint
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {path}: the path does not exist")
    if path.is_file():
        if path.name.endswith(".json"):
            return _inspect_index(path)
        if path.suffix in _PICKLE_SUFFIXES:
            raise PickleCheckpointError(_pickle_message(path, [path.name]))
        return _inspect_single(path, path)

    index, single = path / INDEX_FILE, path / SINGLE_FILE
    if index.is_file() and single.is_file():
        return _newer_of(_inspect_index(index), _inspect_single(single, path), path)
    if index.is_file():
        return _inspect_index(index)
    if single.is_file():
        return _inspect_single(single, path)
    raise _nothing_to_load(path)


def _inspect_single(file: Path, root: Path) -> CheckpointInfo:
    tensors, metadata = read_safetensors_header(file)
    return CheckpointInfo(path=root, files=(file,), tensors=tensors, metadata=metadata)


def _inspect_index(index_path: Path) -> CheckpointInfo:
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CorruptFileError(f"{index_path} has no 'weight_map' object mapping tensor names to file names")
    index_metadata = index.get("metadata") or {}
    directory = index_path.parent

    keys_by_file: dict[str, list[str]] = {}
    for key, file_name in weight_map.items():
        keys_by_file.setdefault(file_name, []).append(key)
    outside = sorted(name for name in keys_by_file if Path(name).name != name or name in ("", ".", ".."))
    if outside:
        raise CorruptFileError(
            f"{index_path} points outside its directory ({', '.join(outside)}); shard entries must be plain "
            "file names next to the index. Do not load this checkpoint; re-download it from a trusted source."
        )
    absent = [name for name in keys_by_file if not (directory / name).is_file()]
    if absent:
        lines = [f"    {name} ({len(keys_by_file[name])} tensors)" for name in sorted(absent)]
        raise MissingShardError(
            f"{index_path} references {len(absent)} shard file(s) that are not in {directory}:\n"
            + "\n".join(lines) + "\nThe download or copy is incomplete: fetch the missing shards or re-save."
        )

    tensors: dict[str, TensorInfo] = {}
    files = []
    save_id = index_metadata.get("save_id")
    for name in sorted(keys_by_file):
        file = directory / name
        files.append(file)
        file_tensors, file_metadata = read_safetensors_header(file)
        if save_id is not None and file_metadata.get("save_id") not in (None, save_id):
            raise InconsistentCheckpointError(
                f"{file} comes from a different save than {index_path} (save_id "
                f"{file_metadata.get('save_id')} vs {save_id}): a save was interrupted while renaming files. "
                "The directory mixes two checkpoints; save again or restore it from a backup."
            )
        not_there = [key for key in keys_by_file[name] if key not in file_tensors]
        if not_there:
            raise InconsistentCheckpointError(
                f"{index_path} places {len(not_there)} tensor(s) in {name} that the file does not contain:\n"
                + _listing(sorted(not_there)) + "\nThe index does not belong to these shards; re-save or re-download."
            )
        for key in keys_by_file[name]:
            tensors[key] = file_tensors[key]
    metadata = {k: str(v) for k, v in index_metadata.items()}
    return CheckpointInfo(path=directory, files=tuple(files), tensors=tensors, metadata=metadata)


def _newer_of(sharded: CheckpointInfo, single: CheckpointInfo, directory: Path) -> CheckpointInfo:
    """Both layouts present: a save that switched layout was interrupted just after committing.

    The save writes the new layout's commit file before removing the old layout, so the newer one wins;
    without timestamps from our own saver we cannot tell, and refuse rather than guess.
    """
    try:
        newer_is_sharded = int(sharded.metadata["saved_at_ns"]) > int(single.metadata["saved_at_ns"])
    except (KeyError, ValueError):
        raise InconsistentCheckpointError(
            f"{directory} holds both {SINGLE_FILE} and {INDEX_FILE} and it is not recorded which is newer; "
            "delete the one you do not want (the index together with its shard files)"
        ) from None
    return sharded if newer_is_sharded else single


def _pickle_message(directory: Path, names: Sequence[str]) -> str:
    return (
        f"{directory} holds only pickle checkpoint file(s) ({', '.join(sorted(names))}); only safetensors "
        "checkpoints are supported, and pickle files are never loaded because unpickling runs arbitrary code. "
        "Convert the checkpoint to safetensors with a tool you trust, in an environment you trust."
    )


def _nothing_to_load(directory: Path) -> CheckpointNotFoundError:
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    pickles = [n for n in names if n.endswith(_PICKLE_SUFFIXES)]
    if pickles:
        return PickleCheckpointError(_pickle_message(directory, pickles))
    shards = [n for n in names if _SHARD_NAME_RE.fullmatch(n)]
    if shards:
        return CheckpointNotFoundError(
            f"{directory} has shard files ({shards[0]}, ...) but no {INDEX_FILE}; the download or save is "
            "incomplete: fetch the index or save again"
        )
    others = [n for n in names if n.endswith(".safetensors")]
    hint = f"; it has {', '.join(others)}: pass that file's path instead" if others else ""
    return CheckpointNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in {directory}{hint}")


# ----------------------------------------------------------------------------------------------------------
# Key maps: declarative rules from checkpoint keys to module keys
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------

def save_safetensors(state_dict: Mapping[str, torch.Tensor] | nn.Module, directory: PathLike, *,
                     max_shard_size: int | str = "5GB", metadata: Mapping[str, str] | None = None) -> list[Path]:
    """Save tensors to ``directory`` as one ``model.safetensors`` or as shards plus an index; atomically.

    Args:
        state_dict: name -> tensor (or a module, whose ``state_dict()`` is saved). Tensors are written
            contiguous and from CPU copies. Tensors that share storage (tied weights, views of one buffer)
            are written as independent copies, one per key, because safetensors forbids aliasing inside a
            file; loading copies the same values back into every alias, so ties in the module survive.
        directory: created if needed.
        max_shard_size: bytes per shard (int, or "5GB" = 5*10**9, "500MiB"); a tensor bigger than this
            gets a shard of its own.
        metadata: extra str -> str entries for every file's header ("format": "pt" is always set).

    Returns the paths written (shards, then the index if sharded). Files of a previous checkpoint in the
    directory that are not part of this one (old shards, an old index or single file) are removed
    after the new checkpoint is in place.
    """
    tensors = _tensors_to_save(state_dict)
    shards = _plan_shards(tensors, parse_size(max_shard_size))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    stamp = {"format": "pt", "save_id": uuid.uuid4().hex, "saved_at_ns": str(time.time_ns())}
    file_metadata = {**_checked_metadata(metadata), **stamp}
    if len(shards) == 1:
        names = [SINGLE_FILE]
    else:
        names = [_SHARD_NAME.format(index=i + 1, count=len(shards)) for i in range(len(shards))]
    shared = _keys_sharing_storage(tensors)

    written: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        for name, keys in zip(names, shards):
            final = directory / name
            written.append((_temp_path(final), final))
            _write_shard({key: _standalone(tensors[key], key in shared) for key in keys}, written[-1][0],
                         file_metadata)
        if len(shards) > 1:
            index = {
                "metadata": {"total_size": sum(_tensor_bytes(t) for t in tensors.values()),
                             "save_id": stamp["save_id"], "saved_at_ns": stamp["saved_at_ns"]},
                "weight_map": {key: name for name, keys in zip(names, shards) for key in sorted(keys)},
            }
            final = directory / INDEX_FILE
            written.append((_temp_path(final), final))
            write_json(written[-1][0], index)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise

    # Commit: shards first, then the file that makes them the checkpoint (index, or the single file).
    for temporary, final in written:
        os.replace(temporary, final)
    _fsync_directory(directory)
    keep = {final.name for _, final in written}
    for stale in _checkpoint_files_in(directory) - keep:
        (directory / stale).unlink(missing_ok=True)
    _fsync_directory(directory)
    return [final for _, final in written]


def _write_shard(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write one safetensors file and make it durable. (Tests replace this to simulate a crash.)"""
    save_file(tensors, str(path), metadata=metadata)
    _fsync_file(path)


def _checkpoint_files_in(directory: Path) -> set[str]:
    names = {p.name for p in directory.iterdir() if p.is_file()}
    return {n for n in names if n in (SINGLE_FILE, INDEX_FILE) or _SHARD_NAME_RE.fullmatch(n)}


def _tensors_to_save(state_dict) -> dict[str, torch.Tensor]:
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    tensors = {}
    for key, tensor in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state dict keys must be strings, got {key!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{key} is a {type(tensor).__name__}, not a tensor; only tensors can be saved")
        if tensor.is_meta:
            raise ValueError(f"{key} is on the meta device and has no data to save; load or initialise it first")
        if tensor.layout != torch.strided:
            raise ValueError(f"{key} is a {tensor.layout} tensor; convert it with .to_dense() before saving")
        tensors[key] = tensor.detach()
    return tensors


def _checked_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; fix the entries for {bad} (e.g. json.dumps)")
    return metadata


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _plan_shards(tensors: dict[str, torch.Tensor], limit: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    filled = 0
    for key, tensor in tensors.items():
        size = _tensor_bytes(tensor)
        if shards[-1] and filled + size > limit:
            shards.append([])
            filled = 0
        shards[-1].append(key)
        filled += size
    return shards


def _keys_sharing_storage(tensors: dict[str, torch.Tensor]) -> set[str]:
    owners: dict[tuple, list[str]] = {}
    for key, tensor in tensors.items():
        if tensor.numel():
            owners.setdefault((tensor.device, tensor.untyped_storage().data_ptr()), []).append(key)
    return {key for keys in owners.values() if len(keys) > 1 for key in keys}


def _standalone(tensor: torch.Tensor, shares_storage: bool) -> torch.Tensor:
    tensor = tensor.to("cpu")
    if shares_storage or not tensor.is_contiguous():
        return tensor.clone(memory_format=torch.contiguous_format)
    return tensor


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

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


class _CheckpointReader:
    """Serves tensors from a checkpoint's files with at most one file memory-mapped at a time.

    safetensors maps the file into memory, and every page a copy touches stays resident (and counted in
    the process's RSS) until the mapping is closed. Re-opening after ``remap_bytes`` keeps that bounded.
    """

    def __init__(self, checkpoint: CheckpointInfo, remap_bytes: int):
        self.checkpoint = checkpoint
        self.remap_bytes = remap_bytes
        self._file: Path | None = None
        self._context = None
        self._handle = None
        self._bytes_read = 0

    def _open(self, file: Path):
        if self._file != file or self._bytes_read >= self.remap_bytes:
            self.close()
            self._context = safe_open(str(file), framework="pt", device="cpu")
            self._handle = self._context.__enter__()
            self._file = file
        return self._handle

    def get(self, key: str) -> torch.Tensor:
        tensor = self._open(self.checkpoint.tensors[key].file).get_tensor(key)
        self._bytes_read += _tensor_bytes(tensor)
        return tensor

    def get_slice(self, key: str, index: tuple) -> torch.Tensor:
        tensor = self._open(self.checkpoint.tensors[key].file).get_slice(key)[index]
        self._bytes_read += _tensor_bytes(tensor)
        return tensor

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = self._handle = self._file = None
        self._bytes_read = 0


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
    reader = _CheckpointReader(info, REMAP_BYTES)
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
    reader = _CheckpointReader(info, REMAP_BYTES)
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
