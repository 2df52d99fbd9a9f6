"""Weight-only quantized Embedding: a packed low-bit table, float32 rows out.

Only the rows that are looked up are dequantized when the granularity keeps
rows independent (per tensor, per row = ``PerChannel(0)``, per column, or groups
along the embedding dimension) and each row starts on a byte boundary
(``embedding_dim * bits % 8 == 0``); otherwise the whole table is dequantized.

``max_norm`` renormalises the looked-up rows of the output (the stored table
is not changed, unlike ``torch.nn.Embedding``); ``padding_idx``,
``scale_grad_by_freq`` and ``sparse`` only concern gradients of the weight,
which is not trainable here, and are kept for the configuration.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> emb = lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(100, 16, padding_idx=0), "int4")
    >>> emb(torch.tensor([[0, 5], [7, 7]])).shape
    torch.Size([2, 2, 16])
    >>> bool((emb(torch.tensor([0])) == 0).all())
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowbit._arrays import Source
from lowbit.core import dequantize
from lowbit.errors import InputTypeError, OptionError
from lowbit.formats import QType
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor
from lowbit.nn._packed import PackedWeightModule
from lowbit.nn._util import check_sizes
from lowbit.qtensor import QTensor

__all__ = ["WeightOnlyEmbedding"]


class WeightOnlyEmbedding(PackedWeightModule):
    """Lookup table with packed low-bit rows.

    Args:
        num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
            scale_grad_by_freq, sparse: as ``torch.nn.Embedding``.
        qtype, granularity, symmetric, scale_format: as :class:`~lowbit.nn.WeightOnlyLinear`;
            the default ``PerChannel(0)`` gives one scale per row.

    Example:
        >>> import lowbit.nn as lnn
        >>> lnn.WeightOnlyEmbedding(10, 8, qtype="int2").nbytes  # 20 bytes of codes + 10 scales
        60
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, *, qtype: str | QType = "int8", granularity: Granularity | str | None = None,
                 symmetric: bool | None = None, scale_format: str | None = None,
                 zero_point: str = "int") -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = check_sizes(type(self).__name__, num_embeddings=num_embeddings,
                                                              embedding_dim=embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise OptionError(
                    f"WeightOnlyEmbedding padding_idx={padding_idx} is outside the table of {num_embeddings} rows"
                )
            padding_idx %= self.num_embeddings
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self._init_weight((self.num_embeddings, self.embedding_dim), qtype, granularity, symmetric, scale_format,
                          zero_point)
        self.bias = None

    @classmethod
    def from_float(cls, module: nn.Module, qtype: str | QType = "int8", granularity: Granularity | str | None = None,
                   symmetric: bool | None = None, method: Any = "minmax", *, scale_format: str | None = None,
                   method_options: dict[str, Any] | None = None, zero_point: str = "int",
                   **deprecated: Any) -> WeightOnlyEmbedding:
        """Quantize a ``torch.nn.Embedding``'s table (arguments as :meth:`WeightOnlyLinear.from_float`).

        Example:
            >>> import torch, lowbit.nn as lnn
            >>> lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(4, 8), "int8").weight_scale.shape
            torch.Size([4])
        """
        if not isinstance(module, nn.Embedding):
            raise InputTypeError(f"{cls.__name__}.from_float expects a torch.nn.Embedding, got {type(module).__name__}")
        new = cls(module.num_embeddings, module.embedding_dim, module.padding_idx, module.max_norm,
                  module.norm_type, module.scale_grad_by_freq, module.sparse, qtype=qtype, granularity=granularity,
                  symmetric=symmetric, scale_format=scale_format, zero_point=zero_point)
        new._quantize_from(module, method, method_options, deprecated)
        return new

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON values) that rebuild an empty layer of this configuration.

        Example:
            >>> import lowbit.nn as lnn
            >>> lnn.WeightOnlyEmbedding(10, 4, padding_idx=0).config()["padding_idx"]
            0
        """
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "max_norm": self.max_norm, "norm_type": self.norm_type,
                "scale_grad_by_freq": self.scale_grad_by_freq, "sparse": self.sparse, **self._weight_config()}

    def _row_wise(self) -> bool:
        """Whether rows can be dequantized on their own (parameters never span rows; the rows' decoded
        scales are held as float32, which MX formats, bound to E8M0 scales, do not allow)."""
        g = self.granularity
        row_aligned = not self.qtype.packed or self.embedding_dim * self.qtype.bits % 8 == 0
        per_row = isinstance(g, (PerTensor, PerChannel)) or (isinstance(g, PerGroup) and g.axis % 2 == 1)
        return row_aligned and per_row and not self.qtype.is_mx

    def _rows(self, idx: np.ndarray) -> torch.Tensor:
        """Dequantize the rows ``idx`` (sorted, unique, in range) of the table."""
        qt = self.weight_qtensor()
        width = qt.data.size // self.num_embeddings
        data = qt.data.reshape(self.num_embeddings, width)[idx].reshape(-1)
        g = self.granularity
        gathers = (isinstance(g, PerChannel) and g.axis % 2 == 0) or isinstance(g, PerGroup)
        scale, zp = (qt.scale[idx], qt.zero_point[idx]) if gathers else (qt.scale, qt.zero_point)
        sub = QTensor(data, scale, zp, qt.qtype, g, qt.symmetric, Source("torch", "float32", (idx.size, qt.shape[1])))
        return dequantize(sub)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Look up float32 rows for integer ``indices`` of any shape."""
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.is_complex() \
                or indices.dtype == torch.bool:
            got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise InputTypeError(f"WeightOnlyEmbedding expects an integer index tensor, got {got}; use .long()")
        if not self._row_wise():
            return F.embedding(indices, self.dequantized_weight(), max_norm=self.max_norm, norm_type=self.norm_type)
        uniq, inverse = torch.unique(indices, return_inverse=True)
        if uniq.numel() == 0:
            return torch.zeros((*indices.shape, self.embedding_dim))
        if int(uniq[0]) < 0 or int(uniq[-1]) >= self.num_embeddings:
            bad = int(uniq[0]) if int(uniq[0]) < 0 else int(uniq[-1])
            raise IndexError(f"WeightOnlyEmbedding index {bad} is out of range for {self.num_embeddings} rows")
        rows = self._rows(uniq.numpy().astype(np.int64))
        return F.embedding(inverse, rows, max_norm=self.max_norm, norm_type=self.norm_type)

    def extra_repr(self) -> str:
        """Table size, options and the weight format."""
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        for name, default in (("padding_idx", None), ("max_norm", None), ("norm_type", 2.0),
                              ("scale_grad_by_freq", False), ("sparse", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return f"{s}, {self._weight_repr()}"
