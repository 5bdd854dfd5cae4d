"""The names a newcomer imports first are at the top level, and importing the packages stays light."""
import subprocess
import sys

import pytest

import minimax_vl
import text_backbone


@pytest.mark.parametrize("package, names", [
    (minimax_vl, ["MiniMaxVL01", "MiniMaxVL01Config", "MiniMaxVL01Processor", "DEMO_MODEL"]),
    (text_backbone, ["MiniMaxText01Config", "MiniMaxText01ForCausalLM", "lightning_attn"]),
])
def test_top_level_names_import(package, names):
    assert sorted(package.__all__) == sorted(names)
    for name in names:
        assert getattr(package, name) is not None
        assert name in dir(package)
    namespace: dict = {}
    exec(f"from {package.__name__} import {', '.join(names)}", namespace)
    assert all(name in namespace for name in names)


def test_top_level_names_are_the_defining_modules_objects():
    from minimax_vl.config import MiniMaxVL01Config
    from minimax_vl.model import MiniMaxVL01
    from minimax_vl.processor import MiniMaxVL01Processor
    from text_backbone.config import MiniMaxText01Config
    from text_backbone.model import MiniMaxText01ForCausalLM
    from text_backbone.ops.lightning_attn import lightning_attn

    assert minimax_vl.MiniMaxVL01 is MiniMaxVL01 and minimax_vl.MiniMaxVL01Config is MiniMaxVL01Config
    assert minimax_vl.MiniMaxVL01Processor is MiniMaxVL01Processor
    assert text_backbone.MiniMaxText01Config is MiniMaxText01Config
    assert text_backbone.MiniMaxText01ForCausalLM is MiniMaxText01ForCausalLM
    assert text_backbone.lightning_attn is lightning_attn


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        minimax_vl.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        text_backbone.Nope  # noqa: B018


def test_importing_the_packages_does_not_import_torch():
    code = ("import sys, minimax_vl, text_backbone; minimax_vl.DEMO_MODEL; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
