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

Modules: ``errors`` (the exceptions), ``files`` (JSON, atomic writes, sizes), ``reading`` (headers, checkpoint
discovery, streaming tensor reads), ``keymaps`` (the rules), ``save``, ``load``. Import from the package.

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

from .errors import (CheckpointError, CheckpointNotFoundError, CorruptFileError, InconsistentCheckpointError,
                     KeyMismatchError, MissingShardError, NotSafetensorsError, PickleCheckpointError,
                     TruncatedFileError)
from .files import PathLike, atomic_write_text, parse_size, read_json, replace_folder, temporary_folder, write_json
from .keymaps import Assignment, Drop, Fuse, KeyMap, Plan, Rename, Rule, TensorSource, Unfuse, convert_state_dict
from .load import DERIVED_BUFFERS_HOOK, LoadReport, load_into_module, load_state_dict
from .reading import (INDEX_FILE, REMAP_BYTES, SINGLE_FILE, CheckpointInfo, TensorInfo, inspect_checkpoint,
                      read_safetensors_header)
from .save import save_safetensors

__all__ = [
    "SINGLE_FILE", "INDEX_FILE", "DERIVED_BUFFERS_HOOK", "REMAP_BYTES",
    "CheckpointError", "CheckpointNotFoundError", "PickleCheckpointError", "NotSafetensorsError",
    "CorruptFileError", "TruncatedFileError", "MissingShardError", "InconsistentCheckpointError",
    "KeyMismatchError",
    "TensorInfo", "CheckpointInfo", "LoadReport",
    "KeyMap", "Rename", "Drop", "Unfuse", "Fuse", "Assignment", "Plan", "Rule", "TensorSource",
    "save_safetensors", "load_into_module", "load_state_dict", "inspect_checkpoint", "convert_state_dict",
    "read_safetensors_header",
    "read_json", "write_json", "atomic_write_text", "replace_folder", "temporary_folder", "parse_size", "PathLike",
]
