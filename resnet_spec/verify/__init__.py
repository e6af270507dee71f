"""Verify: judging anyone's ResNet (live code, a deployed file, a checkpoint, a zoo) against the tables.

The verify ladder, each step one private module::

    subject -> trace -> canonical -> read -> ALIGN (found x plan) -> diff | transfer -> functional -> verdict -> report

* :mod:`~resnet_spec.verify._targets`: ``MODULE:EXPRESSION`` and model files, checked before anything is imported;
* :mod:`~resnet_spec.verify._subjects`: a subject's tensors and forward pass, here or in the sandbox's process;
* :mod:`~resnet_spec.verify._artifacts`: ONNX, ``torch.export``, TorchScript and checkpoint files read as subjects;
* :mod:`~resnet_spec.verify._trace`: the operators a forward pass runs, on the meta device;
* :mod:`~resnet_spec.verify._canonical`: the same computation written differently, rewritten to one form;
* :mod:`~resnet_spec.verify._read_trace`: the trace read as stem, blocks, shortcuts and head;
* :mod:`~resnet_spec.verify._alignment`: where every found operator and tensor sits in the layout plan, once;
* :mod:`~resnet_spec.verify._structure`: the structural diff of the alignment against the table;
* :mod:`~resnet_spec.verify._functional`: the same function for every weight, decided by computation;
* :mod:`~resnet_spec.verify._verdict`: the one policy every face (CLI, ``assert_conforms``, the plugin) derives from;
* :mod:`~resnet_spec.verify._compare`: the ladder for one subject, and the best-matching table entries;
* :mod:`~resnet_spec.verify._report`, :mod:`~resnet_spec.verify._html`: the verdict as text, markdown, JSON, HTML;
* :mod:`~resnet_spec.verify._checkpoints`: a checkpoint's names and shapes against the entries (``identify``);
* :mod:`~resnet_spec.verify._audit`: a whole zoo, one row per model.
"""

from ._alignment import Alignment, BlockMatch, Place, Slot, align, align_blocks
from ._artifacts import CHECKPOINT_KINDS, MODEL_KINDS, Artifact, ArtifactError, artifact_kind, is_artifact_path
from ._audit import (
    AUDIT_FORMATS,
    AuditRow,
    SourceError,
    ZooModel,
    audit_model,
    parse_source,
    read_results,
    render_audit,
    servers_for,
    zoo_models,
)
from ._canonical import EQUIVALENCES
from ._checkpoints import JSON_SCHEMA as CHECKPOINT_JSON_SCHEMA
from ._checkpoints import CheckpointComparison, Identification, compare_checkpoint, identify, open_checkpoint
from ._checkpoints import render as render_checkpoint
from ._checkpoints import to_json as checkpoint_to_json
from ._checkpoints import undecided_reason as checkpoint_undecided_reason
from ._compare import (
    Comparison,
    best_matches,
    compare_model,
    compare_subject,
    input_size_of,
    structural_comparison,
    subject_of,
)
from ._functional import Equivalence, RowCheck, check_equivalence, equivalence_input, not_run, tolerance
from ._html import ReportError, render_html
from ._read_trace import FoundNetwork, read_trace
from ._report import JSON_SCHEMA, dumps, finding_line, render, to_json, undecided_reason, verdict_text
from ._structure import KINDS, Mismatch, RowView, Structure, Value, diff
from ._subjects import CUDA_TOLERANCE, LocalSubject, RemoteSubject, Subject
from ._targets import SubjectError, Target, check_target, make_subject, parse_target
from ._trace import Trace, TraceError, trace_model
from ._verdict import Verdict, decide

__all__ = [
    "AUDIT_FORMATS",
    "CHECKPOINT_JSON_SCHEMA",
    "CHECKPOINT_KINDS",
    "CUDA_TOLERANCE",
    "EQUIVALENCES",
    "JSON_SCHEMA",
    "KINDS",
    "MODEL_KINDS",
    "Alignment",
    "Artifact",
    "ArtifactError",
    "AuditRow",
    "BlockMatch",
    "CheckpointComparison",
    "Comparison",
    "Equivalence",
    "FoundNetwork",
    "Identification",
    "LocalSubject",
    "Mismatch",
    "Place",
    "RemoteSubject",
    "ReportError",
    "RowCheck",
    "RowView",
    "Slot",
    "SourceError",
    "Structure",
    "Subject",
    "SubjectError",
    "Target",
    "Trace",
    "TraceError",
    "Value",
    "Verdict",
    "ZooModel",
    "align",
    "align_blocks",
    "artifact_kind",
    "audit_model",
    "best_matches",
    "check_equivalence",
    "check_target",
    "checkpoint_to_json",
    "checkpoint_undecided_reason",
    "compare_checkpoint",
    "compare_model",
    "compare_subject",
    "decide",
    "diff",
    "dumps",
    "equivalence_input",
    "finding_line",
    "identify",
    "input_size_of",
    "is_artifact_path",
    "make_subject",
    "not_run",
    "open_checkpoint",
    "parse_source",
    "parse_target",
    "read_results",
    "read_trace",
    "render",
    "render_audit",
    "render_checkpoint",
    "render_html",
    "servers_for",
    "structural_comparison",
    "subject_of",
    "to_json",
    "tolerance",
    "trace_model",
    "undecided_reason",
    "verdict_text",
    "zoo_models",
]
