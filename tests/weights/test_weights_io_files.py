"""The shared atomic-write helpers: a folder appears whole or not at all, and JSON is never half written."""
import json

from text_backbone.weights_io import atomic_write_text, replace_folder, temporary_folder, write_json


def test_replace_folder_swaps_in_a_finished_folder(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "old.txt").write_text("old")
    temp = temporary_folder(final)
    assert temp.parent == final.parent and temp.name == ".tmp-final" and not temp.exists()
    temp.mkdir()
    (temp / "sub").mkdir()
    (temp / "sub" / "new.txt").write_text("new")
    assert replace_folder(temp, final) == final
    assert not temp.exists() and not (final / "old.txt").exists()
    assert (final / "sub" / "new.txt").read_text() == "new"


def test_temporary_folder_removes_what_an_interrupted_write_left(tmp_path):
    leftover = tmp_path / ".tmp-final"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"\0")
    assert temporary_folder(tmp_path / "final") == leftover and not leftover.exists()


def test_atomic_text_and_json_leave_no_temporary_files(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    write_json(tmp_path / "b.json", {"x": [1, 2]})
    assert (tmp_path / "a.txt").read_text() == "two"
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
