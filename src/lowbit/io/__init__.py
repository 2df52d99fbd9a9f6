"""Reading and writing tensors and quantized checkpoints.

* :func:`load_tensors` / :func:`iter_tensors` / :func:`list_tensors`: float tensors of ``.npy``, ``.npz`` and
  ``.safetensors`` files (validated, memory-mapped), for ``lowbit compare``;
* :func:`save` / :func:`load`: lowbit checkpoints (docs/FORMAT.md), also ``lowbit.save`` and
  ``lowbit.load``.

Example:
    >>> from lowbit.io import SUPPORTED_SUFFIXES
    >>> SUPPORTED_SUFFIXES
    ('.npy', '.npz', '.safetensors')
"""

from lowbit.io.checkpoint import load, open_checkpoint, save
from lowbit.io.tensors import SUPPORTED_SUFFIXES, iter_tensors, list_tensors, load_tensors

__all__ = ["SUPPORTED_SUFFIXES", "iter_tensors", "list_tensors", "load_tensors", "save", "load", "open_checkpoint"]
