"""Which GGUF type each tensor gets: the exact block type of a lowbit scheme, or llama.cpp's rules for floats.

* A tensor lowbit already quantized is written as it stands when one block type holds its codes and
  scales exactly (:func:`exact_type`); otherwise the export is refused, naming the schemes that map.
* A float matrix gets the requested type; K-quants need rows of a multiple of 256 and fall back as
  llama.cpp does (Q4_K -> Q5_0, Q6_K -> Q8_0).  ``q4_k_m`` is llama.cpp's Q4_K_M mix: Q6_K for the
  output (or the tied embedding) and for ``attn_v`` / ``ffn_down`` in the first and last eighth of the
  layers and every third layer between, Q4_K elsewhere.
* 1-D tensors (norms, biases) stay F32.

Example:
    >>> tensor_type("blk.0.ffn_down.weight", (576, 1536), "q4_k_m", n_layers=30, has_output=False)
    'Q6_K'
    >>> tensor_type("blk.5.ffn_up.weight", (1536, 576), "q4_k_m", n_layers=30, has_output=False)
    'Q5_0'
"""

from __future__ import annotations

from typing import Any

from lowbit.errors import OptionError

__all__ = ["GGUF_TYPES", "FILE_TYPES", "BLOCK", "tensor_type", "exact_type", "MAPPABLE_SCHEMES"]

#: the ``--type`` choices: one block type for every matrix, or llama.cpp's Q4_K_M mix; f16/f32 keep floats
GGUF_TYPES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q6_k", "q4_k_m", "f16", "f32")
#: llama.cpp's ``general.file_type`` of each choice
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q4_k": 14, "q4_k_m": 15,
              "q6_k": 18}
#: (values per block, bytes per block) of every type lowbit writes or reads
BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q4_K": (256, 144), "Q6_K": (256, 210)}
_FALLBACK = {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}
#: lowbit schemes a block type holds exactly: (qtype, symmetric, float zero point) -> type; all group:32 along
#: the rows with float16 scales (and float16 minima)
_EXACT = {("int8", True, False): "Q8_0", ("int4", True, False): "Q4_0", ("int5", True, False): "Q5_0",
          ("int8_full", True, False): "Q8_0", ("int4_full", True, False): "Q4_0", ("int5_full", True, False): "Q5_0",
          ("uint4", False, True): "Q4_1", ("uint5", False, True): "Q5_1"}
MAPPABLE_SCHEMES = (
    "int8 / int4 / int5 (or their _full variants), symmetric, group:32, scale_format='float16' -> Q8_0 / Q4_0 / "
    "Q5_0; "
    "uint4 / uint5, group:32, scale_format='float16', zero_point='float' -> Q4_1 / Q5_1")


def _more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's choice of the layers that keep more bits in its _M mixes."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def _mix_type(name: str, n_layers: int, has_output: bool) -> str:
    if name == "output.weight" or (not has_output and name == "token_embd.weight"):
        return "Q6_K"
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blk" and parts[2] in ("attn_v", "ffn_down"):
        return "Q6_K" if _more_bits(int(parts[1]), n_layers) else "Q4_K"
    return "Q4_K"


def ragged_rows(scheme: Any, shape: tuple[int, ...]) -> str:
    """Why a lowbit tensor with ragged groups has no GGUF block type ("" when its groups are not ragged).

    GGUF's block types hold fixed blocks of 32 (or 256) values, so a row whose last group is shorter
    cannot be written as it stands.

    Example:
        >>> from lowbit.io.gguf._sources import Scheme
        >>> ragged_rows(Scheme("int4", "group:32", True, "float16", False), (8, 70))
        'ragged groups: rows of 70 values end in a group of 6, and GGUF blocks are fixed'
    """
    parts = str(scheme.granularity).split(":")
    if parts[0] != "group" or not shape:
        return ""
    size = int(parts[1])
    axis = int(parts[2]) if len(parts) > 2 else -1
    length = shape[axis] if -len(shape) <= axis < len(shape) else 0
    if not length or length % size == 0:
        return ""
    return f"ragged groups: rows of {length} values end in a group of {length % size}, and GGUF blocks are fixed"


def tensor_type(name: str, shape: tuple[int, ...], requested: str, *, n_layers: int, has_output: bool) -> str:
    """The GGUF type of a float tensor for a ``--type`` choice (see the module docstring).

    Raises:
        OptionError: an unknown choice, or a matrix whose rows no block of the chosen type divides.
    """
    if requested not in GGUF_TYPES:
        raise OptionError(f"unknown GGUF type {requested!r}; choose one of {', '.join(GGUF_TYPES)}")
    if len(shape) < 2 or requested == "f32":
        return "F32"
    if requested == "f16":
        return "F16"
    gtype = _mix_type(name, n_layers, has_output) if requested == "q4_k_m" else requested.upper()
    row = shape[-1]
    if row % BLOCK[gtype][0] and gtype in _FALLBACK:
        gtype = _FALLBACK[gtype]
    if row % BLOCK[gtype][0]:
        raise OptionError(f"{name}: rows of {row} values do not split into {gtype}'s blocks of "
                          f"{BLOCK[gtype][0]}; choose f16 or another type")
    return gtype


def exact_type(scheme: Any, shape: tuple[int, ...]) -> str | None:
    """The block type that holds a lowbit scheme's codes and scales exactly, or None.

    Example:
        >>> from lowbit.io.gguf._sources import Scheme
        >>> exact_type(Scheme("int4", "group:32", True, "float16", False), (8, 64))
        'Q4_0'
        >>> exact_type(Scheme("int4", "group:64", True, "float16", False), (8, 64)) is None
        True
    """
    along_rows = scheme.granularity in ("group:32", "group:32:-1", f"group:32:{len(shape) - 1}")
    if len(shape) != 2 or not along_rows or scheme.scale_format != "float16" or ragged_rows(scheme, shape):
        return None
    return _EXACT.get((scheme.qtype, scheme.symmetric, scheme.float_zero_point))
