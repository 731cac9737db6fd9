"""Receiving a request's files: header first, limits checked, then chunks spooled to disk.

Every file goes to ``dest/<group>/<name>``, where the group is the header field without its
``_data`` suffix: a model and its external data files share a folder (the library's loader then
refuses external data that points anywhere else), a baseline gets its own. Nothing is held in
memory beyond one chunk, so models of any size (over 2 GB: external data) pass through.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path, PurePosixPath

from google.protobuf.message import Message

from onnxprune.errors import (
    DatasetError,
    InvalidModelError,
    InvalidOptionError,
    LimitExceededError,
    OnnxpruneError,
)
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service.wire import check_name, chunk_of, header_files, receive_file

ERRORS: dict[str, type[OnnxpruneError]] = {
    "model": InvalidModelError,
    "baseline": InvalidModelError,
    "data": DatasetError,
    "calibration": DatasetError,
}
"""The error a broken upload raises, by group; other groups (masks, scores): bad options."""

PROGRESS_STEP = 0.05
"""Progress is reported each time another 5% of the upload has arrived."""

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def receive(
    requests: Iterator[Message], dest: Path, max_bytes: int
) -> Generator[float, None, tuple[Message, dict[str, list[Path]]]]:
    """Read a request stream: the header, then every file it announces; yields the fraction done.

    Args:
        requests: the request messages (``header`` first, then ``chunk`` messages).
        dest: an empty folder to write the files to.
        max_bytes: largest size of one group (a model with its external data, or a data file).

    Returns:
        The header and, per header field, the paths of its files.

    Raises:
        LimitExceededError: a group is over ``max_bytes`` (before any data is read).
        InvalidModelError, DatasetError, InvalidOptionError: a missing header or model, a bad
            name, a truncated stream, a chunk over 1 MiB, or a SHA-256 mismatch.
    """
    first = next(requests, None)
    if first is None or first.WhichOneof("kind") != "header":
        raise InvalidOptionError("the first message of a request must be its header")
    header = first.header
    files = header_files(header)
    _check(header, files, max_bytes)
    total, before, reported, paths = sum(info.size for _, info in files), 0, 0.0, {}
    for field, info in files:
        group = field.removesuffix("_data")
        path = dest / group / info.name
        path.parent.mkdir(parents=True, exist_ok=True)
        error = ERRORS.get(group, InvalidOptionError)
        for done in receive_file(info, path, lambda: chunk_of(next(requests, None)), error):
            if (before + done) / total >= reported + PROGRESS_STEP:
                reported = (before + done) / total
                yield reported
        before += info.size
        paths.setdefault(field, []).append(path)
    if next(requests, None) is not None:
        raise InvalidOptionError("the request carries more data than its header announces")
    if reported < 1.0:
        yield 1.0
    return header, paths


def _check(header: Message, files: list[tuple[str, pb.FileInfo]], max_bytes: int) -> None:
    if not header.HasField("model"):
        raise InvalidModelError("the request header names no model")
    sizes: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for field, info in files:
        group = field.removesuffix("_data")
        error = ERRORS.get(group, InvalidOptionError)
        check_name(info.name, relative=field != group, error=error)
        if (group, info.name) in seen:
            raise error(f"two files of the {group} are both named {info.name!r}")
        seen.add((group, info.name))
    for field, info in files:
        group = field.removesuffix("_data")
        error = ERRORS.get(group, InvalidOptionError)
        for folder in PurePosixPath(info.name).parents[:-1]:  # 'x' and 'x/w.bin' cannot both be
            if (group, str(folder)) in seen:
                raise error(f"{info.name!r} would be inside {str(folder)!r}, a file of the {group}")
        if not _SHA256.fullmatch(info.sha256):
            raise error(f"{info.name}: sha256 must be 64 hex digits")
        sizes[group] = sizes.get(group, 0) + info.size
    for group, size in sizes.items():
        if size > max_bytes:
            raise LimitExceededError(
                f"the {group} is {size} bytes, over this server's limit of {max_bytes} bytes"
            )
