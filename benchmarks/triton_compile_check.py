"""Compile the kernels for a Hopper GPU (sm_90a) on any machine, GPU or not, and report their resources.

    python benchmarks/triton_compile_check.py          # the default tiles (seconds)
    python benchmarks/triton_compile_check.py --all    # every autotune config, fp32 too

Triton compiles to PTX and runs ptxas without a driver, so a CPU-only machine can check that every kernel
variant compiles for the real target (the interpreter accepts programs the compiler rejects) and whether
it spills registers, which on a latency-bound sequential sweep costs real time. Arguments are specialised
as a launch would specialise them at MiniMax's sizes (16-byte aligned pointers, H = 64).
Must run without TRITON_INTERPRET (the interpreter replaces the compiler); it refuses otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("compile_check needs the compiler: unset TRITON_INTERPRET")

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from text_backbone.ops.lightning_attn.triton._runtime import matmul_settings  # noqa: E402
from text_backbone.ops.lightning_attn.triton.decode import DecodeConfig, decode_kernel  # noqa: E402
from text_backbone.ops.lightning_attn.triton.sweep import AUTOTUNE_CONFIGS, DEFAULT_CONFIG, FP32_CONFIG, SweepConfig, chunk_sweep_kernel  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)
_POINTER_TYPES = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.float16: "*fp16"}


@dataclass
class CompileReport:
    kernel: str
    variant: str
    registers: int
    spill_bytes: int  # per thread ("STACK" in cuobjdump's resource usage)
    shared_bytes: int
    seconds: float


def _resources(compiled) -> tuple[int, int]:
    """(registers, stack bytes) per thread, read from the cubin with the cuobjdump bundled with Triton."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([knobs.nvidia.cuobjdump.path, "-res-usage", cubin.name], check=True,
                               capture_output=True, text=True).stdout
    fields = dict(item.split(":", 1) for line in usage.splitlines() if "REG:" in line for item in line.split())
    return int(fields["REG"]), int(fields["STACK"])


def _compile(fn, pointer_args, int_args, constexprs, num_warps, num_stages, variant) -> CompileReport:
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in pointer_args:
            signature[name] = pointer_args[name]
        else:
            signature[name] = "i32"
    aligned = [name for name in fn.arg_names if name in pointer_args or name in int_args]
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
    started = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs),
                              target=HOPPER, options=dict(num_warps=num_warps, num_stages=num_stages))
    registers, spills = _resources(compiled)
    return CompileReport(fn.__name__, variant, registers, spills, compiled.metadata.shared,
                         round(time.perf_counter() - started, 2))


def compile_sweep(dtype=torch.bfloat16, *, reverse=False, da=128, dc=128,
                  config: SweepConfig = DEFAULT_CONFIG) -> CompileReport:
    settings = matmul_settings(dtype)
    settings["UPCAST"] = False  # compiled code, whatever this process's mode
    if dtype == torch.float32:
        settings["PRECISION"] = "tf32x3"
    constexprs = dict(
        DA=da, DC=dc, BLOCK_DA=max(16, triton.next_power_of_2(da)), BT=config.block_t, BLOCK_C=config.block_c,
        REVERSE=reverse, **settings,
    )
    element = _POINTER_TYPES[dtype]
    pointers = dict(a_ptr=element, b_ptr=element, c_ptr=element, out_ptr=element, log2_decay_ptr="*fp32",
                    h0_ptr="*fp32", ht_ptr="*fp32", cu_seqlens_ptr="*i32")
    variant = (f"{str(dtype)[6:]} {'reverse' if reverse else 'forward'} DA={da} DC={dc} BT={config.block_t} "
               f"BLOCK_C={config.block_c} warps={config.num_warps} stages={config.num_stages}")
    return _compile(chunk_sweep_kernel, pointers, ("H",), constexprs, config.num_warps,
                    config.num_stages, variant)


def compile_decode(dtype=torch.bfloat16, *, k=128, v=128, config: DecodeConfig = DecodeConfig()) -> CompileReport:
    element = _POINTER_TYPES[dtype]
    pointers = dict(q_ptr=element, k_ptr=element, v_ptr=element, o_ptr=element, state_ptr="*fp32",
                    log2_decay_ptr="*fp32")
    constexprs = dict(K=k, V=v, BLOCK_K=max(16, triton.next_power_of_2(k)), BLOCK_V=config.block_v,
                      ROUND_BF16=False)
    variant = f"{str(dtype)[6:]} K={k} V={v} BLOCK_V={config.block_v} warps={config.num_warps}"
    return _compile(decode_kernel, pointers, ("H",), constexprs, config.num_warps, 1, variant)


def default_variants():
    """What training and prefill at MiniMax's sizes run, plus an odd head size and the decode step."""
    yield lambda: compile_sweep(torch.bfloat16, reverse=False)
    yield lambda: compile_sweep(torch.bfloat16, reverse=True)
    yield lambda: compile_sweep(torch.float16, reverse=True, da=48, dc=48,
                                config=SweepConfig(block_t=64, block_c=32, num_warps=4, num_stages=2))
    yield lambda: compile_decode(torch.bfloat16)


def all_variants():
    for config in AUTOTUNE_CONFIGS:
        for reverse in (False, True):
            yield lambda config=config, reverse=reverse: compile_sweep(torch.bfloat16, reverse=reverse, config=config)
    yield lambda: compile_sweep(torch.float32, config=FP32_CONFIG)
    yield lambda: compile_sweep(torch.float32, reverse=True, config=FP32_CONFIG)
    for block_v in (16, 32, 64, 128):
        yield lambda block_v=block_v: compile_decode(torch.bfloat16, config=DecodeConfig(block_v=block_v))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="every autotune config, fp32 and all decode widths")
    parser.add_argument("--json", help="write the reports to this file as a JSON list")
    args = parser.parse_args()
    reports = []
    for build in (all_variants() if args.all else default_variants()):
        report = build()
        reports.append(report)
        print(f"{report.kernel:<20} {report.variant:<78} regs {report.registers:>3}  spill {report.spill_bytes:>5} B"
              f"  smem {report.shared_bytes // 1024:>3} KiB  {report.seconds:5.1f} s", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(report) for report in reports], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
