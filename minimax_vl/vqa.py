"""Answering generated (or LLaVA-format) VQA samples with a model, for `minimax-vl eval` and the demo.

Each image is encoded once (`model.prefill`) and every question about it continues from a copy of that
prefix, the way the training data asks its first question: "<image>\\n{question}".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from tqdm import tqdm

from minimax_vl.answers import MAX_REPLY_TOKENS, split_reply
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
    prediction: str | None = None  # the short answer
    reading: str | None = None  # the transcription the model wrote before it, when it reads first
    reply: str | None = None  # the whole reply, where a caller needs more than the answer (e.g. its "Facts: ...")

    def as_score_record(self) -> dict:
        record = {"id": f"{self.sample_id}:{self.question}", "prediction": self.prediction or "", "answer": self.answer,
                  "question_type": f"{self.kind}/{self.question_type}", "match": self.match}
        if self.reading is not None:
            record["reading"] = self.reading
        if self.reply is not None:  # e.g. the reasoning check's "Facts: ...": where a wrong answer went wrong
            record["reply"] = self.reply
        return record


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
        answer = split_reply(answer)[1]  # a read-first reply's gradeable part is its short answer
        k = i // 2
        records.append(QuestionRecord(
            sample.id, sample.images[0], sample.meta.get("kind", "image"), question, answer,
            types[k] if k < len(types) else "unknown", matches[k] if k < len(matches) else "relaxed",
        ))
    return records


def answer_records(model, records: Iterable[QuestionRecord], *, max_new_tokens: int = MAX_REPLY_TOKENS,
                   progress: bool = True) -> Iterator[QuestionRecord]:
    """Fills `prediction` (and `reading`, for a model that reads first) in each record (greedy decoding). Each
    image is encoded once and all of its questions are answered in one batch from that prefix."""
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
                record.reading, record.prediction = split_reply(answer)
                bar.update(1)
                yield record


@dataclass
class ReadingRecord:
    sample_id: str
    image: object
    kind: str  # "chart" / "map"
    fields: dict[str, str]  # the truth: what a perfect transcription holds (minimax_vl/data/reading.py)
    prediction: str | None = None
    correct: int = 0  # fields transcribed exactly


def reading_records(samples: Iterable[Sample]) -> list[ReadingRecord]:
    """One record per generated single-image sample that knows its transcription (meta "reading_fields")."""
    return [ReadingRecord(s.id, s.images[0], s.meta.get("kind", "image"), s.meta["reading_fields"])
            for s in samples if len(s.images) == 1 and s.meta.get("reading_fields")]


def read_images(model, records: list[ReadingRecord], *, max_new_tokens: int = MAX_REPLY_TOKENS,
                progress: bool = True) -> list[ReadingRecord]:
    """The reading probe: asks the model to transcribe each image ("Read this chart.") and counts the fields it
    wrote exactly (title, axis titles, each category with its value; each street, landmark position, river,
    park and scale)."""
    from minimax_vl.data.reading import READING_PROMPTS, score_reading
    from minimax_vl.engine import vl_answer_many

    for record in tqdm(records, desc="reading", unit="image", disable=not progress):
        prompt = READING_PROMPTS.get(record.kind, READING_PROMPTS["chart"])[0]
        reply = vl_answer_many(model, model.prefill(record.image), ["\n" + prompt], max_new_tokens=max_new_tokens)[0]
        record.prediction = reply.strip()
        record.correct, _ = score_reading(record.prediction, record.fields)
    return records


def reading_report(records: list[ReadingRecord]) -> dict:
    """Fields transcribed exactly, overall and per image kind, and images read without a single error."""
    def summary(rows: list[ReadingRecord]) -> dict:
        fields = sum(len(r.fields) for r in rows)
        correct = sum(r.correct for r in rows)
        perfect = sum(r.correct == len(r.fields) for r in rows)
        return {"fields": fields, "correct": correct, "accuracy": correct / fields if fields else 0.0,
                "images": len(rows), "perfect_images": perfect}

    kinds = sorted({r.kind for r in records})
    return {"overall": summary(records), "by_kind": {k: summary([r for r in records if r.kind == k]) for k in kinds}}


def reason_from_true_readings(model, samples: Iterable[Sample], *, max_new_tokens: int = 64,
                              progress: bool = True) -> list[QuestionRecord]:
    """Text-only reasoning accuracy: each question with the image's true transcription given in place of the
    image, the way `reasoning` training documents give it; the model writes only "Answer: ..." (after "Facts: ..."
    when trained with data.facts). Separates what reading limits from what reasoning limits: a question wrong here
    is wrong even when reading is perfect."""
    import torch

    from minimax_vl.data.reading import reading_text
    from minimax_vl.engine import _continuation_text, _engine, _processor, vl_prefill

    engine, tokenizer = _engine(model), _processor(model).tokenizer
    device = model.image_newline.device
    start = vl_prefill(model, None)  # the user turn's start, no image
    records = []
    samples = [s for s in samples if s.meta.get("reading_fields")]
    with tqdm(total=len(samples), desc="reasoning", unit="image", disable=not progress) as bar:
        for sample in samples:
            reading = reading_text(sample.meta["reading_fields"])
            for record in questions_of(sample):
                ids = tokenizer.encode(_continuation_text(record.question) + reading)
                state = engine.extend(start.text_state, torch.tensor([ids], device=device))
                reply = engine.generate(state, max_new_tokens=max_new_tokens).texts[0]
                record.reading, record.reply, record.prediction = reading, reply, split_reply(reply)[1]
                records.append(record)
            bar.update(1)
    return records
