"""lowbit._deprecation: old spellings warn once per use, name the new one, and point at the caller's line.

test_api.py checks that every deprecated spelling still works and agrees with its replacement;
this file checks the mechanism itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit._deprecation import renamed_attributes, warn_renamed


def test_message_names_the_versions_and_the_new_spelling():
    with pytest.deprecated_call() as rec:
        warn_renamed("old_thing=", "new_thing=")
    assert [str(w.message) for w in rec] == [
        "old_thing= is deprecated in lowbit 0.2 and will be removed in 0.3; use new_thing="
    ]


def test_the_warning_points_at_the_callers_line_not_inside_lowbit():
    est = lowbit.calibration.MinMax().fit([np.array([-1.0, 2.0])])
    with pytest.deprecated_call() as rec:
        est.range_()  # several lowbit frames deep when it warns
    (w,) = rec
    assert w.filename == __file__
    assert "clip_range()" in str(w.message)


def test_the_test_configuration_turns_lowbit_deprecations_into_errors():
    """pyproject's filterwarnings: a deprecated spelling outside pytest.deprecated_call fails the test."""
    with pytest.raises(DeprecationWarning, match="deprecated in lowbit"):
        warn_renamed("x", "y")


def test_renamed_attributes_serve_old_names_and_refuse_unknown_ones():
    loads = []
    get = renamed_attributes("pkg.mod", {"Old": ("pkg.mod.New", lambda: loads.append(1) or "the new object")})
    with pytest.deprecated_call(match=r"pkg\.mod\.Old is deprecated .*; use pkg\.mod\.New"):
        assert get("Old") == "the new object"
    assert loads == [1]  # loaded when asked, not before
    with pytest.raises(AttributeError, match=r"module 'pkg\.mod' has no attribute 'Missing'"):
        get("Missing")


def test_a_real_renamed_attribute_is_the_new_object():
    import lowbit.model as lm

    with pytest.deprecated_call(match="LayerErrorRow"):
        assert lm.LayerError is lm.LayerErrorRow
    assert not hasattr(lm, "NoSuchName")
