"""The calls of ``onnxprune remote``: one client per run, one function per command.

Imported when a remote command runs, so gRPC and the client stay out of ``onnxprune --help``; the
parsers are in ``_remote``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.cli._common import (
    EXIT_GATE_FAILED,
    err,
    out,
    parse_dims,
    parse_input_shapes,
    prune_options,
)
from onnxprune.cli._results import print_compact, print_compaction, print_structured
from onnxprune.cli._validate import gate_limits
from onnxprune.errors import InvalidOptionError
from onnxprune.model import write_text_atomic
from onnxprune.outputs import check_outputs
from onnxprune.service.client import PRUNE_OPTIONS, Client
from onnxprune.service.messages import compact_dict, structured_dict
from onnxprune.service.wire import read_token


def run(args: argparse.Namespace) -> int:
    """Run ``args.remote_command`` on the server ``args`` names."""
    with _client(args) as client:
        return COMMANDS[args.remote_command](client, args)


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.server,
        token=None if args.token_file is None else read_token(args.token_file),
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        timeout=args.timeout,
    )


def _analyze_remote(client: Client, args: argparse.Namespace) -> int:
    report = client.analyze(
        args.model,
        level="exact" if args.exact else "channel",
        input_shapes=parse_input_shapes(args.input_shape),
        dims=parse_dims(args.dim),
        max_bytes=args.max_bytes,
        units=args.units,
    )
    out(report.json if args.json else report.text)
    return 0


def _prune_remote(client: Client, args: argparse.Namespace) -> int:
    prune_options(args)  # the local command's refusals, in its words, before any upload
    if args.masked_out:
        raise InvalidOptionError(
            "remote prune does not send back --masked-out (the zeroed model); run `onnxprune "
            "prune --structured --masked-out` locally for it"
        )
    output = Path(args.output)
    masks_out = Path(args.masks_out or output.with_suffix(".masks.npz"))
    check_outputs(
        args.model,
        output,
        None if args.structured else masks_out,
        args.report_out,
        reads={"masks": args.masks_in, "scores": args.scores, "calibration": args.calibration},
        max_bytes=args.max_bytes,
    )
    options = {
        name: getattr(args, name) for name in PRUNE_OPTIONS if getattr(args, name, None) is not None
    }
    options.update(
        level="exact" if args.exact else "channel",
        input_shapes=parse_input_shapes(args.input_shape),
        dims=parse_dims(args.dim),
    )
    result = client.prune(
        args.model,
        output,
        masks_out=masks_out,
        masks=args.masks_in,
        scores=args.scores,
        calibration=args.calibration,
        report_out=args.report_out,
        **options,
    )
    if args.structured:
        summary = structured_dict(result)
        if args.report_out:
            write_text_atomic(Path(args.report_out), json.dumps(summary, indent=2))
        print_structured(summary, args)
        return 0
    report, compaction = result.report, None
    data = json.loads(report.json)
    if result.HasField("compaction"):  # --compact: the JSON gains it, as PruneResult.to_dict's
        compaction = compact_dict(result.compaction)
        data["compaction"] = compaction
    text = json.dumps({**data, "warnings": list(result.warnings)}, indent=2)
    if args.report_out:
        write_text_atomic(Path(args.report_out), text)
    for warning in result.warnings:
        err(f"warning: {warning}")
    if args.json:
        out(text)
        return 0
    out(report.text)
    if result.analyses:
        from onnxprune.pruners.targets import reached

        word = "reached" if reached(result.warnings) else "not reached (see the warning)"
        out(f"effective target {word} in {result.analyses} analyses")
    if compaction is not None:
        print_compaction(compaction)
    out(f"wrote {output} and {masks_out}")
    return 0


def _compact_remote(client: Client, args: argparse.Namespace) -> int:
    check_outputs(args.model, args.output, args.report_out, max_bytes=args.max_bytes)
    summary = compact_dict(
        client.compact(
            args.model,
            args.output,
            max_bytes=args.max_bytes,
            input_shapes=parse_input_shapes(args.input_shape),
            dims=parse_dims(args.dim),
        )
    )
    if args.report_out:
        write_text_atomic(Path(args.report_out), json.dumps(summary, indent=2))
    print_compact(summary, args)
    return 0


def _validate_remote(client: Client, args: argparse.Namespace) -> int:
    options = (
        *("provider", "batch_size", "warmup", "min_time", "min_runs", "threads"),
        *("max_accuracy_drop", "class_axis"),
    )
    if args.metric is not None or args.min_metric is not None or args.max_metric is not None:
        raise InvalidOptionError(
            "--metric, --min-metric and --max-metric are not offered remotely (the server runs "
            "no user code); run `onnxprune validate` here"
        )
    check_outputs(args.model, args.report_out, reads={"data": args.data}, baseline=args.baseline)
    result = client.validate(
        args.model,
        args.data,
        baseline=args.baseline,
        limits=gate_limits(args),
        **{name: getattr(args, name) for name in options},
    )
    if args.report_out:
        write_text_atomic(Path(args.report_out), result.json)
    gate_failed = result.HasField("gate") and not result.gate.passed
    out(result.json if args.json else result.text)
    for warning in result.warnings:
        err(f"warning: {warning}")
    if gate_failed:
        err(f"gate FAILED: {result.gate.reason}")
    return EXIT_GATE_FAILED if gate_failed else 0


def _methods_remote(client: Client, args: argparse.Namespace) -> int:
    del args
    reply = client.list_methods()
    tables = (
        ("scores", reply.scores),
        ("allocations", reply.allocations),
        ("--structured", reply.criteria),
    )
    for title, methods in tables:
        out(f"{title}:")
        for method in methods:
            shown = next((alias for alias in method.aliases if "+" in alias), method.name)
            out(f"  {shown:<12} {method.summary}")
    return 0


def _health_remote(client: Client, args: argparse.Namespace) -> int:
    status = client.health(args.service)
    out(status)
    return 0 if status == "SERVING" else EXIT_GATE_FAILED


COMMANDS = {
    "analyze": _analyze_remote,
    "health": _health_remote,
    "prune": _prune_remote,
    "compact": _compact_remote,
    "methods": _methods_remote,
    "validate": _validate_remote,
}
