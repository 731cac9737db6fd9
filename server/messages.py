"""Library results <-> protobuf messages; the typed fields are filled from ``to_dict()``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from onnxprune._proto import pruning_pb2 as pb
from onnxprune.pruners.registry import ALIASES, ALLOCATIONS, SCORES, Method
from onnxprune.report import SparsityReport, ValidationResult, format_table, format_validation


def options_kwargs(options: Message) -> dict[str, Any]:
    """The options a request set, as keyword arguments of the library call.

    Unset fields are left out, so the library's defaults apply; ``max_bytes`` is the server's
    business (``servicer``), and input shapes become a name -> shape mapping.
    """
    kwargs = {field.name: value for field, value in options.ListFields()}
    kwargs.pop("max_bytes", None)
    if "input_shapes" in kwargs:
        kwargs["input_shapes"] = {s.name: tuple(s.dims) for s in kwargs["input_shapes"]}
    return kwargs


def report_message(report: SparsityReport) -> pb.SparsityReport:
    """A ``SparsityReport`` as its message: typed fields, the JSON and the table of the CLI."""
    data = report.to_dict()
    message = json_format.ParseDict(data, pb.SparsityReport())
    message.json = json.dumps(data, indent=2)
    message.text = format_table(report)
    return message


def validation_message(result: ValidationResult) -> pb.ValidationResult:
    """A ``ValidationResult`` as its message: typed fields, the JSON and the CLI's lines."""
    data = result.to_dict()
    message = json_format.ParseDict(data, pb.ValidationResult())
    message.json = json.dumps(data, indent=2)
    message.text = format_validation(result)
    return message


def methods_message() -> pb.ListMethodsResponse:
    """The registered scores and allocations; allocations with their other accepted spellings."""
    return pb.ListMethodsResponse(
        scores=_methods(SCORES, {}), allocations=_methods(ALLOCATIONS, ALIASES)
    )


def _methods(table: Mapping[str, Method], aliases: Mapping[str, str]) -> list[pb.Method]:
    return [
        pb.Method(
            name=name,
            summary=table[name].summary,
            aliases=sorted(k for k, v in aliases.items() if v == name),
        )
        for name in sorted(table)
    ]
