"""What a checkpoint holds, from its safetensors headers alone, and streaming reads of its tensors.

``inspect_checkpoint`` finds and validates a checkpoint (a folder with one file or an index and shards, or one
file) before any tensor data is read. ``CheckpointReader`` then serves tensors one at a time with at most one
file memory-mapped, re-opened after every ``REMAP_BYTES`` read.
"""
from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import (CheckpointNotFoundError, CorruptFileError, InconsistentCheckpointError, MissingShardError,
                     NotSafetensorsError, PickleCheckpointError, TruncatedFileError, _listing)
from .files import PathLike, read_json

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SHARD_NAME = "model-{index:05d}-of-{count:05d}.safetensors"
_SHARD_NAME_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

REMAP_BYTES = 1 << 30  # re-open a memory-mapped file after this many bytes were read from it

_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


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


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class CheckpointReader:
    """Serves tensors from a checkpoint's files with at most one file memory-mapped at a time.

    safetensors maps the file into memory, and every page a copy touches stays resident (and counted in
    the process's RSS) until the mapping is closed. Re-opening after ``remap_bytes`` (default
    ``REMAP_BYTES``) keeps that bounded.
    """

    def __init__(self, checkpoint: CheckpointInfo, remap_bytes: int | None = None):
        self.checkpoint = checkpoint
        self.remap_bytes = REMAP_BYTES if remap_bytes is None else remap_bytes  # read now, so tests can set it
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
