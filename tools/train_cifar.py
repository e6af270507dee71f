"""Train a CIFAR-10 ResNet of Sec. 4.2 for a few steps on one fixed random batch: proof that it learns end to end.

No data set is downloaded.  The script draws one batch of random 32x32 images and random labels (seeded), takes
``--steps`` SGD steps on it and prints the loss of each step.  A network whose forward, backward and optimiser are
wired correctly fits a fixed batch, so the loss falls; the script exits with status 1 and says so when it did not.

The paper's recipe (He, Zhang, Ren, Sun 2015, arXiv 1512.03385, Sec. 4.2; ``shared/FACTS.md``, "Training"):

- SGD with momentum 0.9 and weight decay 1e-4; weights initialised as in He et al. 2015 [13], batch norm, no dropout;
- mini-batch 128; learning rate 0.1, divided by 10 at 32k and at 48k iterations; training stops at 64k iterations
  (a schedule chosen on a 45k/5k train/val split);
- ResNet-110 only: the learning rate 0.1 is "slightly too large to start converging", so it warms up at 0.01 until the
  training error is below 80% (about 400 iterations), then goes back to 0.1;
- inputs: 32x32 images with the per-pixel mean subtracted; training augmentation: 4 pixels padded on each side, a
  random 32x32 crop of the padded image or of its horizontal flip; testing: the single original 32x32 view.

Defaults follow the recipe where it applies to a short CPU run: ``--lr`` 0.1, momentum, weight decay and the
ResNet-110 warm-up are the paper's, and :func:`learning_rate` implements the whole step schedule.  ``--steps`` (20)
and ``--batch`` (32) are small so that the run takes seconds on a CPU (the paper: 64,000 iterations of 128).
Augmentation (:func:`augment`) is off by default: on a fixed batch it would turn a memorisation check into noise;
``--augment`` turns it on.

Usage::

    python tools/train_cifar.py                      # ResNet-20, 20 steps, batch 32
    python tools/train_cifar.py --depth 56 --steps 10 --batch 16
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_spec import build, load_spec, residual_depths
from resnet_spec.cli import ArgumentParser, float_in_range, guarded, int_in_range

__all__ = ["PAPER", "Recipe", "augment", "learning_rate", "main", "train"]


@dataclass(frozen=True)
class Recipe:
    """The CIFAR-10 training recipe of Sec. 4.2 (the defaults are the paper's)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch: int = 128
    milestones: tuple[int, ...] = (32_000, 48_000)  # the learning rate is divided by 10 at each
    lr_factor: float = 0.1
    iterations: int = 64_000  # training stops here
    warmup_lr: float = 0.01
    warmup_iterations: int = 400  # "about 400 iterations": until the training error is below 80%
    warmup_depths: tuple[int, ...] = (110,)  # Sec. 4.2 warms up ResNet-110 only
    pad: int = 4  # augmentation: pixels of zero padding on each side before the random crop
    crop: int = 32


PAPER = Recipe()


def learning_rate(iteration: int, depth: int, base_lr: float = PAPER.lr, recipe: Recipe = PAPER) -> float:
    """The learning rate of ``iteration`` (0-based): warm-up for the depths that have one, then steps at milestones."""
    if iteration < 0:
        raise ValueError(f"learning_rate: expected an iteration >= 0, got {iteration}")
    if depth in recipe.warmup_depths and iteration < recipe.warmup_iterations:
        return recipe.warmup_lr
    drops = sum(iteration >= milestone for milestone in recipe.milestones)
    return base_lr * recipe.lr_factor**drops


def augment(images: Tensor, generator: torch.Generator, recipe: Recipe = PAPER) -> Tensor:
    """The paper's training augmentation: pad ``recipe.pad`` zeros on each side, crop ``recipe.crop`` at a random
    offset, and flip each image horizontally with probability 1/2.  ``images``: (N, C, H, W) -> (N, C, crop, crop).
    """
    if images.dim() != 4:
        raise ValueError(f"augment: expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    n, _, height, width = images.shape
    padded = F.pad(images, (recipe.pad,) * 4)  # (N, C, H + 2p, W + 2p), zeros around
    if min(height, width) + 2 * recipe.pad < recipe.crop:
        raise ValueError(
            f"augment: a {recipe.crop}x{recipe.crop} crop does not fit {height}x{width} padded by {recipe.pad}"
        )
    tops = torch.randint(0, height + 2 * recipe.pad - recipe.crop + 1, (n,), generator=generator)
    lefts = torch.randint(0, width + 2 * recipe.pad - recipe.crop + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    crops = []
    for image, top, left, flip in zip(padded, tops.tolist(), lefts.tolist(), flips.tolist(), strict=True):
        crop = image[:, top : top + recipe.crop, left : left + recipe.crop]  # (C, crop, crop)
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)  # (N, C, crop, crop)


def train(
    depth: int = 20,
    steps: int = 20,
    batch: int = 32,
    lr: float = PAPER.lr,
    seed: int = 0,
    use_augment: bool = False,
    recipe: Recipe = PAPER,
    log: Callable[[str], None] | None = print,
) -> list[float]:
    """Take ``steps`` SGD steps of the CIFAR-10 ResNet of ``depth`` on one fixed random batch; the loss of each step.

    The batch (``batch`` images of 3x32x32 drawn from N(0, 1), so already of zero mean, and uniform labels of 10
    classes) and the initial weights come from ``seed``; the caller's global random state is left as it was.
    Each entry of the result is the cross-entropy of the batch before that step's update.
    """
    names = residual_depths("cifar10")
    if depth not in names:
        raise ValueError(f"train: expected a CIFAR-10 depth of the tables ({', '.join(map(str, names))}), got {depth}")
    if steps < 1 or batch < 1:
        raise ValueError(f"train: expected steps >= 1 and batch >= 1, got steps={steps}, batch={batch}")
    if not math.isfinite(lr) or lr < 0:
        raise ValueError(f"train: expected a finite learning rate >= 0, got {lr}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(names[depth]).train()  # He init (fan_out), BN weight 1 and bias 0
    spec = model.spec
    generator = torch.Generator().manual_seed(seed)
    size = spec.input_size
    images = torch.randn(batch, spec.in_channels, size, size, generator=generator)  # (B, 3, 32, 32)
    labels = torch.randint(0, spec.head.num_classes, (batch,), generator=generator)  # (B,)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    losses: list[float] = []
    for step in range(steps):
        step_lr = learning_rate(step, depth, lr, recipe)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        inputs = augment(images, generator, recipe) if use_augment else images
        loss = F.cross_entropy(model(inputs), labels)  # logits (B, 10) against labels (B,)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if log is not None:
            log(f"step {step + 1:>4}/{steps}  lr {step_lr:.4f}  loss {losses[-1]:.4f}")
    return losses


# Bounds of the flags: beyond them no run is meaningful (the paper: 64k iterations of batch 128 at lr 0.1).
MAX_STEPS = 64_000
MAX_BATCH = 1024
MAX_LR = 10.0
MAX_SEED = 2**32 - 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0: the loss decreased, 1: it did not, 2: an error)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    return guarded("train_cifar.py", lambda: _main(args_list), args_list)


def _main(argv: Sequence[str]) -> int:
    depths = residual_depths("cifar10")
    parser = ArgumentParser(prog="train_cifar.py", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--depth", type=int, default=20, choices=list(depths), help="network depth 6n+2 (default 20)")
    parser.add_argument(
        "--steps", type=int_in_range(2, MAX_STEPS), default=20, help="SGD steps on the fixed batch, >= 2 (default 20)"
    )
    parser.add_argument(
        "--batch", type=int_in_range(1, MAX_BATCH), default=32, help="batch size (default 32; the paper: 128)"
    )
    parser.add_argument(
        "--lr", type=float_in_range(0.0, MAX_LR), default=PAPER.lr, help="base learning rate (default 0.1, the paper's)"
    )
    parser.add_argument(
        "--seed",
        type=int_in_range(0, MAX_SEED),
        default=0,
        help="seed of the batch and the initial weights (default 0)",
    )
    parser.add_argument("--augment", action="store_true", help="apply the paper's pad-4, crop-32, flip augmentation")
    args = parser.parse_args(argv)
    warmup = (
        f", warm-up at {PAPER.warmup_lr} for the first {PAPER.warmup_iterations} iterations (Sec. 4.2)"
        if args.depth in PAPER.warmup_depths
        else ""
    )
    augmented = ", augmented at each step" if args.augment else ""
    print(
        f"{load_spec(depths[args.depth]).label}: {args.steps} steps on one fixed random batch of {args.batch}"
        f"{augmented}, SGD lr {args.lr} momentum {PAPER.momentum} weight decay {PAPER.weight_decay}{warmup}, "
        f"seed {args.seed}"
    )
    losses = train(args.depth, args.steps, args.batch, args.lr, args.seed, args.augment)
    if not losses[-1] < losses[0]:
        hint = (
            "with --augment each step sees other crops and flips of random images, so a few steps need not lower it"
            if args.augment
            else "the network or its optimiser is not training end to end"
        )
        print(
            f"train_cifar: the loss did not decrease over {args.steps} steps on a fixed batch: {losses[0]:.4f} at "
            f"step 1, {losses[-1]:.4f} at step {args.steps} (lr {args.lr}, batch {args.batch}, seed {args.seed}); "
            f"{hint}",
            file=sys.stderr,
        )
        return 1
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}: decreased")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
