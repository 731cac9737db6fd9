"""Client of the onnxprune gRPC service (``onnxprune serve``): the same calls, run remotely.

Files travel in chunks of at most 1 MiB with their SHA-256 (``onnxprune.service.wire``); a model's
external data files go with it, so models over 2 GB work. Results are the messages of
``proto/onnxprune/v1/pruning.proto``: typed fields plus ``json`` and ``text``, exactly what the
local CLI prints. Files the server sends back are written atomically.

Errors: the library's own exceptions when the server names one (``InvalidModelError``,
``LimitExceededError``, ...); otherwise a ``RemoteError`` chosen by the status received
(``CallRefusedError``, ``ConnectionFailedError`` with a hint on what to check, or
``RemoteError`` itself), as the table in ``onnxprune.errors`` says.

Example:
    >>> from onnxprune.service.client import Client
    >>> with Client("127.0.0.1:50051") as client:  # doctest: +SKIP
    ...     result = client.prune("model.onnx", "pruned.onnx", sparsity=0.9, allocation="erk")
    ...     print(result.report.effective_sparsity)
    ...     small = client.prune("model.onnx", "small.onnx", sparsity=0.5, structured="l1")
    ...     print(small.params_before, small.params_after)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import onnx
from google.protobuf.message import Message

from onnxprune import errors, progress
from onnxprune.errors import (
    CallRefusedError,
    ConnectionFailedError,
    DatasetError,
    InvalidModelError,
    InvalidOptionError,
    RemoteError,
)
from onnxprune.model import (
    check_writable,
    external_span,
    parse_checked,
    remove_stale_temporaries,
    temporary,
    writing,
)
from onnxprune.outputs import names, refuse_clashes
from onnxprune.service._proto import pruning_pb2 as pb
from onnxprune.service._proto import pruning_pb2_grpc as pb_grpc
from onnxprune.service.wire import (
    ERROR_METADATA,
    MAX_CHUNK,
    check_name,
    chunk_of,
    file_info,
    header_files,
    read_chunks,
    read_file,
    receive_file,
)

__all__ = ["PRUNE_OPTIONS", "Client"]

Progress = Callable[[str, float], None]
PathLike = str | os.PathLike

PRUNE_OPTIONS = tuple(pb.PruneOptions.DESCRIPTOR.fields_by_name)
"""The options ``Client.prune`` sends as keywords (``sparsity``, ``score``, ...): the fields of the
``PruneOptions`` message."""


class Client:
    """A connection to an onnxprune server.

    Args:
        target: ``host:port`` of the server.
        token: bearer token, sent as ``authorization: Bearer <token>``.
        tls_ca: PEM file of the CA that signed the server's certificate; turns on TLS.
        tls_cert: with ``tls_key``, this client's certificate for mutual TLS (turns on TLS).
        tls_key: this client's private key for mutual TLS.
        timeout: deadline of each call in seconds; ``None`` for none.
        chunk_size: bytes per uploaded chunk, at most 1 MiB.
        on_progress: called with ``(stage, fraction)``: ``upload`` and the server's stages as the
            server reports them, ``download`` as result files arrive.

    Raises:
        InvalidOptionError: a bad chunk size, or TLS files that cannot be read.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        tls_ca: PathLike | None = None,
        tls_cert: PathLike | None = None,
        tls_key: PathLike | None = None,
        timeout: float | None = None,
        chunk_size: int = MAX_CHUNK,
        on_progress: Progress | None = None,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK:
            raise InvalidOptionError(f"chunk_size={chunk_size} must be in [1, {MAX_CHUNK}]")
        if (tls_cert is None) != (tls_key is None):
            raise InvalidOptionError("mutual TLS needs both --tls-cert and --tls-key")
        options = [("grpc.max_receive_message_length", 64 * MAX_CHUNK)]
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=None if tls_ca is None else read_file(tls_ca, "--tls-ca"),
                private_key=None if tls_key is None else read_file(tls_key, "--tls-key"),
                certificate_chain=None if tls_cert is None else read_file(tls_cert, "--tls-cert"),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.PruningServiceStub(self._channel)
        self._target, self._tls = target, tls_ca is not None or tls_cert is not None
        self._metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self._chunk_size = chunk_size
        self._on_progress = on_progress

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def analyze(
        self,
        model: PathLike,
        *,
        level: str | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        dims: Mapping[str, int] | None = None,
        max_bytes: int | None = None,
        units: bool | None = None,
    ) -> pb.SparsityReport:
        """``onnxprune.analyze`` on the server; see it for the arguments.

        Returns:
            The report: typed fields, ``json`` (what ``analyze --json`` prints) and ``text``.
        """
        options = _options(
            pb.AnalyzeOptions, level=level, input_shapes=input_shapes, dims=dims, units=units
        )
        _set_max_bytes(options, max_bytes)
        uploads = _Uploads()
        header = pb.AnalyzeHeader(options=options)
        uploads.model(header, "model", model, max_bytes)
        return _result(self._call(self._stub.Analyze, pb.AnalyzeRequest, header, uploads), "report")

    def prune(
        self,
        model: PathLike,
        output: PathLike,
        *,
        masks_out: PathLike | None = None,
        masks: PathLike | None = None,
        scores: PathLike | None = None,
        calibration: PathLike | None = None,
        max_bytes: int | None = None,
        report_out: PathLike | None = None,
        **options: Any,
    ) -> pb.PruneResult:
        """``onnxprune.prune`` on the server; writes the pruned model and its masks here.

        With ``structured="l1"`` (or another criterion, ``scope=``, ``round_to=``) it is
        ``onnxprune.structured.structured_prune`` instead, as ``onnxprune prune --structured``:
        the compacted model is written and no masks.

        Args:
            model: the model to prune (with its external data, if any).
            output: where to write the pruned model (external data files go next to it).
            masks_out: where to write the masks (default ``<output stem>.masks.npz``).
            masks: ``.npz`` of masks to apply and compose with.
            scores: ``.npz`` of external scores keyed by weight name.
            calibration: ``.npz`` of inputs for the ``activation`` or ``sparsegpt`` score.
            max_bytes: largest model accepted (the server's own limit applies too).
            report_out: a file the caller writes after the call (its report): no file the
                server sends may take its name. The client does not write it.
            **options: the other keyword arguments of ``onnxprune.prune`` (``sparsity``,
                ``score``, ``allocation``, ``effective``, ``nm``, ``level``, ``input_shapes``...)
                and ``structured``, ``scope``, ``round_to`` (the fields of ``PruneOptions``).

        Returns:
            The report of the pruned model, the warnings and the number of analyses; after a
            structured prune, the units kept per layer (``units``), what compaction cut
            (``removed``) and ``params_before``/``params_after`` instead of a report.

        Raises:
            InvalidOptionError: ``output`` is the input model, or an option is refused (a
                structured prune with an option that chooses single weights, for one).
        """
        output = _output(model, output)
        masks_out = Path(masks_out or output.with_suffix(".masks.npz"))
        header = pb.PruneHeader(options=_options(pb.PruneOptions, **options))
        _set_max_bytes(header.options, max_bytes)
        header.output_name = output.name
        uploads = _Uploads()
        uploads.model(header, "model", model, max_bytes)
        for field, path in (("masks", masks), ("scores", scores), ("calibration", calibration)):
            uploads.attach(header, field, path, InvalidOptionError, field)
        stream = self._call(self._stub.Prune, pb.PruneRequest, header, uploads)
        reserved = uploads.inputs()
        if report_out is not None:
            reserved.update(dict.fromkeys(names(Path(report_out)), "the report file"))
        return self._download(stream, _Downloads(reserved, output, masks_out))

    def compact(
        self,
        model: PathLike,
        output: PathLike,
        *,
        max_bytes: int | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        dims: Mapping[str, int] | None = None,
    ) -> pb.CompactResult:
        """``onnxprune.structured.compact`` on the server; writes the compacted model here.

        Args:
            model: the model to compact (with its external data, if any).
            output: where to write the compacted model (external data files go next to it).
            max_bytes: largest model accepted (the server's own limit applies too).
            input_shapes: fixed shapes for inputs with symbolic dimensions.
            dims: sizes of symbolic dimensions by name.

        Returns:
            The units removed per layer (``removed``, with how many were ``folded``) and
            ``params_before``/``params_after``.

        Raises:
            InvalidOptionError: ``output`` is the input model.
        """
        output = _output(model, output)
        options = _options(pb.CompactOptions, input_shapes=input_shapes, dims=dims)
        header = pb.CompactHeader(options=options, output_name=output.name)
        _set_max_bytes(header.options, max_bytes)
        uploads = _Uploads()
        uploads.model(header, "model", model, max_bytes)
        stream = self._call(self._stub.Compact, pb.CompactRequest, header, uploads)
        return self._download(stream, _Downloads(uploads.inputs(), output))

    def validate(
        self,
        model: PathLike,
        data: PathLike,
        *,
        baseline: PathLike | None = None,
        **options: Any,
    ) -> pb.ValidationResult:
        """``onnxprune.validate`` on the server; see it for the arguments.

        Returns:
            The result: typed fields (``gate`` unset when no gate was asked for), ``json``
            (what ``validate --json`` prints) and ``text``.
        """
        header = pb.ValidateHeader(options=_options(pb.ValidateOptions, **options))
        uploads = _Uploads()
        uploads.model(header, "model", model)
        uploads.attach(header, "data", data, DatasetError, "dataset")
        if baseline is not None:
            uploads.model(header, "baseline", baseline)
        return _result(
            self._call(self._stub.Validate, pb.ValidateRequest, header, uploads), "result"
        )

    def list_methods(self) -> pb.ListMethodsResponse:
        """The scores, allocations and structured criteria the server knows."""
        try:
            return self._stub.ListMethods(
                pb.ListMethodsRequest(), metadata=self._metadata, timeout=self._timeout
            )
        except grpc.RpcError as e:
            raise _error(e, self._target, tls=self._tls) from None

    def health(self, service: str = "") -> str:
        """The server's standard health status of ``service`` (``SERVING``, ``NOT_SERVING``...).

        ``""`` is the server, ``liveness`` and ``readiness`` are for orchestrators' probes,
        ``onnxprune.v1.PruningService`` the pruning service; an unknown name is ``NOT_FOUND``.
        """
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = stub.Check(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return "NOT_FOUND"
            raise _error(e, self._target, tls=self._tls) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def _call(
        self, method: Callable, request: type[Message], header: Message, uploads: _Uploads
    ) -> Iterator[Message]:
        """The responses of a streaming call, progress events passed to ``on_progress``."""
        requests = uploads.requests(request, header, self._chunk_size)
        try:
            for message in method(requests, metadata=self._metadata, timeout=self._timeout):
                if message.WhichOneof("kind") == "progress":
                    self._progress(message.progress.stage, message.progress.fraction)
                else:
                    yield message
        except grpc.RpcError as e:
            raise _error(e, self._target, tls=self._tls) from None

    def _download(self, stream: Iterator[Message], downloads: _Downloads) -> Message:
        """Write the files ``stream`` sends (atomically, at the end); return its result."""
        result = None
        try:
            for message in stream:
                kind = message.WhichOneof("kind")
                if kind == "result":
                    result = message.result
                else:
                    downloads.receive(kind, getattr(message, kind), stream, self._progress)
            if result is None:
                raise _incomplete()
            downloads.commit()
        finally:
            downloads.discard()
        return result

    def _progress(self, stage: str, fraction: float) -> None:
        progress.report(stage, round(100 * fraction, 1), 100)  # percent, for progress.bars()
        if self._on_progress is not None:
            self._on_progress(stage, fraction)


class _Uploads:
    """The local files a request carries, keyed like its header's ``FileInfo`` fields."""

    def __init__(self) -> None:
        self._paths: dict[tuple[str, str], Path] = {}

    def model(
        self, header: Message, field: str, source: PathLike, max_bytes: int | None = None
    ) -> None:
        """Announce a model file and its external data files in ``field``/``field_data``.

        The model passes the loader's checks first (``parse_checked``), so nothing the local
        loader refuses is read or sent: a location that is absolute, climbs out with ``..`` or
        is a symlink leading out of the model's folder, a missing or short data file.

        Raises:
            InvalidModelError: as ``load_model`` would, before any file is read for upload.
            LimitExceededError: the model is over ``max_bytes`` (no limit when ``None``).
        """
        path = Path(source)
        model, external, base = parse_checked(
            path, max_bytes=sys.maxsize if max_bytes is None else max_bytes
        )
        del model  # only its external data references were needed
        self._add(header, field, path, path.name)
        for location, target in sorted(_external_data(external, base).items()):
            self._add(header, f"{field}_data", target, location)

    def attach(
        self,
        header: Message,
        field: str,
        source: PathLike | None,
        error: type[errors.OnnxpruneError],
        what: str,
    ) -> None:
        """Announce an optional data file (masks, scores, calibration, dataset)."""
        if source is None:
            return
        path = Path(source)
        if not path.is_file():
            raise error(f"{what} file not found: {path.name}")
        self._add(header, field, path, path.name)

    def _add(self, header: Message, field: str, path: Path, name: str) -> None:
        info = file_info(path, name)
        target = getattr(header, field)
        if header.DESCRIPTOR.fields_by_name[field].is_repeated:
            target.append(info)
        else:
            target.CopyFrom(info)
        self._paths[field, name] = path

    def inputs(self) -> dict[Path, str]:
        """Every file read for upload, by each name it has (``names``), with what it is."""
        return {
            name: f"the {field.replace('_', ' ')} file {announced}"
            for (field, announced), path in self._paths.items()
            for name in names(path)
        }

    def requests(
        self, request: type[Message], header: Message, chunk_size: int
    ) -> Iterator[Message]:
        """The request stream: the header, then every file's chunks in ``header_files`` order."""
        yield request(header=header)
        for field, info in header_files(header):
            for block in read_chunks(self._paths[field, info.name], chunk_size):
                yield request(chunk=block)


class _Downloads:
    """Files a prune or compact call sends back, written under temporary names, renamed at the end.

    The server names the model's external data files: none of them, nor the model or masks,
    may replace a file the call read (``inputs``) or one another.

    Args:
        inputs: the files uploaded (``_Uploads.inputs``) and others of the call (a report).
        output: where the model goes (its external data files go next to it).
        masks_out: where masks go; ``None`` when the call sends none (compact).
    """

    def __init__(
        self, inputs: Mapping[Path, str], output: Path, masks_out: Path | None = None
    ) -> None:
        self._inputs, self._output, self._masks_out = inputs, output, masks_out
        self._written: list[tuple[Path, Path]] = []  # (temporary, final)

    def receive(
        self, kind: str, info: pb.FileInfo, stream: Iterator[Message], progress: Progress
    ) -> None:
        """Write the file ``info`` announces from the chunks that follow in ``stream``."""
        if kind == "model":
            final = self._output
        elif kind == "masks" and self._masks_out is not None:
            final = self._masks_out
        elif kind == "model_data":
            check_name(info.name, relative=True, error=InvalidModelError)
            final = self._output.parent / info.name
        else:
            raise InvalidModelError(f"unexpected {kind!r} message from the server")
        final.parent.mkdir(parents=True, exist_ok=True)
        check_writable(final)
        remove_stale_temporaries(final)
        part = temporary(final, ".part")
        self._written.append((part, final))
        with writing(final, part):
            for done in receive_file(
                info, part, lambda: chunk_of(next(stream, None)), InvalidModelError
            ):
                progress("download", done / info.size)

    def commit(self) -> None:
        """Rename every received file into place (data files first, the model last).

        Raises:
            InvalidOptionError: a file would replace an input or another file received; none
                is renamed.
        """
        refuse_clashes([final for _, final in self._written], self._inputs)
        for part, final in sorted(self._written, key=lambda w: w[1] == self._output):
            with writing(final, part):
                os.replace(part, final)
        self._written.clear()

    def discard(self) -> None:
        """Remove what was received but not committed."""
        for part, _ in self._written:
            part.unlink(missing_ok=True)


def _output(model: PathLike, output: PathLike) -> Path:
    """``output`` as a path, unless it is the input model.

    Raises:
        InvalidOptionError: ``output`` is ``model``.
    """
    output, source = Path(output), Path(model)
    if output.exists() and source.exists() and output.samefile(source):
        raise InvalidOptionError("the output would overwrite the input model; choose another")
    return output


def _external_data(external: Sequence[onnx.TensorProto], base: Path) -> dict[str, Path]:
    """The files the external tensors are in, by location, each checked as the loader does.

    Raises:
        InvalidModelError: a location the loader refuses (``external_span``), or one the
            service cannot name (``check_name``).
    """
    files = {}
    for tensor in external:
        target = external_span(tensor, base)[0]
        location = {e.key: e.value for e in tensor.external_data}["location"]
        check_name(location, relative=True, error=InvalidModelError)
        files[location] = target
    return files


def _options(message: type[Message], **values: Any) -> Message:
    """An options message from keyword arguments; ``None`` leaves a field unset."""
    values = {k: v for k, v in values.items() if v is not None}
    shapes = values.pop("input_shapes", None) or {}
    try:
        options = message(**values)
    except (TypeError, ValueError) as e:
        raise InvalidOptionError(f"bad option for the server: {e}") from e
    for name, dims in shapes.items():
        options.input_shapes.add(name=name, dims=list(dims))
    return options


def _set_max_bytes(options: Message, max_bytes: int | None) -> None:
    if max_bytes is not None:
        options.max_bytes = max_bytes


def _error(e: grpc.RpcError, target: str, *, tls: bool) -> Exception:
    """The library exception the server named, else the ``RemoteError`` its status calls for."""
    name = dict(e.trailing_metadata() or ()).get(ERROR_METADATA, "")
    cls = getattr(errors, name, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.OnnxpruneError)
        and not issubclass(cls, RemoteError)  # the client's own: no server raises them
    ):
        return cls(e.details())
    status, details = e.code().name, " ".join((e.details() or "").split())
    if status in ConnectionFailedError.statuses:
        return ConnectionFailedError(status, details, _unreachable(target, details, tls=tls))
    if status in CallRefusedError.statuses:
        return CallRefusedError(status, details)
    return RemoteError(status, details)


_HINTS = (
    ("WRONG_VERSION_NUMBER", None, "it does not serve TLS: leave out the --tls-* flags"),
    ("CERTIFICATE_VERIFY_FAILED", None, "its certificate is not signed by the --tls-ca CA"),
    ("Socket closed", True, "it closed the connection: does it want a client certificate "
     "(--tls-cert, --tls-key) signed by its --tls-client-ca?"),
    ("Socket closed", False, "it closed the connection: if it serves TLS, use --tls-ca"),
)  # fmt: skip
"""(text in gRPC's details, whether this client uses TLS or ``None`` for either, hint)."""


def _unreachable(target: str, details: str, *, tls: bool) -> str:
    """The message of a ``ConnectionFailedError``: what to check, then what gRPC said.

    gRPC gives ``UNAVAILABLE`` for a server that is down, TLS on one side only, a certificate
    the client cannot verify and a client certificate the server refuses; its details tell
    them apart (a plaintext client talking to a TLS server only sees "Socket closed").
    """
    hint = next(
        (text for needle, when, text in _HINTS if needle in details and when in (None, tls)),
        "is the server running there?" + ("" if tls else " (use --tls-ca if it serves TLS)"),
    )
    return f"cannot reach an onnxprune server at {target}: {hint} (gRPC: {details})"


def _result(stream: Iterator[Message], field: str) -> Message:
    """The ``field`` of the last message of a call that sends no files."""
    result = None
    for message in stream:
        if message.WhichOneof("kind") != field:
            raise RemoteError("UNKNOWN", "unexpected message from the server")
        result = getattr(message, field)
    if result is None:
        raise _incomplete()
    return result


def _incomplete() -> RemoteError:
    return RemoteError("UNKNOWN", "the server ended the call without a result")
