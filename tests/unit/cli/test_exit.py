"""``promptlab`` ends at once after its work, as a normal exit would have ended it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, sys, concurrent.futures
from promptlab.cli import run

pool = concurrent.futures.ThreadPoolExecutor(1)  # an idle worker, as asyncio leaves one
pool.submit(print, "worked", flush=True).result()
marker = sys.argv[1]
atexit.register(lambda: open(marker, "w").write("exit handlers ran"))
sys.argv = ["promptlab", "cache", "--json"]
run()
"""


def test_the_command_exits_with_its_code_output_and_exit_handlers(
    project: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(marker)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("worked\n{") and done.stdout.rstrip().endswith("}")
    assert marker.read_text() == "exit handlers ran"
