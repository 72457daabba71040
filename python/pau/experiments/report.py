"""Results tables in the form of the PAU paper's Table 2, with its numbers beside ours."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import paper
from .activations import ALL_NAMES, LABELS

MODEL_LABELS = {
    "lenet": "LeNet",
    "vgg8": "VGG-8",
    "vgg8_bn": "VGG-8 (BN, A.4.2)",
    "mobilenetv2": "MobileNetV2",
    "resnet101": "ResNet-101",
    "densenet121": "DenseNet-121",
}
DATASET_LABELS = {
    "fashion-mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "digits": "digits (8x8)",
    "cifar10": "CIFAR-10",
}


@dataclass
class Summary:
    """One activation's runs (one per seed) reduced to the paper's statistics."""

    activation: str
    seeds: list[int]
    final_accuracies: list[float]
    mean: float
    std: float  # population std (ddof=0) over seeds
    best: float
    final_train_loss: float  # mean over seeds
    train_images_per_s: float  # median over all epochs of all seeds
    parameters: int
    activation_parameters: int
    epochs: int
    diverged: int
    best_run: dict[str, Any]


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Summary]:
    """Group finished runs by activation (table order) and reduce each group."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.get("epochs"):
            groups.setdefault(r["config"]["activation"], []).append(r)
    out: dict[str, Summary] = {}
    for act in sorted(groups, key=lambda a: ALL_NAMES.index(a) if a in ALL_NAMES else 99):
        runs = sorted(groups[act], key=lambda r: r["config"]["seed"])
        finals = [r["epochs"][-1]["test_accuracy"] for r in runs]
        speeds = [e["train_images_per_s"] for r in runs for e in r["epochs"]]
        best_run = max(runs, key=lambda r: r["epochs"][-1]["test_accuracy"])
        out[act] = Summary(
            activation=act,
            seeds=[r["config"]["seed"] for r in runs],
            final_accuracies=finals,
            mean=statistics.fmean(finals),
            std=statistics.pstdev(finals),
            best=max(finals),
            final_train_loss=statistics.fmean(r["epochs"][-1]["train_loss"] for r in runs),
            train_images_per_s=statistics.median(speeds),
            parameters=runs[0]["parameters"]["total"],
            activation_parameters=runs[0]["parameters"]["activation"],
            epochs=min(len(r["epochs"]) for r in runs),
            diverged=sum(r.get("status") == "diverged" for r in runs),
            best_run=best_run,
        )
    return out


def plural(count: int, word: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _setting_line(results: Sequence[dict[str, Any]]) -> str:
    cfg = results[0]["config"]
    opt = (
        f"Adam lr {cfg['lr']:g}"
        if cfg["optimizer"] == "adam"
        else (f"SGD lr {cfg['lr']:g} momentum {cfg['momentum']:g}")
    )
    extras = ""
    if cfg.get("rotate"):
        extras += f", random rotation ±{cfg['rotate']:g}°"
    if cfg.get("clip_grad_norm"):
        extras += f", gradient norm clipped at {cfg['clip_grad_norm']:g}"
    if cfg.get("lr_decay", 1.0) != 1.0:
        extras += f", learning rate x{cfg['lr_decay']:g} per epoch"
    if cfg.get("weight_decay"):
        extras += f", weight decay {cfg['weight_decay']:g} (not on activations)"
    if cfg.get("activation_lr") is not None:
        extras += f", activations' constant learning rate {cfg['activation_lr']:g}"
    return (
        f"{MODEL_LABELS.get(cfg['model'], cfg['model'])} on "
        f"{DATASET_LABELS.get(cfg['dataset'], cfg['dataset'])} "
        f"({results[0]['train_size']:,} training / {results[0]['test_size']:,} test images, "
        f"{'32x32' if cfg['dataset'] == 'cifar10' else 'resized to 32x32'}), "
        f"{opt}, batch {cfg['batch_size']}, "
        f"{plural(cfg['epochs'], 'epoch')}, "
        f"PAU variant `{cfg['pau_variant']}`{extras}"
    )


def _differences_from_paper(results: Sequence[dict[str, Any]]) -> list[str]:
    cfg = results[0]["config"]
    out = []
    epochs = paper.paper_epochs(cfg["dataset"])
    if cfg["epochs"] != epochs:
        out.append(f"{plural(cfg['epochs'], 'epoch')} instead of {epochs}")
    seeds = len({r["config"]["seed"] for r in results})
    if seeds != paper.PAPER_SEEDS:
        out.append(f"{plural(seeds, 'seed')} instead of {paper.PAPER_SEEDS}")
    if cfg["subset"]:
        out.append(f"{results[0]['train_size']:,} training images, not the full set")
    return out


def accuracy_table(results: Sequence[dict[str, Any]], summaries: dict[str, Summary]) -> str:
    """Markdown: ours (mean ± std, best) beside the paper's Table 2 for the same setting."""
    cfg = results[0]["config"]
    model, dataset = cfg["model"], cfg["dataset"]
    has_paper = any(paper.published(model, dataset, a) for a in summaries)
    lines = [
        f"Test accuracy (%) after the last epoch: {_setting_line(results)}.",
        "",
    ]
    head = "| Activation | seeds | ours: mean ± std | ours: best | final train loss |"
    rule = "|---|---:|---:|---:|---:|"
    if has_paper:
        head += " paper: mean ± std | paper: best | ours − paper (mean) |"
        rule += "---:|---:|---:|"
    lines += [head, rule]
    for act, s in summaries.items():
        note = f" ({s.diverged} diverged)" if s.diverged else ""
        spread = f" ± {s.std:.2f}" if len(s.seeds) > 1 else ""
        row = (
            f"| {LABELS.get(act, act)}{note} | {len(s.seeds)} | {s.mean:.2f}{spread} | "
            f"{s.best:.2f} | {s.final_train_loss:.4f} |"
        )
        if has_paper:
            p = paper.published(model, dataset, act)
            row += (
                f" {p.mean:.2f} ± {p.std:.2f} | {p.best:.2f} | {s.mean - p.mean:+.2f} |"
                if p
                else " — | — | — |"
            )
        lines.append(row)
    lines.append("")
    lines.append(
        "std is the population standard deviation over seeds; best is the best seed's "
        "final accuracy."
    )
    if has_paper:
        lines.append(
            f"Paper: Molina et al. 2020, Table 2 ({paper.PAPER_EPOCHS} epochs, "
            f"{paper.PAPER_SEEDS} seeds, full training set)."
        )
        differences = _differences_from_paper(results)
        if differences:
            lines.append(
                f"This run differs from the paper's protocol ({'; '.join(differences)}): "
                "the paper's columns are a reference point, not a like-for-like comparison."
            )
    return "\n".join(lines)


def speed_table(summaries: dict[str, Summary], side_by_side: dict[str, float] | None = None) -> str:
    """Markdown: parameters and training throughput per activation, overhead relative to ReLU."""
    lines = [
        "| Activation | parameters (in activations) | train img/s (runs, median epoch) |"
        + (" train img/s (side by side) | step time vs ReLU |" if side_by_side else ""),
        "|---|---:|---:|" + ("---:|---:|" if side_by_side else ""),
    ]
    relu = (side_by_side or {}).get("relu")
    for act, s in summaries.items():
        row = (
            f"| {LABELS.get(act, act)} | {s.parameters:,} ({s.activation_parameters}) | "
            f"{s.train_images_per_s:,.0f} |"
        )
        if side_by_side:
            ips = side_by_side.get(act)
            if ips is None:
                row += " — | — |"
            else:
                overhead = f"{relu / ips - 1:+.1%}" if relu else "—"
                row += f" {ips:,.0f} | {overhead} |"
        lines.append(row)
    if side_by_side:
        lines += [
            "",
            "Side by side: every activation's model trains a few batches in turn, several "
            "rounds, fastest round kept; the last column is the extra time per training step "
            "relative to ReLU.",
        ]
    return "\n".join(lines)


def step_overhead(side_by_side: dict[str, float]) -> dict[str, float]:
    """Each activation's extra training-step time over ReLU, as a fraction (for JSON)."""
    relu = side_by_side.get("relu")
    if not relu:
        return {}
    return {a: relu / ips - 1 for a, ips in side_by_side.items() if a != "relu"}
