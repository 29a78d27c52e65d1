"""Opening a passport's GGUF: the one way every llama.cpp provider of this package loads
its weights (the generation engine's and the embedding context's alike)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.model_files import ChecksumCache, resolve_model_path
from pipelines.providers.base import LoadFailure
from pipelines.providers.llama.placement import model_params
from pipelines.providers.llama.runtime import QuietLog, runtime

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

    from pipelines.config import LlamaModelConfig

__all__ = ["open_model"]


def open_model(config: LlamaModelConfig, *, cache_dir: Path, quiet: QuietLog) -> tuple[LlamaModel, Path]:
    """The verified GGUF loaded (blocking: run it on a worker thread; hashing takes
    seconds), and its path; quiets llama.cpp's log first. Raises `LoadFailure`."""
    try:
        runtime()
    except ImportError as exc:
        raise LoadFailure("import_error", f"llama_cpp: {exc}") from exc
    quiet.install()
    path = resolve_model_path(config, cache_dir=cache_dir)
    if config.sha256 and config.verify_checksum:
        ChecksumCache(cache_dir).verify(path, config.sha256)
    llama_cpp = runtime()
    try:
        # verbose=True: False would point the process's stdout and stderr at /dev/null
        # while the model loads (log lines of every thread lost); llama.cpp's own log is
        # silenced by the hook installed above, and LlamaModel prints nothing.
        params, _keep = model_params(config)
        model = llama_cpp._internals.LlamaModel(path_model=str(path), params=params, verbose=True)
    except Exception as exc:
        raise LoadFailure("load_error", f"{type(exc).__name__}: {exc}") from exc
    return model, path
