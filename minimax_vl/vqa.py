"""Answering generated (or LLaVA-format) VQA samples with a model, for `minimax-vl eval` and the demo.

Each image is encoded once (`model.prefill`) and every question about it continues from a copy of that
prefix, the way the training data asks its first question: "<image>\\n{question}".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from tqdm import tqdm

from minimax_vl.data.formats import Sample


@dataclass
class QuestionRecord:
    sample_id: str
    image: object  # PIL image or path
    kind: str  # "chart" / "map" / ...
    question: str
    answer: str
    question_type: str
    match: str
    prediction: str | None = None

    def as_score_record(self) -> dict:
        return {"id": f"{self.sample_id}:{self.question}", "prediction": self.prediction or "", "answer": self.answer,
                "question_type": f"{self.kind}/{self.question_type}", "match": self.match}


def questions_of(sample: Sample) -> list[QuestionRecord]:
    """The (question, answer) turns of a single-image VQA sample, with their types from the sample's meta."""
    if len(sample.images) != 1:
        return []
    types = sample.meta.get("question_types") or []
    matches = sample.meta.get("matches") or []
    records = []
    turns = [m for m in sample.messages if m["role"] in ("user", "assistant")]
    for i in range(0, len(turns) - 1, 2):
        user, assistant = turns[i], turns[i + 1]
        question = "".join(item.get("text", "") for item in user["content"] if item["type"] == "text").strip()
        answer = "".join(item.get("text", "") for item in assistant["content"] if item["type"] == "text").strip()
        k = i // 2
        records.append(QuestionRecord(
            sample.id, sample.images[0], sample.meta.get("kind", "image"), question, answer,
            types[k] if k < len(types) else "unknown", matches[k] if k < len(matches) else "relaxed",
        ))
    return records


def answer_records(model, records: Iterable[QuestionRecord], *, max_new_tokens: int = 24,
                   progress: bool = True) -> Iterator[QuestionRecord]:
    """Fills `prediction` in each record (greedy decoding). Each image is encoded once and all of its
    questions are answered in one batch from that prefix."""
    from minimax_vl.engine import vl_answer_many

    records = list(records)
    groups: list[list[QuestionRecord]] = []
    for record in records:
        if groups and groups[-1][0].image is record.image:
            groups[-1].append(record)
        else:
            groups.append([record])
    with tqdm(total=len(records), desc="answering", unit="q", disable=not progress) as bar:
        for group in groups:
            state = model.prefill(group[0].image)
            answers = vl_answer_many(model, state, ["\n" + r.question for r in group], max_new_tokens=max_new_tokens)
            for record, answer in zip(group, answers):
                record.prediction = answer.strip()
                bar.update(1)
                yield record
