"""The training data stream: a deterministic function of (seed, sample position), sharded by process.

    train_source, held_out = build_sources(stage)                  # generator or LLaVA/ShareGPT folder
    stream = DocumentStream(train_source, seed=stage.seed)         # position -> Sample, epochs reshuffled
    batches = MicroBatches(stream, encoder, layout, stage, process_index, num_processes, total_steps)
    batch = batches[k]                                               # micro-batch k of this process

Positions: optimizer step s consumes positions [s*G, (s+1)*G) with G = global_batch_size; process p takes
positions p, p+W, p+2W, ... of each global batch, and its accumulation step a takes the a-th run of
`micro_batch_size` of those. So the data position of a run is just the number of samples consumed, a resumed
run regenerates exactly what it would have seen, and one process with accumulation sees the same global batch
as W processes without it.

A micro-batch is model-ready: packed (`[1, R*L]` with `cu_seqlens`, `position_ids`, documents never see each
other) or padded (`[B, T]` with `attention_mask`), images of all documents in token order. For DPO each
pair contributes two documents, chosen then rejected, which share the pair's images.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from torch.utils.data import Dataset

from minimax_vl.chat_template import content_to_text
from minimax_vl.data.formats import Sample, read_dataset
from minimax_vl.data.samples import GeneratorConfig, make_sample
from training.data.collate import PackingCollator, PaddingCollator
from training.data.encoding import encode_conversation, images_kept
from training.losses import count_targets
from training.stages import DataConfig, StageConfig


class SampleSource(Protocol):
    epoch_size: int | None  # None: endless

    def sample(self, index: int) -> Sample: ...


@dataclass
class GeneratedSource:
    """Samples of the chart/map generator, made on the fly (nothing touches disk)."""

    config: GeneratorConfig
    epoch_size: int | None = None
    first_index: int = 0  # stream position 0 is generated sample `first_index` (data.first_sample)

    def sample(self, index: int) -> Sample:
        return make_sample(self.config, self.first_index + index)


@dataclass
class DatasetSource:
    samples: list[Sample]

    @property
    def epoch_size(self) -> int:
        return len(self.samples)

    def sample(self, index: int) -> Sample:
        return self.samples[index]


def generator_config(data: DataConfig, split: str) -> GeneratorConfig:
    return GeneratorConfig(split=split, image_kinds=tuple(data.image_kinds), sample_kinds=data.sample_kinds(),
                           image_size=data.image_size, difficulty=data.difficulty, max_questions=data.max_questions,
                           font_scale=data.font_scale, read_first=data.read_first,
                           facts=data.facts, worked_steps=data.worked_steps,
                           question_types=tuple(data.question_types))


def read_dataset_folder(path: str | Path) -> list[Sample]:
    """A folder with data.json (images relative to it) or a JSON / JSON Lines file."""
    path = Path(path)
    file = path / "data.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"no dataset at {file}; write one with `python -m training.data.generate --out {path} ...`"
                                " or point data.dataset at a LLaVA JSON file")
    samples = read_dataset(file, image_root=file.parent)
    if not samples:
        raise ValueError(f"{file} holds no records")
    return samples


def build_sources(stage: StageConfig) -> tuple[SampleSource, SampleSource]:
    """(train source, held-out source) for a stage; see `EvalConfig` for where held-out data comes from."""
    data, evaluation = stage.data, stage.eval
    if data.dataset is None:
        train: SampleSource = GeneratedSource(generator_config(data, "train"), data.num_samples, data.first_sample)
        held_out: SampleSource = GeneratedSource(generator_config(data, evaluation.split), evaluation.samples)
        return train, held_out
    samples = read_dataset_folder(data.dataset)
    if evaluation.dataset is not None:
        return DatasetSource(samples[: data.num_samples]), DatasetSource(read_dataset_folder(evaluation.dataset))
    if len(samples) <= evaluation.samples:
        raise ValueError(f"{data.dataset} has {len(samples)} records, too few to hold out eval.samples="
                         f"{evaluation.samples} for validation; set eval.dataset or lower eval.samples")
    train_part, held_part = samples[: -evaluation.samples], samples[-evaluation.samples:]
    return DatasetSource(train_part[: data.num_samples]), DatasetSource(held_part)


class DocumentStream:
    """position -> Sample. Endless sources are read in order; finite ones epoch by epoch, each epoch a
    permutation drawn from (seed, epoch) so that it does not depend on anything but the position."""

    def __init__(self, source: SampleSource, seed: int = 0):
        self.source, self.seed = source, seed
        self._order: tuple[int, list[int]] | None = None  # (epoch, permutation) of the epoch being read

    def __getitem__(self, position: int) -> Sample:
        size = self.source.epoch_size
        if size is None:
            return self.source.sample(position)
        epoch, offset = divmod(position, size)
        if self._order is None or self._order[0] != epoch:
            order = list(range(size))
            random.Random(f"epoch:{self.seed}:{epoch}").shuffle(order)
            self._order = (epoch, order)
        return self.source.sample(self._order[1][offset])


def repetitive_reply(reply: str, copies: int = 3) -> str:
    """The reply stuck in a loop: it does not stop after the answer but says it again."""
    return " ".join([reply] * copies)


def rejected_reply(sample: Sample, style: str) -> str:
    """The rejected reply of a preference pair in the given `DataConfig.rejected` style."""
    if style == "mixed":  # half of the samples each way, fixed by the sample id (crc32 is stable across runs)
        style = "repetition" if zlib.crc32(sample.id.encode()) % 2 else "distractor"
    if style == "repetition":
        return repetitive_reply(content_to_text(sample.messages[-1]["content"]))
    if sample.rejected is None:
        raise ValueError(f"sample {sample.id!r} has no rejected reply; DPO needs preference data "
                         "(data.mix 4, or records with 'rejected_response'), or data.rejected=repetition")
    return sample.rejected


class DocumentEncoder:
    """Sample -> token ids, labels and image tiles, with the stage's image mode and length limit."""

    def __init__(self, processor, image_mode: str, max_length: int, rejected: str = "distractor"):
        self.image_processor = processor.image_processor.replace(mode=image_mode)
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.rejected = rejected

    def encode(self, sample: Sample, messages: list[dict] | None = None) -> dict[str, Any]:
        vision = (self.image_processor(list(sample.images)) if sample.images
                  else {"pixel_values": [], "image_sizes": [], "num_image_tokens": []})
        counts = vision["num_image_tokens"]
        input_ids, labels = encode_conversation(messages or sample.messages, self.tokenizer.backend, counts,
                                                max_length=self.max_length)
        kept = images_kept(input_ids, counts, self.tokenizer.image_token_id)  # truncation drops whole images
        return {"input_ids": input_ids, "labels": labels, "pixel_values": vision["pixel_values"][:kept],
                "image_sizes": vision["image_sizes"][:kept]}

    def encode_pair(self, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        """(chosen, rejected) documents: the sample's conversation, and the same with the rejected final reply."""
        if sample.messages[-1]["role"] != "assistant":
            raise ValueError(f"sample {sample.id!r} does not end with an assistant turn to compare against")
        rejected_messages = sample.messages[:-1] + [
            {"role": "assistant", "content": [{"type": "text", "text": rejected_reply(sample, self.rejected)}]}]
        return self.encode(sample), self.encode(sample, rejected_messages)


@dataclass(frozen=True)
class BatchLayout:
    packing: bool
    max_length: int
    pad_token_id: int

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Documents -> model inputs (`model_inputs`) plus bookkeeping: `doc_ids` [B, T] (-1 on padding),
        `num_docs`, `num_targets`, `num_tokens` (real, non-pad tokens)."""
        if self.packing:
            packed = PackingCollator(self.max_length, self.pad_token_id)(examples)
            rows, length = packed["input_ids"].shape
            cu_seqlens = packed["cu_seqlens"]
            mask = packed["attention_mask"].view(1, -1)
            doc_ids = torch.full((1, rows * length), -1, dtype=torch.long)
            order = iter(packed["document_order"])
            for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
                if mask[0, start]:  # a document; the other segments are row tails of padding
                    doc_ids[0, start:end] = next(order)
            inputs = {"input_ids": packed["input_ids"].view(1, -1), "position_ids": packed["position_ids"].view(1, -1),
                      "cu_seqlens": cu_seqlens}
            labels = packed["labels"].view(1, -1)
        else:
            padded = PaddingCollator(self.pad_token_id)(examples)
            mask = padded["attention_mask"]
            rows = torch.arange(len(examples)).unsqueeze(1).expand_as(mask)
            doc_ids = torch.where(mask.bool(), rows, torch.full_like(rows, -1))
            inputs = {"input_ids": padded["input_ids"], "attention_mask": mask}
            labels = padded["labels"]
            cu_seqlens = None
            packed = padded
        inputs["pixel_values"] = packed.get("pixel_values") or None
        inputs["image_sizes"] = packed.get("image_sizes") or None
        return {"model_inputs": inputs, "labels": labels, "doc_ids": doc_ids, "num_docs": len(examples),
                "num_targets": count_targets(labels, cu_seqlens), "num_tokens": int(mask.sum())}


def process_positions(step: int, accum_index: int, stage: StageConfig, process_index: int,
                      num_processes: int) -> list[int]:
    """Stream positions of one micro-batch (see the module docstring)."""
    base = step * stage.global_batch_size
    mine = range(base + process_index, base + stage.global_batch_size, num_processes)
    start = accum_index * stage.micro_batch_size
    return list(mine[start:start + stage.micro_batch_size])


class MicroBatches(Dataset):
    """Micro-batch k of this process (k = step * accum + a), built on demand: usable with a DataLoader's
    workers, which then prepare the next micro-batches while the model trains on this one."""

    def __init__(self, stream: DocumentStream, encoder: DocumentEncoder, layout: BatchLayout, stage: StageConfig,
                 process_index: int, num_processes: int, total_steps: int):
        self.stream, self.encoder, self.layout, self.stage = stream, encoder, layout, stage
        self.process_index, self.num_processes = process_index, num_processes
        self.accum = stage.grad_accum_steps(num_processes)
        self.total = total_steps * self.accum
        self.pairs = stage.objective == "dpo"

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, k: int) -> dict[str, Any]:
        step, accum_index = divmod(k, self.accum)
        positions = process_positions(step, accum_index, self.stage, self.process_index, self.num_processes)
        return build_batch([self.stream[p] for p in positions], self.encoder, self.layout, self.pairs)


def build_batch(samples: Sequence[Sample], encoder: DocumentEncoder, layout: BatchLayout, pairs: bool) -> dict[str, Any]:
    if not pairs:
        return layout.collate([encoder.encode(s) for s in samples])
    documents = [doc for s in samples for doc in encoder.encode_pair(s)]  # chosen_0, rejected_0, chosen_1, ...
    return layout.collate(documents)


def held_out_batches(source: SampleSource, encoder: DocumentEncoder, layout: BatchLayout, batch_size: int,
                     process_index: int, num_processes: int, pairs: bool) -> list[dict[str, Any]]:
    """This process's share (p, p+W, ...) of the held-out samples, in micro-batches; built once and reused."""
    count = source.epoch_size
    mine = [source.sample(i) for i in range(process_index, count, num_processes)]
    return [build_batch(mine[i:i + batch_size], encoder, layout, pairs) for i in range(0, len(mine), batch_size)]
