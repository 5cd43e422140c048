"""Finding flows: ``path/to/file.py@name`` references, files and folders."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from pydantic import ValidationError

from promptlab.declare.flow import Flow
from promptlab.errors import FlowLoadError, PromptlabError, first_problem, one_line


def split_ref(ref: str) -> tuple[Path, str | None]:
    """``flows/x.py@name`` -> (path, name); the name is optional."""
    path, sep, name = ref.rpartition("@")
    if not sep or not path.endswith(".py"):
        return Path(ref), None
    return Path(path), name or None


def _where(exc: BaseException, path: Path) -> str:
    """``file:line`` of the deepest frame of ``exc`` inside the flow file."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{path}:{exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        field, message = first_problem(exc)
        message = message.removeprefix("Value error, ")
        return f"invalid {exc.title}" + (f" {field}" if field else "") + f": {message}"
    if isinstance(exc, SyntaxError):
        return f"syntax error: {exc.msg}"
    return f"{type(exc).__name__}: {one_line(str(exc))}"


def import_file(path: Path) -> ModuleType:
    """Import a Python file as a module; errors name the file and line."""
    if not path.is_file():
        raise FlowLoadError(
            f"flow file {path} not found: check the path (`promptlab list flows/` lists flows)"
        )
    resolved = path.resolve()
    # The name carries the file's contents too: an edited file is imported afresh.
    digest = hashlib.sha1(str(resolved).encode() + resolved.read_bytes()).hexdigest()[:8]
    name = f"promptlab_user.{resolved.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise FlowLoadError(f"{path} is not a Python file: give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(resolved.parent))
    try:
        spec.loader.exec_module(module)
    except PromptlabError as exc:
        del sys.modules[name]
        raise FlowLoadError(f"{_where(exc, path)}: {exc}") from None
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise FlowLoadError(f"{_where(exc, path)}: {_describe(exc)}: fix the flow file") from None
    finally:
        sys.path.remove(str(resolved.parent))
    return module


def flows_in(path: Path) -> dict[str, Flow]:
    """Every flow a file declares at module level, by name."""
    module = import_file(path)
    found: dict[str, Flow] = {}
    for value in vars(module).values():
        if isinstance(value, Flow):
            found.setdefault(value.name, value)
    return found


def load_flow(ref: str) -> Flow:
    """The flow a reference names: ``file.py@name``, or ``file.py`` holding exactly one flow."""
    path, name = split_ref(ref)
    flows = flows_in(path)
    if not flows:
        raise FlowLoadError(
            f"{path} declares no Flow: add one at module level, e.g. `my_flow = Flow(...)`"
        )
    if name is None:
        if len(flows) > 1:
            names = ", ".join(sorted(flows))
            raise FlowLoadError(
                f"{path} declares several flows ({names}): pick one, e.g. {path}@{sorted(flows)[0]}"
            )
        return next(iter(flows.values()))
    if name not in flows:
        raise FlowLoadError(f"{path} has no flow '{name}': it has {', '.join(sorted(flows))}")
    return flows[name]


def flow_files(path: Path) -> list[Path]:
    """``path`` itself, or the Python files in a folder (recursively, skipping ``_*`` files)."""
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*.py")
            if not p.name.startswith("_") and not any(part.startswith(".") for part in p.parts)
        )
    if not path.exists():
        raise FlowLoadError(f"{path} not found: give a flow file or a folder of flow files")
    return [path]
