"""Deployed files as subjects: ONNX graphs, ``torch.export`` programs, TorchScript archives, and checkpoints.

A file is data: checking it runs nothing its author wrote in Python.  :func:`artifact_kind` recognises a file by its
content (and its suffix, where the content alone does not say), never by loading it; :func:`load_artifact` turns a
model file into an ``nn.Module`` the checker traces and runs like any model:

* **ONNX** (``onnx`` reads it): the graph is interpreted by :class:`OnnxGraph`, an ``nn.Module`` of ours that runs
  each node as the PyTorch operator it specifies (Conv as a convolution, Gemm as a linear layer, BatchNormalization
  in inference form, GlobalAveragePool/ReduceMean as a mean ...), so the graph is traced, read and aligned as a
  PyTorch model is.  The weights an operator reads in a weight's role (a Conv's, a Gemm's, a BatchNormalization's)
  are its parameters, under the names the exporter gave them (a node's scope where the name says nothing:
  ``layer1.0.conv1.weight``); an initializer an exporter shares between operators because its values are equal
  (the TorchScript exporter's zero biases) is one parameter per use: a graph's values are a snapshot, not a tie.
  The model "as used" is the graph run by ``onnxruntime`` (:meth:`OnnxGraph.deployed`), with the checker's values.
  A node of another domain, or an operator this interpreter does not know, stays in the trace as an operator the
  reader does not interpret (reported at its place); it cannot be run.
* **torch.export programs** (``.pt2``): ``torch.export.load`` and the program's module; a program exported in eval
  mode has no train mode, and one exported at fixed shapes runs at its own input shape only (:class:`Artifact`).
* **TorchScript archives**: ``torch.jit.load``, which runs TorchScript (not Python) and unpickles only tensors.
* **Checkpoints** (``.safetensors``; ``.pth``/``.pt``/``.bin`` read with ``weights_only=True``): tensors by name,
  judged by :mod:`resnet_spec.verify._checkpoints`; a pickle that would run code is refused (:class:`ArtifactError`).

Files are loaded in the checker's contained child process (:class:`~resnet_spec.verify.RemoteSubject`),
like code, so a malformed file that crashes a parser costs that process only.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_KINDS",
    "MODEL_KINDS",
    "Artifact",
    "ArtifactError",
    "OnnxGraph",
    "artifact_kind",
    "is_artifact_path",
    "load_artifact",
    "read_checkpoint",
    "script_artifact",
]

MODEL_KINDS = ("onnx", "torch.export", "torchscript")
CHECKPOINT_KINDS = ("safetensors", "state_dict")
# Suffixes that name a file (not MODULE:EXPRESSION) even before the file is looked at.
_SUFFIXES = frozenset({".onnx", ".pt2", ".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".ts", ".torchscript", ".jit"})
_ZIP = b"PK\x03\x04"
_PICKLE = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class ArtifactError(ValueError):
    """A file that cannot be read as the artifact it is, or one refused (a pickle that would run code)."""


def is_artifact_path(text: str) -> bool:
    """Whether an ``--impl`` value names a file rather than ``MODULE:EXPRESSION``: an existing file, or a path with
    an artifact's suffix (``model.onnx``, ``weights.safetensors``) and no ``MODULE:EXPRESSION`` colon."""
    path = Path(text)
    if ":" in text and not path.is_file():
        return False
    return path.is_file() or path.suffix.lower() in _SUFFIXES


def artifact_kind(path: str | Path) -> str:
    """What a file is, by its content: ``"onnx"``, ``"torch.export"``, ``"torchscript"``, ``"safetensors"`` or
    ``"state_dict"`` (a ``torch.save`` file).  Nothing in it is loaded.  Raises :class:`ArtifactError` naming the file
    and the kinds known when it is none of them (or cannot be read)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot be read ({e.strerror or e})") from None
    if head.startswith(_ZIP):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ArtifactError(f"{path}: a damaged zip archive ({e})") from None
        parts = {name.split("/", 1)[1] if "/" in name else name for name in names}
        if any(p.startswith(("code/", "constants.pkl")) for p in parts):
            return "torchscript"
        if any(p.startswith(("models/", "archive_format", "data/weights/", "serialized_exported_program")) for p in
               parts) or any(p.endswith(".json") and p.startswith("models/") for p in parts):  # fmt: skip
            return "torch.export"
        if "data.pkl" in parts:
            return "state_dict"
        raise ArtifactError(f"{path}: a zip archive that is neither a torch.save file, a TorchScript archive nor a "
                            "torch.export program")  # fmt: skip
    if head.startswith(_PICKLE):
        return "state_dict"
    if len(head) >= 9:
        (size,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < size < 100_000_000:
            return "safetensors"
    if _looks_like_onnx(path, head):
        return "onnx"
    raise ArtifactError(
        f"{path}: not a file kind resnet-spec reads (expected an ONNX model, a torch.export .pt2 program, a "
        "TorchScript archive, a .safetensors file or a torch.save state_dict)"
    )


# The fields an ONNX ModelProto may start with after its ir_version (tag 0x08): producer_name, producer_version,
# domain, model_version, doc_string, graph, opset_import (protobuf tags of fields 2..8).
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42})


def _looks_like_onnx(path: Path, head: bytes) -> bool:
    """An ONNX ModelProto, told from its first bytes (its ir_version, then another field of ModelProto) or its suffix;
    the file is parsed only when loaded."""
    if path.suffix.lower() == ".onnx":
        return True
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_NEXT_TAGS


@dataclass(frozen=True)
class Artifact:
    """What a loaded model file is: its kind, whether it has a train mode, the input it is fixed to (None: any
    size; any batch), whether its batch norms may be folded into its convs (an inference graph), and how it is run."""

    kind: str
    train: bool
    input_size: tuple[int, int] | None = None  # (H, W) the file runs at, when fixed
    batch: int | None = None  # the batch it runs at, when fixed
    inference: bool = False
    note: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "train": self.train, "input_size": list(self.input_size or ()) or None,
                "batch": self.batch, "inference": self.inference, "note": self.note}  # fmt: skip

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Artifact:
        size = data.get("input_size")
        batch = data.get("batch")
        return cls(str(data["kind"]), bool(data["train"]), (int(size[0]), int(size[1])) if size else None,
                   None if batch is None else int(batch), bool(data.get("inference")),
                   None if data.get("note") is None else str(data["note"]))  # fmt: skip


def load_artifact(path: str | Path) -> tuple[nn.Module, Artifact]:
    """A model file as a module and what it is (see the module docstring).  Raises :class:`ArtifactError`."""
    path = Path(path)
    kind = artifact_kind(path)
    if kind == "onnx":
        graph = OnnxGraph.load(path)
        notes = ["an ONNX graph: eval mode only (a graph has no train mode)"]
        if graph.input_size is not None:
            notes.append(f"exported at a fixed {graph.input_size[0]}x{graph.input_size[1]} input: run at that size")
        return graph, Artifact("onnx", False, graph.input_size, None, True, "; ".join(notes))
    if kind == "torch.export":
        return _load_program(path)
    if kind == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as e:  # a damaged archive
            raise ArtifactError(f"{path}: cannot be loaded as a TorchScript archive: {type(e).__name__}: {e}") from e
        return module, script_artifact(module)
    raise ArtifactError(
        f"{path}: a {kind} checkpoint holds tensors, not a network: compare it against a table entry "
        "(resnet-spec compare --impl FILE) or ask which entries it fits (resnet-spec identify FILE)"
    )


def script_artifact(module: nn.Module) -> Artifact:
    """What a TorchScript module is: a scripted one keeps both modes; one made by ``torch.jit.trace`` computes in the
    mode it was traced in (its code never reads ``self.training``), so it has one mode only, compared in eval."""
    code = "".join(str(getattr(m, "code", "")) for m in module.modules())
    if "training" in code:
        return Artifact("torchscript", True)
    return Artifact("torchscript", False, note="a traced TorchScript module: it computes in the mode it was traced in "
                    "(its code never reads self.training); compared in eval mode only")  # fmt: skip


def _load_program(path: Path) -> tuple[nn.Module, Artifact]:
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # a damaged program, or one needing operators not registered here
        raise ArtifactError(f"{path}: cannot be loaded as a torch.export program: {type(e).__name__}: {e}") from e
    # a program computes in the mode it was exported in: its batch norms say which (eval: running statistics)
    norms = [node for node in program.graph.nodes if node.op == "call_function" and "batch_norm" in str(node.target)]
    train = not any("no_training" in str(node.target) or (str(node.target).startswith("aten.batch_norm")
                                                          and len(node.args) > 5 and node.args[5] is False)
                    for node in norms)  # fmt: skip
    shapes = [tuple(spec.meta["val"].shape) for spec in program.graph.nodes
              if spec.op == "placeholder" and spec.name not in _lifted(program) and "val" in spec.meta]  # fmt: skip
    shape = shapes[0] if shapes else ()
    size = (int(shape[2]), int(shape[3])) if len(shape) == 4 and all(isinstance(n, int) for n in shape[2:]) else None
    batch = int(shape[0]) if shape and isinstance(shape[0], int) else None
    module = _ProgramModule(program.module())
    notes = []
    if not train:
        notes.append("exported in eval mode: eval mode only (the program has no train mode)")
    if size is not None or batch is not None:
        notes.append(f"exported at a fixed input shape {tuple(shape)}: run at that shape")
    return module, Artifact("torch.export", train, size, batch, not train, "; ".join(notes) or None)


def _lifted(program: Any) -> set[str]:
    """A program's placeholders that are its parameters, buffers and constants (not user inputs)."""
    user = {spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"}
    return {node.name for node in program.graph.nodes if node.op == "placeholder" and node.name not in user}


class _ProgramModule(nn.Module):
    """A ``torch.export`` program's module, with train()/eval() accepted (the program computes as exported)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.program = module

    def train(self, mode: bool = True) -> _ProgramModule:
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Any:
        return self.program(x)


# ---- checkpoints ------------------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A checkpoint's tensors by name: a .safetensors file, or a torch.save file read with ``weights_only=True`` (the
    ``state_dict``, ``model`` or ``module`` entry of a training checkpoint).  Raises :class:`ArtifactError`, in one
    line, for a pickle that would run code (nothing of it runs) or a file that is not a checkpoint."""
    path = Path(path)
    kind = artifact_kind(path)
    if kind == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ArtifactError(f"{path}: reading .safetensors needs the safetensors package "
                                "(pip install 'resnet-spec[artifacts]')") from None  # fmt: skip
        try:
            return dict(load_file(str(path)))
        except Exception as e:  # a damaged header
            raise ArtifactError(f"{path}: not a readable .safetensors file ({e})") from None
    if kind != "state_dict":
        raise ArtifactError(f"{path}: a {kind} file, not a checkpoint")
    import pickle

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers, before it runs
        reason = str(e).strip().splitlines()
        # torch says "Weights only load failed" when it refuses; anything else is a truncated or damaged file
        if not (isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e)):
            detail = " ".join(str(e).split()) or ("the file ends early" if isinstance(e, EOFError) else "no detail")
            raise ArtifactError(f"{path}: cannot be read as a torch.save file ({type(e).__name__}: {detail})") from None
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason
                      else type(e).__name__)  # fmt: skip
        raise ArtifactError(f"{path}: refused: unpickling it would run code or build objects other than tensors "
                            f"({detail.strip()}); nothing of it was run") from None  # fmt: skip
    return _tensors_of(loaded, path)


def _tensors_of(loaded: object, path: Path) -> dict[str, Tensor]:
    for key in ("state_dict", "model", "module", "model_state_dict", "net"):
        inner = loaded.get(key) if isinstance(loaded, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            loaded = inner
            break
    if not isinstance(loaded, Mapping):
        raise ArtifactError(f"{path}: holds a {type(loaded).__name__}, expected a mapping of names to tensors")
    if not loaded:
        raise ArtifactError(f"{path}: holds an empty {type(loaded).__name__}, expected a mapping of names to tensors")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ArtifactError(f"{path}: holds no tensors")
    prefixes = ("module.", "model.")
    for prefix in prefixes:  # DataParallel's and Lightning's wrappers
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


# ---- ONNX -------------------------------------------------------------------------------------------------------

# (op type, input position) -> the role of an initializer there: a parameter (weight, bias), or a statistic (buffer)
_ROLES: Mapping[tuple[str, int], str] = {
    ("Conv", 1): "weight", ("Conv", 2): "bias",
    ("Gemm", 1): "weight", ("Gemm", 2): "bias",
    ("MatMul", 1): "weight",
    ("BatchNormalization", 1): "weight", ("BatchNormalization", 2): "bias",
    ("BatchNormalization", 3): "running_mean", ("BatchNormalization", 4): "running_var",
    ("InstanceNormalization", 1): "weight", ("InstanceNormalization", 2): "bias",
    ("GroupNormalization", 1): "weight", ("GroupNormalization", 2): "bias",
    ("LayerNormalization", 1): "weight", ("LayerNormalization", 2): "bias",
    ("PRelu", 1): "weight",
}  # fmt: skip
_STATISTICS = frozenset({"running_mean", "running_var"})
_BUFFERS = _STATISTICS | {"filter"}  # an anti-aliasing blur's fixed filter: see _fixed_filter


def _fixed_filter(node: _Node, slot: int, value: Tensor) -> bool:
    """Whether an initializer is a fixed filter (an anti-aliasing blur's, which a module keeps as a buffer), not a
    weight: a graph does not say which of its tensors were trained, so one that is a depthwise Conv's weight with no
    bias, the same window on every channel, of non-negative taps summing to 1, is read as the filter such a blur
    applies (the numbers then say whether it is the table's)."""
    if node.op != "Conv" or slot != 1 or value.dim() != 4 or value.shape[1] != 1 or value.shape[0] < 2:
        return False
    if node.attrs.get("group", 1) != value.shape[0] or (len(node.inputs) > 2 and node.inputs[2]):
        return False
    window = value[0].double()
    return bool((value.double() == window).all() and (window >= 0).all() and abs(window.sum().item() - 1) < 1e-6)


_SEGMENT = re.compile(r"[^0-9A-Za-z_]")


# Operators a computation on a weight alone may run before the operator that reads it (weight standardisation's
# mean, deviation, variance, square root and quotient; a gain's product).
_WEIGHT_STEPS = frozenset(
    {"ReduceMean", "Sub", "Pow", "Mul", "Add", "Sqrt", "Div", "Reciprocal", "Reshape", "BatchNormalization"}
)


def _node(proto: Any, index: int) -> _Node:
    """A graph node as the interpreter keeps it (an unnamed node named by its operator and position)."""
    return _Node(proto.op_type, proto.name or f"{proto.op_type}_{index}", proto.domain, tuple(proto.input),
                 tuple(proto.output), _attrs(proto), _scope(proto))  # fmt: skip


def _same_values(a: Tensor, b: Tensor) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """How ``b`` holds ``a``'s values, as (shape, order) with ``b == a.reshape(shape).permute(order)`` (an exporter's
    reshaped or transposed copy); None where it does not hold them."""
    if a.numel() != b.numel() or a.dtype != b.dtype or b.dim() > 4:
        return None
    for order in itertools.permutations(range(b.dim())):
        shape = tuple(b.shape[order.index(d)] for d in range(b.dim()))  # a's values in the layout b permutes
        if torch.equal(a.reshape(shape).permute(order), b):
            return shape, order
    return None


def _fed_roles(
    graph: Any, initializers: Mapping[str, Any], alias: Mapping[str, str], node_names: Sequence[str]
) -> dict[str, tuple[str, str, bool]]:
    """Each float initializer whose uses all lie in a computation on initializers and constants alone that ends as
    one operand of one operator with a role (``_ROLES``): the role, that operator's node name, and whether the
    initializer's values reach it without a reduction (the weight itself, not only its statistics)."""
    producers = {out: proto for proto in graph.node for out in proto.output}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for proto in graph.node:
        for slot, name in enumerate(proto.input):
            consumers.setdefault(alias.get(name, name), []).append((proto, slot))
    names = {id(p): name for p, name in zip(graph.node, node_names, strict=True)}

    def constant(name: str) -> bool:
        name = alias.get(name, name)
        if not name or name in initializers:
            return True
        proto = producers.get(name)
        return proto is not None and (proto.op_type == "Constant" or (
            proto.op_type in _WEIGHT_STEPS and all(constant(i) for i in proto.input)))  # fmt: skip

    def ends(name: str, depth: int = 0, reduced: bool = False) -> set[tuple[str, str, bool]] | None:
        found: set[tuple[str, str, bool]] = set()
        for proto, slot in consumers.get(name, []):
            role = _ROLES.get((proto.op_type, slot))
            if proto.op_type in _WEIGHT_STEPS and depth < 12 and all(constant(i) for i in proto.input):
                # a step of the computation on constants alone; a statistic from here on after a reduction
                further = ends(proto.output[0], depth + 1, reduced or proto.op_type == "ReduceMean")
                if further is None:
                    return None
                found |= further
            elif role is not None:
                found.add((role, names[id(proto)], reduced))
            else:
                return None  # read by an operator on activations: not a weight's computation
        return found

    out: dict[str, tuple[str, str, bool]] = {}
    for name in initializers:
        if any(proto.op_type in _WEIGHT_STEPS for proto, _ in consumers.get(name, [])):
            roles = ends(name)
            targets = {(role, target) for role, target, _ in roles or ()}
            if roles is not None and len(targets) == 1:
                (role, target), data = next(iter(targets)), any(not reduced for _, _, reduced in roles)
                out[name] = (role, target, data)
    return out


def _attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values; a float (ONNX stores float32) as the decimal it was written as (an
    epsilon of 1e-5 reads 9.9999997e-06 in float32: the shortest decimal that rounds to it is the one meant)."""
    import numpy
    import onnx

    out: dict[str, Any] = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if attribute.type == onnx.AttributeProto.FLOAT:
            value = float(str(numpy.float32(value)))
        out[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _scope(node: Any) -> str:
    """The module a node belongs to, from its name (``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``) or the
    exporter's name scopes; "" when it says none."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in json.loads(prop.value.replace("'", '"')) if s]
            except ValueError:
                break
            return ".".join(scopes[:-1])
    parts = [p for p in node.name.split("/") if p][:-1] if node.name.startswith("/") else []
    path = ""
    for part in parts:
        path = part if (path and part.startswith(path + ".")) or not path else f"{path}.{part}"
    return path


def _segments(name: str) -> list[str]:
    """A tensor or module name as valid module path segments."""
    return [_SEGMENT.sub("_", s) or "_" for s in name.split(".")]


class _Scope(nn.Module):
    """A module of the graph's own hierarchy: holds the tensors of its nodes and runs them (so that the trace names
    every operator by its scope)."""

    def forward(self, run: Callable[..., Any], *args: Any) -> Any:
        return run(*args)


@dataclass(frozen=True)
class _Node:
    op: str
    name: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    scope: str


class _Runtime:
    """onnxruntime's session for a graph whose tensors are inputs, made on first use and shared by copies."""

    def __init__(self, proto: bytes) -> None:
        self.proto = proto
        self._session: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Runtime:
        return self

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise RuntimeError("running an ONNX graph needs onnxruntime (pip install 'resnet-spec[artifacts]')") \
                    from None  # fmt: skip
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(self.proto, options, providers=["CPUExecutionProvider"])
        return list(self._session.run(None, dict(feeds)))


class OnnxGraph(nn.Module):
    """An ONNX graph as a module (see the module docstring): its weights are parameters, its statistics buffers, its
    other initializers constants; ``forward`` runs every node with the PyTorch operator it specifies."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        import onnx

        graph = model.graph
        domains = {opset.domain: opset.version for opset in model.opset_import}
        self.opset = int(domains.get("", domains.get("ai.onnx", 0)))
        initializers = {t.name: t for t in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in initializers]
        if len(inputs) != 1:
            named = ", ".join(inputs) or "none"
            raise ArtifactError(f"the graph has {len(inputs)} inputs ({named}), expected one image batch")
        self.input_name = inputs[0]
        dims = [
            d.dim_value if d.HasField("dim_value") else None
            for d in next(i for i in graph.input if i.name == inputs[0]).type.tensor_type.shape.dim
        ]
        self.input_size = (int(dims[2]), int(dims[3])) if len(dims) == 4 and dims[2] and dims[3] else None
        self._batch = dims[0] if dims else None  # a batch baked into the graph's reshapes (read as any batch)
        self.output_names = tuple(o.name for o in graph.output)
        self._nodes: list[_Node] = []
        self._constants: dict[str, Any] = {}  # initializer -> a Python value (ints, a scalar) or a tensor
        self._feeds: dict[str, str] = {}  # tensor path in this module -> the graph input it feeds in onnxruntime
        self._transposed: set[str] = set()  # tensor paths held transposed (a Gemm/MatMul weight stored (in, out))
        # (node, input position) -> (shape, order): that use reads its tensor reshaped and its axes permuted (a copy
        # the exporter stored in another layout)
        self._layouts: dict[tuple[int, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        used: dict[str, int] = {}
        scopes: dict[str, nn.Module] = {"": self}
        bound: dict[tuple[int, int], str] = {}  # (node, input position) -> the tensor path it reads
        # the graph's Identity of an initializer (the TorchScript exporter's shared values): read through
        alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers}
        self._alias = alias
        nodes = [_node(proto, index) for index, proto in enumerate(graph.node)]
        by_name = {node.name: node for node in nodes}
        fed = _fed_roles(graph, initializers, alias, [node.name for node in nodes])
        reshaped = {out: proto.op_type == "Reshape" for proto in graph.node for out in proto.output}
        shared: dict[tuple[str, str], str] = {}  # (initializer, the node whose operand it becomes) -> its one path
        initial: dict[str, Tensor] = {}  # such an initializer's values
        copies: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}  # a copy of one -> its layout of the values
        for index, proto in enumerate(graph.node):
            if proto.op_type == "Identity" and proto.output[0] in alias:
                continue
            node = nodes[index]
            position = len(self._nodes)
            self._nodes.append(node)
            for slot, name in enumerate(node.inputs):
                name = alias.get(name, name)
                tensor = initializers.get(name)
                if tensor is None:
                    continue
                value = torch.from_numpy(onnx.numpy_helper.to_array(tensor).copy())
                role = _ROLES.get((node.op, slot))
                if role == "weight" and _fixed_filter(node, slot, value):
                    role = "filter"
                if node.op == "InstanceNormalization" and slot in (1, 2) and reshaped.get(node.inputs[0], False) \
                        and bool((value == (1.0 if slot == 1 else 0.0)).all()):  # fmt: skip
                    role = None  # a GroupNorm's export: its groups normalised with unit scale, zero shift (constants)
                if role is None and value.is_floating_point() and value.numel() > 1 and name in fed:
                    # computed from before its operator reads it (a weight standardised in the graph): one
                    # parameter however many of the computation's nodes read it, in the role it ends in
                    role, target_name, data = fed[name]
                    # one parameter per initializer, and per value: an exporter folds a reshaped copy of the weight
                    # for each step that reads it (timm's standardisation reads it twice); the parameter is the
                    # copy the operator reads as its operand, the others only give its statistics
                    if not data and not any(t == target_name for _, t in shared):
                        weight = next((n for n, (r, t, d) in fed.items() if t == target_name and d), None)
                        if weight is not None:
                            initial[weight] = torch.from_numpy(onnx.numpy_helper.to_array(initializers[weight]).copy())
                            target = by_name[target_name]
                            shared[(weight, target_name)] = self._register(weight, initial[weight], target, role,
                                                                           used, scopes)  # fmt: skip
                    path = shared.get((name, target_name))
                    if path is None:
                        for (other, t), known in shared.items():
                            layout = _same_values(initial[other], value) if t == target_name else None
                            if layout is not None:
                                path, copies[name] = known, layout
                                break
                    if name in copies:
                        self._layouts[(position, slot)] = copies[name]
                    if path is None:
                        initial[name] = value
                        path = self._register(name, value, by_name[target_name], role, used, scopes)
                    shared[(name, target_name)] = path
                    bound[(position, slot)] = path
                    continue
                if role is None and node.op in ("Add", "Mul") and value.numel() > 1 and value.is_floating_point():
                    role = "bias" if node.op == "Add" else "scale"  # a bias or scale spelled as its own node
                if role is None or not value.is_floating_point():
                    constant = _python_value(value)
                    if node.op == "Reshape" and slot == 1 and isinstance(constant, list):
                        constant = self._any_batch(constant, node)
                    self._constants[name] = constant
                    continue
                transposed = (node.op == "MatMul" or (node.op == "Gemm" and not node.attrs.get("transB", 0))) \
                    and role == "weight" and value.dim() == 2  # fmt: skip
                if transposed:
                    value = value.t().contiguous()
                path = self._register(name, value, node, role, used, scopes)
                bound[(position, slot)] = path
                if transposed:
                    self._transposed.add(path)
            self._holder(node.scope, scopes)
        self._bound = bound
        self._runs = [  # each node's computation (a weight held transposed: said to its operator)
            _operator(node, tuple(bound.get((position, slot)) in self._transposed for slot in range(len(node.inputs))))
            for position, node in enumerate(self._nodes)
        ]
        self._batch_targets = self._constant_targets()
        self._scopes = scopes
        self._runtime = _Runtime(self._deployable(model))

    def _any_batch(self, target: list[int], node: _Node) -> list[int]:
        """A reshape's target with the graph's fixed batch as "whatever the batch is" (exporters write the example's
        batch into the flatten before the classifier)."""
        if not self._batch or not target or target[0] != self._batch:
            return target
        if -1 not in target:
            return [-1, *target[1:]]
        return [0, *target[1:]] if not node.attrs.get("allowzero", 0) else target

    @classmethod
    def load(cls, path: str | Path) -> OnnxGraph:
        """Read an ONNX file (weights in the file or beside it).  Raises :class:`ArtifactError`."""
        try:
            import onnx
        except ImportError:
            raise ArtifactError(f"{path}: reading ONNX needs the onnx package (pip install 'resnet-spec[artifacts]')") \
                from None  # fmt: skip
        try:
            model = onnx.load(str(path))
        except Exception as e:  # not a readable ModelProto
            raise ArtifactError(f"{path}: cannot be read as an ONNX model: {e}") from None
        try:
            return cls(model)
        except ArtifactError as e:
            raise ArtifactError(f"{path}: {e}") from None

    def _register(self, name: str, value: Tensor, node: _Node, role: str, used: dict[str, int],
                  scopes: dict[str, nn.Module]) -> str:  # fmt: skip
        """An initializer as a tensor of this module, named as ``role`` of ``node`` (the operator it is an operand
        of, or turns into one of through a computation on constants): a buffer for a statistic or a fixed filter,
        else a parameter,
        and an input of the deployed graph; its path."""
        path = self._path(name, node, role, used)
        holder = self._holder(path.rpartition(".")[0], scopes)
        leaf = path.rpartition(".")[2]
        if role in _BUFFERS:
            holder.register_buffer(leaf, value)
        else:
            holder.register_parameter(leaf, nn.Parameter(value, requires_grad=True))
        self._feeds[path] = f"resnet_spec.{len(self._feeds)}"
        return path

    def _path(self, name: str, node: _Node, role: str, used: dict[str, int]) -> str:
        """A tensor's name in this module: the exporter's when it names a module path (``layer1.0.conv1.weight``),
        else the node's scope and the tensor's role; one per use (a second use gets a numbered name)."""
        if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", name) and "." in name:
            base = ".".join(_segments(name))
        else:
            base = ".".join(_segments(f"{node.scope}.{role}" if node.scope else f"{node.name}.{role}"))
        count = used.get(base, 0)
        used[base] = count + 1
        return base if not count else f"{base}_{count}"

    def _holder(self, scope: str, scopes: dict[str, nn.Module]) -> nn.Module:
        if scope in scopes:
            return scopes[scope]
        parent_name, _, leaf = scope.rpartition(".")
        parent = self._holder(parent_name, scopes)
        segment = _segments(leaf)[0] if leaf else "_"
        module = parent._modules.get(segment)
        if module is None:
            module = _Scope()
            parent.add_module(segment, module)
        scopes[scope] = module
        return module

    def _deployable(self, model: Any) -> bytes:
        """The graph for onnxruntime: every parameter and statistic an input (one per use), so that the checker's
        values run without a new session; the image input of any shape; the reshapes' batch as :meth:`_any_batch`."""
        import onnx

        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        graph = copy.graph
        alias = self._alias
        kept = list(graph.node)
        del graph.node[:]
        layouts: list[Any] = []  # the reshape and transpose of each use that reads its tensor in another layout
        position = 0
        for proto in kept:
            if proto.op_type == "Identity" and proto.output[0] in alias:
                continue
            new = graph.node.add()
            new.CopyFrom(proto)
            if new.op_type == "Constant" and new.output[0] in self._batch_targets:  # a reshape's target: any batch
                target = torch.tensor(self._batch_targets[new.output[0]], dtype=torch.int64).numpy()
                del new.attribute[:]
                new.attribute.append(onnx.helper.make_attribute("value", onnx.numpy_helper.from_array(target)))
            for slot in range(len(new.input)):
                path = self._bound.get((position, slot))
                layout = self._layouts.get((position, slot))
                if path is not None and layout is not None:  # the feed in this use's layout: reshape, transpose
                    shape, order = layout
                    name = f"{self._feeds[path]}_layout{position}_{slot}"
                    graph.initializer.append(onnx.numpy_helper.from_array(
                        torch.tensor(shape, dtype=torch.int64).numpy(), f"{name}_shape"))  # fmt: skip
                    reshape = [self._feeds[path], f"{name}_shape"]
                    layouts.append(onnx.helper.make_node("Reshape", reshape, [f"{name}_r"]))
                    layouts.append(onnx.helper.make_node("Transpose", [f"{name}_r"], [name], perm=list(order)))
                    new.input[slot] = name
                elif path is not None:
                    new.input[slot] = self._feeds[path]
                elif new.input[slot] in alias:
                    new.input[slot] = alias[new.input[slot]]
            position += 1
        if layouts:
            nodes = list(graph.node)
            del graph.node[:]
            graph.node.extend([*layouts, *nodes])
        read = {name for node in graph.node for name in node.input}
        constants = [t for t in graph.initializer if t.name in read]
        for tensor in constants:
            value = self._constants.get(tensor.name)
            if isinstance(value, list) and tensor.data_type == onnx.TensorProto.INT64 and tensor.dims:
                tensor.CopyFrom(onnx.numpy_helper.from_array(torch.tensor(value).numpy(), tensor.name))
        del graph.initializer[:]
        graph.initializer.extend(constants)
        tensors = self._tensors()
        for path, feed in self._feeds.items():
            shape = tuple(tensors[path].shape)
            graph.input.append(onnx.helper.make_tensor_value_info(
                feed, onnx.TensorProto.FLOAT, shape[::-1] if path in self._transposed else shape))  # fmt: skip
        image = next(i for i in graph.input if i.name == self.input_name)
        for d, dim in enumerate(image.type.tensor_type.shape.dim):
            dim.Clear()
            dim.dim_param = f"resnet_spec_d{d}"
        return copy.SerializeToString()

    def _constant_targets(self) -> dict[str, list[int]]:
        """The reshape targets Constant nodes hold (read by that reshape alone) with the example's batch written in,
        as an initializer's is: each as :meth:`_any_batch` reads it, by the Constant's output.  The interpreter's
        Constant gives it from now on; :meth:`_deployable` writes it into onnxruntime's graph."""
        reshapes = {node.inputs[1]: node for node in self._nodes if node.op == "Reshape" and len(node.inputs) > 1}
        readers: dict[str, int] = {}
        for node in self._nodes:
            for name in node.inputs:
                readers[name] = readers.get(name, 0) + 1
        targets: dict[str, list[int]] = {}
        for position, node in enumerate(self._nodes):
            name = node.outputs[0] if node.op == "Constant" and node.outputs else ""
            if name not in reshapes or readers.get(name) != 1:
                continue
            value = self._runs[position]()
            adapted = self._any_batch(value, reshapes[name]) if isinstance(value, list) else value
            if adapted != value:
                targets[name] = adapted
                self._runs[position] = lambda adapted=adapted: adapted
        return targets

    def _tensors(self) -> dict[str, Tensor]:
        """Every parameter and statistic by its path in this module."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def deployed(self, x: Tensor) -> tuple[Tensor, ...]:
        """The graph run by onnxruntime on ``x`` (float32) with this module's current values: the model as deployed."""
        tensors = self._tensors()
        feeds = {self.input_name: x.detach().float().numpy()}
        for path, feed in self._feeds.items():
            value = tensors[path].detach().float()
            feeds[feed] = (value.t() if path in self._transposed else value).contiguous().numpy()
        return tuple(torch.from_numpy(out.copy()) for out in self._runtime.run(feeds))

    def forward(self, x: Tensor) -> Any:
        values: dict[str, Any] = {self.input_name: x, "": None}
        tensors = self._tensors()
        for position, node in enumerate(self._nodes):
            args = []
            for slot, name in enumerate(node.inputs):
                path = self._bound.get((position, slot))
                if path is not None:
                    layout = self._layouts.get((position, slot))
                    tensor = tensors[path]
                    args.append(tensor if layout is None else tensor.reshape(layout[0]).permute(layout[1]))
                elif name in values:
                    args.append(values[name])
                elif self._alias.get(name, name) in self._constants:  # an Identity of an initializer reads it
                    args.append(self._constants[self._alias.get(name, name)])
                else:
                    raise ArtifactError(f"node {node.name!r} ({node.op}) reads {name!r}, which nothing computes")
            if node.op in _READ_THE_INPUT:  # a tensor made from nothing: on the input's device, in its dtype
                args.insert(0, x)
            scope = self._scopes.get(node.scope, self)
            run = self._runs[position]
            result = scope(run, *args) if scope is not self else run(*args)
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.outputs, results, strict=False):
                if name:
                    values[name] = value
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs


def _python_value(value: Tensor) -> Any:
    """A constant as the interpreter uses it: integers as a list (shapes, axes, pads), a one-element float as a
    float, anything else as the tensor."""
    if not value.is_floating_point():
        return [int(v) for v in value.reshape(-1).tolist()] if value.dim() else int(value)
    if value.numel() == 1:
        return float(value.reshape(-1)[0])
    return value


# ---- the operators ----------------------------------------------------------------------------------------------


def _pads(pads: Sequence[int], rank: int = 2) -> tuple[list[int], list[int]]:
    pads = list(pads) or [0] * (2 * rank)
    return pads[:rank], pads[rank:]


def _same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               lower: bool) -> tuple[list[int], list[int]]:  # fmt: skip
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begins.append(large if lower else small)
        ends.append(small if lower else large)
    return begins, ends


def _spatial_pads(node: _Node, x: Tensor, kernel: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int]) -> tuple[list[int], list[int]]:  # fmt: skip
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(tuple(x.shape[2:]), kernel, stride, dilation, auto == "SAME_LOWER")
    if auto == "VALID":
        return [0, 0], [0, 0]
    return _pads(node.attrs.get("pads", ()))


def _torch_pad(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX's (begin..., end...) for the last dims as F.pad's (last dim first, begin and end)."""
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        out += [b, e]
    return out


def _operator(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    """The PyTorch computation of one node (an unknown one: an operator the reader does not interpret)."""
    if node.domain not in ("", "ai.onnx"):
        return _unknown(node)
    factory = _OPERATORS.get(node.op)
    return factory(node, transposed) if factory is not None else _unknown(node)


def _conv(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    a = node.attrs

    def run(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        # a weight held in the graph as a constant (a fixed filter) is in the precision it was exported in: the
        # graph runs in its copy's
        w = w.to(x.dtype) if w.is_floating_point() else w
        b = b.to(x.dtype) if b is not None and b.is_floating_point() else b
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        stride = list(a.get("strides", [1] * len(kernel)))
        dilation = list(a.get("dilations", [1] * len(kernel)))
        begins, ends = _spatial_pads(node, x, kernel, stride, dilation)
        if begins != ends:
            x = F.pad(x, _torch_pad(begins, ends))
            begins = [0] * len(begins)
        return F.conv2d(x, w, b, stride, begins, dilation, int(a.get("group", 1)))

    return run


def _pool(kind: str) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    def factory(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
        a = node.attrs

        def run(x: Tensor) -> Tensor:
            kernel = list(a["kernel_shape"])
            stride = list(a.get("strides", [1] * len(kernel)))
            dilation = list(a.get("dilations", [1] * len(kernel)))
            begins, ends = _spatial_pads(node, x, kernel, stride, dilation)
            ceil = bool(a.get("ceil_mode", 0))
            if begins != ends:
                x = F.pad(x, _torch_pad(begins, ends), value=-math.inf if kind == "max" else 0.0)
                begins = [0] * len(begins)
            if kind == "max":
                return F.max_pool2d(x, kernel, stride, begins, dilation, ceil_mode=ceil)
            return F.avg_pool2d(x, kernel, stride, begins, ceil_mode=ceil,
                                count_include_pad=bool(a.get("count_include_pad", 0)))  # fmt: skip

        return run

    return factory


def _gemm(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    a = node.attrs
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    trans_a, trans_b = bool(a.get("transA", 0)), bool(a.get("transB", 0))
    stored = len(transposed) > 1 and transposed[1]  # the weight held as (out, in) already

    def run(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        if trans_a:
            x = x.t()
        weight = w if (trans_b or stored) else w.t()
        if alpha != 1.0:
            weight = weight * alpha
        if b is not None and beta != 1.0:
            b = b * beta
        return F.linear(x, weight, b)

    return run


def _matmul(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    stored = len(transposed) > 1 and transposed[1]

    def run(x: Tensor, w: Tensor) -> Tensor:
        return F.linear(x, w) if stored else torch.matmul(x, w)

    return run


def _instance_norm(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    """Each channel normalised over its own positions: a group norm with one group per channel (exporters write a
    GroupNorm as a reshape to (N, G, -1), this, a reshape back, and the per-channel scale and shift)."""
    eps = float(node.attrs.get("epsilon", 1e-5))

    def run(x: Tensor, scale: Any, bias: Any) -> Tensor:
        weight = scale.to(x) if isinstance(scale, Tensor) else x.new_full((x.shape[1],), float(scale))
        shift = bias.to(x) if isinstance(bias, Tensor) else x.new_full((x.shape[1],), float(bias))
        return F.group_norm(x, x.shape[1], weight, shift, eps)

    return run


def _batch_norm(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    eps = float(node.attrs.get("epsilon", 1e-5))

    def run(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        scale, bias, mean, var = (t.to(x) if isinstance(t, Tensor) else t for t in (scale, bias, mean, var))
        return F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)

    return run


def _axes(node: _Node, given: Any, rank: int) -> list[int] | None:
    axes = node.attrs.get("axes", given)
    if axes is None:
        return None
    return [int(a) % rank for a in (axes if isinstance(axes, (list, tuple)) else [axes])]


def _reduce(function: str) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    def factory(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
        keep = bool(node.attrs.get("keepdims", 1))

        def run(x: Tensor, axes: Any = None) -> Tensor:
            dims = _axes(node, axes, x.dim())
            if dims is None:
                if node.attrs.get("noop_with_empty_axes", 0):
                    return x
                dims = list(range(x.dim()))
            if function == "mean" and sorted(dims) == [2, 3] and x.dim() == 4:
                out = F.adaptive_avg_pool2d(x, 1)  # the global average pool the reader knows
                return out if keep else out.flatten(1)  # (N, C): both spatial dimensions dropped
            if function == "mean":
                return torch.mean(x, dims, keepdim=keep)
            if function == "max":
                return torch.amax(x, dims, keepdim=keep)
            return torch.sum(x, dims, keepdim=keep)

        return run

    return factory


def _reshape(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    allowzero = bool(node.attrs.get("allowzero", 0))

    def run(x: Any, shape: Any) -> Any:
        target = [int(n) for n in (shape.tolist() if isinstance(shape, Tensor) else shape)]
        if not allowzero:
            target = [x.shape[i] if n == 0 else n for i, n in enumerate(target)]
        return x.reshape(target)

    return run


def _flatten(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    axis = int(node.attrs.get("axis", 1))

    def run(x: Tensor) -> Tensor:
        a = axis % x.dim() if axis < 0 else axis
        return x.reshape(1, -1) if a == 0 else torch.flatten(x, a)

    return run


def _clip(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    def run(x: Tensor, low: Any = None, high: Any = None) -> Tensor:
        low = node.attrs.get("min", low)
        high = node.attrs.get("max", high)
        if low is not None and float(low) == 0.0 and high is None:
            return torch.relu(x)
        return torch.clamp(x, None if low is None else float(low), None if high is None else float(high))

    return run


def _pad(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    mode = node.attrs.get("mode", "constant")

    def run(x: Tensor, pads: Any = None, value: Any = None, axes: Any = None) -> Tensor:
        given = node.attrs.get("pads", pads)
        pads = [int(n) for n in (given.tolist() if isinstance(given, Tensor) else given or [])]
        rank = len(pads) // 2
        dims = [int(a) % x.dim() for a in axes] if axes else list(range(x.dim() - rank, x.dim()))
        full_b, full_e = [0] * x.dim(), [0] * x.dim()
        for i, d in enumerate(dims):
            full_b[d], full_e[d] = pads[i], pads[rank + i]
        first = next((i for i in range(x.dim()) if full_b[i] or full_e[i]), x.dim())
        torch_pads = _torch_pad(full_b[first:], full_e[first:])
        if mode == "constant":
            return F.pad(x, torch_pads, value=float(node.attrs.get("value", value or 0.0)))
        return F.pad(x, torch_pads, mode={"edge": "replicate"}.get(mode, mode))

    return run


def _concat(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    axis = int(node.attrs.get("axis", 0))

    def run(*parts: Any) -> Any:
        if all(isinstance(p, list) for p in parts):
            return [n for p in parts for n in p]
        return torch.cat([p if isinstance(p, Tensor) else torch.tensor(p) for p in parts], axis)

    return run


def _split(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    """ONNX Split: the sizes as an input (opset 13) or an attribute (before), else ``num_outputs`` (opset 18) or one
    part per output, equal but for a smaller last."""
    axis = int(node.attrs.get("axis", 0))
    parts = int(node.attrs.get("num_outputs", len(node.outputs)))

    def run(x: Tensor, split: Any = None) -> tuple[Tensor, ...]:
        sizes = node.attrs.get("split", split)
        if isinstance(sizes, Tensor):
            sizes = [int(n) for n in sizes.tolist()]
        if sizes is None:
            length = int(x.shape[axis])
            sizes = -(-length // parts)  # torch.split's chunks of this size: the last the rest
        return tuple(torch.split(x, sizes, axis))

    return run


def _shape(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    start, end = node.attrs.get("start", 0), node.attrs.get("end")

    def run(x: Tensor) -> list[int]:
        return [int(n) for n in x.shape][start:end]

    return run


def _gather(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    axis = int(node.attrs.get("axis", 0))

    def run(data: Any, index: Any) -> Any:
        if isinstance(data, list):
            return [data[i] for i in index] if isinstance(index, list) else data[index]
        if isinstance(index, list):
            return data.index_select(axis, torch.tensor(index))
        return data.select(axis, int(index))

    return run


def _unsqueeze(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    def run(x: Any, axes: Any = None) -> Any:
        if not isinstance(x, Tensor):
            return x if isinstance(x, list) else [x]
        dims = node.attrs.get("axes", axes)
        for d in sorted(int(a) % (x.dim() + len(dims)) for a in dims):
            x = x.unsqueeze(d)
        return x

    return run


def _squeeze(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    def run(x: Tensor, axes: Any = None) -> Tensor:
        dims = node.attrs.get("axes", axes)
        if dims is None:
            return x.squeeze()
        for d in sorted((int(a) % x.dim() for a in dims), reverse=True):
            x = x.squeeze(d)
        return x

    return run


def _constant(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    import onnx

    a = node.attrs
    if "value" in a:
        value: Any = _python_value(torch.from_numpy(onnx.numpy_helper.to_array(a["value"]).copy()))
    elif "value_float" in a:
        value = float(a["value_float"])
    elif "value_int" in a:
        value = int(a["value_int"])
    else:
        value = [int(n) for n in a.get("value_ints", [])] or [float(n) for n in a.get("value_floats", [])]
    return lambda: value


def _elementwise(function: Callable[..., Any]) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    return lambda node, transposed: function


def _with_attrs(function: Callable[..., Any]) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    return lambda node, transposed: lambda *args: function(node.attrs, *args)


def _binary(function: Callable[[Any, Any], Any]) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    def run(a: Any, b: Any) -> Any:
        if isinstance(a, list) or isinstance(b, list):  # shape arithmetic
            left = a if isinstance(a, list) else [a]
            right = b if isinstance(b, list) else [b]
            if len(left) == 1:
                left = left * len(right)
            if len(right) == 1:
                right = right * len(left)
            return [int(function(x, y)) for x, y in zip(left, right, strict=True)]
        return function(a, b)

    return lambda node, transposed: run


def _dropout(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    return lambda x, *rest: x


def _softmax(log: bool) -> Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]:
    def factory(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
        axis = int(node.attrs.get("axis", -1))
        return lambda x: torch.log_softmax(x, axis) if log else torch.softmax(x, axis)

    return factory


def _slice(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    a = node.attrs

    def run(x: Any, starts: Any = None, ends: Any = None, axes: Any = None, steps: Any = None) -> Any:
        starts, ends = a.get("starts", starts), a.get("ends", ends)
        rank = len(x) if isinstance(x, list) else x.dim()
        axes = a.get("axes", axes) or list(range(len(starts)))
        steps = steps or [1] * len(starts)
        index: list[slice] = [slice(None)] * rank
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            index[int(axis) % rank] = slice(int(start), int(end), int(step))  # ONNX clamps as Python does
        if isinstance(x, list):
            return x[index[0]]
        if any(i.step is not None and i.step < 0 for i in index):  # reversed: shape arithmetic on the CPU
            return torch.from_numpy(x.numpy()[tuple(index)].copy())
        return x[tuple(index)]

    return run


def _constant_of_shape(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    import onnx

    given = node.attrs.get("value")
    value = torch.from_numpy(onnx.numpy_helper.to_array(given).copy()).reshape(-1)[0] if given is not None else None

    def run(x: Tensor, shape: Any) -> Tensor:
        sizes = [int(n) for n in (shape.tolist() if isinstance(shape, Tensor) else shape)]
        if value is not None and not value.is_floating_point():  # integers: shape arithmetic, on the CPU
            return torch.full(sizes, int(value), dtype=torch.int64)
        return torch.full(sizes, 0.0 if value is None else float(value), dtype=x.dtype, device=x.device)

    return run


# Operators that make a tensor from nothing: they are given the graph's input first (its device and dtype).
_READ_THE_INPUT = frozenset({"ConstantOfShape"})


def _cast(node: _Node, transposed: tuple[bool, ...]) -> Callable[..., Any]:
    return lambda x: x


_OPERATORS: Mapping[str, Callable[[_Node, tuple[bool, ...]], Callable[..., Any]]] = {
    "Conv": _conv,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _elementwise(lambda x: F.adaptive_avg_pool2d(x, 1)),
    "GlobalMaxPool": _elementwise(lambda x: F.adaptive_max_pool2d(x, 1)),
    "ReduceMean": _reduce("mean"),
    "ReduceMax": _reduce("max"),
    "ReduceSum": _reduce("sum"),
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "Relu": _elementwise(torch.relu),
    "Sigmoid": _elementwise(torch.sigmoid),
    "Tanh": _elementwise(torch.tanh),
    "Erf": _elementwise(torch.erf),
    "Sqrt": _elementwise(torch.sqrt),
    "Exp": _elementwise(torch.exp),
    "HardSwish": _elementwise(F.hardswish),
    "HardSigmoid": _with_attrs(
        lambda a, x: torch.clamp(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0.0, 1.0)
    ),
    "LeakyRelu": _with_attrs(lambda a, x: F.leaky_relu(x, float(a.get("alpha", 0.01)))),
    "Elu": _with_attrs(lambda a, x: F.elu(x, float(a.get("alpha", 1.0)))),
    "Selu": _elementwise(F.selu),
    "Softplus": _elementwise(F.softplus),
    "Gelu": _with_attrs(lambda a, x: F.gelu(x, approximate=a.get("approximate", "none"))),
    "PRelu": _elementwise(lambda x, w: F.prelu(x, w.reshape(-1))),
    "Clip": _clip,
    "Add": _binary(lambda a, b: a + b),
    "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b),
    "Div": _binary(lambda a, b: a / b if isinstance(a, Tensor) or isinstance(b, Tensor) else a // b),
    "Pow": _binary(lambda a, b: a**b),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Pad": _pad,
    "Concat": _concat,
    "Split": _split,
    "Identity": _elementwise(lambda x: x),
    "Dropout": _dropout,
    "Softmax": _softmax(False),
    "LogSoftmax": _softmax(True),
    "Transpose": _with_attrs(
        lambda a, x: x.permute(*a["perm"]) if "perm" in a else x.permute(*range(x.dim() - 1, -1, -1))
    ),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Shape": _shape,
    "Gather": _gather,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Slice": _slice,
    "Cast": _cast,
}


_UNKNOWN: dict[str, Any] = {}


def _unknown(node: _Node) -> Callable[..., Any]:
    """An operator this interpreter does not know: an opaque operator in the trace (the reader reports it where it
    sits: an operator it does not interpret), shaped like its first input; running it on values is refused."""
    op = _unknown_operator()
    label = f"{node.domain + '.' if node.domain else ''}{node.op}"

    def run(*args: Any) -> Tensor:
        x = next((a for a in args if isinstance(a, Tensor)), None)
        if x is None:
            raise ArtifactError(f"node {node.name!r}: the ONNX operator {label} is not one resnet-spec can run")
        return op(x, label, node.name)

    return run


def _unknown_operator() -> Any:
    """``resnet_spec::onnx_operator(x, op_type, node)``: shaped like ``x`` on the meta device, refused on values."""
    if "op" not in _UNKNOWN:
        library = torch.library.Library("resnet_spec", "FRAGMENT")  # type: ignore[no-untyped-call]
        library.define("onnx_operator(Tensor x, str op_type, str node) -> Tensor")  # type: ignore[no-untyped-call]

        def meta(x: Tensor, op_type: str, node: str) -> Tensor:
            return torch.empty_like(x)

        def refuse(x: Tensor, op_type: str, node: str) -> Tensor:
            raise RuntimeError(f"node {node!r}: the ONNX operator {op_type} is not one resnet-spec can run")

        library.impl("onnx_operator", meta, "Meta")  # type: ignore[no-untyped-call]
        library.impl("onnx_operator", refuse, "CPU")  # type: ignore[no-untyped-call]
        _UNKNOWN["library"] = library
        _UNKNOWN["op"] = torch.ops.resnet_spec.onnx_operator
    return _UNKNOWN["op"]
