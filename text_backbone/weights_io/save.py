"""Saving: one ``model.safetensors`` or shards plus an index, written atomically (see the package docstring)."""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .files import PathLike, _fsync_directory, _fsync_file, _temp_path, parse_size, write_json
from .reading import INDEX_FILE, SINGLE_FILE, _SHARD_NAME, _SHARD_NAME_RE, _tensor_bytes


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
