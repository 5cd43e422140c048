import json
import shutil
from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.errors import UserError
from promptlab.eval.suite import load_suite
from promptlab.promote.lock import build_lock, read_lock, verify, write_lock
from promptlab.runtime.loader import load_flow
from tests.servers import copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


def _lock(project: Path):  # type: ignore[no-untyped-def]
    settings = load_settings(project, env={})
    suite = load_suite(project / "evals" / "support_bot.yaml")
    flow = load_flow(suite.flow_ref)
    lock = build_lock(
        flow,
        suite,
        settings,
        dev_digests={"chat": "d1"},
        templates={"dev.chat": "T"},
        server_versions={"vllm": "0.32.0"},
        margins={},
    )
    return lock, flow, suite, settings


def test_lock_hashes_everything_the_flow_depends_on(project: Path) -> None:
    lock, *_ = _lock(project)
    keys = set(lock.hashes)
    for key in (
        "flow.source",
        "flow.data",
        "suite",
        "suite.gates",
        "prompt.support_reply.text",
        "prompt.support_reply.sampling",
        "prompt.support_reply.schema",
        "retriever.articles.corpus",
        "retriever.articles.index.prod",
        "model.chat.prod.weights",
        "model.embed.prod.weights",
        "template.dev.chat",
    ):
        assert key in keys, key
    assert lock.models["chat"].prod.served_model_name == "smollm2-135m"
    assert lock.models["embed"].prod.runner == "pooling"
    assert lock.versions["vllm"] == "0.32.0" and lock.versions["promptlab"]
    assert len(lock.version) == 12 and lock.digest.startswith(lock.version)


def test_the_lock_is_deterministic_and_never_rewritten(project: Path, tmp_path: Path) -> None:
    lock, *_ = _lock(project)
    again, *_ = _lock(project)
    assert again.digest == lock.digest
    path = write_lock(lock, tmp_path / "out")
    assert read_lock(path) == lock
    assert not path.stat().st_mode & 0o222  # read-only
    write_lock(again, tmp_path / "out")  # the same lock: fine
    other = lock.model_copy(update={"margins": {"default": 0.5}})
    with pytest.raises(UserError, match="never change"):
        write_lock(other, tmp_path / "out")


def test_verify_passes_on_an_unchanged_tree(project: Path) -> None:
    lock, flow, suite, settings = _lock(project)
    drift, checked = verify(lock, flow, suite, settings)
    assert drift == [] and checked >= 10


def test_one_character_in_a_prompt_is_drift(project: Path) -> None:
    lock, *_ = _lock(project)
    source = project / "flows" / "support_bot.py"
    text = source.read_text()
    assert "Nimbus" in text
    source.write_text(text.replace("assistant of Nimbus", "assistant of Nimbuz"))
    settings = load_settings(project, env={})
    suite = load_suite(project / "evals" / "support_bot.yaml")
    drift, _ = verify(lock, load_flow(suite.flow_ref), suite, settings)
    keys = {d.key for d in drift}
    assert "flow.source" in keys and "prompt.support_reply.text" in keys


def test_a_changed_article_or_gate_is_drift(project: Path) -> None:
    lock, *_ = _lock(project)
    article = next((project / "flows" / "data" / "kb").glob("*.md"))
    article.write_text(article.read_text() + "\nOne more line.\n")
    suite_file = project / "evals" / "support_bot.yaml"
    suite_file.write_text(suite_file.read_text().replace("mrr.mean >= 0.7", "mrr.mean >= 0.5"))
    settings = load_settings(project, env={})
    suite = load_suite(suite_file)
    drift, _ = verify(lock, load_flow(suite.flow_ref), suite, settings)
    keys = {d.key for d in drift}
    assert {"retriever.articles.corpus", "retriever.articles.index.prod", "suite.gates"} <= keys
    assert json.loads(drift[0].model_dump_json())["locked"] != "missing"


def test_a_changed_margin_is_drift_but_keeps_the_dev_baseline(project: Path) -> None:
    lock, *_ = _lock(project)
    suite_file = project / "evals" / "support_bot.yaml"
    before = load_suite(suite_file).fingerprint()
    suite_file.write_text(suite_file.read_text() + "margins: {default: 0.05}\n")
    suite = load_suite(suite_file)
    assert suite.fingerprint() == before  # the dev eval that passed still counts
    drift, _ = verify(lock, load_flow(suite.flow_ref), suite, load_settings(project, env={}))
    assert [d.key for d in drift] == ["suite.margins"]


def test_tools_and_the_tool_template_are_locked(project: Path) -> None:
    lock, _, suite, settings = _lock(project)
    assert lock.models["chat"].prod.tool_call_parser == "hermes"
    assert "--enable-auto-tool-choice" in lock.models["chat"].prod.argv()
    flow_file = project / "flows" / "support_bot.py"
    flow_file.write_text(
        flow_file.read_text().replace(
            'reason: Reason = "changed_mind"', 'reason: Reason = "defective"'
        )
    )
    template = project / "flows" / "templates" / "smollm2-tools.jinja"
    template.write_text(template.read_text().replace("# Tools", "# Functions"))
    drift, _ = verify(lock, load_flow(suite.flow_ref), suite, settings)
    keys = {d.key for d in drift}
    assert {"agent.reply.tools", "model.chat.prod.chat_template"} <= keys


@pytest.mark.parametrize("path", ["/etc/flows/bot.py", "../elsewhere/bot.py", "flows/../../x.py"])
def test_a_lock_naming_a_file_outside_the_project_is_refused(project: Path, path: str) -> None:
    lock, *_ = _lock(project)
    tampered = project / "tampered" / "promptlab.lock.json"
    tampered.parent.mkdir()
    tampered.write_text(lock.model_copy(update={"flow_file": path}).model_dump_json())
    with pytest.raises(UserError, match=r"flow_file: .*not a path inside the project.*promote"):
        read_lock(tampered)


def test_a_lock_whose_folder_names_another_version_is_refused(project: Path) -> None:
    lock, *_ = _lock(project)
    folder = project / "deploy" / "support_bot" / ("0" * 12)
    write_lock(lock.model_copy(update={"margins": {"default": 0.5}}), folder)
    with pytest.raises(UserError, match=f"not {'0' * 12}, the version its folder names"):
        read_lock(folder)


def test_a_flow_file_outside_the_project_cannot_be_promoted(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "flows"
    shutil.copytree(project / "flows", outside)
    suite = project / "evals" / "support_bot.yaml"
    flow = str(outside / "support_bot.py")
    suite.write_text(suite.read_text().replace("../flows/support_bot.py", flow))
    with pytest.raises(UserError, match=r"support_bot\.py is outside the project .*move or copy"):
        _lock(project)


def test_prod_serves_compact_json_and_older_locks_keep_their_version(project: Path) -> None:
    lock, *_ = _lock(project)
    chat = lock.models["chat"].prod
    assert chat.compact_json
    argv = chat.argv()
    flag = argv.index("--structured-outputs-config")
    assert json.loads(argv[flag + 1]) == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert "--structured-outputs-config" not in lock.models["embed"].prod.argv()
    # a lock written before compact_json existed reads back with the same hash (its version)
    data = json.loads(lock.model_dump_json())
    for pair in data["models"].values():
        pair["prod"].pop("compact_json", None)
    older = type(lock).model_validate(data)
    assert not older.models["chat"].prod.compact_json
    assert "compact_json" not in older.model_dump_json()
    assert "--structured-outputs-config" not in older.models["chat"].prod.argv()
