"""LLaVA and ShareGPT readers/writers: round trips, one internal form, clear errors."""
import json

import pytest

from minimax_vl.chat_template import render
from minimax_vl.data.formats import (
    DataFormatError,
    Sample,
    from_llava,
    from_messages,
    from_record,
    read_dataset,
    to_llava,
    write_llava,
)

LLAVA = {
    "id": "a1",
    "image": "images/a1.png",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is the title?"},
        {"from": "gpt", "value": "Fruit Sales"},
        {"from": "human", "value": "How many bars?"},
        {"from": "gpt", "value": "4"},
    ],
    "meta": {"kind": "chart", "question_types": ["title", "count"]},
}
MESSAGES = {
    "id": "m1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Compare "},
                                     {"type": "image"}, {"type": "text", "text": " please."}]},
        {"role": "assistant", "content": "The first is larger."},
    ],
    "images": ["x.png", "y.png"],
}


def test_llava_round_trip_is_exact():
    sample = from_llava(LLAVA)
    assert sample.images == ["images/a1.png"]
    assert sample.messages[0] == {"role": "user", "content": [{"type": "image"},
                                                              {"type": "text", "text": "\nWhat is the title?"}]}
    assert sample.messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "Fruit Sales"}]}
    assert to_llava(sample) == LLAVA


def test_sharegpt_messages_read_into_the_same_form_and_round_trip_through_llava():
    sample = from_messages(MESSAGES)
    assert [m["role"] for m in sample.messages] == ["system", "user", "assistant"]
    assert sample.images == ["x.png", "y.png"]
    assert sample.messages[1]["content"][0] == {"type": "image"}
    record = to_llava(sample)
    assert record["image"] == ["x.png", "y.png"]
    assert record["conversations"][1] == {"from": "human", "value": "<image>Compare <image> please."}
    again = from_llava(record)
    assert again.messages == sample.messages and again.images == sample.images
    assert render(again.messages) == render(sample.messages)


def test_string_content_with_placeholders_equals_item_content():
    as_string = dict(MESSAGES, messages=[MESSAGES["messages"][0],
                                         {"role": "user", "content": "<image>Compare <image> please."},
                                         MESSAGES["messages"][2]])
    assert from_messages(as_string).messages == from_messages(MESSAGES).messages


def test_text_only_and_preference_records(tmp_path):
    text_only = {"id": "t", "conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}
    preference = dict(LLAVA, id="p", rejected_response="Apple Sales")
    path = tmp_path / "data.json"
    write_llava([from_record(text_only), from_record(preference)], path)
    loaded = read_dataset(path)
    assert loaded[0].images == [] and "image" not in json.loads(path.read_text())[0]
    assert loaded[1].rejected == "Apple Sales"
    assert [to_llava(s) for s in loaded] == [text_only, preference]


def test_jsonl_and_image_root(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(LLAVA) + "\n\n" + json.dumps(MESSAGES) + "\n")
    samples = read_dataset(path, image_root="/data")
    assert samples[0].images == ["/data/images/a1.png"] and samples[1].images == ["/data/x.png", "/data/y.png"]


@pytest.mark.parametrize("record, message", [
    ({"id": "z", "image": "a.png", "conversations": [{"from": "human", "value": "hi"}]},
     r"record 3 \(id 'z'\): 1 image\(s\) but 0 <image> placeholder"),
    ({"id": "z", "conversations": [{"from": "bot", "value": "hi"}]}, r"turn 0 has 'from' = 'bot'"),
    ({"id": "z", "conversations": []}, r"'conversations' must be a non-empty list"),
    ({"id": "z", "conversations": [{"from": "human"}]}, r"turn 0 must be an object with 'from' and 'value'"),
    ({"id": "z", "conversations": [{"from": "human", "value": 3}]}, r"turn 0 'value' must be a string"),
    ({"id": "z", "image": 5, "conversations": [{"from": "human", "value": "<image>"}]}, r"'image' must be a path"),
    ({"id": "z", "messages": [{"role": "robot", "content": "x"}]}, r"message 0 has role 'robot'"),
    ({"id": "z", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, r"content item"),
    ({"id": "z", "messages": [{"role": "user", "content": "<image> <image>"}], "images": ["a"]},
     r"1 image\(s\) but 2 <image> placeholder"),
    ({"id": "z", "meta": [1], "conversations": [{"from": "human", "value": "hi"}]}, r"'meta' must be an object"),
    ({"id": "z", "text": "hello"}, r"neither 'conversations' \(LLaVA\) nor 'messages'"),
    (["not", "a", "dict"], r"record 3: neither"),
])
def test_malformed_records_name_the_record_and_the_problem(record, message):
    with pytest.raises(DataFormatError, match=message):
        from_record(record, 3)


def test_bad_jsonl_line_is_reported(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(LLAVA) + "\n{oops\n")
    with pytest.raises(DataFormatError, match="line 2 is not valid JSON"):
        read_dataset(path)


def test_writing_unsaved_images_is_refused():
    with pytest.raises(DataFormatError, match="saved"):
        to_llava(Sample("s", [], images=[object()]))
