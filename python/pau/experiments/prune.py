"""Lottery-ticket filter pruning of the convolutions (PAU paper Sec. 4.4, appendix A.4.3, Fig. 4).

``python -m pau.experiments prune``: for each activation and seed, train the
network, remove the filters with the lowest weight sums from every
convolution, reset the surviving weights to their initial values (the
"lottery ticket" of Frankle and Carbin, 2019), retrain, and repeat for
increasing pruning levels; the test accuracy at each level is recorded.

What the paper leaves open, and what we chose:

* **Levels.** "p% = 10, 20, 30, 40, 50, 60 ... per iteration": we read p as
  the share of each convolution's *original* filters removed after that
  iteration (cumulative, so each iteration removes about 10% more), and train
  the unpruned network first (level 0) to have weights to prune by.
* **"Sum of its weights".** By default a filter's score is the sum of its
  weights' absolute values (its L1 norm, the usual magnitude criterion; a
  signed sum would rank a filter of large negative weights as least
  important). ``--score sum`` uses the signed sum, the literal reading.
* **"Re-initialize".** The surviving weights go back to the values they had
  before the first training (the lottery-ticket rewind), activation
  coefficients included, so PAU starts again from its LeakyReLU fit.
* A pruned filter's weights and bias are zero and stay zero (re-zeroed after
  every optimiser step); a batch norm right after the convolution has that
  channel's scale and shift zeroed too, so the channel outputs exactly 0.
  Filter counts round to the nearest integer, and every convolution keeps at
  least one filter.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from . import activations, paper
from .data import DATASETS, Dataset, DataUnavailableError, load_dataset
from .models import MODELS, build_model
from .report import DATASET_LABELS, MODEL_LABELS
from .train import (
    OPTIMIZER_DEFAULTS,
    RunConfig,
    _make_optimizer,
    _write_json,
    evaluate,
    load_result,
    pwlu_epoch_end,
    pwlu_epoch_start,
    rotate_batch,
    set_epoch_lr,
)

SCHEMA_VERSION = 1
PAPER_LEVELS = (10, 20, 30, 40, 50, 60)  # appendix A.4.3, percent of filters
SCORES = ("abs", "sum")
DEFAULT_OUT = Path("runs/experiments/prune")


# ---------------------------------------------------------------- the pruning step


def prunable_convs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every convolution of ``model`` with the batch norm that normalises its output, if any.

    That batch norm is the module registered right after the convolution in
    the same parent with one feature per filter: in all of :mod:`.models` and
    :mod:`.models_cifar` registration order is data-flow order within a
    block, and a pre-activation batch norm (DenseNet's) sits in another
    parent or before its convolution, so it is not taken.
    """
    out: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for parent in model.modules():
        children = list(parent.children())
        for i, child in enumerate(children):
            if isinstance(child, nn.Conv2d):
                nxt = children[i + 1] if i + 1 < len(children) else None
                paired = isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == child.out_channels
                out.append((child, nxt if paired else None))  # type: ignore[arg-type]
    return out


def filter_scores(conv: nn.Conv2d, score: str = "abs") -> Tensor:
    """One number per output filter: the sum of its weights' absolute values, or of its weights."""
    w = conv.weight.detach().flatten(1)
    if score == "abs":
        return w.abs().sum(1)
    if score == "sum":
        return w.sum(1)
    raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")


def filter_masks(
    model: nn.Module,
    fraction: float,
    previous: Sequence[Tensor] | None = None,
    score: str = "abs",
) -> list[Tensor]:
    """Boolean keep-masks (one per convolution, one entry per filter) pruning ``fraction``.

    In every convolution, ``round(fraction * filters)`` filters are pruned (at
    most all but one): those pruned in ``previous`` first, then the lowest
    scores of the current weights (ties: the lower index goes first).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"pruning fraction must be in [0, 1), got {fraction}")
    convs = prunable_convs(model)
    if previous is not None and len(previous) != len(convs):
        raise ValueError(f"{len(previous)} masks for {len(convs)} convolutions")
    masks = []
    for j, (conv, _) in enumerate(convs):
        n = conv.out_channels
        k = min(n - 1, round(fraction * n))
        scores = filter_scores(conv, score).double()
        if previous is not None:
            # Already pruned filters stay pruned whatever their (zero) score says.
            scores = torch.where(previous[j].to(scores.device), scores, -math.inf)
            k = max(k, int((~previous[j]).sum()))
        keep = torch.ones(n, dtype=torch.bool)
        if k:
            order = torch.sort(scores.cpu(), stable=True).indices
            keep[order[:k]] = False
        masks.append(keep)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Sequence[Tensor]) -> None:
    """Zero the pruned filters' weights and biases (and their batch norm's scale and shift)."""
    for (conv, bn), keep in zip(prunable_convs(model), masks):
        drop = ~keep.to(conv.weight.device)
        conv.weight[drop] = 0
        if conv.bias is not None:
            conv.bias[drop] = 0
        if bn is not None and bn.affine:
            bn.weight[drop] = 0
            bn.bias[drop] = 0


def rewind(model: nn.Module, initial_state: dict[str, Tensor], masks: Sequence[Tensor]) -> None:
    """Reset ``model`` to its initial weights (the lottery ticket), then apply ``masks``."""
    model.load_state_dict(initial_state)
    apply_masks(model, masks)


def pruned_counts(masks: Sequence[Tensor]) -> list[int]:
    """Pruned filters per convolution."""
    return [int((~m).sum()) for m in masks]


# ---------------------------------------------------------------- one lottery-ticket run


def _train_level(
    model: nn.Module,
    masks: Sequence[Tensor],
    config: RunConfig,
    data: Dataset,
    device: torch.device,
    log: Callable[[str], None],
    label: str,
) -> dict[str, Any]:
    """Train ``model`` (already rewound and masked) for ``config.epochs``; keep the masks."""
    optimizer = _make_optimizer(config, model)
    # The same batch order at every level: levels differ only in their masks.
    order_gen = torch.Generator().manual_seed(config.seed)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    n = len(train_x)
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        set_epoch_lr(optimizer, config, epoch)
        pwlu_epoch_start(model, epoch)
        model.train()
        perm = torch.randperm(n, generator=order_gen).to(device)
        loss_sum = torch.zeros((), device=device)
        for b in range(0, n, config.batch_size):
            idx = perm[b : b + config.batch_size]
            xb, yb = train_x[idx], train_y[idx]
            if config.rotate:
                xb = rotate_batch(xb, config.rotate, data.background, order_gen)
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            apply_masks(model, masks)  # the optimiser moved the pruned weights: zero them again
            loss_sum += loss.detach() * len(idx)
        pwlu_epoch_end(model, epoch)
        train_loss = loss_sum.item() / n
        history.append(train_loss)
        log(f"  {label} epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}")
        if not math.isfinite(train_loss):
            break
    test_loss, test_acc = evaluate(model, data.test_x.to(device), data.test_y.to(device))
    return {
        "train_losses": history,
        "train_loss": history[-1] if history else float("nan"),
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "train_time_s": time.perf_counter() - start,
    }


def lottery_ticket(
    config: RunConfig,
    data: Dataset,
    levels: Sequence[int],
    device: torch.device,
    score: str = "abs",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train at pruning level 0 and then at each of ``levels`` (percent), rewinding each time.

    Returns a JSON-ready dict: the configuration and, per level, the pruned
    filters per convolution, the share of the convolutions' filter weights
    left (the kept filters' weights over all; the next layer's weights that
    read a pruned channel are counted as left), and the test accuracy after
    training.
    """
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        lambda: activations.make(config.activation, config.pau_variant),
        in_channels=data.channels,
    ).to(device)
    initial_state = copy.deepcopy(model.state_dict())
    convs = prunable_convs(model)
    conv_weights = sum(c.weight.numel() for c, _ in convs)
    masks = [torch.ones(c.out_channels, dtype=torch.bool) for c, _ in convs]
    records = []
    for level in (0, *levels):
        if level:
            # Prune by the weights the previous level trained, then rewind.
            masks = filter_masks(model, level / 100.0, masks, score)
        rewind(model, initial_state, masks)
        label = f"{config.activation} s{config.seed} {level}%"
        outcome = _train_level(model, masks, config, data, device, log, label)
        kept = sum(int(m.sum()) * c.weight[0].numel() for m, (c, _) in zip(masks, convs))
        records.append(
            {
                "level": level,
                "pruned_filters": pruned_counts(masks),
                "filters": [c.out_channels for c, _ in convs],
                "conv_weights_left": kept / conv_weights,
                **outcome,
            }
        )
        log(f"  {label}: test accuracy {outcome['test_accuracy']:.2f}%")
    return {
        "schema": SCHEMA_VERSION,
        "config": config.identity(),
        "levels": list(levels),
        "score": score,
        "train_size": len(data.train_x),
        "test_size": len(data.test_x),
        "torch": torch.__version__,
        "device": str(device),
        "results": records,
    }


# ---------------------------------------------------------------- report


def results_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: test accuracy (mean over seeds) per pruning level and activation."""
    by_act: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_act.setdefault(r["config"]["activation"], []).append(r)
    acts = list(by_act)
    levels = [rec["level"] for rec in runs[0]["results"]]
    labels = [activations.LABELS.get(a, a) for a in acts]
    lines = [
        "| pruned filters (%) | filter weights left | " + " | ".join(labels) + " |",
        "|---:|---:|" + "---:|" * len(acts),
    ]
    for i, level in enumerate(levels):
        left = runs[0]["results"][i]["conv_weights_left"]
        cells = []
        for a in acts:
            accs = [r["results"][i]["test_accuracy"] for r in by_act[a] if i < len(r["results"])]
            mean = sum(accs) / len(accs)
            spread = (
                f" ± {math.sqrt(sum((x - mean) ** 2 for x in accs) / len(accs)):.2f}"
                if len(accs) > 1
                else ""
            )
            cells.append(f"{mean:.2f}{spread}")
        lines.append(f"| {level} | {100 * left:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pruning(runs: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    """Test accuracy against pruned filters, one line per activation (like the paper's Fig. 4)."""
    from .plots import require_matplotlib

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4))
    by_act: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_act.setdefault(r["config"]["activation"], []).append(r)
    for act, group in by_act.items():
        levels = [rec["level"] for rec in group[0]["results"]]
        accs = torch.tensor(
            [[rec["test_accuracy"] for rec in r["results"]] for r in group], dtype=torch.float64
        )
        mean, std = accs.mean(0), accs.std(0, correction=0)
        ax.plot(levels, mean.tolist(), marker="o", label=activations.LABELS.get(act, act))
        if len(group) > 1:
            ax.fill_between(levels, (mean - std).tolist(), (mean + std).tolist(), alpha=0.2)
    ax.set_xlabel("pruned filters per convolution (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m pau.experiments prune``'s options."""
    from .cli import _non_negative_float, _positive_float, _positive_int

    p = argparse.ArgumentParser(
        prog="python -m pau.experiments prune",
        description=(
            "Lottery-ticket filter pruning as in the PAU paper (Sec. 4.4, appendix A.4.3):\n"
            "train, prune the lowest-scoring filters of every convolution, rewind to the\n"
            "initial weights, retrain, for each pruning level. See prune.py for the choices\n"
            "the paper leaves open."
        ),
        epilog="Example:  python -m pau.experiments prune --model vgg8_bn --dataset cifar10 "
        "--data-dir DIR --activations pau,leaky_relu --epochs 400 --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=MODELS, default="vgg8", help="default: vgg8")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="default: mnist")
    p.add_argument(
        "--activations",
        default="pau,leaky_relu",
        metavar="LIST",
        help="comma-separated (default: pau,leaky_relu, the paper's PAU against the best "
        "baseline of VGG-8)",
    )
    p.add_argument(
        "--levels",
        default=",".join(str(v) for v in PAPER_LEVELS),
        metavar="LIST",
        help="pruned share of each convolution's filters, percent, increasing "
        "(default: 10,...,60 as in the paper); level 0 is always trained first",
    )
    p.add_argument("--score", choices=SCORES, default="abs", help="filter score (see prune.py)")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help="epochs per level (default: the paper's, 100; 400 for cifar10)",
    )
    p.add_argument("--seeds", type=_positive_int, default=1, help="default: 1 (paper: one run)")
    p.add_argument(
        "--protocol",
        choices=("paper", "authors", "cifar10"),
        default="paper",
        help="training presets as in the main command (cifar10: appendix A.4.1's schedule)",
    )
    p.add_argument("--optimizer", choices=("adam", "sgd"))
    p.add_argument("--lr", type=_positive_float)
    p.add_argument("--momentum", type=_non_negative_float)
    p.add_argument("--weight-decay", type=_non_negative_float)
    p.add_argument("--lr-decay", type=_positive_float, metavar="GAMMA")
    p.add_argument("--activation-lr", type=_positive_float)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--subset", type=_positive_int, help="training images (fixed choice)")
    p.add_argument("--pau-variant", choices=("safe", "abs_sum"))
    p.add_argument("--rotate", type=_non_negative_float, metavar="DEG")
    p.add_argument("--clip-grad-norm", type=_positive_float, metavar="MAX")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    p.add_argument("--no-plots", action="store_true")
    return p


def _parse_levels(text: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        levels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--levels: expected comma-separated integers, got {text!r}")
    if not levels or any(not 0 < v < 100 for v in levels) or levels != sorted(set(levels)):
        parser.error(f"--levels: expected increasing percentages in 1..99, got {text!r}")
    return levels


def _run_name(config: RunConfig, levels: Sequence[int], score: str) -> str:
    # config.name() ends in a hash of the whole configuration, so runs of other
    # protocols or learning rates in the same --out do not overwrite each other.
    return f"prune_{config.name()}_{score}_{'-'.join(str(v) for v in levels)}"


def main(argv: list[str] | None = None) -> int:
    """Run the pruning experiment; returns the exit code (0, 1 data missing, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    levels = _parse_levels(args.levels, parser)
    names = [a.strip() for a in args.activations.split(",") if a.strip()]
    avail = activations.available()
    bad = [a for a in names if a not in avail]
    if bad or not names:
        parser.error(
            f"activation(s) {', '.join(bad) or '(none)'} unknown or not available "
            f"(available: {','.join(avail)})"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch has no CUDA device available")
    from .cli import _SCHEDULE_DEFAULTS, PROTOCOLS, run_config

    # The main command's presets: the protocol, then the plain defaults, fill what is unset.
    for key, value in (_SCHEDULE_DEFAULTS | PROTOCOLS[args.protocol]).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    epochs = args.epochs or paper.paper_epochs(args.dataset)
    lr = args.lr or OPTIMIZER_DEFAULTS[args.optimizer]["lr"]
    momentum = (
        args.momentum
        if args.momentum is not None
        else OPTIMIZER_DEFAULTS[args.optimizer]["momentum"]
    )
    try:
        data = load_dataset(args.dataset, args.data_dir, args.subset)
    except DataUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in range(args.seeds):
        for act in names:
            config = run_config(args, act, seed, epochs=epochs, lr=lr, momentum=momentum)
            path = runs_dir / f"{_run_name(config, levels, args.score)}.json"
            cached = load_result(path)
            if (
                cached is not None
                and cached.get("schema") == SCHEMA_VERSION
                and cached.get("config") == config.identity()
            ):
                print(f"cached: {path}")
                runs.append(cached)
                continue
            print(f"{act}, seed {seed}: levels 0,{','.join(map(str, levels))}%")
            result = lottery_ticket(config, data, levels, device, args.score)
            _write_json(path, result)
            runs.append(result)
    title = (
        f"{MODEL_LABELS.get(args.model, args.model)} on "
        f"{DATASET_LABELS.get(args.dataset, args.dataset)}: lottery-ticket filter pruning, "
        f"{epochs} epochs per level, {args.seeds} seed(s)"
    )
    table = results_table(runs)
    text = [
        f"# {title}",
        "",
        f"{len(data.train_x):,} training / {len(data.test_x):,} test images; test accuracy (%) "
        f"after training at each level (score: {args.score}; mean ± population std over seeds).",
        "",
        table,
        "",
    ]
    report_dir = args.out / f"prune_{args.model}_{args.dataset}_e{epochs}"
    report_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_plots:
        try:
            plot_pruning(runs, title, report_dir / "pruning.png")
            text.append("![accuracy against pruning](pruning.png)")
        except RuntimeError as err:  # PlotsUnavailableError
            print(f"note: {err}; skipping the plot", file=sys.stderr)
    (report_dir / "results.md").write_text("\n".join(text) + "\n")
    (report_dir / "summary.json").write_text(
        json.dumps({"setting": vars(args), "runs": runs}, indent=1, default=str)
    )
    print()
    print(table)
    print(f"\nResults in {report_dir} and {runs_dir}")
    return 0
