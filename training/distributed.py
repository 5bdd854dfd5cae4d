"""How the training loop is spread over processes: the Accelerator, sharded runs on the CPU, the DPO reference.

    accelerator = make_accelerator(cpu=True, output=Path("runs/x"), log_with=None)
    before_prepare(accelerator, model); configure_deepspeed(accelerator, micro_batch_size, accumulation_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler); after_prepare(accelerator, model)
    reference = place_frozen(accelerator, frozen_reference(model))     # sharded like the policy

Everything else is accelerate's: `accelerate launch --config_file training/configs/accelerate/<config>.yaml` sets
the environment, `Accelerator()` reads it, `prepare` wraps the model (DDP, FSDP2 or DeepSpeed ZeRO-3).

Sharded runs on the CPU (docs/DISTRIBUTED.md). accelerate 1.16 turns an FSDP launch on the CPU into plain DDP:
it only honours `ACCELERATE_USE_FSDP` for accelerator devices (in `AcceleratorState.__init__` the FSDP branch sits
under `distributed_type in (MULTI_GPU, MULTI_XPU, ...)`; a CPU launch is `MULTI_CPU`). torch's FSDP2 runs on the
CPU with gloo, so `make_accelerator` promotes such a state to FSDP with the launcher's plugin; from then on
`prepare`, `save_state`, `load_state` and `get_state_dict` take accelerate's FSDP2 paths as they do on GPUs.
DeepSpeed launches get a gloo process group the same way. `cpu_fsdp2.yaml` and `cpu_deepspeed_zero3.yaml` run
this in CI (tests/training/test_train_sharded.py).
"""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from torch import nn

# Wrapping units: each one is all-gathered for its forward and backward and freed after (FSDP2 `fully_shard`).
# The same names as `fsdp_transformer_layer_cls_to_wrap` in the launcher configs.
SHARD_UNITS = ("DecoderLayer", "Block")


def make_accelerator(cpu: bool, output: Path, log_with: str | None):
    """The run's Accelerator, configured by the launcher's environment (and FSDP2 on the CPU when asked for)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType

    if cpu and deepspeed_requested():
        # accelerate ignores a DeepSpeed launch when asked for the CPU, and without a GPU it finds no process
        # group backend (every process would think it is the only one). DeepSpeed itself runs on the CPU (its
        # CPU accelerator) over gloo: name the backend and let accelerate treat the CPU as the device.
        from accelerate import PartialState

        PartialState(cpu=False, backend="gloo")
        cpu = False
    # find_unused_parameters: a batch never reaches every MoE expert (nor the vision tower when it holds only
    # text), and DDP must not wait for gradients of parameters the forward did not use.
    accelerator = Accelerator(
        cpu=cpu, step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        log_with=log_with, project_dir=str(output))
    if accelerator.distributed_type == DistributedType.MULTI_CPU and fsdp_requested():
        _promote_to_fsdp(accelerator)
    return accelerator


def deepspeed_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def configure_deepspeed(accelerator, micro_batch_size: int, accumulation_steps: int) -> None:
    """The stage decides the batch geometry: DeepSpeed's config gets it (it cannot read it off a DataLoader,
    since the loop builds its own micro-batches), so the launcher YAML need not repeat it."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=micro_batch_size, gradient_accumulation_steps=accumulation_steps,
            train_batch_size=micro_batch_size * accumulation_steps * accelerator.num_processes)


def fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def _promote_to_fsdp(accelerator) -> None:
    """Turns accelerate's MULTI_CPU (DDP) state into FSDP with the plugin the launcher described (see above)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    # A new plugin reads the FSDP_* variables the launcher set.
    plugin = getattr(state, "fsdp_plugin", None) or FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise ValueError("FSDP on the CPU is supported with fsdp_version: 2 only (cpu_fsdp2.yaml)")
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    # Every later `AcceleratorState()` copies PartialState's fields over its own, as accelerate does itself
    # when it picks FSDP (the last line of `AcceleratorState.__init__`).
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def shard_per_unit(module: nn.Module, units: tuple[str, ...] = SHARD_UNITS, **fully_shard_kwargs) -> nn.Module:
    """FSDP2 by hand: `fully_shard` every module whose class is named in `units`, then the root (which keeps
    whatever is outside them: embeddings, projector, final norm, lm_head)."""
    from torch.distributed.fsdp import fully_shard

    for submodule in module.modules():
        if type(submodule).__name__ in units:
            fully_shard(submodule, **fully_shard_kwargs)
    fully_shard(module, **fully_shard_kwargs)
    return module


def loads_sharded(accelerator) -> bool:
    """Whether a checkpoint is loaded straight into shards (FSDP2): each process reads only its rows, and no
    process ever holds the whole model (`training.sharded_init`). ZeRO-3 and DDP load whole models."""
    return bool(getattr(accelerator, "is_fsdp2", False))


def sharded_model(accelerator, path: Path) -> nn.Module:
    """`sharded_from_pretrained` with the launcher's FSDP2 settings (what accelerate's `prepare` would apply;
    it leaves an already sharded model as it is)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from training.sharded_init import sharded_from_pretrained

    plugin = accelerator.state.fsdp_plugin
    model, _ = sharded_from_pretrained(path, device=accelerator.device,
                                       reshard_after_forward=plugin.reshard_after_forward,
                                       mp_policy=plugin.mixed_precision_policy or MixedPrecisionPolicy(),
                                       offload_policy=plugin.cpu_offload)
    if plugin.auto_wrap_policy is transformer_auto_wrap_policy:
        # `prepare` resolves the wrapping classes by name in the model, and fully_shard has renamed them
        # (FSDPDecoderLayer): resolve them here, from the classes themselves, so that lookup is skipped.
        classes = {type(m).__mro__[1] for m in model.modules() if type(m).__mro__[1].__name__ in SHARD_UNITS}
        plugin.auto_wrap_policy = partial(transformer_auto_wrap_policy, transformer_layer_cls=classes)
    return model


def already_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def place_frozen(accelerator, reference: nn.Module) -> nn.Module:
    """The frozen DPO reference where the policy is. Under FSDP2 it is sharded per layer like the policy (a full
    copy per process is what sharding avoids; accelerate's `prepare_model` refuses FSDP2 without an optimizer);
    elsewhere it is only moved to the device, which also keeps it out of the checkpoints."""
    from accelerate.utils import DistributedType

    if already_sharded(reference):  # loaded sharded (`sharded_model`)
        return reference
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.is_fsdp2:
        reference.to(accelerator.device)
        return shard_per_unit(reference, reshard_after_forward=True)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.prepare_model(reference, evaluation_mode=True)
    return reference.to(accelerator.device)


def before_prepare(accelerator, model: nn.Module) -> None:
    """Sharded set-ups gather a unit's weights when it runs (and reduce its gradients after its backward), so
    every process must run the same units in the same order. Two things in this model differ between batches:
    a text-only batch skips the vision tower (fixed by `run_vision_without_images`: a blank tile with zero
    weight), and a batch may route no token to some expert (fixed by `after_prepare`)."""
    if is_sharded(accelerator):
        model.run_vision_without_images = True


def after_prepare(accelerator, model: nn.Module) -> None:
    """FSDP2 reduce-scatters only the gradients a process computed; an expert one process's tokens never chose
    would make the processes' collectives differ. Zero gradients for unused parameters keep them in step (the
    role DDP's find_unused_parameters plays). An expert that no token of the whole global batch chose then gets
    a zero gradient, and AdamW still moves it by its momentum, where one process would skip it: a difference
    only for experts idle for a whole step."""
    if getattr(accelerator, "is_fsdp2", False):
        model.set_reduce_scatter_unused_params(True)


def is_sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
