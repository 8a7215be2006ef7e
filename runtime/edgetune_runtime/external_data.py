"""What the runtime checks inside an ONNX graph, read without the onnx package: the files it reads besides
itself (external-data tensors) and the length of its position-embedding table.

ONNX Runtime loads a tensor whose `data_location` is EXTERNAL from the file its `external_data`
entry `location` names, relative to the model's folder. Such a file changes predictions, so a
bundle may use one only if its manifest lists (and so hashes) it. The model is read through mmap
and only the protobuf fields on the way to tensors are decoded: raw weights are skipped unread.
"""

from __future__ import annotations

import mmap
from pathlib import Path, PurePosixPath
from typing import NamedTuple

# Protobuf field numbers (onnx.proto): where tensors can sit.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_FUNCTION_NODE = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11
_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_DIMS, _TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 1, 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
_MAX_GRAPH_NESTING = 32


class MalformedModel(ValueError):
    """The file is not a protobuf ONNX model this walker can read."""


def external_data_files(model_path: Path) -> list[tuple[str, str]]:
    """(tensor name, location relative to the model's folder) of every external-data tensor in the model."""
    return [(tensor.name, tensor.location) for tensor in _tensors(model_path) if tensor.location is not None]


def position_table_rows(model_path: Path) -> int | None:
    """Rows of the model's position-embedding table (the longest sequence it can take), if it has one by name."""
    for tensor in _tensors(model_path):
        if "position_embeddings" in tensor.name and len(tensor.dims) == 2:
            return tensor.dims[0]
    return None


class _Tensor(NamedTuple):
    name: str
    dims: list[int]
    location: str | None
    """None: stored in the model; else the external-data location ("" when the entry names none)."""


def _tensors(model_path: Path) -> list[_Tensor]:
    with open(model_path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            return []
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                found: list[_Tensor] = []
                for field, start, end in _fields(view, 0, len(view)):
                    if field == _MODEL_GRAPH:
                        _graph(view, start, end, found, 0)
                    elif field == _MODEL_FUNCTIONS:
                        for inner, s, e in _fields(view, start, end):
                            if inner == _FUNCTION_NODE:
                                _node(view, s, e, found, 0)
                return found
            finally:
                view.release()


def resolve_location(model_name: str, location: str) -> str | None:
    """The bundle-relative name ONNX Runtime would open for `location`, or None if it leaves the bundle."""
    path = PurePosixPath(location.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(location) > 1 and location[1] == ":"):
        return None
    return str(PurePosixPath(model_name).parent / path)


def _graph(view: memoryview, start: int, end: int, found: list, depth: int) -> None:
    if depth > _MAX_GRAPH_NESTING:
        raise MalformedModel(f"subgraphs nested more than {_MAX_GRAPH_NESTING} deep")
    for field, s, e in _fields(view, start, end):
        if field == _GRAPH_INITIALIZER:
            _tensor(view, s, e, found)
        elif field == _GRAPH_SPARSE_INITIALIZER:
            _sparse(view, s, e, found)
        elif field == _GRAPH_NODE:
            _node(view, s, e, found, depth)


def _node(view: memoryview, start: int, end: int, found: list, depth: int) -> None:
    for field, s, e in _fields(view, start, end):
        if field != _NODE_ATTRIBUTE:
            continue
        for inner, a, b in _fields(view, s, e):
            if inner in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
                _tensor(view, a, b, found)
            elif inner in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
                _graph(view, a, b, found, depth + 1)
            elif inner in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
                _sparse(view, a, b, found)


def _sparse(view: memoryview, start: int, end: int, found: list) -> None:
    for field, s, e in _fields(view, start, end):
        if field in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(view, s, e, found)


def _tensor(view: memoryview, start: int, end: int, found: list) -> None:
    name, location, external, dims = "", None, False, []
    position = start
    while position < end:
        key, position = _varint(view, position, end)
        field, wire = key >> 3, key & 7
        if field == _TENSOR_DATA_LOCATION and wire == 0:
            value, position = _varint(view, position, end)
            external = external or value == _EXTERNAL
            continue
        if field == _TENSOR_DIMS and wire == 0:
            value, position = _varint(view, position, end)
            dims.append(value)
            continue
        position, s, e = _skip(view, position, end, wire)
        if field == _TENSOR_DIMS and wire == 2:  # packed
            while s < e:
                value, s = _varint(view, s, e)
                dims.append(value)
        elif field == _TENSOR_NAME and wire == 2:
            name = bytes(view[s:e]).decode("utf-8", "replace")
        elif field == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            entry = {k: bytes(view[a:b]).decode("utf-8", "replace") for k, a, b in _fields(view, s, e)}
            if entry.get(_ENTRY_KEY) == "location":
                location = entry.get(_ENTRY_VALUE, "")
    found.append(_Tensor(name, dims, (location if location is not None else "") if external else None))


def _fields(view: memoryview, start: int, end: int):
    """(field number, start, end) of each length-delimited field in view[start:end]; other wire types skipped."""
    position = start
    while position < end:
        key, position = _varint(view, position, end)
        wire = key & 7
        position, s, e = _skip(view, position, end, wire)
        if wire == 2:
            yield key >> 3, s, e


def _skip(view: memoryview, position: int, end: int, wire: int) -> tuple[int, int, int]:
    if wire == 0:
        _, position = _varint(view, position, end)
        return position, position, position
    if wire == 1:
        position += 8
    elif wire == 5:
        position += 4
    elif wire == 2:
        length, position = _varint(view, position, end)
        if position + length > end:
            raise MalformedModel("a field runs past the end of its message")
        return position + length, position, position + length
    else:
        raise MalformedModel(f"unknown protobuf wire type {wire}")
    if position > end:
        raise MalformedModel("a field runs past the end of its message")
    return position, position, position


def _varint(view: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise MalformedModel("a truncated or overlong varint")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
