"""The errors checkpoint reading and loading raise; each names the file, the problem and the fix."""
from __future__ import annotations

from collections.abc import Sequence

_MAX_LISTED = 100  # keys per category spelled out in an error message (all are kept on the exception)


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


def _listing(keys: Sequence, indent: str = "    ") -> str:
    lines = [f"{indent}{key}" for key in list(keys)[:_MAX_LISTED]]
    if len(keys) > _MAX_LISTED:
        lines.append(f"{indent}... and {len(keys) - _MAX_LISTED} more")
    return "\n".join(lines)
