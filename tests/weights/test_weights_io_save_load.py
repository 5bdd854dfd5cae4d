"""Save -> load round trips, sharding, stale-file clean-up and atomicity of ``save_safetensors``."""
import json
import os

import pytest
import torch

from text_backbone import weights_io
from text_backbone.weights_io import (
    INDEX_FILE,
    SINGLE_FILE,
    CorruptFileError,
    inspect_checkpoint,
    load_into_module,
    load_state_dict,
    parse_size,
    read_json,
    save_safetensors,
    write_json,
)


def mixed_state_dict():
    torch.manual_seed(0)
    weights = torch.randn(8, 6)
    weights[0, 0] = float("nan")
    weights[0, 1] = -0.0
    return {
        "model.embed_tokens.weight": weights,
        "model.layers.0.norm.weight": torch.randn(6).to(torch.bfloat16),
        "model.layers.0.proj.weight": torch.randn(5, 6).to(torch.float16),
        "model.layers.1.proj.weight": torch.randn(40, 6),  # 960 bytes: bigger than the tiny shard size below
        "model.step": torch.tensor(7, dtype=torch.int64),
        "model.mask": torch.tensor([True, False, True]),
        "model.empty": torch.empty(0, 3),
    }


def files_in(directory):
    return sorted(p.name for p in directory.iterdir())


def test_single_file_round_trip_is_bit_exact(tmp_path, bits_equal):
    state = mixed_state_dict()
    written = save_safetensors(state, tmp_path)

    assert written == [tmp_path / SINGLE_FILE]
    assert files_in(tmp_path) == [SINGLE_FILE]
    loaded = load_state_dict(tmp_path)
    assert sorted(loaded) == sorted(state)
    for key in state:
        assert bits_equal(loaded[key], state[key]), key


def test_sharded_round_trip_matches_single_file(tmp_path, bits_equal):
    state = mixed_state_dict()
    save_safetensors(state, tmp_path / "single")
    written = save_safetensors(state, tmp_path / "sharded", max_shard_size=300)

    shard_names = [p.name for p in written[:-1]]
    assert len(shard_names) >= 3
    count = len(shard_names)
    assert shard_names == [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    assert written[-1].name == INDEX_FILE
    index = json.loads(written[-1].read_text())
    assert set(index["weight_map"]) == set(state)
    assert set(index["weight_map"].values()) == set(shard_names)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    # The 960-byte tensor exceeds the 300-byte limit, so it sits alone in its shard.
    big_file = index["weight_map"]["model.layers.1.proj.weight"]
    assert [k for k, f in index["weight_map"].items() if f == big_file] == ["model.layers.1.proj.weight"]

    single, sharded = load_state_dict(tmp_path / "single"), load_state_dict(tmp_path / "sharded")
    for key in state:
        assert bits_equal(sharded[key], state[key]) and bits_equal(single[key], sharded[key]), key


def test_round_trip_through_a_module(tmp_path, build_module, bits_equal):
    torch.manual_seed(1)
    shapes = {"a.weight": (4, 3), "a.b.weight": (2,), "c.0.weight": (3, 3)}
    source = build_module(shapes)
    for parameter in source.parameters():
        parameter.data.normal_()
    save_safetensors(source, tmp_path, max_shard_size=40)
    target = build_module(shapes)

    report = load_into_module(target, tmp_path)

    assert sorted(report.loaded) == sorted(shapes) and report.missing == () and report.unexpected == ()
    for key, tensor in source.state_dict().items():
        assert bits_equal(target.state_dict()[key], tensor)


@pytest.mark.parametrize("first, second", [(None, 200), (200, None), (200, 100), (100, 200)])
def test_resave_with_another_layout_leaves_no_stale_files(tmp_path, first, second):
    state = mixed_state_dict()
    (tmp_path / "notes.txt").write_text("not ours: must survive")
    save_safetensors(state, tmp_path, **({"max_shard_size": first} if first else {}))
    written = save_safetensors({k: v + 1 if v.is_floating_point() else v for k, v in state.items()},
                               tmp_path, **({"max_shard_size": second} if second else {}))

    assert files_in(tmp_path) == sorted([p.name for p in written] + ["notes.txt"])
    loaded = load_state_dict(tmp_path)
    assert torch.equal(loaded["model.layers.1.proj.weight"], state["model.layers.1.proj.weight"] + 1)


def crash_on_second_shard(monkeypatch):
    real_write = weights_io.save._write_shard
    calls = []

    def write_then_crash(tensors, path, metadata):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("simulated crash while writing the second shard")
        real_write(tensors, path, metadata)

    monkeypatch.setattr(weights_io.save, "_write_shard", write_then_crash)
    return calls


@pytest.mark.parametrize("previous_shard_size", [None, 200], ids=["previous-single-file", "previous-sharded"])
def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, bits_equal, previous_shard_size):
    old = mixed_state_dict()
    save_safetensors(old, tmp_path, **({"max_shard_size": previous_shard_size} if previous_shard_size else {}))
    before = {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)}
    calls = crash_on_second_shard(monkeypatch)

    new = {k: v + 1 if v.is_floating_point() else v for k, v in old.items()}
    with pytest.raises(OSError, match="simulated crash"):
        save_safetensors(new, tmp_path, max_shard_size=200)  # same shard names as the previous sharded save

    assert len(calls) == 2 and not calls[0].exists()  # the finished temporary shard was cleaned up too
    assert {name: (tmp_path / name).read_bytes() for name in files_in(tmp_path)} == before
    loaded = load_state_dict(tmp_path)
    for key in old:
        assert bits_equal(loaded[key], old[key]), key


def test_mixed_shards_from_two_saves_are_detected(tmp_path):
    save_safetensors(mixed_state_dict(), tmp_path / "a", max_shard_size=200)
    save_safetensors(mixed_state_dict(), tmp_path / "b", max_shard_size=200)
    shard = "model-00001-of-" + sorted(os.listdir(tmp_path / "a"))[0].split("-of-")[1]
    (tmp_path / "a" / shard).write_bytes((tmp_path / "b" / shard).read_bytes())

    with pytest.raises(weights_io.InconsistentCheckpointError, match="different save"):
        load_state_dict(tmp_path / "a")


def test_both_layouts_present_resolves_to_the_newer_save(tmp_path, monkeypatch):
    """The state a crash between committing a new layout and deleting the old one would leave."""
    state = mixed_state_dict()
    save_safetensors(state, tmp_path, max_shard_size=200)
    (tmp_path / "keep").mkdir()
    for name in os.listdir(tmp_path):
        if name != "keep":
            os.replace(tmp_path / name, tmp_path / "keep" / name)
    newer = {k: v * 2 if v.is_floating_point() else v for k, v in state.items()}
    save_safetensors(newer, tmp_path)  # single file, newer
    for name in os.listdir(tmp_path / "keep"):
        os.replace(tmp_path / "keep" / name, tmp_path / name)

    loaded = load_state_dict(tmp_path)
    assert torch.equal(loaded["model.layers.1.proj.weight"], newer["model.layers.1.proj.weight"])


def test_shared_views_and_tied_tensors_are_saved_as_copies(tmp_path):
    base = torch.arange(24.0).reshape(4, 6)
    state = {"tied.a": base, "tied.b": base, "row": base[1], "transposed": base.t(), "cols": base[:, 2:4]}
    for shard_size in (None, 48):
        directory = tmp_path / str(shard_size)
        save_safetensors(state, directory, **({"max_shard_size": shard_size} if shard_size else {}))
        loaded = load_state_dict(directory)
        for key, tensor in state.items():
            assert torch.equal(loaded[key], tensor), key
    assert base.is_contiguous() and torch.equal(base, torch.arange(24.0).reshape(4, 6))  # input untouched


def test_metadata_is_written_and_checked(tmp_path):
    save_safetensors({"x": torch.ones(2)}, tmp_path, metadata={"note": "hello"})
    metadata = inspect_checkpoint(tmp_path).metadata
    assert metadata["note"] == "hello" and metadata["format"] == "pt"
    with pytest.raises(TypeError, match="str to str"):
        save_safetensors({"x": torch.ones(2)}, tmp_path, metadata={"step": 3})


def test_unsaveable_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="meta device"):
        save_safetensors({"x": torch.empty(2, device="meta")}, tmp_path)
    with pytest.raises(TypeError, match="not a tensor"):
        save_safetensors({"x": [1, 2]}, tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("text, expected", [
    (123, 123), ("5GB", 5 * 10**9), ("500MiB", 500 * 2**20), ("1.5 kb", 1500), ("7", 7), ("2gib", 2 * 2**30),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["five GB", "5 parsecs", "", 0, "-3MB"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_json_helpers(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"b": [1, 2], "a": "é"})
    write_json(path, {"b": [3], "a": "ü"})  # overwrite in place
    assert read_json(path) == {"b": [3], "a": "ü"}
    assert files_in(tmp_path) == ["config.json"]  # no temporary left behind
    path.write_text('{"a": 1,')
    with pytest.raises(CorruptFileError, match="config.json.*line 1"):
        read_json(path)
