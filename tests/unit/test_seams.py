"""Backends are the only code that knows its server.

Outside ``promptlab/backends/`` no module compares a backend kind, keys a table by kind,
duck-types a backend (``getattr``/``hasattr`` on it), checks for a kind's class, imports a
kind's module, or speaks a model server's wire protocol. Callers use the capabilities of
:class:`promptlab.backends.base.Backend` instead, so a backend from a plugin can do
everything a built-in one does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "promptlab"
KINDS = {"ollama", "vllm", "openai", "llamacpp"}
KIND_MODULES = {f"promptlab.backends.{k}" for k in KINDS}
# config.py declares profiles, whose kind is data (the OLLAMA_HOST override reads it); it
# holds no backend.
EXEMPT = {"config.py"}
# The deployment renderers write the flags and probes of the servers they deploy.
EXEMPT_FOLDERS = {"promote/deploy"}
# Words of the model servers' APIs (promptlab's own OpenAI-compatible server reads
# ``stream_options`` from its clients: that is serving the API, not calling a server).
WIRE_WORDS = ("/api/", "/tokenize", "/detokenize", "prompt_eval_count", "num_ctx", "num_predict")
WIRE_PATHS = {"/chat/completions", "/completions", "/models", "/version", "/tokenize"}
BACKENDISH = ("backend", "dev", "prod", "target")


def _is_kind_ref(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "kind":
        return True
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == "kind"
    )


def _names_backend(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return any(word in name.lower() for word in BACKENDISH)


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def violations(path: Path, package: Path = PACKAGE) -> Iterator[str]:
    """Each place in ``path`` where a caller knows which server it talks to."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        at = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            constants = {
                c.value
                for o in operands
                for c in ast.walk(o)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            if any(_is_kind_ref(o) for o in operands) and constants & KINDS:
                yield f"{at}: compares a backend kind"
        elif isinstance(node, ast.Subscript) and _is_kind_ref(node.slice):
            yield f"{at}: a table keyed by backend kind"
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & KINDS) >= 2:
                yield f"{at}: a table keyed by backend kind"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            func, args = node.func.id, node.args
            if func in ("getattr", "hasattr") and args and _names_backend(args[0]):
                yield f"{at}: {func}() on a backend"
            if func == "isinstance" and len(args) == 2:
                classes = args[1].elts if isinstance(args[1], ast.Tuple) else [args[1]]
                for cls in classes:
                    name = getattr(cls, "id", getattr(cls, "attr", ""))
                    if name.endswith("Backend") and name != "Backend":
                        yield f"{at}: isinstance() against the backend class {name}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get" and node.args and _is_kind_ref(node.args[0]):
                yield f"{at}: a table keyed by backend kind"
        elif isinstance(node, ast.ImportFrom) and node.module in KIND_MODULES:
            yield f"{at}: imports {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in KIND_MODULES:
                    yield f"{at}: imports {alias.name}"
        elif isinstance(node, ast.JoinedStr):
            for before, after in zip(node.values, node.values[1:], strict=False):
                if (
                    isinstance(before, ast.FormattedValue)
                    and isinstance(after, ast.Constant)
                    and (after.value in WIRE_PATHS or str(after.value).startswith("/api/"))
                ):
                    yield f"{at}: builds a model server URL ({after.value!r})"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and any(w in node.value for w in WIRE_WORDS)
        ):
            yield f"{at}: speaks a model server's wire protocol ({node.value[:40]!r})"


def callers(package: Path = PACKAGE) -> list[Path]:
    """Every module of ``package`` outside its backends."""
    return sorted(
        p
        for p in package.rglob("*.py")
        if "backends" not in p.relative_to(package).parts[:1]
        and p.name not in EXEMPT
        and str(p.parent.relative_to(package)) not in EXEMPT_FOLDERS
    )


def test_no_module_outside_the_backends_knows_its_server() -> None:
    found = [v for path in callers() for v in violations(path)]
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("if backend.kind == 'ollama': pass", "compares a backend kind"),
        ("x = dev.kind in ('vllm', 'openai')", "compares a backend kind"),
        ("C = {'ollama': 1, 'vllm': 64}", "a table keyed by backend kind"),
        ("n = C.get(backend.kind, 4)", "a table keyed by backend kind"),
        ("h = getattr(backend, 'start_hint', None)", "getattr() on a backend"),
        ("ok = isinstance(b, OpenAIBackend)", "isinstance() against the backend class"),
        ("from promptlab.backends.openai import OpenAIBackend", "imports promptlab.backends"),
        ("u = f'{url}/api/tags'", "builds a model server URL"),
        ("u = f'{root}/version'", "builds a model server URL"),
        ("b = {'options': {'num_ctx': 2048}}", "wire protocol"),
    ],
)
def test_the_seam_check_catches(tmp_path: Path, source: str, expected: str) -> None:
    module = tmp_path / "promptlab" / "caller.py"
    module.parent.mkdir()
    module.write_text(f'"""A caller."""\n{source}\n')
    found = list(violations(module, module.parent))
    assert any(expected in v for v in found), found


def test_a_kind_name_as_data_is_fine(tmp_path: Path) -> None:
    module = tmp_path / "promptlab" / "caller.py"
    module.parent.mkdir()
    module.write_text('"""Mentions /api/tags in a docstring."""\nlabel = f"{backend.kind}:x"\n')
    assert list(violations(module, module.parent)) == []
