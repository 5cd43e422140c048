"""One registry shape for backends, scorers and commands: clashes, namespaces, plugins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from promptlab.backends import BACKENDS, backend_class
from promptlab.cli.command import COMMANDS
from promptlab.errors import ConfigError, PluginError, UserError
from promptlab.eval.scorers.base import SCORERS, get_scorer
from promptlab.registry import Registry, installed_entry_points
from promptlab.runtime.loader import import_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scorers() -> Iterator[None]:
    """Whatever a test registers is gone afterwards."""
    state = SCORERS.snapshot()
    yield
    SCORERS.restore(state)


def test_a_duplicate_name_is_an_error_naming_both_sources() -> None:
    registry: Registry[int] = Registry("scorer", "test.group", [], hint="register one")
    registry.register("exact", 1, source="promptlab.eval.scorers.deterministic")
    registry.register("exact", 2, source="promptlab.eval.scorers.deterministic")  # re-import
    with pytest.raises(PluginError) as info:
        registry.register("exact", 3, source="acme_plugin")
    assert str(info.value) == (
        "scorer 'exact' is registered by promptlab.eval.scorers.deterministic and by "
        "acme_plugin: rename one or namespace it as 'acme.exact'"
    )
    assert registry.get("exact") == 2


def test_a_plugin_file_cannot_take_a_builtin_scorer_name(tmp_path: Path, scorers: None) -> None:
    plugin = tmp_path / "mine.py"
    plugin.write_text(
        "from promptlab.eval import Score, scorer\n\n"
        "@scorer('exact')\n"
        "def exact(ctx, settings):\n"
        "    return Score.check(True)\n"
    )
    get_scorer("exact")
    with pytest.raises(Exception) as info:
        import_file(plugin)
    message = str(info.value)
    assert "scorer 'exact' is registered by promptlab.eval.scorers.deterministic and by " in message
    assert str(plugin.resolve()) in message
    assert "namespace it as 'mine.exact'" in message
    assert get_scorer("exact").fn.__module__ == "promptlab.eval.scorers.deterministic"


def test_a_namespaced_plugin_scorer_registers_and_reloads(tmp_path: Path, scorers: None) -> None:
    plugin = tmp_path / "acme.py"
    source = (
        "from promptlab.eval import Score, ScoreContext, scorer\n\n"
        "@scorer('acme.exact', needs_expectation=False)\n"
        "def exact(ctx: ScoreContext, settings: object) -> Score:\n"
        "    return Score.check(ctx.text() == 'ACME'{suffix})\n"
    )
    plugin.write_text(source.format(suffix=""))
    import_file(plugin)
    first = get_scorer("acme.exact")
    assert first.name == "acme.exact"
    assert "acme.exact" in SCORERS.names() and "exact" in SCORERS.names()
    plugin.write_text(source.format(suffix=" or False"))  # edited: imported afresh, same file
    import_file(plugin)
    assert get_scorer("acme.exact").fn is not first.fn


def test_unknown_names_say_did_you_mean() -> None:
    with pytest.raises(UserError, match=r"^unknown scorer 'exat': did you mean 'exact'\? use one"):
        get_scorer("exat")
    with pytest.raises(ConfigError, match=r"unknown backend kind 'olama': did you mean 'ollama'"):
        backend_class("olama")


def test_builtins_are_declared_as_entry_points_of_their_group() -> None:
    assert [p.name for p in BACKENDS.builtins] == ["ollama", "openai", "vllm", "llamacpp", "fake"]
    assert BACKENDS.group == "promptlab.backends"
    assert SCORERS.group == "promptlab.scorers"
    assert COMMANDS.group == "promptlab.commands"
    assert {"run", "eval", "promote", "verify", "bench", "serve", "list", "backends"} <= set(
        COMMANDS.names()
    )
    assert BACKENDS.source("vllm") == "promptlab.backends.vllm"
    assert SCORERS.source("judge") == "promptlab.eval.scorers.judge"


def write_plugin(root: Path) -> Path:
    """An installed package 'acme-plugin' declaring a command, a scorer module and a kind."""
    site = root / "site"
    dist = site / "acme_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [console_scripts]
            acme = acme_plugin:main

            [promptlab.commands]
            hello = acme_plugin:hello

            [promptlab.scorers]
            acme = acme_plugin.scorers

            [promptlab.backends]
            acme = acme_plugin:AcmeBackend
            """
        )
    )
    package = site / "acme_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """\
            from promptlab.cli.command import Command
            from promptlab.testing import FakeBackend


            def arguments(parser):
                parser.add_argument("who")


            def greet(args):
                print(f"hello {args.who}")
                return 0


            hello = Command("hello", greet, help="say hello from acme", arguments=arguments)


            class AcmeBackend(FakeBackend):
                kind = "acme"
            """
        )
    )
    (package / "scorers.py").write_text(
        "from promptlab.eval import Score, scorer\n\n"
        "@scorer('acme.shouts', needs_expectation=False)\n"
        "def shouts(ctx, settings):\n"
        "    return Score.check(ctx.text().isupper())\n"
    )
    return site


def run_python(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


def test_installed_entry_points_are_read_from_dist_info(tmp_path: Path) -> None:
    site = write_plugin(tmp_path)
    sys.path.insert(0, str(site))
    try:
        points = installed_entry_points("promptlab.commands")
    finally:
        sys.path.remove(str(site))
    [hello] = [p for p in points if p.source == "acme_plugin"]
    assert (hello.name, hello.module, hello.attr) == ("hello", "acme_plugin", "hello")


def test_an_entry_point_command_appears_in_help_and_runs(tmp_path: Path) -> None:
    site = write_plugin(tmp_path)
    code = (
        "import sys\nfrom promptlab.cli import main\n"
        "code = main(sys.argv[1:] or ['hello', 'world'])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    )
    out = run_python(site, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hello world\n")
    assert re.search(r"^\s+hello\s+say hello from acme$", out.stdout, flags=re.MULTILINE)


def test_entry_point_scorers_and_backend_kinds_load(tmp_path: Path) -> None:
    site = write_plugin(tmp_path)
    code = (
        "from promptlab.eval.scorers import get_scorer\n"
        "from promptlab.backends import backend_class\n"
        "print(get_scorer('acme.shouts').fn.__module__, backend_class('acme').__name__)\n"
    )
    out = run_python(site, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["acme_plugin.scorers", "AcmeBackend"]


def test_an_installed_plugin_that_clashes_is_one_error_line(tmp_path: Path) -> None:
    site = write_plugin(tmp_path)
    (site / "acme_plugin" / "scorers.py").write_text(
        "from promptlab.eval import Score, scorer\n\n"
        "@scorer('exact')\n"
        "def exact(ctx, settings):\n"
        "    return Score.check(True)\n"
    )
    code = (
        "from promptlab.eval.scorers import get_scorer\n"
        "from promptlab.errors import PluginError\n"
        "try:\n    get_scorer('contains')\nexcept PluginError as exc:\n    print(exc)\n"
    )
    out = run_python(site, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "scorer 'exact' is registered by promptlab.eval.scorers.deterministic and by "
        "acme_plugin.scorers: rename one or namespace it as 'acme.exact'"
    ]
