"""Training throughput and loss memory: the full-logits loss against the labelled-position loss, and 1 thread
against 2 threads against 2 processes (DDP over gloo), on the same batches in one run.

    .venv/bin/python benchmarks/train_throughput.py                       # demo preset, ~6 minutes
    .venv/bin/python benchmarks/train_throughput.py --steps 3 --rounds 1  # quick look
    .venv/bin/python benchmarks/train_throughput.py --skip-memory         # throughput table only

Throughput: stage-II batches of the `demo` preset as the demo recipe trains them (16 documents: VQA 20 :
description 3 : words 2 : text-only 1, anyres 192-px easy images, labels 1.3x, no packing), built beforehand so
that data generation is not timed. A step is forward + backward + AdamW in fp32. Configurations run in rounds
(each round times every configuration once, in turn), and the table shows each one's median over rounds, so a
change in machine load hits all of them alike; ratios are against the full-logits loss on one thread (the code
before the labelled-position loss).

Memory: peak resident memory of one forward + backward of the text backbone alone on one 4,096-token sequence
with 2% of positions labelled (a VQA batch's share), each configuration in a fresh process (ru_maxrss), for the
demo vocabulary and for the released vocabulary of 200,064; the model's own weights are counted in both paths.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.model import MiniMaxVL01
from training.datasets import BatchLayout, DocumentEncoder, build_batch
from training.losses import target_log_probs

DEMO_STAGE2_MIX = (("vqa", 20.0), ("description", 3.0), ("words", 2.0), ("text_only", 1.0))


def demo_batches(model: MiniMaxVL01, count: int, docs: int, offset: int = 0) -> list[dict]:
    config = GeneratorConfig(sample_kinds=DEMO_STAGE2_MIX, image_size=192, difficulty="easy", font_scale=1.3)
    encoder = DocumentEncoder(model.processor, "anyres", 768)
    layout = BatchLayout(False, 768, model.processor.tokenizer.pad_token_id)
    return [build_batch([make_sample(config, offset + s * docs + i) for i in range(docs)], encoder, layout, pairs=False)
            for s in range(count)]


def train_step(model, optimizer, batch, loss_path: str) -> float:
    token_lp, aux = target_log_probs(model, batch["model_inputs"], batch["labels"], "anyres", loss_path)
    loss = -token_lp.sum() / max(batch["num_targets"], 1)
    loss = loss + model.config.text_config.router_aux_loss_coef * aux
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def fresh_model() -> MiniMaxVL01:
    torch.manual_seed(0)
    return MiniMaxVL01.from_preset("demo").train()


def time_in_process(loss_path: str, threads: int, batches: list[dict]) -> float:
    """Seconds per step, one process."""
    torch.set_num_threads(threads)
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_step(model, optimizer, batches[0], loss_path)  # warm-up
    start = time.perf_counter()
    for batch in batches[1:]:
        train_step(model, optimizer, batch, loss_path)
    return (time.perf_counter() - start) / (len(batches) - 1)


def _ddp_worker(rank: int, world: int, steps: int, docs: int, port: int, result_file: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = fresh_model()
    # Each process trains on its half of the same global batches (documents rank, rank + world, ...).
    batches = demo_batches(model, steps + 1, docs // world, offset=rank * 10_000_000)
    wrapped = DistributedDataParallel(model, find_unused_parameters=True)
    wrapped.config = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_step(wrapped, optimizer, batches[0], "labelled")
    dist.barrier()
    start = time.perf_counter()
    for batch in batches[1:]:
        train_step(wrapped, optimizer, batch, "labelled")
    dist.barrier()
    if rank == 0:
        with open(result_file, "w") as f:
            json.dump({"seconds": (time.perf_counter() - start) / steps}, f)
    dist.destroy_process_group()


def time_ddp(steps: int, docs: int) -> float:
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        port = 29500 + os.getpid() % 1000
        mp.spawn(_ddp_worker, args=(2, steps, docs, port, result.name), nprocs=2, join=True)
        return json.load(open(result.name))["seconds"]


# ---------------------------------------------------------------------- memory
def _memory_child(loss_path: str, vocab: int, length: int) -> None:
    """Runs in a fresh process: one forward + backward; prints peak RSS (MB) and seconds as JSON."""
    from text_backbone.config import MiniMaxText01Config
    from text_backbone.model import IGNORE_INDEX, MiniMaxText01ForCausalLM, shifted_targets
    from training.losses import token_log_likelihood

    torch.set_num_threads(1)
    config = MiniMaxText01Config.from_preset("tiny", vocab_size=vocab)
    torch.manual_seed(0)
    model = MiniMaxText01ForCausalLM(config)
    ids = torch.randint(0, vocab, (1, length))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labelled = torch.randperm(length)[: length // 50]  # 2%: a VQA batch's share of labelled positions
    labels[0, labelled] = ids[0, labelled]
    start = time.perf_counter()
    if loss_path == "full":
        out = model(ids)
        loss = -token_log_likelihood(out.logits, shifted_targets(labels)).sum()
    else:
        loss = -model(ids, labels=labels, return_logits=False).target_log_probs.sum()
    loss.backward()
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                      "parameters_mb": sum(p.numel() for p in model.parameters()) * 4 / 2**20}))


def measure_memory(loss_path: str, vocab: int, length: int) -> dict:
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r}); "
            f"from benchmarks.train_throughput import _memory_child; _memory_child({loss_path!r}, {vocab}, {length})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (default 3)")
    parser.add_argument("--docs", type=int, default=16, help="documents per global batch (default 16)")
    parser.add_argument("--length", type=int, default=4096, help="tokens of the memory measurement's sequence")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        throughput_table(args)
    if not args.skip_memory:
        memory_table(args)


def throughput_table(args) -> None:
    batches = demo_batches(fresh_model(), args.steps + 1, args.docs)
    positions = statistics.mean(b["model_inputs"]["input_ids"].numel() for b in batches)
    targets = statistics.mean(b["num_targets"] for b in batches)
    print(f"demo preset, stage-II batches of {args.docs} documents: {positions:.0f} positions per batch, "
          f"{targets:.0f} labelled ({100 * targets / positions:.1f}%); {args.steps} timed steps x {args.rounds} rounds; "
          f"machine load {os.getloadavg()[0]:.1f} at start")
    configs = {"full logits, 1 thread": lambda: time_in_process("full", 1, batches),
               "full logits, 2 threads": lambda: time_in_process("full", 2, batches),
               "labelled, 1 thread": lambda: time_in_process("labelled", 1, batches),
               "labelled, 2 threads": lambda: time_in_process("labelled", 2, batches),
               "labelled, 2 processes (DDP, gloo, 1 thread each)": lambda: time_ddp(args.steps, args.docs)}
    times: dict[str, list[float]] = {name: [] for name in configs}
    for round_index in range(args.rounds):
        for name, run in configs.items():
            times[name].append(run())
            print(f"  round {round_index + 1}: {name}: {times[name][-1]:.2f} s/step", flush=True)
    base = statistics.median(times["full logits, 1 thread"])
    print(f"\n{'configuration':<50}{'s/step':>8}{'samples/s':>11}{'vs full, 1 thread':>19}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:<50}{seconds:>8.2f}{args.docs / seconds:>11.1f}{base / seconds:>18.2f}x")


def memory_table(args) -> None:
    print(f"\nloss memory: text backbone 'tiny' preset, one {args.length}-token sequence, 2% labelled, forward + backward")
    print(f"{'vocabulary':>10}  {'loss path':<9}{'peak RSS MB':>12}{'weights MB':>11}{'seconds':>9}")
    for vocab in (3072, 200_064):
        rows = {path: measure_memory(path, vocab, args.length) for path in ("full", "labelled")}
        for path, r in rows.items():
            print(f"{vocab:>10}  {path:<9}{r['peak_mb']:>12.0f}{r['parameters_mb']:>11.0f}{r['seconds']:>9.2f}")
        saved = rows["full"]["peak_mb"] - rows["labelled"]["peak_mb"]
        print(f"{'':>10}  labelled path: {saved:.0f} MB less at peak, "
              f"{rows['full']['seconds'] / rows['labelled']['seconds']:.1f}x faster")


if __name__ == "__main__":
    main()
