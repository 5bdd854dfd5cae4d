"""The one training loop: any stage table (`training.stages`) on accelerate, from one CPU process to FSDP/DeepSpeed.

    result = train(load_stage(1, ["max_steps=20"]), RunOptions(output_dir=Path("runs/tiny/stage1"), preset="tiny"))

Per optimizer step: this process's micro-batches of the global batch are built (`training.datasets`), the number
of target tokens of the whole global batch is all-reduced, and each micro-batch's summed loss is divided by it,
so one process with gradient accumulation and W processes without it compute the same gradient. The MoE
load-balancing loss is added with the model's `router_aux_loss_coef`, as the model's own `.loss` does, and logged
apart. A non-finite loss or gradient norm skips the update (gradients zeroed, no optimizer or scheduler step);
`max_nonfinite_steps` of them in a row abort with the weights of the last good step.

A time budget (`RunOptions.max_minutes`) ends a run early once that many minutes were spent in training steps
(carried across resumes, like the learning curves' minutes), with a checkpoint there, so `resume="latest"` and a
larger budget continue it: that is how `benchmarks/reading_sweep.py` stops every candidate at the same minute marks.

Files in the output folder: stage.yaml (the resolved table), metrics.jsonl (+ TensorBoard events in tensorboard/
when it is installed), checkpoints/step_*/ (`training.checkpointing`), final/ (`MiniMaxVL01.from_pretrained`
loads it), summary.json.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch.utils.data import DataLoader

from minimax_vl.model import MiniMaxVL01
from text_backbone.weights_io import replace_folder, temporary_folder, write_json
from training import checkpointing
from training.datasets import BatchLayout, DocumentEncoder, DocumentStream, MicroBatches, build_sources, held_out_batches
from training.distributed import (after_prepare, already_sharded, before_prepare, configure_deepspeed, freeze,
                                  is_sharded, loads_sharded, make_accelerator, place_frozen, sharded_model)
from training.dpo import frozen_reference, pair_log_likelihoods, reference_log_likelihoods
from training.losses import dpo_loss, target_log_probs
from training.metrics import MetricsLog, scalars, tensorboard_available
from training.schedules import lr_factor
from training.stages import StageConfig, resolve_init
from training.trainable import apply_trainable, component_table, parameter_groups

LossHook = Callable[[int, torch.Tensor], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient; no update was applied for them."""


@dataclass
class RunOptions:
    output_dir: Path
    preset: str = "tiny"  # model preset when the stage's init is "preset"
    init: str | None = None  # overrides the stage's init (a checkpoint folder, or "preset")
    resume: str | None = None  # None: a fresh run; "latest": newest complete checkpoint (if any); or a folder
    cpu: bool | None = None  # None: on CPU exactly when no GPU is visible
    data_workers: int = 0
    progress: bool = True
    loss_hook: LossHook | None = None  # (step, loss) -> loss; tests inject NaN/Inf here
    # "labelled": only labelled positions reach lm_head, in vocabulary-bounded chunks; "full": [B, T, V] logits
    # (the reference; same numbers, more time and memory). training.losses.target_log_probs.
    loss_path: str = "labelled"
    extra_log: dict[str, Any] = field(default_factory=dict)
    # Stop once this many minutes were spent in training steps (`train_seconds`, carried across resumes), before
    # max_steps if need be, and save a checkpoint there. None: no time limit. The schedule still spans max_steps.
    max_minutes: float | None = None


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_dir: Path
    first_loss: float | None  # mean training loss of the first few (<= 5) steps of this run
    last_loss: float | None  # ... and of the last few
    skipped_steps: int
    eval_before: dict[str, float]
    eval_after: dict[str, float]
    model: Any = None  # the trained (unwrapped) model, for in-process callers
    samples: int = 0  # documents (DPO: pairs) consumed, over all runs of this output folder
    train_seconds: float = 0.0  # wall time spent in training steps, over all runs of this output folder
    out_of_time: bool = False  # stopped by RunOptions.max_minutes before max_steps


# ---------------------------------------------------------------------- model set-up
def initial_model(stage: StageConfig, options: RunOptions, accelerator=None) -> MiniMaxVL01:
    """The stage's starting weights; under FSDP2 a checkpoint is loaded straight into this process's shards."""
    init = options.init if options.init is not None else resolve_init(stage.init, options.output_dir)
    if init == "preset":
        return MiniMaxVL01.from_preset(options.preset, seed=stage.seed).train()
    path = Path(init)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"stage {stage.stage} starts from {path}, which holds no checkpoint; run the previous "
                                "stage first (its output's final/ folder) or pass --init PATH")
    if accelerator is not None and loads_sharded(accelerator):
        model = sharded_model(accelerator, path).train()
    else:
        model = MiniMaxVL01.from_pretrained(path).train()
    if model.processor is None:
        raise FileNotFoundError(f"{path} has no tokenizer.json / preprocessor_config.json; the training data "
                                "needs the processor saved beside the weights (save_pretrained writes it)")
    return model


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def _with_images_rotated(inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The batch's inputs with image i replaced by image i+1 (cyclically); None when that cannot change anything
    or would change the number of image tokens (images of different sizes)."""
    pixels, sizes = inputs.get("pixel_values"), inputs.get("image_sizes")
    if not pixels or len(pixels) < 2 or any(list(s) != list(sizes[0]) for s in sizes):
        return None
    return {**inputs, "pixel_values": list(pixels[1:]) + list(pixels[:1])}


def _identity(item):
    return item


# ---------------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, stage: StageConfig, options: RunOptions, accelerator=None):
        from accelerate.utils import set_seed

        if options.max_minutes is not None and not options.max_minutes >= 0:
            raise ValueError(f"max_minutes={options.max_minutes} must be >= 0 (or None for no time limit)")
        self.stage, self.options = stage, options
        self.output = Path(options.output_dir)
        cpu = (not torch.cuda.is_available()) if options.cpu is None else options.cpu
        use_tensorboard = tensorboard_available()
        if accelerator is None:
            accelerator = make_accelerator(cpu, self.output, "tensorboard" if use_tensorboard else None)
        self.accelerator = accelerator
        self.world = accelerator.num_processes
        self.accum = stage.grad_accum_steps(self.world)
        accelerator.gradient_accumulation_steps = self.accum
        set_seed(stage.seed)
        self.root = checkpointing.checkpoint_root(self.output)
        self.resume_from = self._resume_checkpoint()

        model = initial_model(stage, options, accelerator)
        self.loaded_sharded = already_sharded(model)
        before_prepare(accelerator, model)
        self.trained_names = apply_trainable(model, stage.trainable)
        self.coef = model.config.text_config.router_aux_loss_coef
        processor = model.processor
        self.train_source, held_source = build_sources(stage)
        self.total_steps = stage.steps_to_run(self.train_source.epoch_size)
        self.reference = None
        if stage.objective == "dpo":
            if self.loaded_sharded:
                # A sharded model is not deep-copied: the reference loads the same starting weights again.
                self.reference = freeze(initial_model(stage, options, accelerator))
                before_prepare(accelerator, self.reference)
            else:
                self.reference = frozen_reference(model)
        if stage.activation_checkpointing:  # the reference never runs a backward: only the policy recomputes
            model.set_activation_checkpointing(True)

        optimizer = torch.optim.AdamW(parameter_groups(model, stage), betas=tuple(stage.adam_betas))
        self.group_names = [g["name"] for g in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, stage.schedule, total_steps=self.total_steps))
        self.components = component_table(model)  # before prepare: ZeRO-3 leaves empty parameters behind
        configure_deepspeed(accelerator, stage.micro_batch_size, self.accum)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        after_prepare(accelerator, self.model)
        if self.reference is not None:
            self.reference = place_frozen(accelerator, self.reference)
        if accelerator.gradient_accumulation_steps != self.accum:  # DeepSpeed's config overrides ours
            raise ValueError(f"the launcher config sets gradient_accumulation_steps="
                             f"{accelerator.gradient_accumulation_steps} but this stage needs {self.accum} "
                             f"(global batch {stage.global_batch_size} / micro-batch {stage.micro_batch_size} / "
                             f"{self.world} processes); change one of them")
        self.trainable_params = [p for p in self.model.parameters() if p.requires_grad]

        encoder = DocumentEncoder(processor, stage.image_mode, stage.max_length, stage.data.rejected)
        layout = BatchLayout(stage.packing, stage.max_length, processor.tokenizer.pad_token_id)
        stream = DocumentStream(self.train_source, seed=stage.seed)
        self.micro_batches = MicroBatches(stream, encoder, layout, stage, accelerator.process_index, self.world,
                                          self.total_steps)
        # Every process must run the same number of held-out forwards (FSDP gathers weights in each one).
        held_count = (held_source.epoch_size // self.world) * self.world
        held_source = _Truncated(held_source, held_count)
        self.held_out = held_out_batches(held_source, encoder, layout, stage.micro_batch_size,
                                         accelerator.process_index, self.world, stage.objective == "dpo")
        self.held_out_reference: list | None = None

        self.state = {"step": 0, "samples": 0, "updates": 0, "nonfinite_total": 0, "nonfinite_in_a_row": 0,
                      "train_seconds": 0.0, "global_batch_size": stage.global_batch_size, "total_steps": self.total_steps}
        if self.resume_from is not None:
            self._load(self.resume_from)
        self.log = MetricsLog(self.output, accelerator.is_main_process,
                              resume_step=self.state["step"] if self.resume_from is not None else None)
        self.use_tensorboard = use_tensorboard and accelerator.log_with is not None and bool(accelerator.log_with)
        if self.use_tensorboard:
            accelerator.init_trackers("tensorboard")  # events under output/tensorboard/
        self._announce()

    # ------------------------------------------------------------------ start-up
    def _resume_checkpoint(self) -> Path | None:
        resume, root = self.options.resume, self.root
        if self.accelerator.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            checkpointing.remove_stale_temporaries(root)
        self.accelerator.wait_for_everyone()
        if resume is None:
            if checkpointing.complete_checkpoints(root):
                raise FileExistsError(f"{self.output} already holds checkpoints; pass --resume to continue that run "
                                      "or choose another --output")
            return None
        if resume == "latest":
            return checkpointing.latest_checkpoint(root)  # None: nothing saved yet, start from the beginning
        path = Path(resume)
        checkpointing.read_trainer_state(path)  # raises with a clear message if incomplete
        return path

    def _load(self, checkpoint: Path) -> None:
        saved = checkpointing.read_trainer_state(checkpoint)
        for key in ("global_batch_size", "total_steps"):
            if saved.get(key) != self.state[key]:
                raise ValueError(f"{checkpoint} was written with {key}={saved.get(key)} but this run has "
                                 f"{key}={self.state[key]}; resume with the same stage settings")
        self.accelerator.load_state(str(checkpoint))
        self.state.update(saved)

    def _announce(self) -> None:
        if not self.accelerator.is_main_process:
            return
        stage = self.stage
        table = stage.to_dict()
        if self.options.init is not None:  # --init overrides the table's init: record what the run really started from
            table["init"] = self.options.init if self.options.init == "preset" else str(Path(self.options.init).resolve())
        (self.output / "stage.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
        print(f"stage {stage.stage} ({stage.name}): objective {stage.objective}, image mode {stage.image_mode}, "
              f"packing {'on' if stage.packing else 'off'}, max length {stage.max_length}")
        print(self.components)
        print(f"{self.world} process(es) x micro-batch {stage.micro_batch_size} x {self.accum} accumulation step(s) "
              f"= global batch {stage.global_batch_size}; {self.total_steps} steps; precision "
              f"{self.accelerator.mixed_precision}; device {self.accelerator.device}; "
              f"distributed {self.accelerator.distributed_type.value}")
        if self.loaded_sharded:
            print("weights loaded straight into shards: each process read only its rows of the checkpoint")
        if self.resume_from is not None:
            print(f"resuming from {self.resume_from} at step {self.state['step']} "
                  f"({self.state['samples']} samples consumed)")
        sys.stdout.flush()

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, batch: dict, normaliser: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one micro-batch, scaled so that the gradients accumulated over the global batch are those of
        its mean loss (accelerate divides by the accumulation steps, DDP averages over processes)."""
        scale = self.world * self.accum / normaliser
        image_mode = self.stage.image_mode
        if self.stage.objective == "lm":
            token_lp, aux = target_log_probs(self.model, batch["model_inputs"], batch["labels"], image_mode,
                                             self.options.loss_path)
            objective_sum = -token_lp.sum()
            extra = {}
        else:
            chosen, rejected, aux = pair_log_likelihoods(self.model, batch, image_mode, self.options.loss_path)
            with self.accelerator.autocast():  # the reference is not prepared, so it gets the policy's precision here
                ref_chosen, ref_rejected = reference_log_likelihoods(self.reference, batch, image_mode,
                                                                     self.options.loss_path)
            losses, rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.stage.dpo.beta)
            objective_sum = losses.sum()
            extra = {k: v.sum() for k, v in rewards.items()}
            extra["accuracy"] = (rewards["margin"] > 0).float().sum()
        loss = objective_sum * scale + self.coef * aux
        return loss, {"objective": objective_sum.detach(), "aux": aux.detach(), **extra}

    def _train_step(self, batches: list[dict]) -> dict[str, Any]:
        accelerator, stage = self.accelerator, self.stage
        device = accelerator.device
        step = self.state["step"] + 1
        local = torch.tensor([sum(b["num_targets"] for b in batches), sum(b["num_tokens"] for b in batches)],
                             dtype=torch.float64, device=device)
        global_targets, global_tokens = accelerator.reduce(local, reduction="sum").tolist()
        normaliser = max(global_targets, 1.0) if stage.objective == "lm" else float(stage.global_batch_size)

        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        finite = True
        for batch in batches:
            batch = _to_device(batch, device)
            with accelerator.accumulate(self.model):
                loss, parts = self._forward_loss(batch, normaliser)
                if self.options.loss_hook is not None:
                    loss = self.options.loss_hook(step, loss)
                finite = finite and bool(torch.isfinite(loss.detach()))
                accelerator.backward(loss)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value.double()
        keys = sorted(sums)
        reduced = accelerator.reduce(torch.stack([sums[k] for k in keys] + [torch.tensor(float(not finite),
                                     dtype=torch.float64, device=device)]), reduction="sum").tolist()
        totals, any_nonfinite = dict(zip(keys, reduced[:-1])), reduced[-1] > 0

        learning_rates = {n: g["lr"] for n, g in zip(self.group_names, self.optimizer.param_groups)}  # this step's
        grad_norm = None
        if not any_nonfinite:
            max_norm = stage.max_grad_norm if stage.max_grad_norm is not None else math.inf
            grad_norm = accelerator.clip_grad_norm_(self.trainable_params, max_norm)
            grad_norm = None if grad_norm is None else float(grad_norm)
            any_nonfinite = grad_norm is not None and not math.isfinite(grad_norm)
        if any_nonfinite:
            self.optimizer.zero_grad(set_to_none=True)  # drop the poisoned gradients; weights stay as they are
            self.state["nonfinite_total"] += 1
            self.state["nonfinite_in_a_row"] += 1
        else:
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state["updates"] += 1
            self.state["nonfinite_in_a_row"] = 0

        micro_count = self.world * self.accum
        objective = totals["objective"] / normaliser
        aux = totals["aux"] / micro_count
        record = {"kind": "train", "step": step, "samples": step * stage.global_batch_size,
                  "loss": objective + self.coef * aux, "aux_loss": aux,
                  "objective": objective, "lr": learning_rates,
                  "grad_norm": grad_norm, "tokens": int(global_tokens), "target_tokens": int(global_targets),
                  "skipped": bool(any_nonfinite), "nonfinite_steps": self.state["nonfinite_total"]}
        if stage.objective == "dpo":
            pairs = float(stage.global_batch_size)
            record.update({k: totals[k] / pairs for k in ("chosen_reward", "rejected_reward", "margin", "accuracy")})
        return record

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out metrics: token-mean cross-entropy (lm), or the DPO margin, rewards and accuracy (dpo)."""
        accelerator, stage = self.accelerator, self.stage
        device = accelerator.device
        self.model.eval()
        try:
            if stage.objective == "lm":
                # [own-image loss sum, targets, other-image loss sum, targets of batches that had other images]
                totals = torch.zeros(4, dtype=torch.float64, device=device)
                for batch in self.held_out:
                    batch = _to_device(batch, device)
                    inputs, labels = batch["model_inputs"], batch["labels"]
                    count = torch.tensor(float(batch["num_targets"]), dtype=torch.float64, device=device)
                    token_lp, _ = target_log_probs(self.model, inputs, labels, stage.image_mode, self.options.loss_path)
                    totals[:2] += torch.stack([-token_lp.sum().double(), count])
                    swapped = _with_images_rotated(inputs)
                    if swapped is not None or is_sharded(accelerator):  # sharded: every process runs as many forwards
                        token_lp, _ = target_log_probs(self.model, swapped or inputs, labels, stage.image_mode,
                                                       self.options.loss_path)
                        if swapped is not None:
                            totals[2:] += torch.stack([-token_lp.sum().double(), count])
                gathered = accelerator.gather_for_metrics(totals.unsqueeze(0)).sum(0)
                metrics = {"val_loss": float(gathered[0] / gathered[1].clamp_min(1))}
                if gathered[3] > 0:
                    # Does the model look at the images? The same held-out text with every document given the next
                    # document's image: a loss no higher than val_loss means the images are ignored.
                    metrics["val_loss_other_images"] = float(gathered[2] / gathered[3])
                return metrics
            if self.held_out_reference is None:  # the reference never changes: score it once
                with accelerator.autocast():
                    self.held_out_reference = [reference_log_likelihoods(self.reference, _to_device(b, device),
                                                                         stage.image_mode) for b in self.held_out]
            rows = []
            for batch, (ref_chosen, ref_rejected) in zip(self.held_out, self.held_out_reference):
                chosen, rejected, _ = pair_log_likelihoods(self.model, _to_device(batch, device), stage.image_mode)
                losses, rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, stage.dpo.beta)
                rows.append(torch.stack([losses, rewards["margin"], rewards["chosen_reward"],
                                         rewards["rejected_reward"]], 1))
            values = accelerator.gather_for_metrics(torch.cat(rows).double())  # [pairs, 4] over all processes
            loss, margin, chosen, rejected = values.mean(0).tolist()
            return {"val_loss": loss, "val_margin": margin, "val_accuracy": float((values[:, 1] > 0).double().mean()),
                    "val_chosen_reward": chosen, "val_rejected_reward": rejected, "val_pairs": int(values.shape[0])}
        finally:
            self.model.train()

    # ------------------------------------------------------------------ the run
    def fit(self) -> TrainResult:
        accelerator, stage, state = self.accelerator, self.stage, self.state
        from tqdm.auto import tqdm

        eval_before: dict[str, float] = {}
        if state["step"] == 0 and self.held_out:
            eval_before = self.evaluate()
            self._write({"kind": "eval", "step": 0, **eval_before})
        loader = DataLoader(self.micro_batches, batch_size=None, collate_fn=_identity,
                            sampler=range(state["step"] * self.accum, self.total_steps * self.accum),
                            num_workers=self.options.data_workers)
        batches = iter(loader)
        bar = tqdm(total=self.total_steps, initial=state["step"], unit="step", dynamic_ncols=True,
                   disable=not (accelerator.is_main_process and self.options.progress), desc=f"stage {stage.stage}")
        losses: list[float] = []
        last_eval: dict[str, float] = {}
        first_step, saved_step = state["step"], None
        while state["step"] < self.total_steps and not self._out_of_time():
            started = time.perf_counter()
            record = self._train_step([next(batches) for _ in range(self.accum)])
            seconds = time.perf_counter() - started
            state["step"], state["samples"] = record["step"], record["samples"]
            record["seconds"] = seconds
            # Wall time spent in training steps, carried across resumes (learning curves plot against it).
            state["train_seconds"] += seconds
            record["train_seconds"] = state["train_seconds"]
            record["tokens_per_s"] = record["tokens"] / seconds
            if not record["skipped"]:
                losses.append(record["loss"])
            if record["step"] % stage.log_every == 0 or record["skipped"] or record["step"] == self.total_steps:
                self._write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{next(iter(record['lr'].values())):.2e}",
                            tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
            if state["nonfinite_in_a_row"] >= stage.max_nonfinite_steps:
                bar.close()
                raise NonFiniteLossError(
                    f"{state['nonfinite_in_a_row']} steps in a row (up to step {state['step']}) had a non-finite loss "
                    f"or gradient norm; none of them updated the weights, which are those of step "
                    f"{state['step'] - state['nonfinite_in_a_row']}. Lower the learning rate or max_grad_norm, check "
                    f"the data of samples {state['samples'] - state['nonfinite_in_a_row'] * stage.global_batch_size}-"
                    f"{state['samples'] - 1}, or resume from an earlier checkpoint in {self.root}.")
            if stage.eval.every and state["step"] % stage.eval.every == 0 and self.held_out:
                last_eval = self.evaluate()
                self._write({"kind": "eval", "step": state["step"], **last_eval})
            if stage.checkpoint.every and state["step"] % stage.checkpoint.every == 0:
                checkpointing.save_checkpoint(accelerator, self.root, state["step"], dict(state), stage.checkpoint.keep)
                saved_step = state["step"]
        bar.close()
        out_of_time = self.options.max_minutes is not None and state["step"] < self.total_steps
        trained = state["step"] > first_step
        if out_of_time and trained and saved_step != state["step"]:  # a budget is a stop to be continued from
            checkpointing.save_checkpoint(accelerator, self.root, state["step"], dict(state), stage.checkpoint.keep)
        if self.held_out and not (stage.eval.every and state["step"] % stage.eval.every == 0):
            last_eval = self.evaluate()
            self._write({"kind": "eval", "step": state["step"], **last_eval})
        final_dir = self.export()
        # Averages over a few steps: single-batch losses jump with the documents they happen to hold.
        window = max(1, min(5, len(losses) // 2))
        first_loss = sum(losses[:window]) / window if losses else None
        last_loss = sum(losses[-window:]) / window if losses else None
        result = TrainResult(self.output, state["step"], final_dir, first_loss, last_loss, state["nonfinite_total"],
                             eval_before, last_eval, model=accelerator.unwrap_model(self.model),
                             samples=state["samples"], train_seconds=state["train_seconds"], out_of_time=out_of_time)
        if accelerator.is_main_process:
            write_json(self.output / "summary.json", {
                "stage": stage.stage, "steps": state["step"], "samples": state["samples"],
                "first_loss": first_loss, "last_loss": last_loss, "loss_window": window,
                "skipped_steps": state["nonfinite_total"], "updates": state["updates"],
                "eval_before": eval_before, "eval_after": last_eval, "final": str(final_dir),
                "train_seconds": state["train_seconds"], "out_of_time": out_of_time})
        if self.use_tensorboard:
            accelerator.end_training()
        return result

    def _out_of_time(self) -> bool:
        """Whether `max_minutes` of training steps are spent. Every process must stop at the same step (the next
        one is a collective), so the slowest process's clock decides."""
        budget = self.options.max_minutes
        if budget is None:
            return False
        spent = torch.tensor([self.state["train_seconds"]], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.gather(spent).max()) >= budget * 60

    def _write(self, record: dict[str, Any]) -> None:
        record = {**record, **self.options.extra_log}
        self.log.write(record)
        if self.use_tensorboard:
            self.accelerator.log(scalars(record, record["kind"]), step=record["step"])

    # ------------------------------------------------------------------ export
    def export(self) -> Path:
        """`save_pretrained` into output/final via a temporary folder and a rename."""
        accelerator = self.accelerator
        final = self.output / "final"
        sharded = is_sharded(accelerator)
        # FSDP / ZeRO-3 hold shards: gather a full state dict (a collective, so every process calls it).
        full_state = accelerator.get_state_dict(self.model) if sharded else None
        if accelerator.is_main_process:
            temp = temporary_folder(final)
            model = accelerator.unwrap_model(self.model)
            if full_state is not None:
                model = _materialised_copy(model, full_state)
            model.save_pretrained(temp)
            replace_folder(temp, final)
        accelerator.wait_for_everyone()
        return final


class _Truncated:
    """The first `count` samples of a source (held-out sets are cut to a multiple of the process count)."""

    def __init__(self, source, count: int):
        self.source, self.epoch_size = source, count

    def sample(self, index: int):
        return self.source.sample(index)


def _materialised_copy(model: MiniMaxVL01, state: dict[str, torch.Tensor]) -> MiniMaxVL01:
    copy = MiniMaxVL01(model.config, processor=model.processor)
    copy.load_state_dict({k: v.cpu() for k, v in state.items()}, strict=True)
    return copy


def train(stage: StageConfig, options: RunOptions) -> TrainResult:
    return Trainer(stage, options).fit()
