"""Finding a model's GGUF on disk and proving it is the file the passport names.

A passport's `path` can point inside an installed distribution (`package:DIST:RELPATH`)
or at a package that assembles the file into the cache folder (`assemble:MODULE`), so
models shipped on PyPI need no download step. Checksums of multi-hundred-MB files take
seconds, so verified digests are remembered per file (size + mtime) across restarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from pipelines.providers.base import LoadFailure

if TYPE_CHECKING:
    from pipelines.config import LlamaModelConfig

__all__ = ["ChecksumCache", "missing_model_file", "resolve_model_path", "sha256_file"]

_CHUNK = 1024 * 1024
_PACKAGE = "package:"
_ASSEMBLE = "assemble:"


def resolve_model_path(config: LlamaModelConfig, *, cache_dir: Path) -> Path:
    """The GGUF file `config` names; raises `LoadFailure("missing_file", ...)` when there is none."""
    raw = _raw_path(config)
    if raw.startswith(_ASSEMBLE):
        return _existing(_assembled_file(raw.removeprefix(_ASSEMBLE), cache_dir))
    return _existing(_named_file(raw))


def missing_model_file(config: LlamaModelConfig, *, cache_dir: Path) -> LoadFailure | None:
    """Why `resolve_model_path` would fail now, found without side effects (nothing is
    assembled or written); None when the file is there or may yet be assembled."""
    try:
        raw = _raw_path(config)
        if raw.startswith(_ASSEMBLE):
            _check_assemblable(raw.removeprefix(_ASSEMBLE), cache_dir)
        else:
            _existing(_named_file(raw))
    except LoadFailure as failure:
        return failure
    return None


def _raw_path(config: LlamaModelConfig) -> str:
    raw = os.environ.get(config.path_env) if config.path_env else None
    if not raw:
        raw = config.path
    if not raw:
        raise LoadFailure("missing_file", f"model {config.id!r} has no path")
    return raw


def _named_file(raw: str) -> Path:
    """The file a `package:` or plain path names (it may not exist)."""
    return _package_file(raw) if raw.startswith(_PACKAGE) else Path(raw).expanduser()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise LoadFailure("missing_file", f"{path} does not exist")
    return path


def _package_file(raw: str) -> Path:
    parts = raw.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise LoadFailure("missing_file", f"{raw!r} is not of the form package:DIST:RELPATH")
    _, dist_name, rel_path = parts
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise LoadFailure("missing_file", f"distribution {dist_name!r} is not installed") from None
    return Path(str(dist.locate_file(rel_path)))


def _assembly_target(module_name: str, cache_dir: Path) -> Path:
    return cache_dir / f"{module_name}.gguf"


def _check_assemblable(module_name: str, cache_dir: Path) -> None:
    """Raises `LoadFailure` when `_assembled_file` could not have the file: not assembled
    yet and no module to assemble it (nothing is imported or written)."""
    if _assembly_target(module_name, cache_dir).is_file():
        return
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise LoadFailure("missing_file", f"assembling {module_name}: no module named {module_name!r}")


def _assembled_file(module_name: str, cache_dir: Path) -> Path:
    target = _assembly_target(module_name, cache_dir)
    if target.is_file():
        return target
    # Assemble under a unique name and rename at the end: an interrupted run (or a
    # second process assembling at the same time) never leaves a truncated file at
    # `target` that a later start would take for the model.
    partial = cache_dir / f".{module_name}.{os.getpid()}.{uuid.uuid4().hex}.partial"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        module = importlib.import_module(module_name)
        written = module.assemble(partial)
        os.replace(Path(written) if written is not None else partial, target)
    except Exception as exc:
        raise LoadFailure("missing_file", f"assembling {module_name}: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return target


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Hex sha256 of `path`, reporting `(bytes_done, bytes_total)` after each 1 MiB chunk."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


class _Entry(msgspec.Struct, frozen=True):
    size: int
    mtime_ns: int
    sha256: str


_entries_decoder = msgspec.json.Decoder(dict[str, _Entry])


class ChecksumCache:
    """Digests of verified files in `cache_dir/checksums.json`, keyed by absolute path.

    A file is hashed again only when its size or mtime changed; an unreadable cache
    file counts as empty (it is a cache, never the source of truth).
    """

    FILE_NAME = "checksums.json"

    def __init__(self, cache_dir: Path) -> None:
        self.file = cache_dir / self.FILE_NAME

    def verify(self, path: Path, expected_sha256: str) -> None:
        """Raise `LoadFailure("checksum_mismatch", ...)` unless `path` hashes to `expected_sha256`."""
        actual = self.sha256(path)
        expected = expected_sha256.strip().lower()
        if actual != expected:
            raise LoadFailure("checksum_mismatch", f"expected {expected}, got {actual}")

    def sha256(self, path: Path) -> str:
        key = str(path.resolve())
        stat = path.stat()
        entry = self._read().get(key)
        if entry is not None and entry.size == stat.st_size and entry.mtime_ns == stat.st_mtime_ns:
            return entry.sha256
        digest = sha256_file(path)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            return digest  # changed while hashing: the digest may match neither version
        # Re-read before writing so entries another process added meanwhile survive.
        entries = self._read()
        entries[key] = _Entry(size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=digest)
        self._write(entries)
        return digest

    def _read(self) -> dict[str, _Entry]:
        try:
            return _entries_decoder.decode(self.file.read_bytes())
        except (OSError, msgspec.DecodeError):
            return {}

    def _write(self, entries: dict[str, _Entry]) -> None:
        tmp = self.file.with_name(f".{self.FILE_NAME}.{os.getpid()}.{uuid.uuid4().hex}")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(msgspec.json.format(msgspec.json.encode(entries)))
            os.replace(tmp, self.file)
        except OSError:
            # A read-only cache folder costs a re-hash next start, not a failed load.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
