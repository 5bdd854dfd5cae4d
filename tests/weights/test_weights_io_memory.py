"""Loading streams: peak memory stays near the model's own size.

The direct measurement runs in a fresh process (slow: it pays for importing torch again). Linux only: the
child resets its peak-RSS counter (``/proc/self/clear_refs``) right before loading and reads ``VmHWM``
after, so imports and set-up do not count. A fast test checks the same property structurally.
"""
import json
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest
import torch

from text_backbone import weights_io
from text_backbone.weights_io import Unfuse, load_into_module, save_safetensors

PARAMETERS, ROWS, COLS = 8, 2500, 2500  # 8 x 25 MB fp32 = 200 MB
MODEL_BYTES = PARAMETERS * ROWS * COLS * 4

CHILD = textwrap.dedent("""
    import gc, json, sys
    import torch
    from torch import nn
    from text_backbone import weights_io

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    def peak_growth(directory, remap_bytes):
        weights_io.reading.REMAP_BYTES = remap_bytes
        with torch.device("meta"):
            module = nn.Module()
            for i in range({parameters}):
                module.register_parameter(f"p{{i}}", nn.Parameter(torch.empty({rows}, {cols})))
        gc.collect()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset the peak resident set size (VmHWM) to the current one
        before = status("VmRSS")
        weights_io.load_into_module(module, directory)
        growth = status("VmHWM") - before
        checksum = float(sum(p.double().sum() for p in module.parameters()))
        del module
        gc.collect()
        return growth, checksum

    print(json.dumps({{"sharded": peak_growth(sys.argv[1], weights_io.reading.REMAP_BYTES),
                      "single_remapped": peak_growth(sys.argv[2], 8 * 2**20)}}))
""").format(parameters=PARAMETERS, rows=ROWS, cols=COLS)


@pytest.mark.slow  # ~10 s on a quiet machine, 20-30 s on the shared CI box: mostly the child's torch import
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak RSS")
def test_loading_streams_with_bounded_peak_memory(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {f"p{i}": torch.randn(ROWS, COLS, generator=generator) for i in range(PARAMETERS)}
    expected_checksum = float(sum(t.double().sum() for t in state.values()))
    written = save_safetensors(state, tmp_path / "sharded", max_shard_size=MODEL_BYTES // 8)
    assert len(written) == 8 + 1  # 8 shards of 25 MB, plus the index
    save_safetensors(state, tmp_path / "single")
    del state

    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "sharded"), str(tmp_path / "single")],
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print({name: round(growth / MODEL_BYTES, 3) for name, (growth, _) in measured.items()})

    for name, (growth, checksum) in measured.items():
        assert checksum == pytest.approx(expected_checksum, rel=1e-9), name  # the values really arrived
        # At least the model itself (the load did materialise it), and well below a second full copy.
        assert 0.95 * MODEL_BYTES < growth < 1.3 * MODEL_BYTES, (name, growth / MODEL_BYTES)


class _SpyingSafeOpen:
    """Wraps ``safe_open``: records how many files are open at once, bytes read per opening, and whether any
    tensor handed out earlier is still alive when the next one is read (it must not be: streaming)."""

    def __init__(self, real):
        self.real = real
        self.open_now = self.most_open = 0
        self.bytes_per_opening = []
        self.alive_at_read = []
        self.handed_out = []

    def __call__(self, *args, **kwargs):
        spy = self

        class Handle:
            def __enter__(self):
                spy.open_now += 1
                spy.most_open = max(spy.most_open, spy.open_now)
                spy.bytes_per_opening.append(0)
                self.inner = spy.real(*args, **kwargs).__enter__()
                return self

            def __exit__(self, *exc):
                spy.open_now -= 1
                return self.inner.__exit__(*exc)

            def _record(self, tensor):
                spy.alive_at_read.append(sum(ref() is not None for ref in spy.handed_out))
                spy.handed_out.append(weakref.ref(tensor))
                spy.bytes_per_opening[-1] += tensor.numel() * tensor.element_size()
                return tensor

            def get_tensor(self, key):
                return self._record(self.inner.get_tensor(key))

            def get_slice(self, key):
                handle, inner = self, self.inner.get_slice(key)

                class Slice:
                    def __getitem__(self, index):
                        return handle._record(inner[index])

                return Slice()

        return Handle()


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "unfused-from-slices"])
def test_loading_reads_one_tensor_at_a_time(tmp_path, monkeypatch, build_module, fused):
    state = {f"p{i}": torch.randn(4, 64, 64) for i in range(6)}  # 64 KiB each
    save_safetensors(state, tmp_path, max_shard_size=3 * 64 * 1024)  # two shards
    rules = [Unfuse("p{i}", ("q{i}.{n}.a", "q{i}.{n}.b"), index="n")] if fused else []
    expected = weights_io.convert_state_dict(state, rules)
    with torch.device("meta"):
        module = build_module({key: tuple(t.shape) for key, t in expected.items()})
    spy = _SpyingSafeOpen(weights_io.reading.safe_open)
    monkeypatch.setattr(weights_io.reading, "safe_open", spy)
    monkeypatch.setattr(weights_io.reading, "REMAP_BYTES", 100 * 1024)

    load_into_module(module, tmp_path, key_map=rules)

    assert len(spy.alive_at_read) == len(expected)  # one read per module tensor (slices for unfused ones)
    assert max(spy.alive_at_read) == 0  # every tensor was dropped before the next was read
    assert spy.most_open == 1  # one memory map at a time
    # Re-opened once REMAP_BYTES were read: never more than that plus one tensor through one mapping.
    assert max(spy.bytes_per_opening) <= 100 * 1024 + 64 * 1024
    assert len(spy.bytes_per_opening) >= 4
    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
