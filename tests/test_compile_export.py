"""torch.compile (one graph, no breaks) and torch.export (dynamic batch) give the eager model's outputs; torch.hub.

Tolerances are relative to the output's scale (its largest magnitude), since a freshly initialised deep ResNet in
eval mode (batch norm = identity) grows its activations through the residual additions: ResNet-152's logits reach
~1e7 while some are ~100, so an elementwise relative tolerance would judge rounding noise on the small ones.
Compiled kernels (Inductor's C++ on CPU) reorder float32 sums: ``max |compiled - eager| <= 1e-4 * max |eager|``
(observed ~1e-6 of the scale; float32 against float64 eager shows the same ~1e-6).  The exported program runs the
same ATen kernels as eager: ``1e-5`` of the scale.  Eval mode throughout.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch._dynamo
from facts import PARAMS_B
from torch import nn
from torch.export import Dim, export

from resnet_spec import ResNet, build, list_specs

REPO_ROOT = Path(__file__).resolve().parent.parent

COMPILE_TOLERANCE = 1e-4  # of max |eager output|
EXPORT_TOLERANCE = 1e-5


def _assert_close_to_scale(found: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    assert found.shape == expected.shape, f"shape {tuple(found.shape)} != {tuple(expected.shape)}"
    scale = float(expected.abs().max())
    error = float((found - expected).abs().max())
    assert error <= tolerance * scale, f"max |difference| {error:.3g} > {tolerance:g} x output scale {scale:.3g}"


def _compile_and_compare(name: str, size: int, backend: str = "inductor") -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = build(name).eval()
    x = torch.randn(2, 3, size, size)
    compiled = torch.compile(model, fullgraph=True, backend=backend)  # fullgraph: any graph break is an error
    with torch.no_grad():
        expected, found = model(x), compiled(x)
    _assert_close_to_scale(found, expected, COMPILE_TOLERANCE)


@pytest.mark.slow  # Inductor generates and compiles C++: about 40 s on two cores
def test_resnet18_compiles_to_one_graph_and_matches_eager() -> None:
    _compile_and_compare("resnet18", 64)
    # The compile used this test process's own cache (tests/conftest.py), not the machine-wide default.
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    private = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert Path(cache_dir()) == private and private != Path(default_cache_dir()), (cache_dir(), default_cache_dir())
    assert private.is_dir() and any(private.iterdir()), f"expected Inductor artifacts in {private}"


@pytest.mark.parametrize(
    "depth", [pytest.param(d, marks=[] if d == min(PARAMS_B) else [pytest.mark.slow]) for d in sorted(PARAMS_B)]
)
def test_every_imagenet_depth_is_captured_as_one_graph(depth: int) -> None:
    """Dynamo captures every depth whole (``fullgraph``); Inductor's code for the same blocks is checked at 18.
    The shallowest runs by default, the rest are slow.

    The deeper networks repeat ResNet-18/50's blocks at other widths, so what depth adds is capture (one graph, no
    break), checked here with dynamo's ``eager`` backend; generating C++ for ResNet-152 on two cores would take
    a minute and test Inductor rather than the model.
    """
    _compile_and_compare(f"resnet{depth}", 64, backend="eager")


def test_dynamo_captures_the_zero_pad_shortcut_in_one_graph() -> None:
    """Option A's slicing and padding (ResNet-20) trace without breaks (dynamo only, no code generation)."""
    torch._dynamo.reset()
    model = build("resnet20").eval()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


@pytest.mark.parametrize(("name", "size"), [("resnet18", 64), ("resnet20", 32)])
def test_export_with_a_dynamic_batch_matches_eager_at_other_batch_sizes(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    batch = Dim("batch", min=1, max=64)
    program = export(model, (torch.randn(2, 3, size, size),), dynamic_shapes={"x": {0: batch}})
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "x")
    shape = placeholder.meta["val"].shape
    assert not isinstance(shape[0], int), f"batch dimension was specialised to {shape[0]}"
    assert tuple(shape[1:]) == (3, size, size)
    exported = program.module()
    for batch_size in (1, 5):
        x = torch.randn(batch_size, 3, size, size)
        with torch.no_grad():
            _assert_close_to_scale(exported(x), model(x), EXPORT_TOLERANCE)


def test_exported_program_guards_its_input_shape() -> None:
    """The static channel count and the declared batch range survive export as guards: a wrong input is refused."""
    model = build("resnet20").eval()
    program = export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("batch", min=1, max=8)}})
    with pytest.raises((AssertionError, RuntimeError, ValueError), match=r"x\.size\(\)\[1\] == 3"):
        program.module()(torch.randn(2, 1, 32, 32))
    with pytest.raises((AssertionError, RuntimeError, ValueError), match=r"x\.size\(\)\[0\] <= 8"):
        program.module()(torch.randn(9, 3, 32, 32))  # beyond the declared batch range


# ----------------------------------------------------------------------------------------------------------------
# torch.hub


def test_hub_loads_resnet50_from_a_checkout() -> None:
    model = torch.hub.load(str(REPO_ROOT), "resnet50", source="local", device="meta")
    assert isinstance(model, ResNet)
    assert sum(p.numel() for p in model.parameters()) == PARAMS_B[50]
    backbone = torch.hub.load(str(REPO_ROOT), "resnet50", source="local", variant="v1.5", num_classes=0, device="meta")
    assert backbone.layer2[0].conv2.stride == (2, 2)  # keywords reach build: v1.5 strides the 3x3
    assert isinstance(backbone.fc, nn.Identity)


def test_hub_has_one_entry_point_per_table_entry_and_declares_torch() -> None:
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO_ROOT / "hubconf.py")
    assert spec is not None and spec.loader is not None
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert hubconf.dependencies == ["torch"]
    # torch.hub's rule for entry points: the public callables of hubconf.py
    entry_points = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert entry_points == set(list_specs())


def test_hub_refuses_pretrained_weights_it_does_not_have() -> None:
    with pytest.raises(
        ValueError, match=r"resnet18: expected pretrained=False: resnet-spec publishes no trained weights"
    ):
        torch.hub.load(str(REPO_ROOT), "resnet18", source="local", pretrained=True)


def test_model_survives_deepcopy_and_pickle() -> None:
    model = build("resnet20")
    twin = copy.deepcopy(model)
    assert twin.spec == model.spec
    assert isinstance(pickle.loads(pickle.dumps(model)), ResNet)
