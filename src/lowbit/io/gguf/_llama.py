"""What llama.cpp expects of a llama-architecture GGUF file: tensor names, the q/k row order, metadata, tokenizer.

* Tensor names: ``model.layers.N.self_attn.q_proj.weight`` is ``blk.N.attn_q.weight`` and so on
  (:func:`gguf_name`; :func:`hf_name` inverts it).
* Rotary embeddings: Hugging Face stores each head's q/k rows as two halves, llama.cpp as interleaved
  pairs, so those rows are reordered (:func:`qk_row_order`; a row permutation, so quantized rows move
  with their codes and scales untouched).
* Metadata: the ``llama.*`` hyper-parameters from ``config.json`` and the ``tokenizer.ggml.*`` keys
  built from ``tokenizer.json`` (byte-level BPE: tokens, token types, merges, special token ids).

Example:
    >>> gguf_name("model.layers.3.mlp.down_proj.weight")
    'blk.3.ffn_down.weight'
    >>> hf_name("blk.3.ffn_down.weight")
    'model.layers.3.mlp.down_proj.weight'
    >>> qk_row_order(8, 2).tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError, OptionError

__all__ = ["gguf_name", "hf_name", "qk_row_order", "llama_metadata", "tokenizer_metadata", "qk_heads"]

_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
_LAYER = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
          "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
          "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
          "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
          "mlp.down_proj.weight": "ffn_down.weight"}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")
_BLK_RE = re.compile(r"blk\.(\d+)\.(.+)")
_SKIP = re.compile(r".*rotary_emb\.inv_freq$")


def gguf_name(name: str) -> str | None:
    """The GGUF name of a Hugging Face llama tensor; None for tensors llama.cpp does not take (rotary caches).

    Raises:
        OptionError: a tensor this mapping does not know (the model is not a plain llama).

    Example:
        >>> gguf_name("model.layers.0.self_attn.o_proj.weight")
        'blk.0.attn_output.weight'
    """
    if _SKIP.match(name):
        return None
    if name in _GLOBAL:
        return _GLOBAL[name]
    m = _LAYER_RE.fullmatch(name)
    if m and m.group(2) in _LAYER:
        return f"blk.{m.group(1)}.{_LAYER[m.group(2)]}"
    raise OptionError(f"tensor {name!r} has no llama GGUF name; lowbit exports LlamaForCausalLM models "
                      "(model.embed_tokens, model.layers.N.self_attn/mlp/*_proj, norms, lm_head)")


def hf_name(name: str) -> str:
    """The Hugging Face name of a llama GGUF tensor (unknown names come back unchanged).

    Example:
        >>> hf_name("output_norm.weight")
        'model.norm.weight'
    """
    inverse = {v: k for k, v in _GLOBAL.items()}
    if name in inverse:
        return inverse[name]
    m = _BLK_RE.fullmatch(name)
    layer = {v: k for k, v in _LAYER.items()}
    if m and m.group(2) in layer:
        return f"model.layers.{m.group(1)}.{layer[m.group(2)]}"
    return name


def qk_row_order(rows: int, heads: int) -> np.ndarray:
    """Row order that turns a Hugging Face q/k projection into llama.cpp's: ``new[i] = old[order[i]]``.

    Within each head of ``rows // heads`` rows, HF keeps the first rotary halves then the second halves;
    llama.cpp interleaves them (row ``2j`` from the first half, ``2j + 1`` from the second).

    Example:
        >>> qk_row_order(4, 1).tolist()
        [0, 2, 1, 3]
    """
    if heads <= 0 or rows % (2 * heads):
        raise OptionError(f"cannot split {rows} q/k rows into {heads} heads of rotary pairs")
    half = rows // heads // 2
    return np.arange(rows).reshape(heads, 2, half).swapaxes(1, 2).reshape(-1)


def qk_heads(name: str, config: dict[str, Any]) -> int | None:
    """Number of heads whose rows :func:`qk_row_order` reorders for this HF tensor, or None.

    Example:
        >>> qk_heads("model.layers.0.self_attn.k_proj.weight", {"num_attention_heads": 9, "num_key_value_heads": 3})
        3
    """
    if name.endswith("self_attn.q_proj.weight"):
        return int(config["num_attention_heads"])
    if name.endswith("self_attn.k_proj.weight"):
        return int(config.get("num_key_value_heads") or config["num_attention_heads"])
    return None


def llama_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """The ``llama.*`` keys llama.cpp reads, from a Hugging Face ``config.json``.

    Raises:
        OptionError: not a llama config, or a key llama.cpp needs is missing.

    Example:
        >>> cfg = {"model_type": "llama", "max_position_embeddings": 2048, "hidden_size": 64,
        ...        "num_hidden_layers": 2, "intermediate_size": 128, "num_attention_heads": 4,
        ...        "rms_norm_eps": 1e-5, "vocab_size": 100}
        >>> llama_metadata(cfg)["llama.attention.head_count_kv"]
        4
    """
    if config.get("model_type") != "llama":
        raise OptionError(f"GGUF export writes llama-architecture models; this config has model_type "
                          f"{config.get('model_type')!r}")
    try:
        heads = int(config["num_attention_heads"])
        meta: dict[str, Any] = {
            "llama.context_length": int(config["max_position_embeddings"]),
            "llama.embedding_length": int(config["hidden_size"]),
            "llama.block_count": int(config["num_hidden_layers"]),
            "llama.feed_forward_length": int(config["intermediate_size"]),
            "llama.attention.head_count": heads,
            "llama.attention.head_count_kv": int(config.get("num_key_value_heads") or heads),
            "llama.attention.layer_norm_rms_epsilon": float(config["rms_norm_eps"]),
            "llama.rope.freq_base": float(_rope(config).get("rope_theta", 10000.0)),
            "llama.rope.dimension_count": int(config.get("head_dim") or config["hidden_size"] // heads),
            "llama.vocab_size": int(config["vocab_size"]),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise OptionError(f"config.json lacks what llama.cpp needs: {err}") from None
    rope_type = _rope(config).get("rope_type", _rope(config).get("type", "default"))
    if rope_type not in ("default", None):
        raise OptionError(f"RoPE type {rope_type!r} is not exported; lowbit writes plain RoPE")
    return meta


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings: ``rope_parameters`` (transformers 5), else ``rope_scaling`` plus ``rope_theta``."""
    params = config.get("rope_parameters") or {**(config.get("rope_scaling") or {})}
    if "rope_theta" not in params and "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    return params


def _merges(model: dict[str, Any]) -> list[str]:
    merges = model.get("merges", [])
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def tokenizer_metadata(folder: str | Path, vocab_size: int, pre: str = "default") -> dict[str, Any]:
    """The ``tokenizer.ggml.*`` keys of a byte-level BPE tokenizer (``tokenizer.json`` + ``tokenizer_config.json``).

    Token types are 1 (normal), 3 (control: special added tokens), 4 (user-defined added tokens)
    and 5 (unused padding up to ``vocab_size``).

    Args:
        folder: the model folder holding ``tokenizer.json`` (and optionally ``tokenizer_config.json``).
        vocab_size: the model's vocabulary size (rows of the embedding).
        pre: llama.cpp's pre-tokenizer name (``"smollm"``, ``"llama-bpe"`` ...; ``"default"`` otherwise).

    Raises:
        FileFormatError: no readable ``tokenizer.json``. OptionError: not a BPE tokenizer.
    """
    folder = Path(folder)
    try:
        doc = json.loads((folder / "tokenizer.json").read_text())
    except (OSError, ValueError) as err:
        raise FileFormatError(f"{folder}: no readable tokenizer.json ({err}); GGUF files carry the tokenizer") from None
    model = doc.get("model", {})
    if model.get("type") != "BPE":
        raise OptionError(f"{folder}: tokenizer type {model.get('type')!r}; lowbit exports byte-level BPE tokenizers")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [5] * vocab_size
    for tok, i in model["vocab"].items():
        if i < vocab_size:
            tokens[i], types[i] = tok, 1
    for added in doc.get("added_tokens", []):
        i = int(added["id"])
        if i < vocab_size:
            tokens[i], types[i] = added["content"], 3 if added.get("special") else 4
    meta: dict[str, Any] = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
                            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                            "tokenizer.ggml.merges": _merges(model)}
    meta.update(_special_ids(folder, tokens))
    return meta


def _special_ids(folder: Path, tokens: list[str]) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return {}
    ids = {t: i for i, t in enumerate(tokens)}
    out: dict[str, Any] = {}
    for key, gguf_key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"),
                          ("pad_token", "padding")):
        tok = cfg.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if isinstance(tok, str) and tok in ids:
            out[f"tokenizer.ggml.{gguf_key}_token_id"] = ids[tok]
    out["tokenizer.ggml.add_bos_token"] = bool(cfg.get("add_bos_token", False))
    template = cfg.get("chat_template")
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    if isinstance(template, str) and template:
        out["tokenizer.chat_template"] = template
    return out
