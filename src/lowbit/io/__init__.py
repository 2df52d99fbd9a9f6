"""Reading and writing tensors and quantized models.

Example:
    >>> from lowbit.io import SUPPORTED_SUFFIXES
    >>> SUPPORTED_SUFFIXES
    ('.npy', '.npz', '.safetensors')
"""

from lowbit.io.tensors import SUPPORTED_SUFFIXES, list_tensors, load_tensors

__all__ = ["SUPPORTED_SUFFIXES", "list_tensors", "load_tensors"]
