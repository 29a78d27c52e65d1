"""A reference for all-MiniLM-L6-v2's sentence embeddings, independent of llama.cpp and of
the gateway's converter (pipelines/assembled/minilm_l6_v2.py): the package's own tokenizer.json run
by Hugging Face's `tokenizers` (what sentence-transformers tokenizes with), the package's
safetensors read by `safetensors`, and BERT's forward pass written out in numpy (float64),
then sentence-transformers' modules: mean pooling and L2 normalisation."""

from __future__ import annotations

import functools
import json
import math
import zipfile
from typing import Any

import numpy as np
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

from pipelines.assembled.minilm_l6_v2 import package_zip

__all__ = ["MiniLM", "minilm"]

_erf = np.frompyfunc(math.erf, 1, 1)


class MiniLM:
    """all-MiniLM-L6-v2 as sentence-transformers computes it (inputs up to its 256 tokens)."""

    MAX_TOKENS = 256
    """sentence-transformers' `max_seq_length` for this model."""

    def __init__(self) -> None:
        with zipfile.ZipFile(package_zip()) as zf:
            self.config: dict[str, Any] = json.loads(zf.read("config.json"))
            self.tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode())
            weights = load_safetensors(zf.read("model.safetensors"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.w = {name.removeprefix("bert."): np.asarray(t, dtype=np.float64) for name, t in weights.items()}

    def tokens(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text).ids
        assert len(ids) <= self.MAX_TOKENS, len(ids)
        return ids

    def embed(self, text: str) -> np.ndarray[Any, Any]:
        return self.embed_tokens(self.tokens(text))

    def embed_tokens(self, ids: list[int]) -> np.ndarray[Any, Any]:
        w, cfg = self.w, self.config
        eps = cfg["layer_norm_eps"]
        heads = cfg["num_attention_heads"]
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _norm(x, w, "embeddings.LayerNorm", eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q = _linear(x, w, p + "attention.self.query")
            k = _linear(x, w, p + "attention.self.key")
            v = _linear(x, w, p + "attention.self.value")
            d = q.shape[1] // heads
            q, k, v = (t.reshape(n, heads, d).transpose(1, 0, 2) for t in (q, k, v))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, heads * d)
            x = _norm(x + _linear(ctx, w, p + "attention.output.dense"), w, p + "attention.output.LayerNorm", eps)
            h = _linear(x, w, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)).astype(np.float64))
            x = _norm(x + _linear(h, w, p + "output.dense"), w, p + "output.LayerNorm", eps)
        pooled = x.mean(axis=0)
        return pooled / np.linalg.norm(pooled)


def _linear(x: np.ndarray[Any, Any], w: dict[str, np.ndarray[Any, Any]], name: str) -> np.ndarray[Any, Any]:
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _norm(x: np.ndarray[Any, Any], w: dict[str, np.ndarray[Any, Any]], name: str, eps: float) -> np.ndarray[Any, Any]:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


@functools.lru_cache(maxsize=1)
def minilm() -> MiniLM:
    return MiniLM()
