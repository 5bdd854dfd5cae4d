"""Unit tests of the training pieces: stage tables, schedules, data positions, batches, losses, checkpoints."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from minimax_vl.model import MiniMaxVL01
from text_backbone.model import IGNORE_INDEX, causal_lm_loss
from training import checkpointing
from training.datasets import (BatchLayout, DocumentEncoder, DocumentStream, GeneratedSource,
                               build_batch, generator_config, process_positions)
from training.losses import count_targets, document_log_likelihoods, dpo_loss, shifted_targets, token_log_likelihood
from training.schedules import lr_factor
from training.stages import (COMPONENTS, ScheduleConfig, StageConfigError, has_prefix, learning_rate_for,
                             load_stage, resolve_init)
from training.train import build_parser, nonfinite_injection, stage_overrides
from training.trainable import apply_trainable, component_table, parameter_groups


@pytest.fixture(scope="module")
def tiny_model() -> MiniMaxVL01:
    torch.manual_seed(0)
    return MiniMaxVL01.from_preset("tiny", seed=0)


# ---------------------------------------------------------------------- stage tables
def test_shipped_stages_follow_the_paper():
    one, two, three, four = (load_stage(i) for i in (1, 2, 3, 4))
    assert one.trainable == ["vision_tower", "multi_modal_projector"] and one.image_mode == "fixed"
    assert one.init == "preset" and one.data.mix == 1
    for stage in (two, three, four):
        assert sorted(stage.trainable) == sorted(COMPONENTS) and stage.image_mode == "anyres"
    assert dict(two.data.sample_kinds()) == {"vqa": 20.0, "text_only": 1.0}
    assert three.data.sample_kinds() == (("conversation", 1.0),)
    assert four.objective == "dpo" and four.dpo.beta > 0
    epoch = four.data.num_samples
    assert four.steps_to_run(epoch) * four.global_batch_size < epoch  # stops before one epoch
    assert [s.init for s in (two, three, four)] == ["stage1/final", "stage2/final", "stage3/final"]
    assert resolve_init("stage1/final", Path("runs/x/stage2")) == str(Path("runs/x/stage1/final"))


def test_overrides_are_dotted_yaml_values():
    stage = load_stage(2, ["max_steps=7", "data.mix=[[vqa, 1], [text_only, 3]]", "packing=false",
                           "learning_rates.language_model=1e-5", "schedule.kind=wsd"])
    assert stage.max_steps == 7 and stage.packing is False and stage.schedule.kind == "wsd"
    assert stage.data.sample_kinds() == (("vqa", 1.0), ("text_only", 3.0))
    assert stage.learning_rates["language_model"] == 1e-5
    with pytest.raises(StageConfigError, match="unknown field.*max_stepz"):
        load_stage(1, ["max_stepz=3"])
    with pytest.raises(StageConfigError, match="schedule.kind"):
        load_stage(1, ["schedule.kind=linear"])
    with pytest.raises(StageConfigError, match="no learning rate"):
        load_stage(1, ["trainable=[language_model]"])
    with pytest.raises(StageConfigError, match="key=value"):
        load_stage(1, ["max_steps"])
    # the generator's own checks come back as config errors too, before anything is built
    with pytest.raises(StageConfigError, match=r"add \[drill, <weight>\] to the mix"):
        load_stage(2, ["data.question_types=[intersection]"])
    with pytest.raises(StageConfigError, match="needs facts=True"):
        load_stage(2, ["data.worked_steps=true"])
    drill = load_stage(2, ["data.mix=[[vqa, 6], [drill, 2]]", "data.question_types=[intersection]"])
    assert drill.data.question_types == ["intersection"]


def test_cli_flags_become_overrides_and_set_wins():
    args = build_parser().parse_args(["--stage", "1", "--output", "x", "--max-steps", "5", "--no-packing",
                                      "--set", "max_steps=6"])
    overrides = stage_overrides(args)
    assert overrides == ["max_steps=5", "packing=false", "max_steps=6"]
    assert load_stage(1, overrides).max_steps == 6
    assert "--resume" in build_parser().format_help()


def test_gradient_accumulation_keeps_the_global_batch():
    stage = load_stage(1, ["global_batch_size=8", "micro_batch_size=2"])
    assert stage.grad_accum_steps(1) == 4 and stage.grad_accum_steps(2) == 2 and stage.grad_accum_steps(4) == 1
    with pytest.raises(StageConfigError, match="multiple of micro_batch_size x processes"):
        stage.grad_accum_steps(3)


def test_learning_rate_prefixes_match_whole_components():
    rates = {"language_model": 1.0, "language_model.model.layers.1": 2.0}
    assert learning_rate_for("language_model.model.layers.1.x", rates) == 2.0
    assert learning_rate_for("language_model.model.layers.10.x", rates) == 1.0
    assert not has_prefix("vision_tower_extra.w", "vision_tower")
    assert learning_rate_for("vision_tower.w", rates) is None


# ---------------------------------------------------------------------- schedules
def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    schedule = ScheduleConfig(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)
    factors = [lr_factor(schedule, s, 20) for s in range(20)]
    assert factors[:4] == sorted(factors[:4]) and 0 < factors[0] < factors[3] < 1
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[-1] == pytest.approx(0.1)


def test_wsd_schedule_is_stable_then_decays_exponentially():
    schedule = ScheduleConfig(kind="wsd", warmup_steps=2, min_lr_ratio=0.01, decay_fraction=0.25)
    factors = [lr_factor(schedule, s, 20) for s in range(20)]
    assert factors[2:15] == [1.0] * 13
    decay = factors[15:]
    assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] == pytest.approx(0.01)
    ratios = [b / a for a, b in zip(decay, decay[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # a constant factor per step: exponential


# ---------------------------------------------------------------------- data positions and streams
def test_processes_split_each_global_batch_by_sample_index():
    stage = load_stage(1, ["global_batch_size=8", "micro_batch_size=2"])
    one = [process_positions(3, a, stage, 0, 1) for a in range(4)]
    two = [[process_positions(3, a, stage, p, 2) for a in range(2)] for p in range(2)]
    assert sorted(i for mb in one for i in mb) == list(range(24, 32))
    assert two[0] == [[24, 26], [28, 30]] and two[1] == [[25, 27], [29, 31]]


def test_finite_streams_reshuffle_each_epoch_deterministically():
    source = GeneratedSource(generator_config(load_stage(3).data, "train"), epoch_size=5)
    ids = [DocumentStream(source, seed=1)[i].id for i in range(10)]
    assert sorted(ids[:5]) == sorted(ids[5:]) == [f"train-{i:08d}" for i in range(5)]
    assert ids[:5] != ids[5:] or ids[:5] != sorted(ids[:5])
    assert ids == [DocumentStream(source, seed=1)[i].id for i in range(10)]
    assert ids != [DocumentStream(source, seed=2)[i].id for i in range(10)]


def _documents(tiny_model, stage_number, count, image_mode, max_length=384):
    stage = load_stage(stage_number, ["data.image_size=128"])
    source = GeneratedSource(generator_config(stage.data, "train"))
    encoder = DocumentEncoder(tiny_model.processor, image_mode, max_length)
    return [source.sample(i) for i in range(count)], encoder


def test_packed_and_padded_batches_give_the_same_document_log_likelihoods(tiny_model):
    """Packing plumbing end to end: images in token order, documents isolated by cu_seqlens."""
    samples, encoder = _documents(tiny_model, 2, 4, "anyres")
    pad = tiny_model.processor.tokenizer.pad_token_id
    results = {}
    for packing in (True, False):
        batch = build_batch(samples, encoder, BatchLayout(packing, 512, pad), pairs=False)
        with torch.no_grad():
            out = tiny_model(**batch["model_inputs"], image_mode="anyres")
        targets = shifted_targets(batch["labels"], batch["model_inputs"].get("cu_seqlens"))
        token_lp = token_log_likelihood(out.logits, targets)
        results[packing] = document_log_likelihoods(token_lp, targets, batch["doc_ids"], batch["num_docs"])
        assert batch["num_targets"] == int((targets != IGNORE_INDEX).sum())
    assert any(s.images for s in samples)
    torch.testing.assert_close(results[True], results[False], rtol=1e-4, atol=1e-3)
    assert (results[True] < 0).all()


def test_loss_sums_match_the_models_mean_loss(tiny_model):
    samples, encoder = _documents(tiny_model, 1, 3, "fixed")
    pad = tiny_model.processor.tokenizer.pad_token_id
    for packing in (True, False):
        batch = build_batch(samples, encoder, BatchLayout(packing, 512, pad), pairs=False)
        inputs = batch["model_inputs"]
        with torch.no_grad():
            out = tiny_model(**inputs, image_mode="fixed", labels=batch["labels"])
        targets = shifted_targets(batch["labels"], inputs.get("cu_seqlens"))
        ce_sum = -token_log_likelihood(out.logits, targets).sum()
        mean = ce_sum / count_targets(batch["labels"], inputs.get("cu_seqlens"))
        coef = tiny_model.config.text_config.router_aux_loss_coef
        torch.testing.assert_close(mean + coef * out.aux_loss, out.loss)
        torch.testing.assert_close(mean, causal_lm_loss(out.logits, batch["labels"], inputs.get("cu_seqlens")))


def test_preference_pairs_become_chosen_then_rejected_documents(tiny_model):
    samples, encoder = _documents(tiny_model, 4, 3, "anyres")
    batch = build_batch(samples, encoder, BatchLayout(True, 512, 0), pairs=True)
    assert batch["num_docs"] == 6
    images = sum(len(s.images) for s in samples)
    assert len(batch["model_inputs"]["pixel_values"] or []) == 2 * images  # each pair's images, twice
    chosen, rejected = encoder.encode_pair(samples[0])
    answer_ids = lambda doc: doc["input_ids"][doc["labels"] != IGNORE_INDEX].tolist()  # noqa: E731
    assert answer_ids(chosen) != answer_ids(rejected)
    assert chosen["input_ids"][:5].tolist() == rejected["input_ids"][:5].tolist()


def test_dpo_loss_matches_its_definition():
    pc, pr, rc, rr = (torch.tensor(v) for v in ([-3.0, -1.0], [-4.0, -0.5], [-3.5, -1.0], [-3.5, -1.0]))
    losses, rewards = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margin = 0.5 * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(rewards["margin"], margin)
    torch.testing.assert_close(losses, torch.log1p(torch.exp(-margin)))
    assert losses[0] < math.log(2) < losses[1]


# ---------------------------------------------------------------------- trainable parameters
def test_freezing_table_and_parameter_groups():
    model = MiniMaxVL01.from_preset("tiny", seed=0)
    stage = load_stage(1)
    trained = apply_trainable(model, stage.trainable)
    assert trained and all(n.startswith(("vision_tower.", "multi_modal_projector.")) for n in trained)
    table = component_table(model).splitlines()
    status = {line.split()[0]: line.split()[1] for line in table[1:5]}
    assert status == {"vision_tower": "trainable", "multi_modal_projector": "trainable", "image_newline": "frozen",
                      "language_model": "frozen"}
    groups = parameter_groups(model, stage)
    assert {g["name"] for g in groups} == {"vision_tower", "vision_tower/no_decay", "multi_modal_projector",
                                           "multi_modal_projector/no_decay"}
    assert sum(len(g["params"]) for g in groups) == len(trained)
    assert all(p.ndim < 2 for g in groups if g["name"].endswith("no_decay") for p in g["params"])
    with pytest.raises(ValueError, match="matches no parameter"):
        apply_trainable(model, ["language_model.nonexistent"])


def test_nonfinite_injection_hook():
    hook = nonfinite_injection("2,4:inf")
    loss = torch.tensor(1.5)
    assert hook(1, loss) == loss and torch.isnan(hook(2, loss)) and torch.isinf(hook(4, loss))
    assert nonfinite_injection("") is None


# ---------------------------------------------------------------------- checkpoints
class _FailingSave(Exception):
    pass


def test_an_interrupted_save_never_looks_like_a_checkpoint(tmp_path, monkeypatch):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(3, 2))
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        checkpointing.save_checkpoint(accelerator, root, step, {"step": step}, keep=2)
    assert [p.name for p in checkpointing.complete_checkpoints(root)] == ["step_000002", "step_000003"]

    def crash(output_dir, **kwargs):  # dies half way through writing, as a SIGKILL would
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
        raise _FailingSave()

    monkeypatch.setattr(accelerator, "save_state", crash)
    with pytest.raises(_FailingSave):
        checkpointing.save_checkpoint(accelerator, root, 4, {"step": 4}, keep=2)
    latest = checkpointing.latest_checkpoint(root)
    assert latest.name == "step_000003" and checkpointing.read_trainer_state(latest) == {"step": 3}
    assert [p.name for p in checkpointing.remove_stale_temporaries(root)] == [".tmp-step_000004"]
    monkeypatch.undo()
    with torch.no_grad():
        model.weight.zero_()
    accelerator.load_state(str(latest))
    assert model.weight.abs().sum() > 0


def test_rejected_reply_styles(tiny_model):
    from training.datasets import rejected_reply, repetitive_reply

    samples, _ = _documents(tiny_model, 4, 12, "anyres")
    answer = samples[0].messages[-1]["content"][0]["text"]
    assert rejected_reply(samples[0], "distractor") == samples[0].rejected
    assert rejected_reply(samples[0], "repetition") == repetitive_reply(answer) == " ".join([answer] * 3)
    mixed = [rejected_reply(s, "mixed") for s in samples]
    assert mixed == [rejected_reply(s, "mixed") for s in samples]  # fixed by the sample id
    assert {m == s.rejected for m, s in zip(mixed, samples)} == {True, False}  # both styles occur
    no_rejected = samples[0].__class__(samples[0].id, samples[0].messages, samples[0].images)
    with pytest.raises(ValueError, match="no rejected reply"):
        rejected_reply(no_rejected, "distractor")
    assert rejected_reply(no_rejected, "repetition").startswith(answer)
    with pytest.raises(StageConfigError, match="data.rejected"):
        load_stage(4, ["data.rejected=shorter"])


def test_a_llava_dataset_folder_trains_and_holds_out_its_tail(tmp_path):
    from training.data.generate import generate_dataset
    from training.datasets import build_sources
    from training.loop import RunOptions, train

    config = generator_config(load_stage(3, ["data.image_size=128"]).data, "train")
    generate_dataset(config, tmp_path / "data", 7, progress=False)
    stage = load_stage(3, [f"data.dataset={tmp_path / 'data'}", "eval.samples=2", "max_steps=2",
                           "global_batch_size=2", "micro_batch_size=2", "max_length=256", "init=preset",
                           "checkpoint.every=0"])
    train_source, held_out = build_sources(stage)
    assert train_source.epoch_size == 5 and held_out.epoch_size == 2
    assert held_out.sample(0).id == "train-00000005" and isinstance(held_out.sample(0).images[0], str)
    result = train(stage, RunOptions(output_dir=tmp_path / "run", progress=False))
    assert result.steps == 2 and "val_loss" in result.eval_after
    assert (result.final_dir / "config.json").exists()


def test_first_sample_moves_the_training_stream_onto_unseen_samples_and_leaves_validation_alone():
    from training.datasets import build_sources

    plain_train, plain_held = build_sources(load_stage(2, ["data.image_size=128"]))
    train_source, held_out = build_sources(load_stage(2, ["data.image_size=128", "data.first_sample=7"]))
    assert train_source.sample(0).id == plain_train.sample(7).id == "train-00000007"
    assert train_source.sample(0).messages == plain_train.sample(7).messages
    assert held_out.sample(0).id == plain_held.sample(0).id
    with pytest.raises(StageConfigError, match="first_sample"):
        load_stage(2, ["data.first_sample=-1"])


def test_data_facts_reaches_the_generator_and_its_samples():
    stage = load_stage(2, ["data.read_first=true", "data.facts=true", "data.mix=[[reasoning, 1]]",
                           "data.difficulty=easy", "data.image_size=192"])
    config = generator_config(stage.data, "train")
    assert config.facts and config.read_first
    source = GeneratedSource(config)
    texts = [m["content"][-1]["text"] for i in range(8) for m in source.sample(i).messages if m["role"] == "assistant"]
    assert any("Facts: " in t for t in texts)
    assert not generator_config(load_stage(2).data, "train").facts  # off unless asked


def test_data_worked_steps_reaches_the_generator_and_needs_facts():
    overrides = ["data.read_first=true", "data.facts=true", "data.worked_steps=true", "data.mix=[[reasoning, 1]]"]
    assert generator_config(load_stage(2, overrides).data, "train").worked_steps
    assert not generator_config(load_stage(2).data, "train").worked_steps  # off unless asked
    with pytest.raises(ValueError, match="facts"):
        generator_config(load_stage(2, ["data.read_first=true", "data.worked_steps=true"]).data, "train")
