from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileInfo(_message.Message):
    __slots__ = ("name", "size", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class InputShape(_message.Message):
    __slots__ = ("name", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class AnalyzeOptions(_message.Message):
    __slots__ = ("level", "input_shapes", "max_bytes", "dims", "units")
    class DimsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    level: str
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    max_bytes: int
    dims: _containers.ScalarMap[str, int]
    units: bool
    def __init__(self, level: _Optional[str] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., max_bytes: _Optional[int] = ..., dims: _Optional[_Mapping[str, int]] = ..., units: _Optional[bool] = ...) -> None: ...

class AnalyzeHeader(_message.Message):
    __slots__ = ("model", "model_data", "options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: FileInfo
    model_data: _containers.RepeatedCompositeFieldContainer[FileInfo]
    options: AnalyzeOptions
    def __init__(self, model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., options: _Optional[_Union[AnalyzeOptions, _Mapping]] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: AnalyzeHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[AnalyzeHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    report: SparsityReport
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., report: _Optional[_Union[SparsityReport, _Mapping]] = ...) -> None: ...

class PruneOptions(_message.Message):
    __slots__ = ("sparsity", "score", "allocation", "effective", "min_threshold", "nm", "skip_indivisible", "layers", "exclude", "seed", "rounds", "level", "input_shapes", "max_bytes", "structured", "scope", "round_to", "compact", "stream", "reconstruct", "ridge", "prune_shared", "dims")
    class DimsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    MIN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NM_FIELD_NUMBER: _ClassVar[int]
    SKIP_INDIVISIBLE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ROUND_TO_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCT_FIELD_NUMBER: _ClassVar[int]
    RIDGE_FIELD_NUMBER: _ClassVar[int]
    PRUNE_SHARED_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    sparsity: float
    score: str
    allocation: str
    effective: bool
    min_threshold: float
    nm: str
    skip_indivisible: bool
    layers: str
    exclude: str
    seed: int
    rounds: int
    level: str
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    max_bytes: int
    structured: str
    scope: str
    round_to: int
    compact: bool
    stream: str
    reconstruct: bool
    ridge: float
    prune_shared: bool
    dims: _containers.ScalarMap[str, int]
    def __init__(self, sparsity: _Optional[float] = ..., score: _Optional[str] = ..., allocation: _Optional[str] = ..., effective: _Optional[bool] = ..., min_threshold: _Optional[float] = ..., nm: _Optional[str] = ..., skip_indivisible: _Optional[bool] = ..., layers: _Optional[str] = ..., exclude: _Optional[str] = ..., seed: _Optional[int] = ..., rounds: _Optional[int] = ..., level: _Optional[str] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., max_bytes: _Optional[int] = ..., structured: _Optional[str] = ..., scope: _Optional[str] = ..., round_to: _Optional[int] = ..., compact: _Optional[bool] = ..., stream: _Optional[str] = ..., reconstruct: _Optional[bool] = ..., ridge: _Optional[float] = ..., prune_shared: _Optional[bool] = ..., dims: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PruneHeader(_message.Message):
    __slots__ = ("model", "model_data", "options", "masks", "scores", "calibration", "output_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    model: FileInfo
    model_data: _containers.RepeatedCompositeFieldContainer[FileInfo]
    options: PruneOptions
    masks: FileInfo
    scores: FileInfo
    calibration: FileInfo
    output_name: str
    def __init__(self, model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., options: _Optional[_Union[PruneOptions, _Mapping]] = ..., masks: _Optional[_Union[FileInfo, _Mapping]] = ..., scores: _Optional[_Union[FileInfo, _Mapping]] = ..., calibration: _Optional[_Union[FileInfo, _Mapping]] = ..., output_name: _Optional[str] = ...) -> None: ...

class PruneRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PruneHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[PruneHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class LayerUnits(_message.Message):
    __slots__ = ("name", "kept", "total", "sparsity", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    kept: int
    total: int
    sparsity: float
    kind: str
    def __init__(self, name: _Optional[str] = ..., kept: _Optional[int] = ..., total: _Optional[int] = ..., sparsity: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class UnitTotal(_message.Message):
    __slots__ = ("kind", "kept", "total")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    kept: int
    total: int
    def __init__(self, kind: _Optional[str] = ..., kept: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class BlockedGroup(_message.Message):
    __slots__ = ("layers", "reason", "op_type", "node", "groups")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    op_type: str
    node: str
    groups: int
    def __init__(self, layers: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., op_type: _Optional[str] = ..., node: _Optional[str] = ..., groups: _Optional[int] = ...) -> None: ...

class LayerRemoved(_message.Message):
    __slots__ = ("name", "removed", "folded")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FOLDED_FIELD_NUMBER: _ClassVar[int]
    name: str
    removed: int
    folded: int
    def __init__(self, name: _Optional[str] = ..., removed: _Optional[int] = ..., folded: _Optional[int] = ...) -> None: ...

class LayerRefit(_message.Message):
    __slots__ = ("name", "op_type", "inputs_kept", "inputs", "error_before", "error_after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ERROR_AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    inputs_kept: int
    inputs: int
    error_before: float
    error_after: float
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., inputs_kept: _Optional[int] = ..., inputs: _Optional[int] = ..., error_before: _Optional[float] = ..., error_after: _Optional[float] = ...) -> None: ...

class SkippedLayer(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Reconstruction(_message.Message):
    __slots__ = ("samples", "ridge", "layers", "batchnorms", "skipped")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    RIDGE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    BATCHNORMS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    samples: int
    ridge: float
    layers: _containers.RepeatedCompositeFieldContainer[LayerRefit]
    batchnorms: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedLayer]
    def __init__(self, samples: _Optional[int] = ..., ridge: _Optional[float] = ..., layers: _Optional[_Iterable[_Union[LayerRefit, _Mapping]]] = ..., batchnorms: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[_Union[SkippedLayer, _Mapping]]] = ...) -> None: ...

class PruneResult(_message.Message):
    __slots__ = ("report", "warnings", "analyses", "units", "removed", "params_before", "params_after", "blocked", "sparsity", "scope", "round_to", "group_sparsity", "groups_removed", "groups_prunable", "compaction", "macs_before", "macs_after", "nonzero_macs_before", "nonzero_macs_after", "reconstruction", "labels", "totals")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPORT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_AFTER_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ROUND_TO_FIELD_NUMBER: _ClassVar[int]
    GROUP_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    GROUPS_PRUNABLE_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    MACS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MACS_AFTER_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_AFTER_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    report: SparsityReport
    warnings: _containers.RepeatedScalarFieldContainer[str]
    analyses: int
    units: _containers.RepeatedCompositeFieldContainer[LayerUnits]
    removed: _containers.RepeatedCompositeFieldContainer[LayerRemoved]
    params_before: int
    params_after: int
    blocked: _containers.RepeatedCompositeFieldContainer[BlockedGroup]
    sparsity: float
    scope: str
    round_to: int
    group_sparsity: float
    groups_removed: int
    groups_prunable: int
    compaction: CompactResult
    macs_before: int
    macs_after: int
    nonzero_macs_before: int
    nonzero_macs_after: int
    reconstruction: Reconstruction
    labels: _containers.ScalarMap[str, str]
    totals: _containers.RepeatedCompositeFieldContainer[UnitTotal]
    def __init__(self, report: _Optional[_Union[SparsityReport, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., analyses: _Optional[int] = ..., units: _Optional[_Iterable[_Union[LayerUnits, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[LayerRemoved, _Mapping]]] = ..., params_before: _Optional[int] = ..., params_after: _Optional[int] = ..., blocked: _Optional[_Iterable[_Union[BlockedGroup, _Mapping]]] = ..., sparsity: _Optional[float] = ..., scope: _Optional[str] = ..., round_to: _Optional[int] = ..., group_sparsity: _Optional[float] = ..., groups_removed: _Optional[int] = ..., groups_prunable: _Optional[int] = ..., compaction: _Optional[_Union[CompactResult, _Mapping]] = ..., macs_before: _Optional[int] = ..., macs_after: _Optional[int] = ..., nonzero_macs_before: _Optional[int] = ..., nonzero_macs_after: _Optional[int] = ..., reconstruction: _Optional[_Union[Reconstruction, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., totals: _Optional[_Iterable[_Union[UnitTotal, _Mapping]]] = ...) -> None: ...

class PruneResponse(_message.Message):
    __slots__ = ("progress", "model", "model_data", "masks", "chunk", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    model: FileInfo
    model_data: FileInfo
    masks: FileInfo
    chunk: bytes
    result: PruneResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Union[FileInfo, _Mapping]] = ..., masks: _Optional[_Union[FileInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ..., result: _Optional[_Union[PruneResult, _Mapping]] = ...) -> None: ...

class CompactOptions(_message.Message):
    __slots__ = ("max_bytes", "input_shapes", "dims")
    class DimsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    dims: _containers.ScalarMap[str, int]
    def __init__(self, max_bytes: _Optional[int] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., dims: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CompactHeader(_message.Message):
    __slots__ = ("model", "model_data", "options", "output_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    model: FileInfo
    model_data: _containers.RepeatedCompositeFieldContainer[FileInfo]
    options: CompactOptions
    output_name: str
    def __init__(self, model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., options: _Optional[_Union[CompactOptions, _Mapping]] = ..., output_name: _Optional[str] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: CompactHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[CompactHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class CompactResult(_message.Message):
    __slots__ = ("removed", "params_before", "params_after", "blocked", "macs_before", "macs_after", "nonzero_macs_before", "nonzero_macs_after", "units", "labels", "totals")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_AFTER_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    MACS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MACS_AFTER_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_AFTER_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedCompositeFieldContainer[LayerRemoved]
    params_before: int
    params_after: int
    blocked: _containers.RepeatedCompositeFieldContainer[BlockedGroup]
    macs_before: int
    macs_after: int
    nonzero_macs_before: int
    nonzero_macs_after: int
    units: _containers.RepeatedCompositeFieldContainer[LayerUnits]
    labels: _containers.ScalarMap[str, str]
    totals: _containers.RepeatedCompositeFieldContainer[UnitTotal]
    def __init__(self, removed: _Optional[_Iterable[_Union[LayerRemoved, _Mapping]]] = ..., params_before: _Optional[int] = ..., params_after: _Optional[int] = ..., blocked: _Optional[_Iterable[_Union[BlockedGroup, _Mapping]]] = ..., macs_before: _Optional[int] = ..., macs_after: _Optional[int] = ..., nonzero_macs_before: _Optional[int] = ..., nonzero_macs_after: _Optional[int] = ..., units: _Optional[_Iterable[_Union[LayerUnits, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., totals: _Optional[_Iterable[_Union[UnitTotal, _Mapping]]] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("progress", "model", "model_data", "chunk", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    model: FileInfo
    model_data: FileInfo
    chunk: bytes
    result: CompactResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Union[FileInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ..., result: _Optional[_Union[CompactResult, _Mapping]] = ...) -> None: ...

class ValidateOptions(_message.Message):
    __slots__ = ("provider", "batch_size", "warmup", "max_accuracy_drop", "min_agreement", "limits", "min_time", "min_runs", "threads", "class_axis")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    MAX_ACCURACY_DROP_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CLASS_AXIS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    batch_size: int
    warmup: int
    max_accuracy_drop: float
    min_agreement: float
    limits: _containers.ScalarMap[str, float]
    min_time: float
    min_runs: int
    threads: int
    class_axis: int
    def __init__(self, provider: _Optional[str] = ..., batch_size: _Optional[int] = ..., warmup: _Optional[int] = ..., max_accuracy_drop: _Optional[float] = ..., min_agreement: _Optional[float] = ..., limits: _Optional[_Mapping[str, float]] = ..., min_time: _Optional[float] = ..., min_runs: _Optional[int] = ..., threads: _Optional[int] = ..., class_axis: _Optional[int] = ...) -> None: ...

class ValidateHeader(_message.Message):
    __slots__ = ("model", "model_data", "data", "baseline", "baseline_data", "options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_DATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: FileInfo
    model_data: _containers.RepeatedCompositeFieldContainer[FileInfo]
    data: FileInfo
    baseline: FileInfo
    baseline_data: _containers.RepeatedCompositeFieldContainer[FileInfo]
    options: ValidateOptions
    def __init__(self, model: _Optional[_Union[FileInfo, _Mapping]] = ..., model_data: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., data: _Optional[_Union[FileInfo, _Mapping]] = ..., baseline: _Optional[_Union[FileInfo, _Mapping]] = ..., baseline_data: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., options: _Optional[_Union[ValidateOptions, _Mapping]] = ...) -> None: ...

class ValidateRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ValidateHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ValidateHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ValidateResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: ValidationResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[ValidationResult, _Mapping]] = ...) -> None: ...

class ListMethodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Method(_message.Message):
    __slots__ = ("name", "summary", "aliases")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMethodsResponse(_message.Message):
    __slots__ = ("scores", "allocations", "criteria")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[Method]
    allocations: _containers.RepeatedCompositeFieldContainer[Method]
    criteria: _containers.RepeatedCompositeFieldContainer[Method]
    def __init__(self, scores: _Optional[_Iterable[_Union[Method, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[Method, _Mapping]]] = ..., criteria: _Optional[_Iterable[_Union[Method, _Mapping]]] = ...) -> None: ...

class GateSparsity(_message.Message):
    __slots__ = ("gate", "params", "direct_sparsity", "effective_sparsity")
    GATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    gate: str
    params: int
    direct_sparsity: float
    effective_sparsity: float
    def __init__(self, gate: _Optional[str] = ..., params: _Optional[int] = ..., direct_sparsity: _Optional[float] = ..., effective_sparsity: _Optional[float] = ...) -> None: ...

class LayerSparsity(_message.Message):
    __slots__ = ("name", "op_type", "shape", "params", "direct_sparsity", "effective_sparsity", "dead_inputs", "dead_outputs", "macs", "nonzero_macs", "gates", "label", "shared_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    DEAD_INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SHARED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    op_type: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    params: int
    direct_sparsity: float
    effective_sparsity: float
    dead_inputs: int
    dead_outputs: int
    macs: int
    nonzero_macs: int
    gates: _containers.RepeatedCompositeFieldContainer[GateSparsity]
    label: str
    shared_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., op_type: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., params: _Optional[int] = ..., direct_sparsity: _Optional[float] = ..., effective_sparsity: _Optional[float] = ..., dead_inputs: _Optional[int] = ..., dead_outputs: _Optional[int] = ..., macs: _Optional[int] = ..., nonzero_macs: _Optional[int] = ..., gates: _Optional[_Iterable[_Union[GateSparsity, _Mapping]]] = ..., label: _Optional[str] = ..., shared_by: _Optional[_Iterable[str]] = ...) -> None: ...

class HeadSparsity(_message.Message):
    __slots__ = ("index", "heads", "params", "direct_sparsity", "effective_sparsity")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    heads: int
    params: int
    direct_sparsity: float
    effective_sparsity: float
    def __init__(self, index: _Optional[int] = ..., heads: _Optional[int] = ..., params: _Optional[int] = ..., direct_sparsity: _Optional[float] = ..., effective_sparsity: _Optional[float] = ...) -> None: ...

class BlockSparsity(_message.Message):
    __slots__ = ("module", "kind", "units", "dead", "blocked", "params", "direct_sparsity", "effective_sparsity", "layers", "heads")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    module: str
    kind: str
    units: int
    dead: int
    blocked: int
    params: int
    direct_sparsity: float
    effective_sparsity: float
    layers: _containers.RepeatedScalarFieldContainer[str]
    heads: _containers.RepeatedCompositeFieldContainer[HeadSparsity]
    def __init__(self, module: _Optional[str] = ..., kind: _Optional[str] = ..., units: _Optional[int] = ..., dead: _Optional[int] = ..., blocked: _Optional[int] = ..., params: _Optional[int] = ..., direct_sparsity: _Optional[float] = ..., effective_sparsity: _Optional[float] = ..., layers: _Optional[_Iterable[str]] = ..., heads: _Optional[_Iterable[_Union[HeadSparsity, _Mapping]]] = ...) -> None: ...

class SparsityReport(_message.Message):
    __slots__ = ("total_params", "direct_sparsity", "effective_sparsity", "direct_compression", "effective_compression", "level", "layers", "fallback_ops", "json", "text", "macs", "nonzero_macs", "dead_inputs", "dead_outputs", "blocks")
    TOTAL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPARSITY_FIELD_NUMBER: _ClassVar[int]
    DIRECT_COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_OPS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    NONZERO_MACS_FIELD_NUMBER: _ClassVar[int]
    DEAD_INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    total_params: int
    direct_sparsity: float
    effective_sparsity: float
    direct_compression: float
    effective_compression: float
    level: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerSparsity]
    fallback_ops: _containers.RepeatedScalarFieldContainer[str]
    json: str
    text: str
    macs: int
    nonzero_macs: int
    dead_inputs: int
    dead_outputs: int
    blocks: _containers.RepeatedCompositeFieldContainer[BlockSparsity]
    def __init__(self, total_params: _Optional[int] = ..., direct_sparsity: _Optional[float] = ..., effective_sparsity: _Optional[float] = ..., direct_compression: _Optional[float] = ..., effective_compression: _Optional[float] = ..., level: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerSparsity, _Mapping]]] = ..., fallback_ops: _Optional[_Iterable[str]] = ..., json: _Optional[str] = ..., text: _Optional[str] = ..., macs: _Optional[int] = ..., nonzero_macs: _Optional[int] = ..., dead_inputs: _Optional[int] = ..., dead_outputs: _Optional[int] = ..., blocks: _Optional[_Iterable[_Union[BlockSparsity, _Mapping]]] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("passed", "reason", "max_accuracy_drop", "min_agreement", "limits")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MAX_ACCURACY_DROP_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    reason: str
    max_accuracy_drop: float
    min_agreement: float
    limits: _containers.ScalarMap[str, float]
    def __init__(self, passed: _Optional[bool] = ..., reason: _Optional[str] = ..., max_accuracy_drop: _Optional[float] = ..., min_agreement: _Optional[float] = ..., limits: _Optional[_Mapping[str, float]] = ...) -> None: ...

class OutputComparison(_message.Message):
    __slots__ = ("max_abs_error", "mean_abs_error", "max_rel_error", "mean_rel_error", "cosine", "worst_cosine", "agreement", "top5_agreement")
    MAX_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEAN_REL_ERROR_FIELD_NUMBER: _ClassVar[int]
    COSINE_FIELD_NUMBER: _ClassVar[int]
    WORST_COSINE_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    TOP5_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    mean_rel_error: float
    cosine: float
    worst_cosine: float
    agreement: float
    top5_agreement: float
    def __init__(self, max_abs_error: _Optional[float] = ..., mean_abs_error: _Optional[float] = ..., max_rel_error: _Optional[float] = ..., mean_rel_error: _Optional[float] = ..., cosine: _Optional[float] = ..., worst_cosine: _Optional[float] = ..., agreement: _Optional[float] = ..., top5_agreement: _Optional[float] = ...) -> None: ...

class ValidationResult(_message.Message):
    __slots__ = ("model", "baseline", "provider", "samples", "batch_size", "top1", "top5", "baseline_top1", "baseline_top5", "agreement", "max_abs_diff", "mean_abs_diff", "latency_ms_p50", "latency_ms_p95", "throughput", "gate", "json", "text", "baseline_latency_ms_p50", "baseline_latency_ms_p95", "speedup", "outputs", "user_metrics", "baseline_user_metrics", "latency_ms_p90", "baseline_latency_ms_p90", "speedup_low", "speedup_high", "speedup_confidence", "timed_runs", "threads", "warnings", "class_axis")
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: OutputComparison
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[OutputComparison, _Mapping]] = ...) -> None: ...
    class UserMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class BaselineUserMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOP1_FIELD_NUMBER: _ClassVar[int]
    TOP5_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOP1_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOP5_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LATENCY_MS_P95_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    USER_METRICS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_USER_METRICS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P90_FIELD_NUMBER: _ClassVar[int]
    BASELINE_LATENCY_MS_P90_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_LOW_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_HIGH_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIMED_RUNS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CLASS_AXIS_FIELD_NUMBER: _ClassVar[int]
    model: str
    baseline: str
    provider: str
    samples: int
    batch_size: int
    top1: float
    top5: float
    baseline_top1: float
    baseline_top5: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    latency_ms_p50: float
    latency_ms_p95: float
    throughput: float
    gate: GateResult
    json: str
    text: str
    baseline_latency_ms_p50: float
    baseline_latency_ms_p95: float
    speedup: float
    outputs: _containers.MessageMap[str, OutputComparison]
    user_metrics: _containers.ScalarMap[str, float]
    baseline_user_metrics: _containers.ScalarMap[str, float]
    latency_ms_p90: float
    baseline_latency_ms_p90: float
    speedup_low: float
    speedup_high: float
    speedup_confidence: float
    timed_runs: int
    threads: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    class_axis: int
    def __init__(self, model: _Optional[str] = ..., baseline: _Optional[str] = ..., provider: _Optional[str] = ..., samples: _Optional[int] = ..., batch_size: _Optional[int] = ..., top1: _Optional[float] = ..., top5: _Optional[float] = ..., baseline_top1: _Optional[float] = ..., baseline_top5: _Optional[float] = ..., agreement: _Optional[float] = ..., max_abs_diff: _Optional[float] = ..., mean_abs_diff: _Optional[float] = ..., latency_ms_p50: _Optional[float] = ..., latency_ms_p95: _Optional[float] = ..., throughput: _Optional[float] = ..., gate: _Optional[_Union[GateResult, _Mapping]] = ..., json: _Optional[str] = ..., text: _Optional[str] = ..., baseline_latency_ms_p50: _Optional[float] = ..., baseline_latency_ms_p95: _Optional[float] = ..., speedup: _Optional[float] = ..., outputs: _Optional[_Mapping[str, OutputComparison]] = ..., user_metrics: _Optional[_Mapping[str, float]] = ..., baseline_user_metrics: _Optional[_Mapping[str, float]] = ..., latency_ms_p90: _Optional[float] = ..., baseline_latency_ms_p90: _Optional[float] = ..., speedup_low: _Optional[float] = ..., speedup_high: _Optional[float] = ..., speedup_confidence: _Optional[float] = ..., timed_runs: _Optional[int] = ..., threads: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., class_axis: _Optional[int] = ...) -> None: ...
