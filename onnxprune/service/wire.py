"""What the gRPC client and server share about the wire: files in chunks, names, error metadata.

A request names its files in a header (``FileInfo``: name, size, sha256); their bytes follow as
``chunk`` messages of at most ``MAX_CHUNK`` bytes, file after file in ``header_files`` order. A
response sends a ``FileInfo`` and then that file's chunks. Both sides write what they receive with
``receive_file``, which checks sizes, chunk sizes and the digest, and never holds more than one
chunk in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from google.protobuf.message import Message

from onnxprune.errors import InvalidOptionError, OnnxpruneError
from onnxprune.service._proto import pruning_pb2 as pb

MAX_CHUNK = 1 << 20
"""Largest ``chunk`` message payload, in bytes (1 MiB), in both directions."""

NAME_MAX = 255
"""Longest file name (one part of a path), in bytes, that common file systems take."""

ERROR_METADATA = "onnxprune-error"
"""Trailing metadata key naming the ``onnxprune.errors`` class behind a failed call."""

SERVICE = pb.DESCRIPTOR.services_by_name["PruningService"].full_name
"""``onnxprune.v1.PruningService``."""


def read_file(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a small file given on the command line (a token, a certificate).

    Raises:
        InvalidOptionError: the file cannot be read or holds only whitespace.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidOptionError(f"{what} {path.name} cannot be read: {e.strerror}") from e
    if not data.strip():
        raise InvalidOptionError(f"{what} {path.name} is empty")
    return data


def read_token(path: str | os.PathLike) -> str:
    """The bearer token in a file, without surrounding whitespace.

    Raises:
        InvalidOptionError: the file cannot be read, is empty or is not UTF-8 text.
    """
    try:
        return read_file(path, "token file").decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise InvalidOptionError(f"token file {Path(path).name} is not UTF-8 text") from e


def sha256_file(path: str | os.PathLike) -> str:
    """Lowercase hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    for block in read_chunks(path):
        digest.update(block)
    return digest.hexdigest()


def file_info(path: str | os.PathLike, name: str) -> pb.FileInfo:
    """The ``FileInfo`` announcing ``path`` under ``name``."""
    return pb.FileInfo(name=name, size=os.path.getsize(path), sha256=sha256_file(path))


def read_chunks(path: str | os.PathLike, size: int = MAX_CHUNK) -> Iterator[bytes]:
    """The bytes of a file in blocks of at most ``size``."""
    with open(path, "rb") as f:
        while block := f.read(size):
            yield block


def chunk_of(message: Message | None) -> bytes | None:
    """The payload of a ``chunk`` message; ``None`` at the end of a stream or for another kind."""
    if message is None or message.WhichOneof("kind") != "chunk":
        return None
    return message.chunk


def header_files(header: Message) -> list[tuple[str, pb.FileInfo]]:
    """``(field, FileInfo)`` of every file a header announces, in the order their bytes come.

    The order is the header's fields by number, repeated fields in list order; unset optional
    files are left out.
    """
    files = []
    for field in sorted(header.DESCRIPTOR.fields, key=lambda f: f.number):
        if field.message_type is not pb.FileInfo.DESCRIPTOR:
            continue
        value = getattr(header, field.name)
        if field.is_repeated:
            files += [(field.name, info) for info in value]
        elif header.HasField(field.name):
            files.append((field.name, value))
    return files


def check_name(name: str, *, relative: bool, error: type[OnnxpruneError]) -> PurePosixPath:
    """``name`` as a path that stays inside its folder, or ``error``.

    Args:
        name: a plain file name, or with ``relative`` a relative POSIX path (external data
            locations may name subfolders).
        relative: allow subfolders.
        error: the exception class to raise.
    """
    path = PurePosixPath(name)
    plain = bool(name) and len(name) <= 255 and "\\" not in name and "\0" not in name
    parts_ok = all(part not in ("", ".", "..") for part in name.split("/"))
    if not (plain and parts_ok and not path.is_absolute() and (relative or len(path.parts) == 1)):
        allowed = "a relative path inside the folder" if relative else "a plain file name"
        raise error(f"file name {name[:80]!r} is not allowed; give {allowed}")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in path.parts)
    if longest > NAME_MAX:
        raise error(
            f"file name {name[:80]!r} is not allowed: a part of it is {longest} bytes in UTF-8, "
            f"over the {NAME_MAX} file systems take"
        )
    return path


def receive_file(
    info: pb.FileInfo,
    dest: Path,
    next_chunk: Callable[[], bytes | None],
    error: type[OnnxpruneError],
) -> Iterator[int]:
    """Write the chunks of the file ``info`` announces to ``dest``; yields the bytes written so far.

    Raises:
        error: the stream ends early or carries something else, a chunk is over ``MAX_CHUNK``
            or past the announced size, or the SHA-256 differs from ``info.sha256``.
    """
    digest, done = hashlib.sha256(), 0
    with dest.open("wb") as f:
        while done < info.size:
            chunk = next_chunk()
            if chunk is None:
                raise error(f"{info.name}: the stream ended after {done} of {info.size} bytes")
            if len(chunk) > MAX_CHUNK:
                raise error(f"{info.name}: a chunk of {len(chunk)} bytes is over the 1 MiB limit")
            if done + len(chunk) > info.size:
                raise error(f"{info.name}: more bytes than the {info.size} announced")
            f.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            yield done
    if digest.hexdigest() != info.sha256.lower():
        raise error(f"{info.name}: sha256 does not match the one announced (corrupted upload?)")
