"""atomic_file: the destination is the previous file or the complete new one, never a part."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowbit.io._atomic import atomic_file


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not visible until the block ends
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]
