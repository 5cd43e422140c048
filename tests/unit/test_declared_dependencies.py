"""Every third-party import in promptlab/ is declared where a user installing that part gets it.

A module's imports (at the top or inside a function) must come from the base dependencies or
from every extra of the module's area (AREAS): ``pip install promptlab[ollama]`` then runs
what the Ollama backend imports. The tests themselves run with every extra installed, so only
this check sees an undeclared import.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# The extras a module's third-party imports must be declared in (most specific path first);
# any module not listed may import only the base dependencies.
AREAS: dict[str, tuple[str, ...]] = {
    "promptlab/backends/ollama.py": ("ollama",),
    "promptlab/backends/openai.py": ("openai",),
    "promptlab/backends/llamacpp.py": ("llamacpp",),
    # the Jinja chat templates that the Ollama and llama.cpp backends render
    "promptlab/backends/chat_templates.py": ("ollama", "llamacpp"),
    "promptlab/rag/stores.py": ("chroma",),
    # retrievers run on every backend: the backend extras bring the embedded store
    "promptlab/rag/": ("rag", "ollama", "openai", "llamacpp"),
    "promptlab/runtime/mcp.py": ("mcp",),
    "promptlab/tracking/": ("tracking",),
    "promptlab/bench/report.py": ("bench",),
    "promptlab/pytest_plugin.py": ("pytest",),
    "promptlab/serve/": ("serve",),
    "promptlab/cli/serve.py": ("serve",),
}


def name(requirement: str) -> str:
    """A requirement's distribution name, normalized (PEP 503)."""
    raw = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert raw, requirement
    return re.sub(r"[-_.]+", "-", raw.group(0)).lower()


def extra(wanted: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """The distributions an extra declares, following ``promptlab[other]`` references."""
    out: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][wanted]:
        if name(requirement) == "promptlab":
            inner = re.search(r"\[(.*)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                if other.strip() not in seen:
                    out |= extra(other.strip(), seen | {wanted})
        else:
            out.add(name(requirement))
    return out


BASE = {name(r) for r in PROJECT["dependencies"]}
DISTRIBUTIONS = metadata.packages_distributions()


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of the modules a file imports, stdlib and promptlab left out."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"promptlab", "__future__"}


def area(module: str) -> tuple[str, ...]:
    for prefix in sorted(AREAS, key=len, reverse=True):
        if module.startswith(prefix):
            return AREAS[prefix]
    return ()


MODULES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "promptlab").rglob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_every_import_is_declared_in_the_extra_of_its_area(module: str) -> None:
    for imported in sorted(third_party_imports(ROOT / module)):
        dists = {name(d) for d in DISTRIBUTIONS.get(imported, [])}
        assert dists, f"{module} imports {imported}, which no installed distribution provides"
        if dists & BASE:
            continue
        extras = area(module)
        assert extras, f"{module} imports {imported} ({', '.join(dists)}): not a base dependency"
        for wanted in extras:
            assert dists & extra(wanted), (
                f"{module} imports {imported} ({', '.join(sorted(dists))}), "
                f"not declared in promptlab[{wanted}]"
            )


def test_the_areas_name_real_extras_and_modules() -> None:
    for prefix, extras in AREAS.items():
        assert (ROOT / prefix).exists(), prefix
        assert set(extras) <= set(PROJECT["optional-dependencies"]), extras


def test_the_check_sees_an_undeclared_import() -> None:
    assert "jinja2" in extra("ollama") and "jinja2" not in extra("openai")
    assert "numpy" not in extra("ollama")  # lancedb brings it; promptlab never imports it
    assert area("promptlab/rag/lance.py") == AREAS["promptlab/rag/"]
    assert area("promptlab/rag/stores.py") == ("chroma",)
    assert {"lancedb", "tokenizers", "langchain-text-splitters"} <= extra("ollama")
