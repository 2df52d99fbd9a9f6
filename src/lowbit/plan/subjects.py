"""A model to plan, with calibration data kept apart from lowbit's evaluation data.

``load_subject("smollm2")``, ``load_subject("minilm")`` or ``load_subject("path/to/hf_folder")``:

* causal language models (SmolLM2, a folder whose ``config.json`` names a ``...ForCausalLM``)
  calibrate on token windows of *Macbeth* (:func:`lowbit.zoo.play_windows`); lowbit's
  perplexity figures use *Hamlet*, so the two never overlap.  The metric is KL of the next-token
  distributions.
* encoders (MiniLM, other folders) calibrate on the first ``n`` sentences of
  :func:`lowbit.zoo.sentences` (evaluate on sentences after them); the output compared is
  the mask-aware mean-pooled, L2-normalised embedding and the metric ``1 - cosine``.  The
  pooler is left out of the plan (the embedding does not use it).

Example:
    >>> subject = load_subject("minilm", n_calibration=8)  # doctest: +SKIP
    >>> subject.kind, subject.metric  # doctest: +SKIP
    ('encoder', 'cosine')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, OptionError

__all__ = ["Subject", "load_subject", "ZOO_MODELS", "CALIBRATION_PLAY"]

ZOO_MODELS = ("smollm2", "minilm")
CALIBRATION_PLAY = "macbeth"
"""The play causal LMs calibrate on (evaluation uses *Hamlet*)."""


@dataclass
class Subject:
    """A float model in eval mode, its tokenizer, and what the planner feeds and compares."""

    model: Any
    tokenizer: Any
    kind: str  # "causal" or "encoder"
    batches: list
    metric: str
    output: Any = None  # output(model, batch) -> tensor, or None for the default
    exclude: list[str] = field(default_factory=list)


def pooled_embedding(model: Any, batch: dict) -> Any:
    """Mask-aware mean pooling of ``last_hidden_state``, L2-normalised (the sentence embedding)."""
    import torch

    from lowbit.zoo.minilm import _mean_pool

    hidden = model(**batch).last_hidden_state
    return torch.nn.functional.normalize(_mean_pool(hidden, batch["attention_mask"]).float(), dim=-1)


def sentence_batches(tokenizer: Any, texts: list[str], batch_size: int = 32) -> list[dict]:
    """Tokenized batches (padded, truncated to 256 tokens) of ``texts``."""
    return [dict(tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=256,
                           return_tensors="pt")) for i in range(0, len(texts), batch_size)]


def _window_batches(tokenizer: Any, n: int, seq_len: int) -> list[dict]:
    from lowbit.zoo.smollm2 import play_windows

    windows = play_windows(tokenizer, n, seq_len, play=CALIBRATION_PLAY)
    return [{"input_ids": windows[i : i + 2], "use_cache": False} for i in range(0, n, 2)]


def _load_folder(path: Path) -> tuple[Any, Any, str]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FileFormatError(f"{path} is not a Hugging Face model folder (config.json: {err}); "
                              f"give one or a zoo name ({', '.join(ZOO_MODELS)})") from None
    causal = any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])
    try:
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise FileFormatError(f"loading {path} needs transformers ({err}); pip install transformers") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileFormatError(f"cannot load the model in {path}: {err}") from None
    return model.float().eval(), tokenizer, "causal" if causal else "encoder"


def load_subject(name: str, n_calibration: int | None = None, seq_len: int = 128) -> Subject:
    """The model ``name`` (a zoo name or a model folder) with its calibration batches.

    Args:
        name: ``"smollm2"``, ``"minilm"`` or a Hugging Face model folder.
        n_calibration: windows (causal; default 2) or sentences (encoders; default 128).
        seq_len: tokens per calibration window of a causal model.

    Raises:
        OptionError: a count that is not a positive int. FileFormatError: an unknown name or a
            folder that cannot be loaded.
    """
    for label, value in (("n_calibration", n_calibration), ("seq_len", seq_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OptionError(f"{label} must be a positive int, got {value!r}")
    if name == "smollm2":
        from lowbit.zoo import load_smollm2

        model, tokenizer = load_smollm2()
        kind = "causal"
    elif name == "minilm":
        from lowbit.zoo import load_minilm

        model, tokenizer = load_minilm()
        kind = "encoder"
    elif Path(name).is_dir():
        model, tokenizer, kind = _load_folder(Path(name))
    else:
        raise FileFormatError(f"unknown model {name!r}: give a zoo name ({', '.join(ZOO_MODELS)}) or a model folder")
    if kind == "causal":
        return Subject(model, tokenizer, kind, _window_batches(tokenizer, n_calibration or 2, seq_len), "kl")
    from lowbit.zoo import sentences

    texts = sentences(n_calibration or 128)
    return Subject(model, tokenizer, kind, sentence_batches(tokenizer, texts), "cosine", pooled_embedding,
                   ["pooler.*"])
