"""Validate an ONNX model and write it atomically (not public).

The bytes go to a temporary file in the destination folder; the file is fsynced, checked
(``onnx.checker`` with ``full_check``, then an ONNX Runtime session on the temporary file and,
when the caller gives one, a run compared with lowbit's own outputs) and only then renamed
over ``path``.  Any failure removes the temporary file, so ``path`` is either the previous
file or the complete new one.

Example:
    >>> import onnx, tempfile, pathlib
    >>> from onnx import helper, TensorProto
    >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "relu.onnx"
    >>> write_checked(helper.make_model(g), path) > 0
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, ModelError
from lowbit.io._atomic import atomic_file

__all__ = ["write_checked", "MAX_PROTO_BYTES"]

#: protobuf's limit for one serialized message; larger models would need ONNX external data
MAX_PROTO_BYTES = 2**31 - 1


def _check_proto(proto: Any) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ModelError(f"the exported ONNX graph is not valid ({err}); nothing was written") from None


def _session(tmp: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        return ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types
        raise ModelError(f"ONNX Runtime cannot load the exported model ({err}); nothing was written") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_checked(proto: Any, path: str | os.PathLike[str], check: Callable[[Any], None] | None = None) -> int:
    """Check ``proto``, write it to ``path`` atomically and return the bytes written.

    Args:
        proto: an ``onnx.ModelProto``.
        path: destination file; its folder must exist.
        check: called with an ONNX Runtime session on the temporary file (when onnxruntime is
            installed) before the rename; raise to refuse the file.

    Raises:
        ModelError: invalid graph, ONNX Runtime cannot load it, or ``check`` refused it.
        FileFormatError: the model is over 2 GiB or the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileFormatError(f"the folder of {str(path)!r} does not exist; create it first")
    data = proto.SerializeToString()
    if len(data) > MAX_PROTO_BYTES:
        raise FileFormatError(f"the ONNX model is {len(data)} bytes, over protobuf's 2 GiB limit; "
                              "export a smaller model (ONNX external data is not supported yet)")
    _check_proto(proto)
    with atomic_file(path) as tmp:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is as readable as any
        tmp.write_bytes(data)
        session = _session(tmp)
        if session is not None and check is not None:
            check(session)
    return len(data)
