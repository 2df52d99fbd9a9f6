"""Fixtures shared by the lowbit.zoo tests."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest


def _install(root: Path, name: str, files: dict[str, bytes], *, record_hash: dict[str, str] | None = None) -> None:
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



@pytest.fixture
def fake_dist() -> Callable[..., None]:
    """``fake_dist(root, name, files, record_hash=None)``: install a tiny distribution ``name`` under ``root``
    (put ``root`` on sys.path to see it), its RECORD hashing each file (or as ``record_hash`` says)."""
    return _install
