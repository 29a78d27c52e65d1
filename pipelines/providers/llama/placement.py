"""Where a model's layers run: the passport's GPU keys turned into llama.cpp's model
parameters, and what the model card says about it.

llama.cpp offloads every layer by default where it has a GPU backend (CUDA, Vulkan, Metal);
llama-cpp-python's `Llama` offloads none. The gateway decides on purpose, the same for any
`slots`: `n_gpu_layers` None means all layers where a GPU backend exists, none otherwise.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from pipelines.providers.llama.runtime import runtime

if TYPE_CHECKING:
    from pipelines.config import LlamaModelConfig

__all__ = ["model_params", "placement"]

_SPLIT_MODES = {"none": "LLAMA_SPLIT_MODE_NONE", "layer": "LLAMA_SPLIT_MODE_LAYER", "row": "LLAMA_SPLIT_MODE_ROW"}


def _gpu() -> bool:
    return bool(runtime().llama_supports_gpu_offload())


def model_params(config: LlamaModelConfig) -> tuple[Any, Any]:
    """llama.cpp's model parameters for `config`, and what must outlive the load with them
    (the tensor split's array, which the parameters point into)."""
    llama_cpp = runtime()
    params = llama_cpp.llama_model_default_params()
    layers = config.n_gpu_layers
    params.n_gpu_layers = (-1 if _gpu() else 0) if layers is None else layers
    params.main_gpu = config.main_gpu
    params.split_mode = getattr(llama_cpp, _SPLIT_MODES[config.split_mode])
    keep: Any = None
    if config.tensor_split is not None:
        # llama.cpp reads one float per device it can address, zeros past the list
        size = int(llama_cpp.llama_max_devices())
        keep = (ctypes.c_float * size)(*config.tensor_split[:size])
        params.tensor_split = keep
    return params, keep


def placement(config: LlamaModelConfig, model: Any) -> dict[str, Any]:
    """Where the loaded `model` runs, for the model card: the backend, its layers, and how
    many of them llama.cpp was asked to offload (all of them at -1; none without a GPU)."""
    llama_cpp = runtime()
    n_layers = int(llama_cpp.llama_model_n_layer(model.model))
    gpu = _gpu()
    asked = config.n_gpu_layers
    offloaded = 0 if not gpu else n_layers if asked is None or asked < 0 else min(asked, n_layers)
    return {"backend": "gpu" if gpu else "cpu", "layers": n_layers, "gpu_layers": offloaded}
