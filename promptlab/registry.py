"""One registry shape for every extension point: backend kinds, scorer kinds and commands.

A :class:`Registry` maps names to things. Entries arrive two ways, and built-ins use both
exactly as a plugin would:

- a decorator (``@scorer``, ``@command``, :meth:`Registry.register`) called while a module
  is imported;
- an entry point of the registry's group (``promptlab.backends``, ``promptlab.scorers``,
  ``promptlab.commands``) in an installed package's metadata. ``name = module:attr``
  registers ``attr`` under ``name``, imported on first use; ``name = module`` imports the
  module when the registry is first read, and its decorators register its entries.

The built-ins are declared as a list of such entry points (see each registry) and loaded by
the same code as the installed ones. A name registered twice by two sources is an error that
names both; plugins namespace their names (``acme.exact``). An unknown name is an error that
says "did you mean".

```python
from promptlab.eval import Score, ScoreContext, scorer

@scorer("acme.shouts")
def shouts(ctx: ScoreContext, settings: object) -> Score:
    return Score.check(ctx.text().isupper())
```
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from promptlab.errors import PluginError, PromptlabError, UserError, did_you_mean

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")


class EntryPoint(NamedTuple):
    """``name = module[:attr]`` in a group, and the package that declares it."""

    name: str
    value: str
    source: str

    @property
    def module(self) -> str:
        """The module to import."""
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        """The attribute of the module (empty: the module registers its own entries)."""
        return self.value.partition(":")[2].strip()

    def load(self) -> Any:
        """Import the module (and fetch the attribute, if any)."""
        loaded: Any = importlib.import_module(self.module)
        for part in filter(None, self.attr.split(".")):
            loaded = getattr(loaded, part)
        return loaded


def installed_entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` declared by installed packages, first copy of each wins.

    Reads ``*.dist-info/entry_points.txt`` on ``sys.path`` directly: ``importlib.metadata``
    alone costs ~30 ms to import, more than the rest of ``promptlab --help``.
    """
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            dist = re.split(r"-\d", name.rsplit(".", 1)[0], maxsplit=1)[0]
            key = re.sub(r"[-_.]+", "_", dist).lower()
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(folder or ".", name, "entry_points.txt")) as file:
                    text = file.read()
            except OSError:
                continue
            found += _parse_entry_points(text, group, dist)
    return found


def _parse_entry_points(text: str, group: str, source: str) -> list[EntryPoint]:
    out: list[EntryPoint] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            out.append(EntryPoint(name.strip(), value.split("[")[0].strip(), source))
    return out


class _Entry(Generic[T]):
    """A registered entry: who registered it, and its value or how to load it."""

    def __init__(self, source: str, value: T | None = None, lazy: EntryPoint | None = None):
        self.source = source
        self.value = value
        self.lazy = lazy


class Registry(Generic[T]):
    """Names to things of one kind, filled by decorators and entry points.

    Args:
        what: what an entry is, for messages ("scorer", "backend kind", "command").
        group: the entry-point group plugins declare their entries in.
        builtins: promptlab's own entries, declared as entry points of ``group``.
        hint: how to add one, appended to "unknown" errors.
        error: the error an unknown name raises.
        check: validates a loaded entry (raise on a wrong one).
    """

    def __init__(
        self,
        what: str,
        group: str,
        builtins: Sequence[str],
        *,
        hint: str,
        error: type[PromptlabError] = UserError,
        check: Callable[[str, Any], T] | None = None,
    ) -> None:
        self.what = what
        self.group = group
        self.builtins = [_builtin(spec) for spec in builtins]
        self.hint = hint
        self.error = error
        self.check = check
        self._entries: dict[str, _Entry[T]] = {}
        self._discovered = False
        self._failure: PromptlabError | None = None

    def register(self, name: str, value: T, *, source: str) -> None:
        """Register ``value`` under ``name``; the same source may register a name again."""
        self._add(name, _Entry(source, value=value))

    def get(self, name: str) -> T:
        """The entry called ``name`` (loaded on first use)."""
        self.discover()
        entry = self._entries.get(name)
        if entry is None:
            raise self.error(self._unknown(name))
        if entry.value is None:
            assert entry.lazy is not None
            try:
                loaded = entry.lazy.load()
            except (ImportError, AttributeError) as exc:
                raise PluginError(
                    f"{self.what} '{name}' from {entry.source} does not load "
                    f"({entry.lazy.value}): {exc}: reinstall {entry.source}"
                ) from None
            entry.value = self.check(name, loaded) if self.check else loaded
        return entry.value

    def names(self) -> list[str]:
        """Every registered name, in the order registered (built-ins first)."""
        self.discover()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """Every entry, loaded, in the order registered."""
        return [(name, self.get(name)) for name in self.names()]

    def source(self, name: str) -> str:
        """Who registered ``name``."""
        self.discover()
        return self._entries[name].source

    def discover(self) -> None:
        """Load the built-ins and the installed plugins, once."""
        if self._failure is not None:
            raise self._failure
        if self._discovered:
            return
        self._discovered = True
        try:
            self._load(self.builtins)
            self._load(installed_entry_points(self.group))
        except PromptlabError as exc:
            self._failure = exc
            raise

    def snapshot(self) -> dict[str, Any]:
        """The registry's state, for :meth:`restore` (tests)."""
        self.discover()
        return dict(self._entries)

    def restore(self, state: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot`."""
        self._entries = dict(state)
        self._failure = None

    def _load(self, points: Iterable[EntryPoint]) -> None:
        for point in points:
            if point.attr:
                self._add(point.name, _Entry(point.source, lazy=point))
                continue
            try:
                importlib.import_module(point.module)
            except ImportError as exc:
                raise PluginError(
                    f"the {self.group} plugin '{point.name}' of {point.source} does not "
                    f"import: {exc}: reinstall {point.source}"
                ) from None

    def _add(self, name: str, entry: _Entry[T]) -> None:
        if not NAME.match(name):
            raise PluginError(
                f"{self.what} name {name!r} from {entry.source} is not a name: use letters, "
                "digits, '_' or '-', with '.' between a namespace and the name"
            )
        old = self._entries.get(name)
        if old is not None and old.source != entry.source:
            namespace = _namespace(entry.source)
            raise PluginError(
                f"{self.what} '{name}' is registered by {old.source} and by {entry.source}: "
                f"rename one or namespace it as '{namespace}.{name.rsplit('.', 1)[-1]}'"
            )
        self._entries[name] = entry

    def _unknown(self, name: str) -> str:
        known = sorted(self._entries)
        guess = did_you_mean(name, known)
        return f"unknown {self.what} '{name}': {guess}use one of {', '.join(known)}, or {self.hint}"


def _builtin(spec: str) -> EntryPoint:
    name, _, value = spec.partition("=")
    return EntryPoint(name.strip(), value.strip(), value.partition(":")[0].strip())


def _namespace(source: str) -> str:
    if source.endswith(".py"):  # a user's plugin file
        head = os.path.splitext(os.path.basename(source))[0]
    else:
        head = re.split(r"[.:]", source)[0]
    head = re.sub(r"^promptlab[-_]|[-_]plugin$", "", head)
    return re.sub(r"\W", "_", head).lower() or "plugin"


def source_of(fn: Callable[..., Any]) -> str:
    """Where a decorated function comes from: its module, or its file for a user's file."""
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("promptlab_user.") or module == "__main__":
        code = getattr(fn, "__code__", None)
        return str(code.co_filename) if code else module
    return module
