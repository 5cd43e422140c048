"""Every `from promptlab... import ...` that the README or a docstring example shows works."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"from (promptlab[\w.]*) import (\w+(?:, \w+)*)")


def documented_imports() -> list[tuple[str, str, str]]:
    found = []
    readme = " ".join((ROOT / "README.md").read_text().split())
    found += [("README.md", module, names) for module, names in IMPORT.findall(readme)]
    for path in sorted((ROOT / "promptlab").rglob("*.py")):
        for block in re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL):
            where = str(path.relative_to(ROOT))
            found += [(where, module, names) for module, names in IMPORT.findall(block)]
    return sorted(set(found))


IMPORTS = documented_imports()


def test_the_docs_show_the_plugin_and_testing_imports() -> None:
    shown = {(module, name.strip()) for _, module, names in IMPORTS for name in names.split(",")}
    assert {("promptlab.eval", "scorer"), ("promptlab.testing", "FakeBackend")} <= shown
    assert ("promptlab", "load_flow") in shown


@pytest.mark.parametrize(("where", "module", "names"), IMPORTS, ids=lambda v: str(v))
def test_a_documented_import_works(where: str, module: str, names: str) -> None:
    imported = importlib.import_module(module)
    for name in (n.strip() for n in names.split(",")):
        if name:
            assert getattr(imported, name, None) is not None, f"{where}: {module}.{name}"
