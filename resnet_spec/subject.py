"""Loading the model to check from a TARGET string: ``package.module:callable`` or ``path/to/file.py:callable``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["SubjectError", "load_factory", "make_subject"]


class SubjectError(ValueError):
    """The TARGET cannot be imported, is not a callable taking no required arguments, or does not give a Module."""


def load_factory(target: str) -> Callable[[], Any]:
    """Resolve ``package.module:callable`` or ``path/to/file.py:callable`` to the callable."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise SubjectError(
            f"--impl {target!r}: expected 'package.module:callable' or 'path/to/file.py:callable' "
            "(a module, a colon, a callable that returns an nn.Module)"
        )
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_file():
            raise SubjectError(f"--impl {target!r}: no such file {str(path)!r}")
        name = f"_resnet_spec_impl_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SubjectError(f"--impl {target!r}: cannot load {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # any import-time failure of the user's file
            raise SubjectError(f"--impl {target!r}: importing {str(path)!r} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(module_part)
        except Exception as e:  # ImportError and whatever the module raises while importing
            raise SubjectError(
                f"--impl {target!r}: cannot import module {module_part!r}: {type(e).__name__}: {e} "
                "(is it installed, or on PYTHONPATH?)"
            ) from e
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise SubjectError(f"--impl {target!r}: module {module_part!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise SubjectError(f"--impl {target!r}: {attr!r} is a {type(factory).__name__}, expected a callable")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if required:
        raise SubjectError(
            f"--impl {target!r}: {attr} has required arguments {required}; expected a callable taking none "
            "(wrap it: def make(): return MyResNet(...))"
        )
    return factory


def make_subject(target: str) -> tuple[nn.Module, str | None]:
    """Build the model TARGET names, on the meta device when its factory allows it (no memory, fast).

    Returns the model and a note when it had to be built on the CPU instead.  Raises :class:`SubjectError`.
    """
    factory = load_factory(target)
    note = None
    try:
        with torch.device("meta"):
            model = factory()
    except Exception as meta_error:  # the factory may not support meta; the CPU is the next way
        try:
            model = factory()
        except Exception as e:
            raise SubjectError(f"--impl {target!r}: calling it failed: {type(e).__name__}: {e}") from e
        note = f"built on the CPU: the factory failed on the meta device ({type(meta_error).__name__}: {meta_error})"
    if not isinstance(model, nn.Module):
        raise SubjectError(f"--impl {target!r}: returned a {type(model).__name__}, expected a torch.nn.Module")
    return model, note
