"""Contracts on promptlab's imports: layers point one way, and no private name crosses a package.

Layers, lowest first (a module may import its own package and lower layers only; the packages
of one layer do not import each other)::

    errors -> config, daemons, hashing, registry, text -> backends -> rag -> declare -> runtime
           -> eval, testing -> bench -> tracking -> promote -> serve -> cli, pytest_plugin

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``. The
package root ``promptlab`` (its lazy public API and ``__version__``) and ``__main__`` are
outside the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("config", "daemons", "hashing", "registry", "sampling", "text", "threads"),
    ("backends",),
    ("rag",),
    ("declare",),
    ("runtime",),
    ("eval", "testing"),
    ("bench",),
    ("tracking",),
    ("promote",),
    ("serve",),
    ("cli", "pytest_plugin"),
)

# (importing module, imported module): known breaks, each with the work that removes it.
KNOWN_LAYER_BREAKS = {
    # The store factory takes a Retriever (a type only): it moves up with store selection.
    ("promptlab.rag.stores", "promptlab.declare.retriever"),
    # Flow.bind() (public API) builds a FlowRunnable: a lazy import of the layer above.
    ("promptlab.declare.flow", "promptlab.runtime.runnable"),
}
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[tuple[str, str, int]]:
    """(importing module, imported name, line) for every promptlab import under root/promptlab.

    ``from a.b import c`` yields ``a.b.c``: c may be a module or a name in a.b.
    """
    for path in sorted((root / "promptlab").rglob("*.py")):
        module = _module_name(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    yield module, f"{base}.{alias.name}", node.lineno


def _top(name: str) -> str | None:
    """The first-level package (or module) of a promptlab name, e.g. ``tracking``."""
    parts = name.split(".")
    return parts[1] if parts[0] == "promptlab" and len(parts) > 1 else None


def _layer(top: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if top in layer), None)


def layer_violations(root: Path) -> list[str]:
    """Every import that points to the same or a higher layer, except the known ones."""
    found = []
    for module, name, line in imports(root):
        source, target = _top(module), _top(name)
        if source is None or target is None or source == target or source == "__main__":
            continue
        if target == "__version__":
            continue
        mine, theirs = _layer(source), _layer(target)
        if mine is None or theirs is None:
            found.append(f"{module}:{line} imports {name}: add its package to LAYERS")
            continue
        if theirs >= mine and not _known(module, name, KNOWN_LAYER_BREAKS):
            found.append(f"{module}:{line} imports {name} (layer {source} -> {target})")
    return found


def private_violations(root: Path) -> list[str]:
    """Every import of a private module or name from another first-level package."""
    found = []
    for module, name, line in imports(root):
        source, target = _top(module), _top(name)
        if target is None or source == target:
            continue
        private = any(part.startswith("_") and part != "__version__" for part in name.split("."))
        if private and not _known(module, name, KNOWN_PRIVATE_IMPORTS):
            found.append(f"{module}:{line} imports the private {name}")
    return found


def _known(module: str, name: str, known: set[tuple[str, str]]) -> bool:
    return any(module == m and (name == t or name.startswith(f"{t}.")) for m, t in known)


def test_layers_point_one_way() -> None:
    assert layer_violations(ROOT) == []


def test_no_private_name_crosses_a_package() -> None:
    assert private_violations(ROOT) == []


def test_the_known_exceptions_still_exist() -> None:
    """A fixed exception leaves the list, so that it cannot come back unnoticed."""
    seen = {(m, n) for m, n, _ in imports(ROOT)}
    for module, target in KNOWN_LAYER_BREAKS | KNOWN_PRIVATE_IMPORTS:
        assert any(m == module and _known(m, n, {(module, target)}) for m, n in seen), (
            module,
            target,
        )


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    """A copy of promptlab's sources, to seed violations into."""
    for path in (ROOT / "promptlab").rglob("*.py"):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return tmp_path


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        (
            "eval/session.py",
            "from promptlab.tracking import open_store",
            "eval.session:1 imports promptlab.tracking.open_store (layer eval -> tracking)",
        ),
        (
            "eval/results.py",
            "    from promptlab.bench import runner",
            "(layer eval -> bench)",
        ),
        (
            "tracking/evals.py",
            "from ..promote.lock import Lock",
            "(layer tracking -> promote)",
        ),
        (
            "config.py",
            "import promptlab.backends",
            "(layer config -> backends)",
        ),
        (
            "eval/newpart.py",
            "from promptlab.newpackage import thing",
            "add its package to LAYERS",
        ),
    ],
)
def test_a_seeded_layer_violation_is_caught(
    seeded: Path, file: str, line: str, expected: str
) -> None:
    path = seeded / "promptlab" / file
    body = path.read_text() if path.exists() else ""
    if line.startswith(" "):
        path.write_text(f"{body}\n\ndef seeded() -> None:\n{line}\n")
    else:
        path.write_text(f"{line}\n{body}")
    found = layer_violations(seeded)
    assert len(found) == 1
    assert expected in found[0]


@pytest.mark.parametrize(
    "line",
    [
        "from promptlab.tracking.store import _stores",
        "from promptlab.runtime import _helpers",
        "import promptlab.backends._http",
    ],
)
def test_a_seeded_private_import_is_caught(seeded: Path, line: str) -> None:
    path = seeded / "promptlab" / "serve" / "app.py"
    path.write_text(f"{line}\n{path.read_text()}")
    found = private_violations(seeded)
    assert len(found) == 1
    assert found[0].startswith("promptlab.serve.app:1 imports the private promptlab.")


def test_a_private_name_within_its_package_is_fine(seeded: Path) -> None:
    path = seeded / "promptlab" / "tracking" / "evals.py"
    path.write_text(f"from promptlab.tracking.store import _stores\n{path.read_text()}")
    assert private_violations(seeded) == []
