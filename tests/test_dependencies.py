"""Every import in the repo's code comes from a dependency pyproject.toml declares.

A package that merely happens to be installed (pulled in by another one, or left by
hand) makes tests pass here and fail on a fresh machine: this catches it first.
"""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # stdlib from Python 3.11

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("stream_denoise", "tests", "benchmarks")
# a benchmark script may import a sibling (the script's folder is first on sys.path)
LOCAL = set(FOLDERS) | {p.stem for p in (ROOT / "benchmarks").glob("*.py")}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs} | {_norm(project["name"])}


def _imports(path: Path) -> set[tuple[str, int]]:
    """Top-level absolute imports, less those guarded by ``find_spec("name")`` (optional)."""
    tree = ast.parse(path.read_text(), str(path))
    optional = {
        n.args[0].value for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == "find_spec"
        and n.args and isinstance(n.args[0], ast.Constant)
    }
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            found |= {(a.name.split(".")[0], n.lineno) for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0:
            found.add((n.module.split(".")[0], n.lineno))
    return {(m, line) for m, line in found if m not in optional}


def test_every_import_is_declared():
    declared, providers = _declared(), packages_distributions()
    missing = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module, line in sorted(_imports(path)):
                if module in sys.stdlib_module_names or module in LOCAL:
                    continue
                dists = providers.get(module, [])
                if not declared & {_norm(d) for d in dists}:
                    missing.append(f"{path.relative_to(ROOT)}:{line}: {module} (from {dists or 'nothing installed'})")
    assert not missing, "imports no declared dependency provides:\n" + "\n".join(missing)
