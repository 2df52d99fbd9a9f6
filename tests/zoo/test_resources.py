"""lowbit.zoo._resources: files read from installed packages, with the RECORD hash checked and install hints."""

from __future__ import annotations

import base64
import hashlib

import pytest

torch = pytest.importorskip("torch")

from lowbit.errors import FileFormatError  # noqa: E402
from lowbit.zoo import _resources  # noqa: E402


def test_missing_package_names_pip_command():
    with pytest.raises(FileFormatError, match=r"pip install --no-deps no-such-lowbit-dist") as info:
        _resources.package_file("no-such-lowbit-dist", "x/y.bin")
    assert isinstance(info.value, ValueError)


def test_package_file_checks_record_hash(tmp_path, monkeypatch, fake_dist):
    good, bad = b"trusted bytes", b"tampered bytes"
    fake_dist(
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
