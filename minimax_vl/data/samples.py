"""Training samples built from generated images, for each of the four training stages (SPEC_NOTES §7.2).

    config = GeneratorConfig(split="train", sample_kinds=STAGE_MIXES[2], difficulty="easy")
    for sample in iter_samples(config, start=0, stop=1000):   # on the fly, nothing touches disk
        ...

Sample kinds:
    words             reading warm-up: "What is written in this image?" -> the words, top to bottom (words.py)
    reading           "Read this chart." -> the transcription in a fixed scan order (reading.py); the reading probe
    description       stage I: "Describe this chart." -> a dense description listing every label and value
    vqa               stage II: 1..max_questions short-answer questions as one multi-turn conversation; with
                      `read_first`, the first reply is the transcription followed by "Answer: <short answer>"
    reasoning         text only: the read-first conversation of a scene that is planned but never drawn; the
                      transcription is context (not trained), the answers are trained: the reasoning half of
                      read-then-answer, at no vision cost
    drill             reasoning samples whose questions are all of `question_types` (e.g. intersection): weights in a
                      mix the question types a model gets wrong
    text_only         stage II's text mix: arithmetic, compass facts, word rewriting (no image)
    conversation      stage III: multi-turn chat with full-sentence answers
    preference        stage IV: (image, question, chosen, rejected) with a plausible wrong rejected answer
    text_preference   stage IV's pure-text pairs

Sample `index` of a split is a pure function of (config, index): `make_sample(config, i)` always
returns the same sample, in any process, so data loaders can shard by index.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from minimax_vl.data.chart_questions import CHART_QUESTION_TYPES, chart_questions, describe_chart
from minimax_vl.data.charts import generate_chart
from minimax_vl.data.drawing import NoLayoutFound
from minimax_vl.data.formats import Sample
from minimax_vl.data.map_questions import MAP_QUESTION_TYPES, describe_map, map_questions
from minimax_vl.data.maps import generate_map
from minimax_vl.data.qa import QA
from minimax_vl.data.reading import (READING_PROMPTS, question_facts, read_then_answer, reading_text, scene_fields,
                                     worked_steps)
from minimax_vl.data.splits import check_split, rng_for, seed_for
from minimax_vl.data.styles import difficulty as check_difficulty
from minimax_vl.data.text_only import text_question
from minimax_vl.data.words import PROMPTS as WORDS_PROMPTS
from minimax_vl.data.words import generate_words

IMAGE_KINDS = ("chart", "map")
SAMPLE_KINDS = ("words", "reading", "description", "vqa", "reasoning", "drill", "text_only", "conversation",
                "preference", "text_preference")
STAGE_MIXES: dict[int, tuple[tuple[str, float], ...]] = {
    1: (("description", 1.0),),
    2: (("vqa", 20.0), ("text_only", 1.0)),  # SPEC_NOTES §7.2: multimodal to text 20:1
    3: (("conversation", 1.0),),
    4: (("preference", 3.0), ("text_preference", 1.0)),
}
DESCRIPTION_PROMPTS = {
    "chart": ("Describe this chart in detail.", "What does this chart show? List every label and value.",
              "Give a full description of the chart."),
    "map": ("Describe this map in detail.", "What is shown on this map? Name every street and landmark.",
            "Give a full description of the map."),
}


@dataclass(frozen=True)
class GeneratorConfig:
    split: str = "train"
    image_kinds: tuple[str, ...] = IMAGE_KINDS
    sample_kinds: tuple[tuple[str, float], ...] = (("vqa", 1.0),)  # (kind, weight)
    image_size: int = 336  # long side in px
    difficulty: str = "normal"  # "easy": few categories, big labels, small vocabulary, square images
    font_scale: float = 1.0  # multiplies the difficulty's label size
    max_questions: int = 4  # per vqa sample; conversations use up to 4 turns
    # Read, then answer: the first reply after an image (vqa, preference) is the transcription followed by
    # "\nAnswer: <short answer>" (minimax_vl/data/reading.py); later replies are short answers.
    read_first: bool = False
    # With read_first: a "Facts: ..." step before each short answer, the transcription's entries for what the
    # question names (reading.question_facts), in reasoning documents too.
    facts: bool = False
    # With facts: the question types no single look-up answers (largest, smallest, intersection, difference) get
    # worked steps instead (reading.worked_steps: entries marked as they beat the ones before; landmarks scanned and
    # marked on the asked street and corner; a subtraction column by column).
    worked_steps: bool = False
    # What `drill` samples ask (tags such as "intersection"): reasoning samples (the true transcription given, only
    # the replies train) whose questions are all of these types, so a mix can weight the types a model gets wrong.
    # A scene with none of them (a bar chart has no largest_slice) keeps all its questions.
    question_types: tuple[str, ...] = ()

    def __post_init__(self):
        check_split(self.split)
        if self.worked_steps and not self.facts:
            raise ValueError("worked_steps replaces some of the facts steps; it needs facts=True (data.facts=true)")
        check_difficulty(self.difficulty)
        for kind in self.image_kinds:
            if kind not in IMAGE_KINDS:
                raise ValueError(f"unknown image kind {kind!r}; expected some of {IMAGE_KINDS}")
        if not self.image_kinds:
            raise ValueError("image_kinds is empty; give at least one of 'chart', 'map'")
        for kind, weight in self.sample_kinds:
            if kind not in SAMPLE_KINDS:
                raise ValueError(f"unknown sample kind {kind!r}; expected some of {SAMPLE_KINDS}")
            if weight <= 0:
                raise ValueError(f"sample kind {kind!r} has weight {weight}; weights must be positive")
        for question_type in self.question_types:
            if not any(question_type in types for types in _QUESTION_TYPES.values()):
                raise ValueError(f"unknown question type {question_type!r}; chart questions are {CHART_QUESTION_TYPES}"
                                 f" and map questions {MAP_QUESTION_TYPES}")
        drills = any(kind == "drill" for kind, _ in self.sample_kinds)
        if drills and not self._drilled_image_kinds():
            raise ValueError("sample kind 'drill' asks only the question types in question_types (data.question_types), "
                             f"of an image kind in image_kinds {list(self.image_kinds)}; name some, e.g. [intersection]")
        if self.question_types and not drills:
            raise ValueError("question_types (data.question_types) shapes only drill samples; add [drill, <weight>] "
                             "to the mix (data.mix)")
        if self.image_size < 128:
            raise ValueError(f"image_size {self.image_size} is too small for legible labels; use at least 128")
        if self.max_questions < 1:
            raise ValueError("max_questions must be at least 1")


    def _drilled_image_kinds(self) -> list[str]:
        """The image kinds asked some question of question_types: what a drill sample draws."""
        return [kind for kind in self.image_kinds if set(self.question_types) & set(_QUESTION_TYPES[kind])]


_QUESTION_TYPES = {"chart": CHART_QUESTION_TYPES, "map": MAP_QUESTION_TYPES}


def parse_sample_kinds(text: str) -> tuple[tuple[str, float], ...]:
    """"vqa:20,text_only:1" or "description" → ((kind, weight), ...)."""
    kinds = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        kinds.append((name, float(weight) if weight else 1.0))
    return tuple(kinds)


def iter_samples(config: GeneratorConfig, start: int = 0, stop: int | None = None, step: int = 1) -> Iterator[Sample]:
    """Samples start, start+step, ... (< stop; endless when stop is None) of the config's split."""
    index = start
    while stop is None or index < stop:
        yield make_sample(config, index)
        index += step


def make_sample(config: GeneratorConfig, index: int, *, draw: bool = True) -> Sample:
    """Sample `index` of the config's split; images are PIL images in memory. With `draw=False` layouts
    are planned but nothing is painted: images are None (placeholders stay), the text is identical."""
    seed = seed_for(config.split, index)
    kinds, weights = zip(*config.sample_kinds)
    sample_kind = rng_for(seed, "sample_kind").choices(kinds, weights)[0]
    meta = {"sample_kind": sample_kind, "split": config.split, "seed": seed, "difficulty": config.difficulty}
    sample_id = f"{config.split}-{index:08d}"
    rng = rng_for(seed, "questions")
    if sample_kind in ("text_only", "text_preference"):
        meta["kind"] = "text"
        if sample_kind == "text_only":
            return _question_sample(sample_id, [text_question(rng, config.split) for _ in range(rng.randint(1, 3))],
                                    [], meta, rng, sentences=False)
        question = text_question(rng, config.split)
        while not question.distractors:  # e.g. sorting words that were already in order
            question = text_question(rng, config.split)
        return _preference_sample(sample_id, [question], [], meta, rng)

    if sample_kind == "words":
        scene, image = generate_words(rng_for(seed, "words"), split=config.split, difficulty=config.difficulty,
                                      image_size=config.image_size, font_scale=config.font_scale, draw=draw)
        meta.update(kind="words", question_types=["words"], matches=["exact"])
        messages = [_user(rng.choice(WORDS_PROMPTS), with_image=True), _assistant(scene.answer())]
        return Sample(sample_id, messages, [image], meta)

    image_kinds = config._drilled_image_kinds() if sample_kind == "drill" else config.image_kinds
    image_kind = rng_for(seed, "image_kind").choice(image_kinds)
    common = dict(split=config.split, difficulty=config.difficulty, image_size=config.image_size,
                  font_scale=config.font_scale, draw=draw and sample_kind not in ("reasoning", "drill"))
    scene, image = _generate_scene(image_kind, seed, common)
    if image_kind == "chart":
        questions, description = chart_questions(scene, rng), describe_chart(scene)
        meta["chart_type"] = scene.chart_type
    else:
        questions, description = map_questions(scene, rng), describe_map(scene)
    if sample_kind == "drill":
        questions = [qa for qa in questions if qa.question_type in config.question_types] or questions
    meta["kind"] = image_kind
    images = [image]  # [None] when not drawn: the slot and its <image> placeholder stay
    fields = scene_fields(scene)  # what a perfect transcription holds: the reading probe scores against it
    meta["reading_fields"] = fields
    reading = reading_text(fields)
    facts_from = FactsOf(fields, config.worked_steps) if config.facts else None  # data.facts: facts, then answer

    if sample_kind == "reading":
        meta.update(question_types=["reading"], matches=["exact"])
        prompt = rng.choice(READING_PROMPTS[image_kind])
        return Sample(sample_id, [_user(prompt, with_image=True), _assistant(reading)], images, meta)
    if sample_kind in ("reasoning", "drill"):
        meta["kind"] = "text"
        chosen = balanced_choice(questions, rng.randint(1, config.max_questions), rng)
        return _question_sample(sample_id, chosen, [], meta, rng, sentences=False, reading=reading,
                                reading_is_context=True, facts_from=facts_from)
    if sample_kind == "description":
        meta.update(question_types=["description"], matches=["exact"])
        prompt = rng.choice(DESCRIPTION_PROMPTS[image_kind])
        return Sample(sample_id, [_user(prompt, with_image=True), _assistant(description)], images, meta)
    first_reply_reading = reading if config.read_first else None
    first_reply_facts = facts_from if config.read_first else None  # facts belong to read-first replies
    if sample_kind == "vqa":
        return _question_sample(sample_id, balanced_choice(questions, rng.randint(1, config.max_questions), rng),
                                images, meta, rng, sentences=False, reading=first_reply_reading,
                                facts_from=first_reply_facts)
    if sample_kind == "conversation":
        return _conversation_sample(sample_id, questions, description, image_kind, images, meta, rng)
    return _preference_sample(sample_id, [q for q in questions if q.distractors], images, meta, rng,
                              reading=first_reply_reading, facts_from=first_reply_facts)


SCENE_RETRIES = 5


def _generate_scene(image_kind: str, seed: int, options: dict):
    """The sample's chart or map. A seed whose scenes never fit (a few in 10,000 at large font scales: long map names
    at 1.3x labels on 192 px) draws again from derived seeds instead of ending a training run; still a pure function
    of (seed, options), and unchanged for every seed that fitted before."""
    generate = generate_chart if image_kind == "chart" else generate_map
    for retry in range(SCENE_RETRIES + 1):
        purpose = image_kind if retry == 0 else f"{image_kind}-retry{retry}"
        try:
            return generate(rng_for(seed, purpose), **options)
        except NoLayoutFound:
            if retry == SCENE_RETRIES:
                raise


def balanced_choice(questions: list[QA], k: int, rng: random.Random) -> list[QA]:
    """k distinct questions with question types drawn uniformly (not in proportion to how many each
    type has: a chart yields dozens of comparison pairs but one title question)."""
    by_type: dict[str, list[QA]] = {}
    for qa in questions:
        by_type.setdefault(qa.question_type, []).append(qa)
    chosen: list[QA] = []
    while len(chosen) < min(k, len(questions)):
        types = [t for t, qs in by_type.items() if qs]
        unused = [t for t in types if all(q.question_type != t for q in chosen)]
        question_type = rng.choice(sorted(unused or types))
        pool = by_type[question_type]
        chosen.append(pool.pop(rng.randrange(len(pool))))
    return chosen


def _user(text: str, with_image: bool) -> dict:
    # "<image>\n" + question, as LLaVA writes it; the newline is part of the text, so the rendered
    # prompt is identical whether a sample comes from here or from a LLaVA JSON file.
    content = [{"type": "image"}, {"type": "text", "text": "\n" + text}] if with_image else [{"type": "text", "text": text}]
    return {"role": "user", "content": content}


def _assistant(text: str, context: str = "") -> dict:
    """An assistant reply; `context` is a leading part of it that is given, not trained (its tokens are labelled
    -100, see `minimax_vl.chat_template.render_segments`)."""
    content = [{"type": "text", "text": context, "context": True}] if context else []
    return {"role": "assistant", "content": content + [{"type": "text", "text": text}]}


def _question_sample(sample_id: str, questions: list[QA], images: list, meta: dict, rng: random.Random, *,
                     sentences: bool, reading: str | None = None, reading_is_context: bool = False,
                     facts_from: FactsOf | None = None) -> Sample:
    """One conversation of short (or sentence) answers; with `reading`, the first reply reads, then answers. With
    `facts_from` (the image's FactsOf), every short answer follows the question's facts or worked steps."""
    messages = []
    for i, qa in enumerate(questions):
        messages.append(_user(qa.question, with_image=bool(images) and i == 0))
        answer = qa.sentence() if sentences else qa.answer
        facts = _facts(facts_from, qa)
        if i == 0 and reading is not None:
            full = read_then_answer(reading, answer, facts)
            split = len(reading) if reading_is_context else 0
            messages.append(_assistant(full[split:], context=full[:split]))
        elif facts:
            messages.append(_assistant(read_then_answer("", answer, facts)))
        else:
            messages.append(_assistant(answer))
    meta.update(question_types=[q.question_type for q in questions], matches=[q.match for q in questions])
    return Sample(sample_id, messages, images, meta)


@dataclass(frozen=True)
class FactsOf:
    """The worked step before each answer about one image (data.facts; data.worked_steps)."""
    fields: dict[str, str]
    worked_steps: bool = False

    def __call__(self, qa: QA) -> str:
        steps = worked_steps(self.fields, qa.question, qa.question_type) if self.worked_steps else ""
        return steps or question_facts(self.fields, qa.question)


def _facts(facts_from: FactsOf | None, qa: QA) -> str:
    return facts_from(qa) if facts_from is not None else ""


def _conversation_sample(sample_id: str, questions: list[QA], description: str, image_kind: str, images: list,
                         meta: dict, rng: random.Random) -> Sample:
    turns = balanced_choice(questions, rng.randint(1, 3), rng)
    messages, types = [], []
    if rng.random() < 0.5:
        messages += [_user(rng.choice(DESCRIPTION_PROMPTS[image_kind]), with_image=True), _assistant(description)]
        types.append("description")
    for qa in turns:
        messages += [_user(qa.question, with_image=not messages), _assistant(qa.sentence())]
        types.append(qa.question_type)
    meta.update(question_types=types, matches=["exact"] * len(types))
    return Sample(sample_id, messages, images, meta)


def _preference_sample(sample_id: str, questions: list[QA], images: list, meta: dict, rng: random.Random, *,
                       reading: str | None = None, facts_from: FactsOf | None = None) -> Sample:
    qa = rng.choice(questions)
    wrong = qa.distractors[0] if rng.random() < 0.6 else rng.choice(qa.distractors)
    in_sentences = rng.random() < 0.5 and reading is None
    chosen, rejected = (qa.sentence(), qa.sentence(wrong)) if in_sentences else (qa.answer, wrong)
    if reading is not None:  # both replies read the same way; they differ in the answer only
        facts = _facts(facts_from, qa)
        chosen, rejected = read_then_answer(reading, chosen, facts), read_then_answer(reading, rejected, facts)
    meta.update(question_types=[qa.question_type], matches=[qa.match], answer=qa.answer, rejected_answer=wrong)
    messages = [_user(qa.question, with_image=bool(images)), _assistant(chosen)]
    return Sample(sample_id, messages, images, meta, rejected=rejected)
