"""The model to check, from a TARGET string: ``MODULE:EXPRESSION``.

``MODULE`` is an importable module (``torchvision.models``) or a file (``path/to/my_resnet.py``).  ``EXPRESSION``
is a Python expression whose names are looked up in that module (then among the builtins, then as top-level
modules), for example::

    torchvision.models:resnet50                      # a callable: called with no arguments
    timm:create_model("resnet50d")                   # a call, with positional and keyword arguments
    transformers:ResNetForImageClassification(ResNetConfig(num_labels=1000))
    my_models.py:MODEL                               # a module-level instance
    my_models.py:make_resnet                         # a functools.partial, a class, a function ...

The value of the expression is the subject when it is an ``nn.Module``; when it is any other callable it is called
with no arguments and must return one.  Construction is tried on the meta device first (no memory, fast) and on
the CPU when the code does not allow that.  All of it is the user's code: run it contained
(:func:`resnet_spec.sandbox.run_contained`).
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..sandbox import phase

__all__ = ["SubjectError", "Target", "check_target", "make_subject", "parse_target"]

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_FORMS = (
    "expected MODULE:EXPRESSION, e.g. 'torchvision.models:resnet50', 'timm:create_model(\"resnet50d\")' or "
    "'path/to/file.py:make' (a module or a .py file, a colon, an nn.Module or a callable that returns one)"
)


class SubjectError(ValueError):
    """The TARGET is malformed, cannot be imported, or does not give an ``nn.Module``."""


@dataclass(frozen=True)
class Target:
    """A parsed TARGET: where the code is and the expression that gives the model."""

    text: str  # the TARGET as given, for messages
    module: str  # a dotted module name, or a path to a .py file
    expression: str
    is_file: bool

    def import_module(self) -> ModuleType:
        """Import the module (or execute the file).  Raises :class:`SubjectError`."""
        if not self.is_file:
            try:
                return importlib.import_module(self.module)
            except Exception as e:  # ImportError and whatever the module raises while importing
                raise SubjectError(
                    f"target {self.text!r}: cannot import module {self.module!r}: {type(e).__name__}: {e} "
                    "(is it installed, or on PYTHONPATH?)"
                ) from e
        path = Path(self.module)
        if not path.is_file():
            raise SubjectError(f"target {self.text!r}: no such file {str(path)!r}")
        name = f"_resnet_spec_impl_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SubjectError(f"target {self.text!r}: cannot load {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # any import-time failure of the user's file
            raise SubjectError(f"target {self.text!r}: importing {str(path)!r} failed: {type(e).__name__}: {e}") from e
        return module

    def evaluate(self, module: ModuleType) -> Any:
        """The value of the expression, its names looked up in ``module``.  Raises :class:`SubjectError`."""
        try:
            return eval(self.expression, {"__builtins__": builtins.__dict__}, _Namespace(module))
        except _Unknown as e:
            close = difflib.get_close_matches(str(e.name), [n for n in dir(module) if not n.startswith("_")], n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise SubjectError(
                f"target {self.text!r}: {self.module!r} has no attribute {e.name!r} (and it is not a builtin or a "
                f"module){hint}"
            ) from None
        except AttributeError as e:
            raise SubjectError(f"target {self.text!r}: {e}") from e
        except Exception as e:  # the user's constructor failed
            raise SubjectError(f"target {self.text!r}: evaluating it failed: {type(e).__name__}: {e}") from e


class _Unknown(NameError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _Namespace(Mapping[str, Any]):
    """Names in a target's expression: the module's attributes, then the builtins, then top-level modules."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def __getitem__(self, name: str) -> Any:
        if hasattr(self._module, name):
            return getattr(self._module, name)
        if hasattr(builtins, name):
            return getattr(builtins, name)
        try:
            return importlib.import_module(name)
        except ImportError:
            raise _Unknown(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(dir(self._module))

    def __len__(self) -> int:
        return len(dir(self._module))


def parse_target(text: str) -> Target:
    """Split and check a TARGET without importing anything.  Raises :class:`SubjectError`."""
    index = text.find(".py:")
    if index >= 0:
        module, expression, is_file = text[: index + 3], text[index + 4 :], True
    else:
        module, _, expression = text.partition(":")
        is_file = False
        if not _MODULE_NAME.fullmatch(module):
            raise SubjectError(f"target {text!r}: {_FORMS}")
    if not expression.strip():
        raise SubjectError(f"target {text!r}: {_FORMS}")
    try:
        ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise SubjectError(
            f"target {text!r}: {expression.strip()!r} is not a Python expression ({e.msg}); {_FORMS}"
        ) from None
    return Target(text=text, module=module, expression=expression.strip(), is_file=is_file)


def check_target(text: str, *, checkpoints: bool = True) -> str:
    """A target (``compare --impl``'s value) checked without importing or loading anything: ``MODULE:EXPRESSION``,
    or the path of a file resnet-spec reads (an ONNX graph, a torch.export program, a TorchScript archive; a
    checkpoint where ``checkpoints``).  Returns it as given.  Raises :class:`SubjectError`."""
    from ._artifacts import CHECKPOINT_KINDS, ArtifactError, artifact_kind, is_artifact_path

    if not is_artifact_path(text):
        return parse_target(text).text
    if not Path(text).is_file():
        raise SubjectError(f"target {text!r}: no such file")
    try:
        kind = artifact_kind(text)
    except ArtifactError as e:
        raise SubjectError(f"target {text!r}: {str(e).removeprefix(f'{text}: ')}") from None
    if kind in CHECKPOINT_KINDS and not checkpoints:
        raise SubjectError(f"target {text!r}: a {kind} checkpoint holds tensors, not a network, so it cannot be run; "
                           "compare its names and shapes with an entry (resnet-spec compare --impl FILE --arch NAME, "
                           "resnet_spec.verify.compare_checkpoint)")  # fmt: skip
    return text


def _required_arguments(fn: Any) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _construct(target: Target, module: ModuleType) -> Any:
    value = target.evaluate(module)
    if isinstance(value, nn.Module):
        return value
    if not callable(value):
        raise SubjectError(
            f"target {target.text!r}: {target.expression!r} is a {type(value).__name__}, expected an nn.Module or a "
            "callable that returns one"
        )
    required = _required_arguments(value)
    if required:
        raise SubjectError(
            f"target {target.text!r}: {target.expression} has required arguments {required}; give them in the "
            f"target, e.g. '{target.module}:{target.expression}(...)'"
        )
    try:
        return value()
    except Exception as e:  # the user's factory failed
        raise SubjectError(f"target {target.text!r}: calling it failed: {type(e).__name__}: {e}") from e


def make_subject(target: str | Target, *, meta: bool = True) -> tuple[nn.Module, str | None]:
    """Import and build the model TARGET names, on the meta device when its code allows it (no memory, fast);
    ``meta=False``: on the CPU, with the values its code gives.

    Returns the model and a note when it had to be built on the CPU instead.  Raises :class:`SubjectError`.
    Phases: ``import``, ``construction``.
    """
    parsed = parse_target(target) if isinstance(target, str) else target
    with phase("import"):
        module = parsed.import_module()
    note = None
    with phase("construction"):
        if not meta:
            model = _construct(parsed, module)
        else:
            try:
                with torch.device("meta"):
                    model = _construct(parsed, module)
            except SubjectError as meta_error:  # the code may not support meta; the CPU is the next way
                model = _construct(parsed, module)
                cause = meta_error.__cause__ if meta_error.__cause__ is not None else meta_error
                note = f"built on the CPU: the code failed on the meta device ({type(cause).__name__}: {cause})"
        if not isinstance(model, nn.Module):
            raise SubjectError(f"target {parsed.text!r}: returned a {type(model).__name__}, expected a torch.nn.Module")
    return model, note
