"""Training of the segmentation network on phantom data (``octguide train``; torch, ``[train]``).

Deterministic given the seed and the thread count: the data recipe is deterministic
(:mod:`models.training.data`), batches and augmentations come from one ``numpy.random.Generator``,
weights from ``torch.manual_seed``, and ``torch.use_deterministic_algorithms(True)`` is set.

Augmentation (per batch, on the model grid; geometry, speckle, noise level and artefacts also
vary in the phantom data themselves):

* rotation: a circular roll by any number of A-lines, and a mirror of the A-line order;
* gain and contrast: ``x * a + b`` with ``a`` in [0.75, 1.25], ``b`` in [-0.08, 0.08], then a
  gamma in [0.8, 1.25];
* noise: additive Gaussian, sigma in [0, 0.04], inside the imaged depth only.

Loss: soft cross-entropy on the soft class targets (:func:`models.training.targets.soft_class_targets`)
over the imaged depth, plus a soft Dice term over the classes (the plaque classes are rare),
binary cross-entropy on the per-A-line outputs and on the frame confidence.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.classes import ALineOutput, TissueClass
from models.network import NetworkConfig, SegNet
from models.training.data import VALIDATION_SEED_BASE, DataRecipe, FrameSet, load_or_build
from models.training.targets import hard_class_map, soft_class_targets

log = logging.getLogger(__name__)

DICE_WEIGHT = 0.5
ALINE_WEIGHT = 0.5
CONFIDENCE_WEIGHT = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded in the checkpoint and the manifest).

    Attributes
    ----------
    seed : int
        Seed of weights, batch order and augmentation.
    epochs : int
        Passes over the training frames.
    batch_size : int
        Frames per step.
    learning_rate : float
        Peak AdamW learning rate (one-cycle schedule).
    weight_decay : float
        AdamW weight decay.
    threads : int
        torch intra-op threads (results are reproducible for a fixed count).
    train : DataRecipe
        Training data.
    validation : DataRecipe
        Validation data for the curves (seeds disjoint from training and evaluation).
    network : NetworkConfig
        Architecture.
    """

    seed: int = 0
    epochs: int = 14
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    threads: int = 2
    train: DataRecipe = field(default_factory=DataRecipe)
    validation: DataRecipe = field(
        default_factory=lambda: DataRecipe(seed_base=VALIDATION_SEED_BASE, n_pullbacks=14)
    )
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["train"] = self.train.as_dict()
        d["validation"] = self.validation.as_dict()
        d["network"] = self.network.as_dict()
        return d


@dataclass
class Batch:
    """One batch as torch tensors (inputs ``(B, 1, K, J)``, targets as in :mod:`models.training.targets`)."""

    x: torch.Tensor
    classes: torch.Tensor
    mask: torch.Tensor
    aline: torch.Tensor
    confidence: torch.Tensor


def make_batch(
    frames: FrameSet, index: np.ndarray, rng: np.random.Generator | None, device: torch.device
) -> Batch:
    """Stack frames ``index`` into a batch, augmented when ``rng`` is given (module docstring)."""
    x = frames.inputs[index].astype(np.float32)
    tissue = frames.tissue[index]
    lumen = frames.lumen_px[index]
    eel = frames.eel_px[index]
    aline = frames.aline[index]
    b, k, j = x.shape
    imaged = np.broadcast_to(
        np.arange(j)[None, None, :] <= frames.depth_limit_px[index][:, None, None], (b, k, j)
    )
    if rng is not None:
        shift = rng.integers(0, k, b)
        mirror = rng.random(b) < 0.5
        rows = (np.arange(k)[None, :] - shift[:, None]) % k
        rows = np.where(mirror[:, None], rows[:, ::-1], rows)
        x = np.take_along_axis(x, rows[:, :, None], 1)
        tissue = np.take_along_axis(tissue, rows[:, :, None], 1)
        lumen = np.take_along_axis(lumen, rows, 1)
        eel = np.take_along_axis(eel, rows, 1)
        aline = np.take_along_axis(aline, rows[:, None, :], 2)
        gain = rng.uniform(0.75, 1.25, (b, 1, 1)).astype(np.float32)
        offset = rng.uniform(-0.08, 0.08, (b, 1, 1)).astype(np.float32)
        gamma = rng.uniform(0.8, 1.25, (b, 1, 1)).astype(np.float32)
        sigma = rng.uniform(0.0, 0.04, (b, 1, 1)).astype(np.float32)
        noisy = np.clip(x * gain + offset, 0.0, 1.0) ** gamma
        noisy = noisy + sigma * rng.standard_normal(x.shape, dtype=np.float32)
        x = np.where(imaged, np.clip(noisy, 0.0, 1.0), x)
    classes = soft_class_targets(tissue, lumen, eel)
    return Batch(
        x=torch.from_numpy(np.ascontiguousarray(x[:, None])).to(device),
        classes=torch.from_numpy(classes).to(device),
        mask=torch.from_numpy(imaged.astype(np.float32)).to(device),
        aline=torch.from_numpy(np.ascontiguousarray(aline)).to(device),
        confidence=torch.from_numpy(frames.confidence[index][:, None]).to(device),
    )


def losses(net: SegNet, batch: Batch) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted sum (``"total"``) for one batch."""
    class_logits, aline_logits, confidence_logit = net(batch.x)
    log_p = F.log_softmax(class_logits, 1)
    mask = batch.mask[:, None]
    cross_entropy = -(batch.classes * log_p * mask).sum() / mask.sum().clamp_min(1.0)
    p = log_p.exp() * mask
    target = batch.classes * mask
    inter = (p * target).sum((0, 2, 3))
    dice = (2 * inter + 1.0) / (p.sum((0, 2, 3)) + target.sum((0, 2, 3)) + 1.0)
    terms = {
        "ce": cross_entropy,
        "dice": 1.0 - dice.mean(),
        "aline": F.binary_cross_entropy_with_logits(aline_logits, batch.aline),
        "confidence": F.binary_cross_entropy_with_logits(confidence_logit, batch.confidence),
    }
    terms["total"] = (
        terms["ce"]
        + DICE_WEIGHT * terms["dice"]
        + ALINE_WEIGHT * terms["aline"]
        + CONFIDENCE_WEIGHT * terms["confidence"]
    )
    return terms


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return float(2.0 * np.logical_and(pred, truth).sum() / total) if total else float("nan")


@torch.no_grad()
def validate(
    net: SegNet, frames: FrameSet, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Validation loss and quick model-grid metrics (polar pixel Dice, A-line IoU)."""
    net.eval()
    sums: dict[str, float] = {}
    predictions, truths, gw_pred, gw_true = [], [], [], []
    for start in range(0, len(frames), batch_size):
        index = np.arange(start, min(start + batch_size, len(frames)))
        batch = make_batch(frames, index, None, device)
        for name, value in losses(net, batch).items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(index)
        class_logits, aline_logits, _ = net(batch.x)
        predictions.append(class_logits.argmax(1).cpu().numpy().astype(np.uint8))
        truths.append(
            hard_class_map(frames.tissue[index], frames.lumen_px[index], frames.eel_px[index])
        )
        gw_pred.append(aline_logits[:, ALineOutput.GUIDEWIRE].cpu().numpy() > 0)
        gw_true.append(frames.aline[index, ALineOutput.GUIDEWIRE] > 0.5)
    pred, truth = np.concatenate(predictions), np.concatenate(truths)
    imaged = np.arange(pred.shape[2])[None, None, :] <= frames.depth_limit_px[:, None, None]
    result = {f"val_{k}": v / len(frames) for k, v in sums.items()}
    for cls in (TissueClass.LUMEN, TissueClass.FIBROUS, TissueClass.LIPID, TissueClass.CALCIUM):
        result[f"val_dice_{cls.name.lower()}"] = _dice(
            (pred == cls) & imaged, (truth == cls) & imaged
        )
    gp, gt = np.concatenate(gw_pred), np.concatenate(gw_true)
    result["val_iou_guidewire"] = float((gp & gt).sum() / max((gp | gt).sum(), 1))
    net.train()
    return result


def plot_curves(history: list[dict], path: Path) -> None:
    """Write the loss and metric curves per epoch as a PNG (OpenCV drawing, no plotting library).

    Left panel: training and validation loss (log scale); right panel: validation metrics.
    """
    panels = [
        ("loss (log10)", [("train_total", (200, 80, 0)), ("val_total", (0, 0, 220))], True),
        (
            "validation metric",
            [
                ("val_dice_lumen", (0, 0, 0)),
                ("val_dice_fibrous", (0, 160, 0)),
                ("val_dice_lipid", (0, 180, 220)),
                ("val_dice_calcium", (160, 0, 160)),
                ("val_iou_guidewire", (220, 120, 0)),
            ],
            False,
        ),
    ]
    width, height, margin = 520, 360, 50
    image = np.full((height, 2 * width, 3), 255, np.uint8)
    epochs = np.array([h["epoch"] for h in history], dtype=np.float64)
    for p, (title, series, log_scale) in enumerate(panels):
        x0 = p * width
        values = {
            name: np.array([h.get(name, np.nan) for h in history], dtype=np.float64)
            for name, _ in series
        }
        if log_scale:
            values = {k: np.log10(np.maximum(v, 1e-6)) for k, v in values.items()}
        finite = np.concatenate([v[np.isfinite(v)] for v in values.values()] or [np.zeros(1)])
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if not log_scale:
            lo, hi = min(lo, 0.5), 1.0
        hi = hi if hi > lo else lo + 1.0
        span = max(epochs.max() - epochs.min(), 1.0) if epochs.size else 1.0

        def point(
            e: float, v: float, x0: int = x0, lo: float = lo, hi: float = hi, span: float = span
        ):
            return (
                int(x0 + margin + (e - epochs.min()) / span * (width - 2 * margin)),
                int(height - margin - (v - lo) / (hi - lo) * (height - 2 * margin)),
            )

        cv2.rectangle(
            image, (x0 + margin, margin), (x0 + width - margin, height - margin), (0, 0, 0), 1
        )
        cv2.putText(
            image, title, (x0 + margin, margin - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1
        )
        cv2.putText(
            image, f"{hi:.3g}", (x0 + 2, margin + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1
        )
        cv2.putText(
            image,
            f"{lo:.3g}",
            (x0 + 2, height - margin),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 0, 0),
            1,
        )
        cv2.putText(
            image,
            "epoch",
            (x0 + width // 2 - 20, height - 15),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
        )
        for s, (name, colour) in enumerate(series):
            v = values[name]
            pts = [point(e, y) for e, y in zip(epochs, v) if np.isfinite(y)]
            if len(pts) > 1:
                cv2.polylines(image, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
            cv2.putText(
                image,
                name,
                (x0 + margin + 5, margin + 15 + 14 * s),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                colour,
                1,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def train(
    config: TrainConfig,
    out_dir: Path,
    cache_dir: Path | None = None,
    name: str = "octseg",
    device: str = "auto",
) -> dict:
    """Train the network and write ``<name>.pt``, ``<name>.curve.png`` and ``<name>.history.json``.

    Parameters
    ----------
    config : TrainConfig
        The run.
    out_dir : pathlib.Path
        Where the checkpoint, curve and history go.
    cache_dir : pathlib.Path, optional
        Cache of generated phantom frames (keyed by recipe); None regenerates.
    name : str
        File stem.
    device : str
        "auto" (CUDA when torch sees a GPU, else CPU), "cpu" or "cuda".

    Returns
    -------
    dict
        Summary: wall times (data, training), frames, final validation metrics, paths.
    """
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(config.threads)
    target = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    train_frames = load_or_build(config.train, cache_dir)
    val_frames = load_or_build(config.validation, cache_dir)
    data_s = time.perf_counter() - start
    log.info(
        "data: %d training frames, %d validation frames in %.0f s",
        len(train_frames),
        len(val_frames),
        data_s,
    )

    net = SegNet(config.network).to(target)
    k, j = config.train.grid.n_alines, config.train.grid.n_depth
    if k % net.stride or j % net.stride:
        raise ValueError(f"grid {k} x {j} is not a multiple of the network stride {net.stride}")
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(train_frames) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.15,
    )
    rng = np.random.default_rng(config.seed)
    history: list[dict] = []
    train_start = time.perf_counter()
    net.train()
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(train_frames))
        sums: dict[str, float] = {}
        for step in range(steps_per_epoch):
            batch = make_batch(
                train_frames,
                order[step * config.batch_size : (step + 1) * config.batch_size],
                rng,
                target,
            )
            terms = losses(net, batch)
            optimiser.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimiser.step()
            schedule.step()
            for name_, value in terms.items():
                sums[name_] = sums.get(name_, 0.0) + float(value.detach())
            if (step + 1) % 50 == 0:
                log.info(
                    "epoch %d/%d step %d/%d loss %.4f (%.0f s)",
                    epoch,
                    config.epochs,
                    step + 1,
                    steps_per_epoch,
                    sums["total"] / (step + 1),
                    time.perf_counter() - train_start,
                )
        record = {
            "epoch": epoch,
            **{f"train_{k_}": v / steps_per_epoch for k_, v in sums.items()},
            **validate(net, val_frames, 2 * config.batch_size, target),
            "elapsed_s": time.perf_counter() - train_start,
        }
        history.append(record)
        log.info(
            "epoch %d: train %.4f val %.4f lumen %.4f fibrous %.3f lipid %.3f calcium %.3f gw %.3f",
            epoch,
            record["train_total"],
            record["val_total"],
            record["val_dice_lumen"],
            record["val_dice_fibrous"],
            record["val_dice_lipid"],
            record["val_dice_calcium"],
            record["val_iou_guidewire"],
        )
        plot_curves(history, out_dir / f"{name}.curve.png")
    train_s = time.perf_counter() - train_start
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / f"{name}.pt"
    summary = {
        "data_s": round(data_s, 1),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "train_frames": len(train_frames),
        "validation_frames": len(val_frames),
        "parameters": sum(p.numel() for p in net.parameters()),
        "device": str(target),
        "torch": str(torch.__version__),
        "final": history[-1],
    }
    torch.save(
        {"state_dict": net.state_dict(), "config": config.as_dict(), "summary": summary}, checkpoint
    )
    (out_dir / f"{name}.history.json").write_text(
        json.dumps({"summary": summary, "history": history}, indent=1)
    )
    summary["checkpoint"] = str(checkpoint)
    return summary


def load_checkpoint(path: Path) -> tuple[SegNet, dict]:
    """The network (eval mode, CPU) and the stored config dict of a checkpoint."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    net = SegNet(NetworkConfig.from_dict(data["config"]["network"]))
    net.load_state_dict(data["state_dict"])
    return net.eval(), data
