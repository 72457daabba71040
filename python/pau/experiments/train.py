"""One training run (model, dataset, activation, seed): train, evaluate, record, resume.

A run writes ``<out>/runs/<name>.json`` after every epoch. A finished run
with the same configuration is skipped; an interrupted one continues from
its last checkpoint (``<name>.ckpt.pt``, removed when the run finishes), so
results are the same whether or not a run was interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from . import activations
from .data import Dataset
from .models import build_model, count_parameters

SCHEMA_VERSION = 1
EVAL_BATCH_SIZE = 1024

# The paper's learning parameters (appendix A.3.2).
OPTIMIZER_DEFAULTS = {"adam": {"lr": 0.002, "momentum": 0.0}, "sgd": {"lr": 0.01, "momentum": 0.5}}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (the device does not: it only changes speed)."""

    model: str
    dataset: str
    activation: str
    seed: int
    epochs: int
    optimizer: str = "adam"
    lr: float = 0.002
    momentum: float = 0.0
    batch_size: int = 256
    subset: int | None = None
    pau_variant: str = "safe"
    # Neither is in the paper's text; the authors' published script rotates
    # training images by up to 30 degrees and clips the gradient norm at 5.
    rotate: float = 0.0
    clip_grad_norm: float | None = None
    # The paper's CIFAR-10 schedule (appendix A.4.1): weight decay (never on the
    # activations' parameters), the weights' learning rate multiplied by
    # lr_decay after every epoch, and, if activation_lr is set, a constant
    # learning rate of its own for the activations' parameters.
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    activation_lr: float | None = None

    def identity(self) -> dict[str, Any]:
        """The fields that name a run: all, but the schedule fields only when not at default.

        Runs recorded before those fields existed keep their names and cache entries.
        """
        out = dataclasses.asdict(self)
        for field in _SCHEDULE_FIELDS:
            if out[field.name] == field.default:
                del out[field.name]
        return out

    def name(self) -> str:
        """File stem: readable fields plus a hash of the whole configuration."""
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        size = f"_n{self.subset}" if self.subset else ""
        return (
            f"{self.model}_{self.dataset}{size}_{self.activation}_{self.optimizer}"
            f"_e{self.epochs}_seed{self.seed}_{digest}"
        )


_SCHEDULE_FIELDS = tuple(
    f
    for f in dataclasses.fields(RunConfig)
    if f.name in ("weight_decay", "lr_decay", "activation_lr")
)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    # Write-then-rename so an interruption never leaves a half-written result.
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def load_result(path: Path) -> dict[str, Any] | None:
    """A run's JSON, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_finished(result: dict[str, Any] | None, config: RunConfig) -> bool:
    """Whether ``result`` is a completed (or diverged) run of exactly ``config``."""
    return (
        result is not None
        and result.get("schema") == SCHEMA_VERSION
        and result.get("status") in ("finished", "diverged")
        and result.get("config") == config.identity()
    )


def activation_states(model: nn.Module) -> list[dict[str, list]]:
    """The activation layers' parameters and buffers as JSON-ready nested lists."""
    return [
        {k: v.detach().cpu().double().tolist() for k, v in m.state_dict().items()}
        for m in model.activation_modules()
    ]


# ---------------------------------------------------------------------------
# PWLU realignment hook (Zhou et al. 2021; README, "Piecewise Linear Unit").
# Phase I: for the first PWLU_STATISTICS_EPOCHS epochs the PWLU layers record
# running mean/std of their inputs; then they are realigned (bounds at
# mean -/+ 3 std, points on ReLU) and phase II trains everything.
# Runs only when the installed pau provides both functions below; if their
# final signatures differ, these two calls are the only place to adapt.
# ---------------------------------------------------------------------------
PWLU_STATISTICS_EPOCHS = 1


def _pwlu_hooks(model: nn.Module) -> Any:
    """The pau module if ``model`` has PWLU layers and pau offers the realignment API."""
    try:
        import pau
    except ImportError:
        return None
    cls = getattr(pau, "PWLU", None)
    if cls is None or not (
        hasattr(pau, "pwlu_collect_statistics") and hasattr(pau, "pwlu_realign")
    ):
        return None
    return pau if any(isinstance(m, cls) for m in model.modules()) else None


def pwlu_epoch_start(model: nn.Module, epoch: int) -> None:
    """Phase I begins: PWLU layers start collecting input statistics."""
    pau = _pwlu_hooks(model)
    if pau is not None and epoch == 0:
        pau.pwlu_collect_statistics(model)


def pwlu_epoch_end(model: nn.Module, epoch: int) -> None:
    """Phase I ends: realign PWLU layers to the statistics they collected."""
    pau = _pwlu_hooks(model)
    if pau is not None and epoch == PWLU_STATISTICS_EPOCHS - 1:
        pau.pwlu_realign(model)


# ---------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` batches, or None (no tqdm, or disabled)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy in %) of ``model`` on (x, y)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), EVAL_BATCH_SIZE):
        logits = model(x[start : start + EVAL_BATCH_SIZE])
        target = y[start : start + EVAL_BATCH_SIZE]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return loss_sum / len(x), 100.0 * correct / len(x)


def rotate_batch(
    x: Tensor, degrees: float, background: float | Sequence[float], gen: torch.Generator
) -> Tensor:
    """Rotate each image by its own random angle in [-degrees, degrees] (bilinear).

    ``background`` (one value, or one per channel) fills the corners.
    """
    if not isinstance(background, (int, float)):
        background = torch.tensor(background, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    angles = (torch.rand(len(x), generator=gen) * 2 - 1) * math.radians(degrees)
    cos, sin = angles.cos(), angles.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], 1).reshape(-1, 2, 3)
    grid = nn.functional.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    # grid_sample fills outside the image with 0, so shift black to 0 first.
    out = nn.functional.grid_sample(x - background, grid, align_corners=False)
    return out + background


def _make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam or SGD; with weight decay or an activation learning rate, two parameter groups.

    Group 0 holds the weights (learning rate ``lr``, decayed per epoch by
    :func:`set_epoch_lr`, weight decay), group 1 the activations' parameters
    (``activation_lr`` or ``lr``, no weight decay). Without either option all
    parameters are one group, as in the runs made before they existed.
    """
    if config.optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    params: Any = list(model.parameters())
    if config.weight_decay or config.activation_lr is not None:
        act_ids = {id(p) for m in model.activation_modules() for p in m.parameters()}
        params = [
            {
                "params": [p for p in params if id(p) not in act_ids],
                "weight_decay": config.weight_decay,
            },
            {
                "params": [p for p in params if id(p) in act_ids],
                "weight_decay": 0.0,
                "lr": config.activation_lr if config.activation_lr is not None else config.lr,
            },
        ]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: RunConfig, epoch: int) -> None:
    """Learning rates for 0-based ``epoch``: ``lr * lr_decay**epoch`` for the weights.

    The activations' group keeps ``activation_lr`` when that is set (the paper's
    constant PAU learning rate) and decays with the weights otherwise. Set from
    the epoch number, so a resumed run gets the same rates.
    """
    if config.lr_decay == 1.0:
        return
    factor = config.lr_decay**epoch
    for i, group in enumerate(optimizer.param_groups):
        if i == 1 and config.activation_lr is not None:
            group["lr"] = config.activation_lr
        else:
            group["lr"] = config.lr * factor


def _environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import pau

        env["pau"] = getattr(pau, "__version__", "unknown")
    except ImportError:
        env["pau"] = None
    return env


def run(
    config: RunConfig,
    data: Dataset,
    out_dir: Path,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate one run, or return its cached result if it already finished.

    Returns the run's result dictionary (the content of its JSON file), with
    ``"cached": True`` when nothing was trained.
    """
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    json_path = runs_dir / f"{config.name()}.json"
    ckpt_path = runs_dir / f"{config.name()}.ckpt.pt"
    cached = load_result(json_path)
    if is_finished(cached, config):
        assert cached is not None
        cached["cached"] = True
        return cached

    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        lambda: activations.make(config.activation, config.pau_variant),
        in_channels=data.channels,
    ).to(device)
    total_params, act_params = count_parameters(model)
    initial_states = activation_states(model)
    optimizer = _make_optimizer(config, model)
    # Batch order comes from its own generator so that it depends only on the
    # seed, not on how much randomness the model or the activations consumed.
    order_gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []

    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt.get("config") == config.identity():
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"])
            order_gen.set_state(ckpt["order_rng"])
            if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
            history = ckpt["history"]
            initial_states = ckpt["initial_states"]
            log(f"  resuming {config.name()} after epoch {len(history)}")

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n = len(train_x)
    n_batches = math.ceil(n / config.batch_size)
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "name": config.name(),
        "config": config.identity(),
        "status": "running",
        "dataset_source": data.source,
        "train_size": n,
        "test_size": len(test_x),
        "parameters": {"total": total_params, "activation": act_params},
        "environment": _environment(device),
        "epochs": history,
        "initial_activation_states": initial_states,
    }

    for epoch in range(len(history), config.epochs):
        set_epoch_lr(optimizer, config, epoch)
        pwlu_epoch_start(model, epoch)
        model.train()
        perm = torch.randperm(n, generator=order_gen).to(device)
        bar = _progress(n_batches, f"{config.activation} s{config.seed} ep{epoch + 1}", progress)
        loss_sum, correct, diverged = torch.zeros((), device=device), 0, False
        correct_t = torch.zeros((), device=device, dtype=torch.long)
        _sync(device)
        start = time.perf_counter()
        for b in range(n_batches):
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = train_x[idx], train_y[idx]
            if config.rotate:
                xb = rotate_batch(xb, config.rotate, data.background, order_gen)
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            # Accumulate on the device: a .item() per batch would sync the GPU.
            loss_sum += loss.detach() * len(idx)
            correct_t += (logits.detach().argmax(1) == yb).sum()
            if bar is not None:
                bar.update(1)
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        _sync(device)
        train_time = time.perf_counter() - start
        if bar is not None:
            bar.close()
        pwlu_epoch_end(model, epoch)
        train_loss = loss_sum.item() / n
        correct = int(correct_t.item())
        diverged = not math.isfinite(train_loss)
        eval_start = time.perf_counter()
        test_loss, test_acc = evaluate(model, test_x, test_y)
        eval_time = time.perf_counter() - eval_start
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": 100.0 * correct / n,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "train_time_s": train_time,
                "eval_time_s": eval_time,
                "train_images_per_s": n / train_time,
            }
        )
        log(
            f"  {config.activation:>10} seed {config.seed} epoch {epoch + 1:>3}/{config.epochs}: "
            f"train loss {train_loss:.4f}, test acc {test_acc:6.2f}%, "
            f"{n / train_time:,.0f} img/s"
        )
        if diverged:
            log(f"  {config.name()}: training loss is not finite; stopping this run")
            break
        torch.save(
            {
                "config": config.identity(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "order_rng": order_gen.get_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
                "initial_states": initial_states,
            },
            ckpt_path,
        )
        _write_json(json_path, result)

    result["status"] = (
        "diverged" if history and not math.isfinite(history[-1]["train_loss"]) else "finished"
    )
    result["activation_states"] = activation_states(model)
    _write_json(json_path, result)
    ckpt_path.unlink(missing_ok=True)
    result["cached"] = False
    return result
