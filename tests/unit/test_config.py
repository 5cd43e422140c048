"""Project configuration: defaults, config files, environment overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.backends import create_backend, get_backend
from promptlab.config import Profile, load_settings
from promptlab.errors import ConfigError


def write_config(root: Path, text: str) -> None:
    (root / "promptlab.toml").write_text(text)


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings.root == tmp_path.resolve()
    assert settings.default_backend == "ollama"
    assert settings.state_dir == tmp_path.resolve() / ".promptlab"
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path.resolve()}/.promptlab/mlflow.db"
    assert settings.experiment == "promptlab"
    backends = {name: (p.kind, p.url) for name, p in settings.backends.items()}
    assert backends == {
        "ollama": ("ollama", "http://localhost:11434"),
        "vllm": ("vllm", "http://localhost:8000/v1"),
        "openai": ("openai", "https://api.openai.com/v1"),
        "llamacpp": ("llamacpp", None),
    }
    assert settings.backends["vllm"].api_key_env == "VLLM_API_KEY"
    assert settings.profile().name == "ollama"


def test_promptlab_toml_sets_profiles_and_models(project: Path) -> None:
    write_config(
        project,
        """
default_backend = "vllm"
tracking_uri = "http://mlflow:5000"

[backends.ollama]
models = { chat = "smollm2:135m", embed = "all-minilm" }

[backends.vllm]
timeout = 30
models.chat = "smollm2-135m"
models.embed = { name = "all-minilm", url = "http://localhost:8001/v1" }
""",
    )
    settings = load_settings(project)
    assert settings.default_backend == "vllm"
    assert settings.resolved_tracking_uri == "http://mlflow:5000"
    ollama = settings.profile("ollama")
    assert ollama.url == "http://localhost:11434"  # the built-in default is kept
    assert ollama.model("chat").name == "smollm2:135m"
    vllm = settings.profile()
    assert vllm.timeout == 30
    assert vllm.model("chat").name == "smollm2-135m"
    assert vllm.model("embed").url == "http://localhost:8001/v1"


def test_the_root_is_found_from_a_subfolder(project: Path) -> None:
    write_config(project, 'default_backend = "vllm"\n')
    sub = project / "flows" / "deep"
    sub.mkdir(parents=True)
    settings = load_settings(sub)
    assert settings.root == project.resolve()
    assert settings.default_backend == "vllm"


def test_tool_promptlab_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.promptlab]\ndefault_backend = "vllm"\n'
        '[tool.promptlab.backends.vllm]\nurl = "http://gpu:8000/v1"\n'
    )
    settings = load_settings(tmp_path)
    assert settings.root == tmp_path.resolve()
    assert settings.default_backend == "vllm"
    assert settings.profile().url == "http://gpu:8000/v1"


def test_a_pyproject_without_tool_promptlab_gives_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_settings(tmp_path).default_backend == "ollama"


def test_promptlab_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.promptlab]\ndefault_backend = "openai"\n')
    write_config(tmp_path, 'default_backend = "vllm"\n')
    assert load_settings(tmp_path).default_backend == "vllm"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:9999", "http://gpu-box:9999"),
        ("10.0.0.5:11500", "http://10.0.0.5:11500"),
        ("http://gpu-box:9999", "http://gpu-box:9999"),
        ("https://gpu-box:9999", "https://gpu-box:9999"),
    ],
)
def test_ollama_host_forms(
    project: Path, monkeypatch: pytest.MonkeyPatch, host: str, url: str
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert load_settings(project).profile("ollama").url == url


@pytest.mark.parametrize(
    ("host", "urls"),
    [
        ("http://gpu-box:9999/", {"http://gpu-box:9999", "http://gpu-box:9999/"}),
        (
            "https://ollama.example.com",
            {"https://ollama.example.com", "https://ollama.example.com:443"},
        ),
        (":5000", {"http://127.0.0.1:5000", "http://localhost:5000"}),
    ],
    ids=["trailing-slash", "https-default-port", "port-only"],
)
def test_ollama_host_forms_as_ollama_reads_them(
    project: Path, monkeypatch: pytest.MonkeyPatch, host: str, urls: set[str]
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert load_settings(project).profile("ollama").url in urls


def test_ollama_host_applies_to_every_ollama_profile_and_beats_the_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        project,
        '[backends.ollama]\nurl = "http://file:1"\n[backends.laptop]\nkind = "ollama"\n'
        "[backends.vllm]\n",
    )
    monkeypatch.setenv("OLLAMA_HOST", "remote:7777")
    settings = load_settings(project)
    assert settings.profile("ollama").url == "http://remote:7777"
    assert settings.profile("laptop").url == "http://remote:7777"
    assert settings.profile("vllm").url == "http://localhost:8000/v1"


def test_profile_url_override(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(project, '[backends.my-prod]\nkind = "vllm"\nurl = "http://file/v1"\n')
    monkeypatch.setenv("PROMPTLAB_MY_PROD_URL", "http://env/v1")
    monkeypatch.setenv("PROMPTLAB_VLLM_URL", "http://gpu:8000/v1")
    monkeypatch.setenv("OLLAMA_HOST", "ignored:1")
    monkeypatch.setenv("PROMPTLAB_OLLAMA_URL", "http://explicit:2")
    settings = load_settings(project)
    assert settings.profile("my-prod").url == "http://env/v1"
    assert settings.profile("vllm").url == "http://gpu:8000/v1"
    assert settings.profile("ollama").url == "http://explicit:2"  # beats OLLAMA_HOST


def test_model_url_override(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        project,
        '[backends.vllm]\nmodels.chat = "smollm2-135m"\n'
        'models.embed = { name = "all-minilm", url = "http://file:8001/v1" }\n',
    )
    monkeypatch.setenv("PROMPTLAB_VLLM_CHAT_URL", "http://chat:8000/v1")
    monkeypatch.setenv("PROMPTLAB_VLLM_EMBED_URL", "http://embed:8001/v1")
    profile = load_settings(project).profile("vllm")
    assert profile.model("chat").name == "smollm2-135m"
    assert profile.model("chat").url == "http://chat:8000/v1"
    assert profile.model("embed").name == "all-minilm"
    assert profile.model("embed").url == "http://embed:8001/v1"
    backend = create_backend(profile, project)
    assert backend.url("chat") == "http://chat:8000/v1"
    assert backend.url() == "http://localhost:8000/v1"


def test_backend_and_tracking_env_overrides(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(project, 'default_backend = "ollama"\ntracking_uri = "http://file:5000"\n')
    monkeypatch.setenv("PROMPTLAB_BACKEND", "vllm")
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", "http://env:5000")
    settings = load_settings(project)
    assert settings.default_backend == "vllm"
    assert settings.resolved_tracking_uri == "http://env:5000"


def test_cli_overrides_beat_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTLAB_VLLM_URL", "http://env/v1")
    settings = load_settings(project, overrides={"backends": {"vllm": {"url": "http://flag/v1"}}})
    assert settings.profile("vllm").url == "http://flag/v1"
    assert settings.profile("vllm").kind == "vllm"


def test_openai_base_url_sets_the_openai_default(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy/v1")
    assert load_settings(project).profile("openai").url == "http://proxy/v1"


def test_openai_base_url_beats_the_config_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(project, '[backends.openai]\nurl = "http://file/v1"\n')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1")
    assert load_settings(project).profile("openai").url == "http://env/v1"


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('defualt_backend = "vllm"\n', "defualt_backend"),
        ('[backends.ollama]\nurll = "http://x"\n', "backends.ollama.urll"),
        ('[backends.ollama]\nmodels.chat = { nme = "x" }\n', "backends.ollama.models.chat.nme"),
        ("[backends.ollama]\ntimeout = -1\n", "backends.ollama.timeout"),
        ('[backends.ollama]\nmodels.chat = { name = "x", tools = "maybe" }\n', "tools"),
        # names that end up in generated scripts and Dockerfiles
        ('[backends.ollama]\nmodels.chat = "qwen\\nrm -rf /"\n', "models.chat.name"),
        ('[backends.ollama]\nmodels.chat = "a b"\n', "models.chat.name"),
        ('[promote.models.chat]\nsource = "m\\n$(id)"\n', "promote.models.chat.source"),
        ('[promote.models.chat]\nsource = "--trust-remote-code"\n', "source"),
        ('[promote.models."c h"]\nsource = "m"\n', "promote.models"),
        ('[promote.models.chat]\nsource = "m"\nchat_template = "t\\".jinja"\n', "chat_template"),
    ],
)
def test_unknown_or_invalid_keys_are_config_errors(project: Path, toml: str, where: str) -> None:
    write_config(project, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(project)
    message = str(info.value)
    assert str(project.resolve() / "promptlab.toml") in message
    assert where in message
    assert "fix this key" in message
    assert "\n" not in message


def test_invalid_toml_is_a_config_error(project: Path) -> None:
    write_config(project, "[backends.ollama\n")
    with pytest.raises(ConfigError, match=r"promptlab\.toml: invalid TOML .*: fix the file"):
        load_settings(project)


@pytest.mark.parametrize(
    "text",
    ['[tool.promptlab]\ndefualt_backend = "vllm"\n', "[tool.promptlab\n"],
    ids=["unknown-key", "invalid-toml"],
)
def test_errors_in_pyproject_name_pyproject(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"pyproject\.toml"):
        load_settings(tmp_path)


def test_unknown_backend_lists_the_known_ones(project: Path) -> None:
    write_config(project, '[backends.prod]\nkind = "vllm"\n')
    settings = load_settings(project)
    with pytest.raises(ConfigError) as info:
        settings.profile("prdo")
    message = str(info.value)
    assert "unknown backend 'prdo'" in message
    assert "llamacpp, ollama, openai, prod, vllm" in message
    assert "[backends.prdo]" in message


def test_unknown_default_backend_is_reported_when_used(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTLAB_BACKEND", "olama")
    with pytest.raises(ConfigError, match="unknown backend 'olama'"):
        get_backend(settings=load_settings(project))


def test_unknown_backend_kind_lists_the_known_kinds(project: Path) -> None:
    write_config(project, '[backends.gpu]\nkind = "tgi"\n')
    with pytest.raises(ConfigError) as info:
        get_backend("gpu", load_settings(project))
    message = str(info.value)
    assert "unknown backend kind 'tgi'" in message
    assert "fake, llamacpp, ollama, openai, vllm" in message


def test_an_unmapped_logical_model_names_the_fix() -> None:
    profile = Profile(name="vllm", kind="vllm", models={"chat": "smollm2-135m"})
    with pytest.raises(ConfigError) as info:
        profile.model("embed")
    message = str(info.value)
    assert "maps no model 'embed' (it maps: chat)" in message
    assert '`models.embed = "..."` under [backends.vllm]' in message


def test_a_local_model_is_labelled_by_its_file_name() -> None:
    profile = Profile(name="local", kind="llamacpp", models={"chat": {"path": "models/tiny.gguf"}})
    assert profile.model("chat").label == "tiny.gguf"


def test_tracking_uri_from_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_settings(project).resolved_tracking_uri == "http://mlflow:5000"
    monkeypatch.setenv("PROMPTLAB_TRACKING_URI", "sqlite:///x.db")
    assert load_settings(project).resolved_tracking_uri == "sqlite:///x.db"
