"""What `promptlab serve` serves: flow files, promoted locks and registered flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.config import load_settings
from promptlab.errors import ConfigError, FlowLoadError, UserError
from promptlab.eval.suite import load_suite
from promptlab.promote.lock import Lock, build_lock, lock_dir, write_lock
from promptlab.promote.registry import pin_refs, ref_kind
from promptlab.runtime.loader import load_flow
from promptlab.serve.target import BackendOptions, resolve_target
from tests.servers import copy_project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PROMPTLAB_BACKEND", "PROMPTLAB_TRACKING_URI", "PROMPTLAB_VLLM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return copy_project(tmp_path)


def _promoted(project: Path, margin: float = 0.1) -> tuple[Lock, Path]:
    """A lock for support_bot as `promptlab promote` writes it (no servers involved)."""
    settings = load_settings(project, env={})
    suite = load_suite(project / "evals" / "support_bot.yaml")
    lock = build_lock(
        load_flow(suite.flow_ref),
        suite,
        settings,
        dev_digests={"chat": "d1"},
        templates={"dev.chat": "T"},
        server_versions={"vllm": "0.32.0"},
        margins={"default": margin},
    )
    return lock, write_lock(lock, lock_dir(settings, lock.flow, lock.version))


def test_refs_are_told_apart(project: Path) -> None:
    _, lock_path = _promoted(project)
    assert ref_kind("flows/chat.py") == "file"
    assert ref_kind("flows/chat.py@chat") == "file"
    assert ref_kind(str(lock_path)) == "lock"
    assert ref_kind(str(lock_path.parent)) == "lock"
    assert ref_kind("support_bot") == "registry"
    assert ref_kind("support_bot@production") == "registry"
    assert pin_refs(["flows/chat.py", str(lock_path)]) == ("flows/chat.py", str(lock_path))


def test_a_lock_serves_its_flow_on_the_backend_it_was_proven_on(project: Path) -> None:
    lock, lock_path = _promoted(project)
    target = resolve_target([str(lock_path)], BackendOptions())
    assert list(target.flows) == ["support_bot"]
    assert target.locks["support_bot"].version == lock.version
    assert target.backend.name == "vllm"  # the project's default is llamacpp
    url = resolve_target([str(lock_path.parent)], BackendOptions(url="http://gpu:9000/v1"))
    assert url.backend.url() == "http://gpu:9000/v1"


def test_a_lock_serves_without_the_model_weights(project: Path) -> None:
    """In the flow server's image the weights are vLLM's side: their hashes are not checked."""
    _, lock_path = _promoted(project)
    config = project / "promptlab.toml"
    config.write_text(config.read_text().replace("models/smollm2-135m-instruct", "models/gone"))
    assert "support_bot" in resolve_target([str(lock_path)], BackendOptions()).flows


def test_a_drifted_prompt_is_refused_before_its_file_runs(project: Path) -> None:
    _, lock_path = _promoted(project)
    source = project / "flows" / "support_bot.py"
    source.write_text(source.read_text().replace("assistant of Nimbus", "assistant of Nimbuz"))
    with pytest.raises(FlowLoadError, match=r"no longer.*flow\.source.*promote again"):
        resolve_target([str(lock_path)], BackendOptions())


def test_another_backend_or_model_is_refused(project: Path) -> None:
    _, lock_path = _promoted(project)
    with pytest.raises(ConfigError, match="promoted to backend 'vllm', not 'ollama'"):
        resolve_target([str(lock_path)], BackendOptions(backend="ollama"))
    with pytest.raises(ConfigError, match=r"proven on chat = 'smollm2-135m'.*--model"):
        resolve_target([str(lock_path)], BackendOptions(model=("chat=qwen3",)))


@pytest.mark.parametrize("tracking", ["mlflow", "memory"])
def test_a_registered_flow_resolves_through_its_alias_and_rolls_back(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tracking: str,
) -> None:
    from promptlab.cli import main
    from promptlab.promote.registry import log_bundle, register
    from promptlab.tracking import open_store, tracked_run

    if tracking == "memory":
        monkeypatch.setenv("PROMPTLAB_TRACKING_URI", f"memory:{project}")
    settings = load_settings(project)
    store = open_store(settings)
    versions = []
    for margin in (0.1, 0.2):
        lock, lock_path = _promoted(project, margin)
        with tracked_run(store, "promote") as run_id:
            source = log_bundle(store, run_id, lock_path.parent, [], project)
            register(store, lock, source, run_id, "staging", {})
        versions.append(lock.version)

    pinned = pin_refs(["support_bot"])[0]
    assert Path(pinned).is_relative_to(settings.state_dir / "registry" / "support_bot" / "2")
    target = resolve_target(["support_bot@staging"], BackendOptions())
    assert target.locks["support_bot"].version == versions[1]

    capsys.readouterr()
    assert main(["promote", "--rollback", "support_bot"]) == 0
    assert capsys.readouterr().out == "promptlab.support_bot@staging: version 2 -> 1\n"
    assert (
        resolve_target(["support_bot"], BackendOptions()).locks["support_bot"].version
        == (versions[0])
    )
    with pytest.raises(UserError, match=r"promptlab\.support_bot@production"):
        pin_refs(["support_bot@production"])
    assert main(["promote", "--rollback", "support_bot"]) == 2  # version 1 was the first
    assert "nothing to roll back to" in capsys.readouterr().err


EVIL = "from pathlib import Path\n\nPath(__file__).with_name('ran.marker').write_text('ran')\n"


@pytest.mark.parametrize("tamper", ["a changed byte", "flow_file elsewhere", "digest != tag"])
def test_a_tampered_registry_bundle_is_refused_before_any_flow_code_runs(
    project: Path, tmp_path_factory: pytest.TempPathFactory, tamper: str
) -> None:
    from promptlab.promote.registry import log_bundle, registered_name
    from promptlab.tracking import open_store, tracked_run

    lock, lock_path = _promoted(project)
    (project / "flows" / "evil.py").write_text(EVIL)
    bundle = tmp_path_factory.mktemp("bundle") / lock.version
    bundle.mkdir()
    text = lock.model_dump_json(indent=2)
    tag = lock.digest
    if tamper == "a changed byte":
        text = text.replace('"gpu_memory_utilization": 0.9', '"gpu_memory_utilization": 0.8')
    elif tamper == "flow_file elsewhere":
        text = text.replace('"flows/support_bot.py"', '"flows/evil.py"')
    else:
        tag = "0" * 64
    assert text != lock.model_dump_json(indent=2) or tag != lock.digest
    (bundle / lock_path.name).write_text(text)
    store = open_store(load_settings(project))
    name = registered_name(lock.flow)
    with tracked_run(store, "promote") as run_id:
        source = log_bundle(store, run_id, bundle, [], project)
        version = store.register_version(name, source, run_id, {"promptlab.lock_hash": tag}, "")
        store.set_alias(name, "staging", version)

    with pytest.raises(UserError, match=r"changed after promotion.*promote again"):
        resolve_target(["support_bot@staging"], BackendOptions())
    assert not (project / "flows" / "ran.marker").exists()
    with pytest.raises(UserError, match="changed after promotion"):  # the bad copy was dropped
        resolve_target(["support_bot@staging"], BackendOptions())


def test_a_lock_pointing_at_another_flow_file_never_imports_it(project: Path) -> None:
    lock, _ = _promoted(project)
    (project / "flows" / "evil.py").write_text(EVIL)
    moved = project / "elsewhere" / "promptlab.lock.json"
    moved.parent.mkdir()
    moved.write_text(lock.model_copy(update={"flow_file": "flows/evil.py"}).model_dump_json())
    with pytest.raises(FlowLoadError, match=r"flows/evil\.py no longer matches.*flow\.source"):
        resolve_target([str(moved)], BackendOptions())
    assert not (project / "flows" / "ran.marker").exists()


def test_a_changed_data_file_is_drift(project: Path) -> None:
    _, lock_path = _promoted(project)
    orders = project / "flows" / "data" / "orders.json"
    orders.write_text(orders.read_text().replace("shipped", "delivered", 1))
    with pytest.raises(FlowLoadError, match=r"flow\.data.*promote again"):
        resolve_target([str(lock_path)], BackendOptions())
