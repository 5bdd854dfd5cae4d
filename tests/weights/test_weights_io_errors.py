"""Every way a checkpoint can be wrong gives its own named error, before any tensor is copied."""
import json
import pathlib
import pickle
import struct

import pytest
import torch
from torch import nn

from text_backbone.weights_io import (
    INDEX_FILE,
    SINGLE_FILE,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptFileError,
    InconsistentCheckpointError,
    KeyMismatchError,
    MissingShardError,
    NotSafetensorsError,
    PickleCheckpointError,
    TruncatedFileError,
    Unfuse,
    load_into_module,
    load_state_dict,
    save_safetensors,
)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    state = {"a.weight": torch.randn(4, 3), "b.weight": torch.randn(5), "d.weight": torch.randn(2)}
    save_safetensors(state, tmp_path)
    return tmp_path


def test_key_and_shape_problems_are_reported_together(checkpoint, build_module):
    module = build_module({"a.weight": (3, 4), "b.weight": (5,), "c.weight": (2, 2)})

    with pytest.raises(KeyMismatchError) as caught:
        load_into_module(module, checkpoint)

    error = caught.value
    assert error.missing == ("c.weight",)
    assert error.unexpected == ("d.weight",)
    assert error.mismatched == (("a.weight", (4, 3), (3, 4), ("a.weight",)),)
    message = str(error)
    assert "1 missing, 1 unexpected, 1 with the wrong shape" in message
    assert "c.weight" in message and "d.weight" in message
    assert "a.weight: checkpoint (4, 3), module expects (3, 4)" in message
    # Checked before copying: the one key that would have fitted was not loaded either.
    assert torch.count_nonzero(module.b.weight) == 0


def test_allow_lists_accept_intentional_gaps(checkpoint, build_module):
    module = build_module({"a.weight": (4, 3), "b.weight": (5,), "extra.head.weight": (2,)})

    report = load_into_module(module, checkpoint, allow_missing=["extra.*"], allow_unexpected=["d.*"])

    assert report.missing == ("extra.head.weight",) and report.unexpected == ("d.weight",)
    assert sorted(report.loaded) == ["a.weight", "b.weight"]
    assert torch.count_nonzero(module.a.weight) == 12


def test_non_persistent_buffer_in_checkpoint_is_unexpected_with_a_hint(tmp_path):
    module = nn.Module()
    module.register_buffer("cache", torch.zeros(3), persistent=False)
    save_safetensors({"cache": torch.ones(3)}, tmp_path)

    with pytest.raises(KeyMismatchError, match="non-persistent buffer: recomputed, never loaded"):
        load_into_module(module, tmp_path)


def test_conversion_problems_are_part_of_the_single_error(tmp_path, build_module):
    save_safetensors({"fused": torch.zeros(2, 5, 3)}, tmp_path)  # 5 rows cannot split in two halves
    rule = Unfuse("fused", ("part.{n}.first", "part.{n}.second"), index="n")
    with pytest.raises(KeyMismatchError, match="cannot unfuse fused of shape"):
        load_into_module(build_module({"x": (1,)}), tmp_path, key_map=[rule])


def test_truncated_data_is_detected_and_named(checkpoint):
    file = checkpoint / SINGLE_FILE
    file.write_bytes(file.read_bytes()[:-7])
    with pytest.raises(TruncatedFileError, match=f"{file}.*truncated"):
        load_state_dict(checkpoint)


def test_truncated_header_is_detected(checkpoint):
    file = checkpoint / SINGLE_FILE
    (header_len,) = struct.unpack("<Q", file.read_bytes()[:8])
    file.write_bytes(file.read_bytes()[: 8 + header_len // 2])
    with pytest.raises(TruncatedFileError, match="header alone"):
        load_state_dict(checkpoint)


def test_empty_file_is_truncated(tmp_path):
    (tmp_path / SINGLE_FILE).write_bytes(b"")
    with pytest.raises(TruncatedFileError, match="empty"):
        load_state_dict(tmp_path)


def test_trailing_garbage_is_corrupt(checkpoint):
    file = checkpoint / SINGLE_FILE
    file.write_bytes(file.read_bytes() + b"\0" * 5)
    with pytest.raises(CorruptFileError, match="5 bytes after its last tensor"):
        load_state_dict(checkpoint)


@pytest.mark.parametrize("content", [
    b"these are my notes, not weights\n" * 4,
    b'{"weight_map": {}}',
    b"abc",
    struct.pack("<Q", 10) + b"not json!!",
])
def test_foreign_file_is_not_safetensors(tmp_path, content):
    (tmp_path / SINGLE_FILE).write_bytes(content)
    with pytest.raises(NotSafetensorsError, match=str(tmp_path / SINGLE_FILE)):
        load_state_dict(tmp_path)


class _Tripwire:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_only_directory_is_refused_without_unpickling(tmp_path, name):
    marker = tmp_path / "unpickled"
    (tmp_path / name).write_bytes(pickle.dumps(_Tripwire(marker)))

    with pytest.raises(PickleCheckpointError, match="only safetensors .* never loaded") as caught:
        load_state_dict(tmp_path)
    assert name in str(caught.value)
    with pytest.raises(PickleCheckpointError):
        load_state_dict(tmp_path / name)  # pointing at the pickle file itself
    assert not marker.exists()
    assert isinstance(caught.value, CheckpointNotFoundError)


def test_index_pointing_to_a_missing_shard(tmp_path):
    save_safetensors({"a": torch.ones(100), "b": torch.ones(100), "c": torch.ones(100)}, tmp_path, max_shard_size=400)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(MissingShardError, match=r"model-00002-of-00003\.safetensors \(1 tensors\)"):
        load_state_dict(tmp_path)


def test_index_placing_a_key_in_the_wrong_shard(tmp_path):
    save_safetensors({"a": torch.ones(100), "b": torch.ones(100)}, tmp_path, max_shard_size=400)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["weight_map"]["a"] = index["weight_map"]["b"]
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(InconsistentCheckpointError, match="does not contain"):
        load_state_dict(tmp_path)


def test_index_pointing_outside_its_directory(tmp_path):
    save_safetensors({"a": torch.ones(100), "b": torch.ones(100)}, tmp_path / "ckpt", max_shard_size=400)
    index = json.loads((tmp_path / "ckpt" / INDEX_FILE).read_text())
    index["weight_map"]["a"] = "../elsewhere.safetensors"
    (tmp_path / "ckpt" / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CorruptFileError, match="points outside its directory"):
        load_state_dict(tmp_path / "ckpt")


def test_index_that_is_not_an_index(tmp_path):
    (tmp_path / INDEX_FILE).write_text('{"metadata": {}}')
    with pytest.raises(CorruptFileError, match="weight_map"):
        load_state_dict(tmp_path)


def test_shards_without_index(tmp_path):
    save_safetensors({"a": torch.ones(100), "b": torch.ones(100)}, tmp_path, max_shard_size=400)
    (tmp_path / INDEX_FILE).unlink()
    with pytest.raises(CheckpointNotFoundError, match="no model.safetensors.index.json"):
        load_state_dict(tmp_path)


def test_nothing_there(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "nope")
    with pytest.raises(CheckpointNotFoundError, match="no model.safetensors"):
        load_state_dict(tmp_path)
    save_safetensors({"a": torch.ones(1)}, tmp_path / "x")
    (tmp_path / "x" / SINGLE_FILE).rename(tmp_path / "adapter.safetensors")
    with pytest.raises(CheckpointNotFoundError, match="adapter.safetensors: pass that file's path"):
        load_state_dict(tmp_path)
    assert torch.equal(load_state_dict(tmp_path / "adapter.safetensors")["a"], torch.ones(1))


def test_every_error_is_a_checkpoint_error():
    for error in (CheckpointNotFoundError, PickleCheckpointError, NotSafetensorsError, CorruptFileError,
                  TruncatedFileError, MissingShardError, InconsistentCheckpointError, KeyMismatchError):
        assert issubclass(error, CheckpointError)
