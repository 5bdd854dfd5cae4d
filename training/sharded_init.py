"""A model too big for one process: built on `meta`, sharded per decoder layer, each rank reading only its rows.

    torchrun --nproc-per-node 8 -m training.sharded_init path/to/MiniMax-VL-01 --dtype bfloat16
    torchrun --nproc-per-node 2 -m training.sharded_init runs/tiny/stage2/final --probe-out /tmp/probe   # CPU, gloo

The path the 456B preset takes to the GPUs (docs/DISTRIBUTED.md):
  1. build `MiniMaxVL01(config)` on the meta device: shapes only, nothing allocated or initialised;
  2. `fully_shard` every decoder layer and ViT block, then the root (FSDP2, `training.distributed.shard_per_unit`):
     each parameter becomes a DTensor split along dim 0 over the ranks, still on meta;
  3. `to_empty` allocates this rank's rows only (1/W of every tensor);
  4. each rank reads exactly its rows of each tensor from the released safetensors files (`get_slice`), so no
     rank ever holds a full tensor of the text model. The vision tower (0.3B of 456B parameters) is stored under
     CLIP names with q, k, v apart while the model's timm ViT fuses them; every rank reads it whole, converts it
     and keeps its rows, which costs 0.6 GB in bf16 once at start-up.
The result runs forward and backward like the single-process model (tests/training/test_sharded_init.py: the
same logits on two CPU processes as `from_pretrained` in one). The training loop loads checkpoints this way under
FSDP2 (`training.distributed.sharded_model`).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from minimax_vl.config import MiniMaxVL01Config
from minimax_vl.model import MiniMaxVL01
from minimax_vl.weights import VISION_PREFIX
from text_backbone.weights_io import (DERIVED_BUFFERS_HOOK, Drop, KeyMap, KeyMismatchError, Rename, inspect_checkpoint,
                                      load_state_dict)
from training.distributed import shard_per_unit
from vision.convert import released_to_timm


@dataclass
class ShardReport:
    """What this rank read: bytes from the checkpoint outside the vision tower (its rows only), the vision
    tower's bytes (read whole), and the elements it holds (its shard of every parameter)."""

    rows_bytes: int
    vision_bytes: int
    local_elements: int


def local_window(param: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, offset) of this rank's block of a parameter in the full tensor; the whole tensor if not sharded."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not isinstance(param, DTensor):
        return tuple(param.shape), (0,) * param.ndim
    return compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)


def _window(shape: tuple[int, ...], offset: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def sharded_from_pretrained(path: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                            **fully_shard_kwargs) -> tuple[MiniMaxVL01, ShardReport]:
    """Steps 1-4 above, in an initialised process group; returns the FSDP2 model and what this rank read.
    `fully_shard_kwargs` (reshard_after_forward, mp_policy, offload_policy, mesh) go to every `fully_shard`."""
    from safetensors import safe_open

    path = Path(path)
    config = MiniMaxVL01Config.load(path)
    with torch.device("meta"):
        model = MiniMaxVL01(config)
    if dtype is not None:
        model.to(dtype)  # on meta: only the dtype changes
    shard_per_unit(model, **fully_shard_kwargs)
    model.to_empty(device=device)

    info = inspect_checkpoint(path)
    vision = _vision_state(path, config)
    names = [name for name, _ in model.named_parameters()]
    expected = {n for n in names if not n.startswith(VISION_PREFIX)}
    stored = {k for k in info.tensors if not k.startswith(VISION_PREFIX)}
    if expected != stored:
        missing, unexpected = sorted(expected - stored), sorted(stored - expected)
        raise KeyMismatchError(f"checkpoint {path} does not fit MiniMaxVL01: missing {missing[:10]}, unexpected "
                               f"{unexpected[:10]}", missing=missing, unexpected=unexpected)
    rows_bytes = local_elements = 0
    handles: dict[Path, object] = {}
    try:
        with torch.no_grad():
            for name, param in model.named_parameters():
                shape, offset = local_window(param)
                local = param.to_local() if hasattr(param, "to_local") else param
                if name.startswith(VISION_PREFIX):
                    full = vision[name[len(VISION_PREFIX):]]
                    value = full[_window(shape, offset)]
                else:
                    tensor_info = info.tensors[name]
                    if tuple(tensor_info.shape) != tuple(param.shape):
                        raise KeyMismatchError(f"checkpoint {path}: {name} has shape {tensor_info.shape}, the model "
                                               f"expects {tuple(param.shape)}", mismatched=[name])
                    if tensor_info.file not in handles:
                        handles[tensor_info.file] = safe_open(str(tensor_info.file), framework="pt", device="cpu")
                    value = handles[tensor_info.file].get_slice(name)[_window(shape, offset)]  # only these rows
                    rows_bytes += value.numel() * value.element_size()
                local.copy_(value)
                local_elements += local.numel()
    finally:
        handles.clear()
    vision_bytes = sum(t.numel() * t.element_size() for t in vision.values())
    for module in model.modules():  # non-persistent buffers (lightning decay slopes) are recomputed, not stored
        hook = getattr(module, DERIVED_BUFFERS_HOOK, None)
        if callable(hook):
            hook()
    _load_processor(model, path)
    return model.eval(), ShardReport(rows_bytes, vision_bytes, local_elements)


def _vision_state(path: Path, config: MiniMaxVL01Config) -> dict[str, torch.Tensor]:
    only_vision = KeyMap((Rename(VISION_PREFIX + "{rest}", "{rest}"), Drop("language_model.{rest}"),
                          Drop("multi_modal_projector.{rest}"), Drop("image_newline")))
    return released_to_timm(load_state_dict(path, key_map=only_vision), config.vision_config)


def _load_processor(model: MiniMaxVL01, path: Path) -> None:
    from minimax_vl.processor import MiniMaxVL01Processor

    if (path / "tokenizer.json").exists() and (path / "preprocessor_config.json").exists():
        model.processor = MiniMaxVL01Processor.from_pretrained(path)


# ---------------------------------------------------------------------- a probe to compare with one process
PROBE_MESSAGES = [{"role": "user",
                   "content": [{"type": "image"}, {"type": "text", "text": "What does the chart show?"}]}]


def probe_inputs(processor) -> dict:
    """A fixed prompt with a fixed random image (anyres tiles), the same in every process."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8))
    return processor(images=[image], text=processor.apply_chat_template(PROBE_MESSAGES, add_generation_prompt=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m training.sharded_init",
                                     description="Load a released-layout checkpoint sharded over the ranks (FSDP2) "
                                                 "and run one probe forward.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--probe-out", type=Path, help="write each rank's probe logits and read counts here")
    args = parser.parse_args(argv)
    import torch.distributed as dist
    from safetensors.torch import save_file

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    model, report = sharded_from_pretrained(args.checkpoint, dtype=getattr(torch, args.dtype) if args.dtype else None,
                                            device=device)
    inputs = probe_inputs(model.processor)
    inputs = {k: [t.to(device) for t in v] if k == "pixel_values" else v.to(device) if torch.is_tensor(v) else v
              for k, v in inputs.items()}
    with torch.no_grad():
        logits = model(**inputs).logits.float().cpu()
    print(f"rank {rank}/{world}: read {report.rows_bytes / 2**20:.1f} MiB of rows + {report.vision_bytes / 2**20:.1f}"
          f" MiB of vision tower, holds {report.local_elements:,} elements; probe logits {tuple(logits.shape)}",
          flush=True)
    if args.probe_out is not None:
        args.probe_out.mkdir(parents=True, exist_ok=True)
        counts = torch.tensor([report.rows_bytes, report.vision_bytes, report.local_elements], dtype=torch.int64)
        save_file({"logits": logits.contiguous(), "counts": counts}, str(args.probe_out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
