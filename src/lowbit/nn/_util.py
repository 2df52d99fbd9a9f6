"""Small helpers shared by the ``lowbit.nn`` modules (not public).

* NumPy <-> torch buffers for quantized storage (uint16 codes travel as an int16
  bit view, so every buffer is a dtype ``torch.save``/``load`` handle everywhere);
* typed input checks;
* a load-time dtype check so a state dict of another configuration is refused
  instead of being silently cast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.errors import InputTypeError, OptionError

__all__ = [
    "TORCH_STORAGE",
    "to_buffer",
    "from_buffer",
    "check_float_input",
    "check_sizes",
    "tensor_bytes",
    "DtypeCheckedLoad",
]

# numpy storage dtype -> torch buffer dtype (uint16 is stored as its int16 bit pattern)
TORCH_STORAGE = {
    np.dtype(np.int8): torch.int8,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.uint16): torch.int16,
}


def to_buffer(arr: np.ndarray) -> torch.Tensor:
    """A torch tensor holding ``arr``'s bytes (uint16 reinterpreted as int16; no copy)."""
    arr = np.asarray(arr)
    if not arr.flags.c_contiguous or not arr.flags.writeable:  # (ascontiguousarray would make a 0-d array 1-d;
        arr = arr.copy()  # torch refuses to wrap read-only memory, e.g. a memory-mapped checkpoint)
    if arr.dtype == np.uint16:
        arr = arr.view(np.int16)
    return torch.from_numpy(arr)


def from_buffer(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """NumPy view of a CPU buffer reinterpreted as ``dtype`` (inverse of :func:`to_buffer`)."""
    return t.detach().contiguous().numpy().view(dtype)


def check_float_input(x: Any, layer: str) -> None:
    """Raise InputTypeError unless ``x`` is a floating-point torch tensor."""
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{layer} expects a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor")
    if not x.is_floating_point():
        raise InputTypeError(f"{layer} expects a floating-point tensor, got {x.dtype}; cast it with .float()")


def check_sizes(layer: str, **sizes: Any) -> tuple[int, ...]:
    """The given layer sizes as ints, after checking that each is an int >= 1 (numpy ints too).

    Raises:
        OptionError: naming every bad size of ``layer`` at once.

    Example:
        >>> check_sizes("WeightOnlyLinear", in_features=8, out_features=np.int64(4))
        (8, 4)
    """
    bad = [f"{name}={value!r}" for name, value in sizes.items()
           if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1]
    if bad:
        raise OptionError(f"{layer} sizes must be positive ints, got {', '.join(bad)}")
    return tuple(int(v) for v in sizes.values())


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    """Total bytes of the given tensors (None entries count 0)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class DtypeCheckedLoad(nn.Module):
    """Refuse buffers of another dtype in ``load_state_dict`` (torch would cast them): the module then
    copies nothing, and ``load_state_dict`` raises naming each buffer."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        refused = []
        for name, buf in self._buffers.items():
            key = prefix + name
            got = state_dict.get(key)
            if buf is not None and isinstance(got, torch.Tensor) and got.dtype != buf.dtype:
                refused.append(
                    f"{key} is {got.dtype} in the state dict but {buf.dtype} in {type(self).__name__}"
                    f"({self.extra_repr()}); build the module with the configuration the state dict was saved with"
                )
        if refused:  # copy nothing into a module whose stored codes or scales would be reinterpreted
            error_msgs.extend(refused)
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
