"""Small file utilities the checkpoint code and the rest of the project share: JSON that is read with a clear
error and written atomically, atomic folder replacement, and sizes such as "5GB"."""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Union

from .errors import CorruptFileError

PathLike = Union[str, os.PathLike]


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


def replace_folder(temp: PathLike, final: PathLike) -> Path:
    """Make the finished folder ``temp`` the folder ``final``: fsync its files, remove an older ``final``, rename.

    Writers fill a temporary folder next to ``final`` (``.tmp-<name>``, see ``temporary_folder``) and call this
    last, so a reader never sees half a folder. ``temp`` and ``final`` must be on one file system.
    """
    temp, final = Path(temp), Path(final)
    for file in temp.rglob("*"):
        if file.is_file():
            _fsync_file(file)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temp, final)
    _fsync_directory(final.parent)
    return final


def temporary_folder(final: PathLike) -> Path:
    """The path ``.tmp-<name>`` beside ``final`` to write into before ``replace_folder``; a leftover from an
    interrupted write is removed first."""
    final = Path(final)
    temp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(temp, ignore_errors=True)
    return temp
