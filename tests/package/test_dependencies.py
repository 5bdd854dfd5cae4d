"""The dependency rule (docs/ARCHITECTURE.md): text_backbone, vision -> minimax_vl -> training, never backwards.

Every module's syntax tree is read (imports inside functions and under TYPE_CHECKING count too), relative imports
are resolved, and each import of a project package is checked against what its importer may use.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("text_backbone", "vision", "minimax_vl", "training")

# importer (longest prefix wins) -> project modules it may import (prefixes)
ALLOWED = {
    "text_backbone": ("text_backbone",),
    "vision": ("vision",),
    "minimax_vl": ("minimax_vl", "text_backbone", "vision"),
    # The data library needs only the text formats (chat template markers, the read-first reply format), both
    # plain Python, so it could stand on its own.
    "minimax_vl.data": ("minimax_vl.data", "minimax_vl.chat_template", "minimax_vl.answers"),
    "training": PACKAGES,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from minimax_vl import data` imports the submodule minimax_vl.data
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*")
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rule_for(module: str) -> tuple[str, ...]:
    owner = max((key for key in ALLOWED if _within(module, key)), key=len)
    return ALLOWED[owner]


def _project_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_walk_sees_every_package():
    modules = {_module_name(p).split(".")[0] for p in _project_modules()}
    assert modules == set(PACKAGES)
    assert any(_module_name(p) == "minimax_vl.data.samples" for p in _project_modules())


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        allowed = _rule_for(module)
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top not in PACKAGES:
                continue
            if name.rpartition(".")[0] in ("minimax_vl", "text_backbone") and name.rpartition(".")[2][:1].isupper():
                name = name.rpartition(".")[0]  # `from minimax_vl import MiniMaxVL01`: a name, not a module
            if not any(_within(name, prefix) for prefix in allowed):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "imports against the dependency rule (docs/ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(monkeypatch):
    probe = ROOT / "vision" / "_dependency_probe.py"  # never written: read_text is replaced
    source = "def f():\n    from minimax_vl.model import MiniMaxVL01\n    from ..training import loop\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    names = [name for _, name in _imports(probe)]
    assert "minimax_vl.model" in names and "training.loop" in names
    assert not any(_within("minimax_vl.model", prefix) for prefix in _rule_for("vision._dependency_probe"))
    assert not any(_within("training.loop", prefix) for prefix in _rule_for("minimax_vl.data.samples"))
