"""The layers of DESIGN.md hold: every import inside the package points downwards.

cli > runs > engines > algorithms > models, data > stats > core. A module may import its own
layer and the layers below it; ``models`` and ``data`` sit side by side and import neither
each other. Only the package's ``__init__`` (the public API) may import from any layer. Imports
inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pfedkit"
RANK = {"core": 0, "stats": 1, "models": 2, "data": 2, "algorithms": 3, "engines": 4, "runs": 5, "cli": 6}


def layer_of(module: str) -> str | None:
    """``pfedkit.<layer>...`` -> layer; None for the top-level package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pfedkit" else None


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``pfedkit`` import in the file, relative imports resolved."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        package += ".__init__"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("pfedkit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "pfedkit":  # from pfedkit import x: x is a subpackage or an API name
                found += [(node.lineno, f"pfedkit.{a.name}") for a in node.names]
            elif module.startswith("pfedkit"):
                found.append((node.lineno, module))
    return found


def violations(root: Path = SRC) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        own = layer_of(".".join(rel.with_suffix("").parts))
        if own is None or own == "__init__":  # the public API may import anything
            continue
        assert own in RANK, f"{rel}: package pfedkit.{own} has no layer; add it to RANK and DESIGN.md"
        for line, module in imported_modules(path, root):
            target = layer_of(module)
            if target in (None, "__version__", own):
                continue
            if target not in RANK:
                continue  # an API name imported from the top-level package, e.g. __version__
            if RANK[target] > RANK[own] or (RANK[target] == RANK[own] and target != own):
                bad.append(f"{rel}:{line} ({own}) imports {module} ({target})")
    return bad


def test_every_import_points_downwards():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    pkg = tmp_path / "pfedkit"
    (pkg / "core").mkdir(parents=True)
    (pkg / "core" / "bad.py").write_text("def f():\n    from pfedkit.engines.simulate import Simulator\n")
    (pkg / "models").mkdir()
    (pkg / "models" / "side.py").write_text("from pfedkit.data.pool import Pool\n")
    (pkg / "stats").mkdir()
    (pkg / "stats" / "ok.py").write_text("from pfedkit.core.errors import ConfigError\nfrom . import ok\n")
    found = violations(pkg)
    assert found == ["pfedkit/core/bad.py:2 (core) imports pfedkit.engines.simulate (engines)",
                     "pfedkit/models/side.py:1 (models) imports pfedkit.data.pool (data)"]


@pytest.mark.parametrize("layer", sorted(RANK))
def test_every_layer_exists(layer):
    assert (SRC / layer / "__init__.py").exists()
