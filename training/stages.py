"""The four MiniMax-VL-01 training stages as data (SPEC_NOTES §7.2), read from `training/configs/stage{1,2,3,4}.yaml`.

    stage = load_stage(1)                                              # the shipped stage-I table
    stage = load_stage(2, ["max_steps=20", "learning_rates.language_model=3e-4"])   # with overrides
    stage = load_stage("my_stage.yaml")

A stage says where its weights come from (`init`), which modules train (`trainable`, by name prefix) and at which
learning rate (`learning_rates`, per prefix), the schedule, the batch geometry, the data mix and whether documents
are packed. `training.train` is the one loop that runs any of them; nothing stage-specific lives in code.

Overrides are `dotted.key=value` strings; the value is parsed as YAML (`packing=false`, `trainable=[vision_tower]`,
`data.mix=[[vqa, 1.0]]`). Unknown keys are errors that list the known ones.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
COMPONENTS = ("vision_tower", "multi_modal_projector", "image_newline", "language_model")
OBJECTIVES = ("lm", "dpo")
SCHEDULES = ("cosine", "wsd")
IMAGE_MODES = ("fixed", "anyres")
REJECTED_STYLES = ("distractor", "repetition", "mixed")


class StageConfigError(ValueError):
    """A stage table or an override is invalid; the message names the field and the fix."""


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier over optimizer steps (see `training.schedules`).

    cosine: linear warm-up to 1, cosine decay to `min_lr_ratio` at the last step.
    wsd:    warm-up, stable at 1, then an exponential decay to `min_lr_ratio` over the last `decay_fraction`
            of the steps (the shape MiniMax-Text-01's pre-training used, SPEC_NOTES §7.3).
    """

    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2

    def validate(self) -> None:
        if self.kind not in SCHEDULES:
            raise StageConfigError(f"schedule.kind={self.kind!r}; choose one of {SCHEDULES}")
        if self.warmup_steps < 0:
            raise StageConfigError(f"schedule.warmup_steps={self.warmup_steps} must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise StageConfigError(f"schedule.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise StageConfigError(f"schedule.decay_fraction={self.decay_fraction} must be in (0, 1]")


@dataclass
class DataConfig:
    """Where documents come from: the on-the-fly generator (`mix`) or a LLaVA/ShareGPT JSON folder (`dataset`).

    mix: a stage number (its `minimax_vl.data.samples.STAGE_MIXES` entry) or a list of [kind, weight] pairs.
    dataset: a folder holding `data.json` (as `python -m training.data.generate` writes it) or a JSON file;
        relative image paths are read against the file's folder. When set, `mix` is ignored.
    num_samples: size of one epoch. None with the generator = an endless stream (sample i is generated sample
        i); with a dataset it defaults to the dataset's size. Epochs are reshuffled with (seed, epoch).
    first_sample: the generated sample index of stream position 0 (generator only). A run that continues a
        finished model on the same stream sets it past what its predecessor saw, so it trains on new images.
    max_epoch_fraction: stop before this fraction of one epoch has been seen (stage IV stops before one epoch).
    rejected: which rejected reply a preference pair uses: "distractor" (the sample's own wrong answer: an
        injected error, as in the paper's pair construction), "repetition" (the chosen reply stuck in a loop,
        the other defect stage IV targeted), or "mixed" (each sample one of the two, fixed by its id).
    """

    mix: Any = 1
    dataset: str | None = None
    image_size: int = 336
    difficulty: str = "normal"
    image_kinds: list[str] = field(default_factory=lambda: ["chart", "map"])
    max_questions: int = 4
    font_scale: float = 1.0  # multiplies the difficulty's label size (the demo recipe uses bigger labels)
    read_first: bool = False  # first reply after an image: transcription, then "Answer: ..." (data/reading.py)
    facts: bool = False  # with read_first: "Facts: <what the question names>" before each answer (reading.py)
    worked_steps: bool = False  # with facts: worked steps for largest / smallest / intersection / difference
    question_types: list[str] = field(default_factory=list)  # what `drill` samples in the mix ask, e.g. [intersection]
    num_samples: int | None = None
    first_sample: int = 0
    max_epoch_fraction: float | None = None
    rejected: str = "distractor"

    def sample_kinds(self) -> tuple[tuple[str, float], ...]:
        from minimax_vl.data.samples import STAGE_MIXES

        if isinstance(self.mix, int) and not isinstance(self.mix, bool):
            if self.mix not in STAGE_MIXES:
                raise StageConfigError(f"data.mix={self.mix} names no stage; use one of {sorted(STAGE_MIXES)} "
                                       "or a list of [kind, weight] pairs")
            return STAGE_MIXES[self.mix]
        try:
            return tuple((str(kind), float(weight)) for kind, weight in self.mix)
        except (TypeError, ValueError):
            raise StageConfigError(f"data.mix={self.mix!r}; give a stage number or a list of [kind, weight] "
                                   "pairs such as [[vqa, 20], [text_only, 1]]") from None

    def validate(self) -> None:
        if self.dataset is None:
            self.sample_kinds()
            from training.datasets import generator_config  # the generator's own checks, as a config error

            try:
                generator_config(self, "train")
            except ValueError as error:
                raise StageConfigError(f"data: {error}") from None
        if self.rejected not in REJECTED_STYLES:
            raise StageConfigError(f"data.rejected={self.rejected!r}; choose one of {REJECTED_STYLES}")
        if self.first_sample < 0:
            raise StageConfigError(f"data.first_sample={self.first_sample} must be >= 0")
        if self.num_samples is not None and self.num_samples < 1:
            raise StageConfigError(f"data.num_samples={self.num_samples} must be >= 1 (or null for endless)")
        if self.max_epoch_fraction is not None and not 0.0 < self.max_epoch_fraction <= 1.0:
            raise StageConfigError(f"data.max_epoch_fraction={self.max_epoch_fraction} must be in (0, 1]")
        if self.max_epoch_fraction is not None and self.dataset is None and self.num_samples is None:
            raise StageConfigError("data.max_epoch_fraction needs an epoch: set data.num_samples (generated data "
                                   "is endless) or data.dataset")


@dataclass
class EvalConfig:
    """Validation on held-out data every `every` steps (0 = only before and after training).

    Generated data is scored on the first `samples` documents of `split`; a dataset folder on `dataset` when
    given, else on its last `samples` records, which are then held out of training.
    """

    every: int = 0
    samples: int = 16
    split: str = "val"
    dataset: str | None = None


@dataclass
class CheckpointConfig:
    every: int = 0  # optimizer steps between checkpoints; 0 = none
    keep: int = 2  # newest complete checkpoints kept


@dataclass
class DPOConfig:
    beta: float = 0.1


@dataclass
class StageConfig:
    stage: int
    name: str
    objective: str = "lm"
    init: str = "preset"
    trainable: list[str] = field(default_factory=lambda: list(COMPONENTS))
    learning_rates: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    max_steps: int = 100
    global_batch_size: int = 8
    micro_batch_size: int = 8
    max_grad_norm: float | None = 1.0
    max_length: int = 2048
    packing: bool = True
    image_mode: str = "anyres"
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    seed: int = 0
    log_every: int = 1
    max_nonfinite_steps: int = 3
    # Recompute each decoder layer and ViT block in backward instead of storing its activations: activation
    # memory of one layer input per layer instead of every intermediate, for one more forward (docs/DISTRIBUTED.md).
    activation_checkpointing: bool = False

    def validate(self) -> "StageConfig":
        try:
            self.learning_rates = {str(k): float(v) for k, v in self.learning_rates.items()}
        except (TypeError, ValueError, AttributeError):
            raise StageConfigError(f"learning_rates must map module prefixes to numbers, got {self.learning_rates!r}"
                                   ) from None
        if self.objective not in OBJECTIVES:
            raise StageConfigError(f"objective={self.objective!r}; choose one of {OBJECTIVES}")
        if self.image_mode not in IMAGE_MODES:
            raise StageConfigError(f"image_mode={self.image_mode!r}; choose one of {IMAGE_MODES}")
        if not self.trainable:
            raise StageConfigError("trainable is empty: name at least one module prefix, e.g. [multi_modal_projector]")
        for prefix in list(self.trainable) + list(self.learning_rates):
            if prefix.split(".")[0] not in COMPONENTS:
                raise StageConfigError(f"module prefix {prefix!r} does not start with a component of the model; "
                                       f"components: {COMPONENTS}")
        for prefix in self.trainable:
            if learning_rate_for(prefix, self.learning_rates) is None:
                raise StageConfigError(f"trainable prefix {prefix!r} has no learning rate; add "
                                       f"learning_rates.{prefix.split('.')[0]} (or a longer prefix)")
        positive = ("max_steps", "global_batch_size", "micro_batch_size", "max_length", "log_every",
                    "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise StageConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.global_batch_size % self.micro_batch_size:
            raise StageConfigError(f"global_batch_size={self.global_batch_size} is not a multiple of "
                                   f"micro_batch_size={self.micro_batch_size}")
        if self.objective == "dpo" and not self.dpo.beta > 0:
            raise StageConfigError(f"dpo.beta={self.dpo.beta} must be > 0")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise StageConfigError(f"max_grad_norm={self.max_grad_norm} must be > 0 (or null for no clipping)")
        if len(self.adam_betas) != 2:
            raise StageConfigError(f"adam_betas={self.adam_betas} needs two values [beta1, beta2]")
        self.schedule.validate()
        self.data.validate()
        return self

    # ------------------------------------------------------------------ derived values
    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-batches per process per optimizer step, so that one step always sees `global_batch_size`
        documents (or pairs) whatever the number of processes."""
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise StageConfigError(
                f"global_batch_size={self.global_batch_size} is not a multiple of micro_batch_size x processes "
                f"= {self.micro_batch_size} x {world_size}; change one of them")
        return self.global_batch_size // per_step

    def steps_to_run(self, epoch_size: int | None) -> int:
        """max_steps, capped so that no more than `data.max_epoch_fraction` of an epoch is seen."""
        if self.data.max_epoch_fraction is None or epoch_size is None:
            return self.max_steps
        cap = math.floor(self.data.max_epoch_fraction * epoch_size / self.global_batch_size)
        if cap < 1:
            raise StageConfigError(f"{self.data.max_epoch_fraction} of an epoch of {epoch_size} samples is less "
                                   f"than one global batch of {self.global_batch_size}; use more data or a smaller batch")
        return min(self.max_steps, cap)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def learning_rate_for(name: str, learning_rates: Mapping[str, float]) -> float | None:
    """The learning rate of the longest prefix of `name` (dotted) found in `learning_rates`."""
    best = None
    for prefix, lr in learning_rates.items():
        if has_prefix(name, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else float(learning_rates[best])


def has_prefix(name: str, prefix: str) -> bool:
    """Prefixes match whole dotted components: `language_model.model.layers.1` is not under `...layers.10`."""
    return name == prefix or name.startswith(prefix + ".")


# ---------------------------------------------------------------------- loading and overrides
_NESTED = {"schedule": ScheduleConfig, "data": DataConfig, "eval": EvalConfig, "checkpoint": CheckpointConfig,
           "dpo": DPOConfig}


def stage_path(stage: int | str | Path) -> Path:
    if isinstance(stage, int) or (isinstance(stage, str) and stage.isdigit()):
        path = CONFIG_DIR / f"stage{int(stage)}.yaml"
        if not path.exists():
            raise StageConfigError(f"there is no stage {stage}: {path} does not exist (stages are 1-4)")
        return path
    path = Path(stage)
    if not path.exists():
        raise StageConfigError(f"stage file {path} does not exist; pass 1-4 or a YAML path")
    return path


def load_stage(stage: int | str | Path, overrides: Sequence[str] = ()) -> StageConfig:
    """A stage table (a number 1-4 or a YAML path) with `key=value` overrides applied, validated."""
    path = stage_path(stage)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise StageConfigError(f"{path} must hold a mapping of stage fields, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return stage_from_dict(raw, source=str(path))


def stage_from_dict(raw: Mapping[str, Any], source: str = "stage config") -> StageConfig:
    values = dict(raw)
    known = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise StageConfigError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    for name, cls in _NESTED.items():
        if name in values:
            values[name] = _nested(cls, values[name], f"{source}: {name}")
    try:
        return StageConfig(**values).validate()
    except TypeError as error:  # a required field (stage, name) is missing
        raise StageConfigError(f"{source}: {error}") from None


def _nested(cls, value: Any, where: str):
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        raise StageConfigError(f"{where} must be a mapping, got {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise StageConfigError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**value)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Sets `a.b.c=value` in a nested dict (value parsed as YAML), creating intermediate mappings."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise StageConfigError(f"override {override!r} is not of the form key=value (e.g. max_steps=20)")
    value = parse_override_value(text)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise StageConfigError(f"override {override!r}: {part!r} is a value, not a mapping")
        node = child
    node[parts[-1]] = value


def parse_override_value(text: str) -> Any:
    """YAML, except that "1e-5" is a number (YAML 1.1 reads exponents without a dot as strings)."""
    if not text.strip():
        return None
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def resolve_init(init: str, output_dir: Path) -> str:
    """`preset`, or a checkpoint path; relative paths are read against the run folder (the output's parent),
    so stage2.yaml's `init: stage1/final` follows `--output runs/tiny/stage1` with `runs/tiny/stage2`."""
    if init == "preset":
        return init
    path = Path(init)
    return str(path if path.is_absolute() else output_dir.parent / path)


def component_of(name: str) -> str:
    return name.split(".")[0]


def trainable_names(names: Iterable[str], prefixes: Sequence[str]) -> set[str]:
    return {n for n in names if any(has_prefix(n, p) for p in prefixes)}
