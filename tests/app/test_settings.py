"""Settings: the embedded default, strict decoding that names the key and the file,
`MIA_*` environment overrides, cross-model checks, and the CLI's exit on a bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import DEFAULT_SETTINGS_NAME, SettingsError, load_settings
from pipelines.config import LlamaModelConfig, model_config

CLI = Path(sys.executable).parent / "mia-gateway"

MINIMAL = """
[[models]]
id = "a"
provider = "stub"
"""


def write(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, env=env or {})
    return str(info.value), path


# --- the embedded default -----------------------------------------------------------


def test_the_embedded_default_loads() -> None:
    s = load_settings(None, env={})
    assert s.source == DEFAULT_SETTINGS_NAME
    ids = [m.id for m in s.models]
    assert ids == ["smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2", "gpt-oss-20b"]
    by_id = {m.id: m for m in s.models}
    assert by_id["gpt-oss-20b"].format == "harmony" and by_id["gpt-oss-20b"].role == "primary"
    assert by_id["smollm2-135m-instruct"].format == "chat"
    assert by_id["all-minilm-l6-v2"].embedding and not by_id["smollm2-135m-instruct"].embedding
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8000)
    assert set(s.presets) >= {"precise", "creative"}
    assert s.server.max_body_bytes == 4 * 1024 * 1024


def test_a_file_loads_and_remembers_where_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    s = load_settings(path, env={})
    assert s.source == str(path)
    assert [m.id for m in s.models] == ["a"]


# --- mistakes in the file -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nprot = 8000\n", "server.prot"),
        ("colour = 1\n", "colour"),
        (MINIMAL + "temprature = 0.5\n", "models[0].temprature (model 'a')"),
        (MINIMAL + "[models.sampling]\ntop_kk = 3\n", "models[0].sampling.top_kk (model 'a')"),
        (MINIMAL + "embeddings = true\n", "models[0].embeddings (model 'a')"),
    ],
)
def test_an_unknown_key_names_the_key_and_the_file(tmp_path: Path, text: str, key: str) -> None:
    message, path = error_of(tmp_path, text)
    assert str(path) in message
    assert f"'{key}'" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[server]\nport = "eighty"\n', "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ('[server]\nlog_level = "loud"\n', "server.log_level"),
        ("[server]\nheader_timeout = 0\n", "server.header_timeout"),
        ("[server]\nmax_header_bytes = 100\n", "server.max_header_bytes"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (MINIMAL + "max_output_tokens = 0\n", "models[0].max_output_tokens (model 'a')"),
        (MINIMAL + 'format = "gguf"\n', "models[0].format (model 'a')"),
        (MINIMAL + "[models.sampling]\ntemperature = 5.0\n", "models[0].sampling.temperature (model 'a')"),
        ('models = "a"\n', "models"),
    ],
)
def test_a_wrong_type_or_value_names_the_key_and_the_file(tmp_path: Path, text: str, key: str) -> None:
    message, path = error_of(tmp_path, text)
    assert message.startswith(f"{path}: ")
    assert f"'{key}'" in message


def test_a_mistake_in_a_preset_names_the_field_and_the_file(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, "[presets.fast]\ntemperatur = 0.1\n")
    assert str(path) in message and "temperatur" in message and "presets" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[presets.ok]\ntemperature = 0.1\n[presets.fast]\ntemperatur = 0.1\n", "presets.fast.temperatur"),
        ("[presets.fast]\ntemperature = 9.0\n", "presets.fast.temperature"),
    ],
)
def test_a_mistake_in_a_preset_names_the_preset(tmp_path: Path, text: str, key: str) -> None:
    message, _ = error_of(tmp_path, text)
    assert f"'{key}'" in message


def test_a_model_without_an_id_is_named_by_its_index(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, '[[models]]\nprovider = "stub"\n')
    assert str(path) in message and "models[0]" in message and "id" in message


def test_the_reserved_source_key_is_refused(tmp_path: Path) -> None:
    message, _ = error_of(tmp_path, 'source = "elsewhere"\n')
    assert "'source'" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, "[server\nport = 1\n")
    assert str(path) in message and "TOML" in message


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)


def test_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


# --- cross-model checks ---------------------------------------------------------------


def test_a_duplicate_id_is_refused(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, MINIMAL + MINIMAL)
    assert str(path) in message and "'a'" in message and "twice" in message


def test_an_alias_that_repeats_another_models_id_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[models]]\nid = "b"\naliases = ["a"]\nprovider = "stub"\n'
    message, _ = error_of(tmp_path, text)
    assert "'a'" in message and "twice" in message


def test_a_fallback_naming_an_unknown_model_is_refused(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, MINIMAL + 'fallbacks = ["ghost"]\n')
    assert str(path) in message
    assert "fallbacks" in message and "'ghost'" in message and "'a'" in message


def test_fallbacks_may_name_ids_and_aliases_in_any_order(tmp_path: Path) -> None:
    text = (
        '[[models]]\nid = "a"\nprovider = "stub"\nfallbacks = ["b-alias"]\n'
        '[[models]]\nid = "b"\naliases = ["b-alias"]\nprovider = "stub"\nfallbacks = ["a"]\n'
    )
    s = load_settings(write(tmp_path, text), env={})
    assert [m.fallbacks for m in s.models] == [["b-alias"], ["a"]]


# --- environment overrides ------------------------------------------------------------


def test_env_overrides_host_and_port(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "127.0.0.1"\nport = 8000\n' + MINIMAL)
    s = load_settings(path, env={"MIA_HOST": "0.0.0.0", "MIA_PORT": "9123"})
    assert (s.server.host, s.server.port) == ("0.0.0.0", 9123)
    assert isinstance(s.server.port, int)
    # everything else is the file's
    assert [m.id for m in s.models] == ["a"]


def test_env_overrides_apply_to_the_embedded_default_too() -> None:
    s = load_settings(None, env={"MIA_PORT": "8181", "MIA_API_KEYS": " k1 , k2,,", "MIA_QUEUE_SIZE": "3"})
    assert s.server.port == 8181
    assert s.server.api_keys == ["k1", "k2"]
    assert s.server.queue_size == 3


def test_unrelated_env_is_ignored() -> None:
    s = load_settings(None, env={"MIA_NOT_A_SETTING": "x", "PORT": "1"})
    assert s.server.port == 8000


@pytest.mark.parametrize(
    ("var", "value"),
    [("MIA_PORT", "eighty"), ("MIA_PORT", "99999"), ("MIA_QUEUE_SIZE", "-1"), ("MIA_LOG_LEVEL", "loud")],
)
def test_a_bad_env_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, env={var: value})
    message = str(info.value)
    assert var in message
    assert "environment" in message


# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [("[server]\nprot = 8000\n", "server.prot"), ('[server]\nport = "x"\n', "server.port")],
)
def test_serve_with_a_bad_file_exits_2_naming_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text, "BAD.toml")
    proc = subprocess.run(
        [str(CLI), "serve", "--config", str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    assert key in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_serve_with_a_bad_env_value_exits_2_naming_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    proc = subprocess.run(
        [str(CLI), "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MIA_PORT": "not-a-port"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "MIA_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    proc = subprocess.run([str(CLI), "check-config", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: ok (1 models)" in proc.stdout


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("n_gpu_layers = -2", "models[0].n_gpu_layers"),
        ('n_gpu_layers = "all"', "models[0].n_gpu_layers"),
        ("main_gpu = -1", "models[0].main_gpu"),
        ('split_mode = "rows"', "models[0].split_mode"),
        ("tensor_split = [0.0, 0.0]", "tensor_split"),
        ("tensor_split = [-1.0, 2.0]", "models[0].tensor_split"),
        ("tensor_split = []", "models[0].tensor_split"),
    ],
)
def test_a_bad_gpu_setting_stops_start_up_naming_it(tmp_path: Path, line: str, named: str) -> None:
    message, path = error_of(tmp_path, f'[[models]]\nid = "g"\nprovider = "llama_cpp"\n{line}\n')
    assert str(path) in message and named in message and "(model 'g')" in message


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('flash_attention = "yes"', "models[0].flash_attention"),
        ("prompt_cache_mib = -1", "models[0].prompt_cache_mib"),
        ("prompt_cache_mib = 2097152", "models[0].prompt_cache_mib"),
        ("prompt_cache_mib = 1.5", "models[0].prompt_cache_mib"),
    ],
)
def test_a_bad_llama_setting_stops_start_up_naming_it(tmp_path: Path, line: str, named: str) -> None:
    message, path = error_of(tmp_path, f'[[models]]\nid = "g"\nprovider = "llama_cpp"\n{line}\n')
    assert str(path) in message and named in message and "(model 'g')" in message


def test_llama_speed_settings_are_read() -> None:
    default = model_config(id="g", provider="llama_cpp")
    assert isinstance(default, LlamaModelConfig)
    assert (default.flash_attention, default.prompt_cache_mib) == (False, 512)
    config = model_config(id="g", provider="llama_cpp", flash_attention=True, prompt_cache_mib=0)
    assert isinstance(config, LlamaModelConfig)
    assert (config.flash_attention, config.prompt_cache_mib) == (True, 0)


def test_gpu_settings_are_read() -> None:
    config = model_config(
        id="g", provider="llama_cpp", n_gpu_layers=12, main_gpu=1, split_mode="row", tensor_split=[3.0, 1.0]
    )
    assert isinstance(config, LlamaModelConfig)
    assert (config.n_gpu_layers, config.main_gpu, config.split_mode, config.tensor_split) == (12, 1, "row", [3.0, 1.0])


def test_hosted_tools_is_ignore_or_refuse(tmp_path: Path) -> None:
    message, path = error_of(tmp_path, '[server]\nhosted_tools = "drop"\n')
    assert str(path) in message and "server.hosted_tools" in message
    assert load_settings(write(tmp_path, '[server]\nhosted_tools = "refuse"\n'), env={}).server.hosted_tools == "refuse"


# --- [storage] ------------------------------------------------------------------------


def test_storage_defaults_to_sqlite_in_the_data_folder_and_env_overrides_it(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL), env={})
    assert (
        not s.storage.postgres and s.storage.sqlite_path == Path.home() / ".local/share/mia-gateway/responses.sqlite3"
    )
    assert s.storage.retention_days == 30 and s.storage.sqlite_synchronous == "full"
    env = {"MIA_STORAGE_URL": "postgresql://mia@db/mia", "MIA_STORAGE_RETENTION_DAYS": "0.5"}
    s = load_settings(write(tmp_path, MINIMAL + "\n[storage]\nmax_bytes = 1000\n"), env=env)
    assert s.storage.postgres and s.storage.retention_days == 0.5 and s.storage.max_bytes == 1000


@pytest.mark.parametrize(
    ("text", "env", "says"),
    [
        ('[storage]\nurl = "mysql://db/x"\n', {}, "invalid setting 'storage.url': 'mysql:' is not postgresql://"),
        ("[storage]\nretention_days = 0\n", {}, "invalid setting 'storage.retention_days'"),
        ("[storage]\nfolder = 1\n", {}, "invalid setting 'storage.folder': unknown key"),
        ("", {"MIA_STORAGE_TIMEOUT": "soon"}, "environment: invalid value for MIA_STORAGE_TIMEOUT"),
    ],
)
def test_storage_mistakes_are_named(tmp_path: Path, text: str, env: dict[str, str], says: str) -> None:
    message, _ = error_of(tmp_path, MINIMAL + text, env)
    assert says in message, message
