"""``python -m trainer train``: two-phase MNN training (landmarks first, then all four losses).

Phase 1 minimises the heatmap loss alone; phase 2 all four losses of eq. 5, with a fresh Adam
(lr 1e-3) halved whenever the validation loss has not improved for 15 epochs; ``--anneal-epochs N``
instead takes the rate down a half cosine to ``--lr-floor`` over the run's last N epochs, which settles
the weights where a constant rate leaves held-out error swinging from epoch to epoch. A run resumed
with more epochs goes back to the plateau rate (kept in the checkpoint) until its next anneal;
``--anneal-from`` starts a resumed run's cosine lower than that rate, to settle a trained model
further without first knocking it out of its basin. The
data are shuffled once (seeded) and split 90/10 into train and validation. Every epoch replaces ``OUT/checkpoint.pt``
(everything ``--resume`` needs) and, when validation improves, ``OUT/best.pt`` (what export takes),
rewrites ``OUT/log.csv`` and redraws ``OUT/losses.png``.

``--synthetic`` adds generated faces (e.g. ``trainer.profile``'s turned heads) to the training side:
each epoch draws ``--synthetic-ratio`` synthetic faces per original training face, afresh.
``--synthetic-translation`` and ``--synthetic-scale`` widen the crop jitter of those faces alone: the
app's detector box on a real profile can sit a fifth of a crop off the face, and renders, whose
detector box matches their landmark box, never show that. Renders of validation faces never train: they
join validation (``trainer.validation``), whose loss chooses ``best.pt`` and whose pose MAE (validation
faces, and their renders by |yaw| band) is logged every epoch.

Pose (issue 22). ``--pose-labels fit`` labels 300W photographs by their 3D fit (``trainer.fit_labels``,
cached in ``OUT``), ``pnp`` by the per-crop PnP of before. ``--pose-head rot6d`` predicts a 6D rotation
trained with a geodesic loss (``trainer.rotation``); ``--init-from CKPT`` starts a new run folder from
another run's checkpoint (its epoch count and log go on), fitting a 6D head to an Euler head's predictions
(``trainer.head_init``). ``--encoder-only-epochs N`` runs phase 2 in blocks of N epochs that train the
encoder and its pose heads without running the decoder, each followed by one full epoch (the last epoch
is always full). ``--distill-weight`` adds full mode's landmark pose as a target for ``fc_pose``
(``trainer.distill``). A resumed run keeps the pose labels, head, encoder-only blocks and distillation
weight its checkpoint recorded unless told otherwise (older checkpoints: PnP labels, Euler head).
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app.core.crop import to_normalised
from app.core.model_io import normalise_crops
from trainer.augment import AugmentConfig, make_crop
from trainer.checkpoint import (LEGACY, compact_optimizer_state, expand_optimizer_state, load_checkpoint,
                                model_config, model_from_state, model_state, save_checkpoint)
from trainer.datasets.registry import FaceDataset, open_dataset
from trainer.distill import landmark_pose_targets
from trainer.fit_labels import CACHE_FILE, label_items
from trainer.head_init import to_rot6d_head
from trainer.losses import (LossWeights, heatmap_sigma, loss_heatmap, loss_pose, loss_pose_proj, loss_pose_rotation,
                            loss_visibility)
from trainer.mean_face import build_mean_face
from trainer.mnn import MNN, MNNOutput
from trainer.validation import pose_report, split_synthetic

if TYPE_CHECKING:
    import argparse

log = logging.getLogger(__name__)
TASKS = ("pose", "pose_proj", "heatmap", "visibility", "distill")
PLATEAU_EPOCHS = 15
HEAD_FIT_CROPS = 768
STICKY = {"pose_labels": "fit", "pose_head": "rot6d", "encoder_only_epochs": 0, "distill_weight": 0.0}
"""Options a resumed run takes from its checkpoint unless given, with their defaults for a new run."""


class CropDataset(Dataset):
    """Network-ready crops of faces from several datasets; augmented (seeded per epoch and item) or plain.

    ``synthetic`` faces join the ``items`` each epoch, ``synthetic_ratio`` of them per item, drawn
    afresh (seeded) by ``set_epoch``; they are augmented with ``synthetic_augment`` when given.
    """

    def __init__(self, items: list[tuple[FaceDataset, int]], size: int, mean_face: np.ndarray,
                 mean: tuple[float, ...], std: tuple[float, ...], augment: AugmentConfig | None, seed: int,
                 synthetic: list[tuple[FaceDataset, int]] | None = None, synthetic_ratio: float = 0.0,
                 synthetic_augment: AugmentConfig | None = None) -> None:
        self.base, self.synthetic = items, synthetic or []
        self.synthetic_augment = synthetic_augment or augment
        self.extra = round(synthetic_ratio * len(items)) if self.synthetic else 0
        self.size, self.mean_face = size, mean_face
        self.mean, self.std, self.augment, self.seed = np.array(mean), np.array(std), augment, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Seed this epoch's augmentation and draw its synthetic faces."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 7])
        picks = rng.choice(len(self.synthetic), self.extra, replace=self.extra > len(self.synthetic)) if self.extra else []
        self.items = self.base + [self.synthetic[i] for i in picks]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        source, index = self.items[i]
        rng = np.random.default_rng([self.seed, self.epoch, i]) if self.augment is not None else None
        config = self.augment if i < len(self.base) else self.synthetic_augment
        crop = make_crop(source[index], self.size, self.mean_face, rng, config or AugmentConfig())
        return crop_tensors(crop.image, crop.landmarks, crop.mask, crop.visibility, crop.pose, crop.has_pose,
                            self.size, self.mean, self.std)


def crop_tensors(image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray, visibility: np.ndarray, pose: np.ndarray,
                 has_pose: bool, size: int, mean: np.ndarray, std: np.ndarray) -> dict[str, torch.Tensor]:
    """One training example as tensors: normalised image, landmarks in pixels and normalised, labels."""
    return {
        "image": torch.from_numpy(normalise_crops(image[None], mean, std)[0]),
        "landmarks_px": torch.from_numpy(np.asarray(landmarks, dtype=np.float32)),
        "landmarks": torch.from_numpy(to_normalised(landmarks, size).astype(np.float32)),
        "mask": torch.from_numpy(np.asarray(mask, dtype=bool)),
        "visibility": torch.from_numpy(np.asarray(visibility, dtype=bool)),
        "pose": torch.from_numpy(np.asarray(pose, dtype=np.float32)),
        "has_pose": torch.tensor(bool(has_pose)),
    }


def compute_losses(model: MNN, batch: dict[str, torch.Tensor], mean_face: torch.Tensor, sigma: float,
                   decoder: bool = True, distill: bool = False) -> dict[str, torch.Tensor]:
    """The task losses for a batch (``decoder=False``: the pose losses only, the decoder's are zero)."""
    return task_losses(model(batch["image"], decoder=decoder), batch, mean_face, sigma, distill)


def head_pose_loss(out: MNNOutput, target: torch.Tensor, has_pose: torch.Tensor) -> torch.Tensor:
    """``fc_pose``'s loss against ``target``: geodesic for a 6D head, eq. 1 on Euler angles otherwise."""
    if out.rotation is not None:
        return loss_pose_rotation(out.rotation, out.translation, target, has_pose)
    return loss_pose(out.pose, target, has_pose)


def task_losses(out: MNNOutput, batch: dict[str, torch.Tensor], mean_face: torch.Tensor, sigma: float,
                distill: bool = False) -> dict[str, torch.Tensor]:
    """The losses of network outputs ``out`` on ``batch``; ``distill`` adds the landmark-pose target."""
    has_landmarks = batch["landmarks"].shape[1] == mean_face.shape[0]
    zero = out.pose.sum() * 0
    losses = {
        "pose": head_pose_loss(out, batch["pose"], batch["has_pose"]),
        "pose_proj": (loss_pose_proj(out.pose_proj, batch["landmarks"], batch["mask"], mean_face)
                      if has_landmarks else out.pose_proj.sum() * 0),
        "heatmap": zero, "visibility": zero, "distill": zero,
    }
    if out.heatmap_logits is not None:
        losses["heatmap"] = loss_heatmap(out.heatmap_logits, batch["landmarks_px"], batch["mask"], sigma)
        losses["visibility"] = loss_visibility(out.visibility_logits, batch["visibility"], batch["mask"])
        if distill and has_landmarks:
            target, ok = landmark_pose_targets(out.heatmap_logits, mean_face.cpu().numpy())
            losses["distill"] = head_pose_loss(out, target, ok)
    return losses


def weighted_total(losses: dict[str, torch.Tensor], phase: int, weights: LossWeights,
                   distill_weight: float = 0.0) -> torch.Tensor:
    """Eq. 5 (plus the weighted distillation term) in phase 2; the heatmap loss alone in phase 1."""
    if phase == 1:
        return losses["heatmap"]
    return (weights.pose * losses["pose"] + weights.pose_proj * losses["pose_proj"]
            + weights.heatmap * losses["heatmap"] + weights.visibility * losses["visibility"]
            + distill_weight * losses["distill"])


def encoder_only(epoch: int, pretrain_epochs: int, total_epochs: int, block: int) -> bool:
    """Whether ``epoch`` trains without the decoder: phase 2 runs ``block`` such epochs, then one full, over
    and over; phase 1 and the run's last epoch are always full."""
    if block <= 0 or epoch < pretrain_epochs or epoch == total_epochs - 1:
        return False
    return (epoch - pretrain_epochs) % (block + 1) < block


def run_epoch(model: MNN, loader: DataLoader, optimizer: torch.optim.Optimizer | None, phase: int, weights: LossWeights,
              mean_face: torch.Tensor, sigma: float, device: torch.device, desc: str, decoder: bool = True,
              distill_weight: float = 0.0, poses: list | None = None) -> dict[str, float]:
    """One pass over ``loader`` (training when ``optimizer`` is given); mean losses per task and in total.

    ``decoder=False`` trains the encoder and its pose heads only; ``poses``, when given, collects each batch's
    ``(predicted, label, has_pose)``, angles in degrees, in loader order."""
    training = optimizer is not None
    model.train(training)
    sums = {k: 0.0 for k in (*TASKS, "total")}
    count = 0
    distill = distill_weight > 0 and phase == 2
    with torch.set_grad_enabled(training):
        for batch in tqdm(loader, desc=desc, leave=False, unit="batch"):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(batch["image"], decoder=decoder)
            losses = task_losses(out, batch, mean_face, sigma, distill)
            total = weighted_total(losses, phase, weights, distill_weight)
            if training:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
            if poses is not None:
                poses.append((np.degrees(out.pose[:, :3].detach().cpu().numpy()),
                              np.degrees(batch["pose"][:, :3].cpu().numpy()), batch["has_pose"].cpu().numpy()))
            n = len(batch["image"])
            count += n
            for k, v in losses.items():
                sums[k] += float(v.detach()) * n
            sums["total"] += float(total.detach()) * n
    return {k: v / max(count, 1) for k, v in sums.items()}


def split_items(datasets: list[FaceDataset], seed: int, limit: int | None) -> tuple[list, list]:
    """Seeded shuffle of every face, then 90% train and 10% validation (at least one of each)."""
    items = [(ds, i) for ds in datasets for i in range(len(ds))]
    order = np.random.default_rng(seed).permutation(len(items))
    items = [items[i] for i in order]
    if limit:
        items = items[:limit]
    if len(items) < 2:
        raise ValueError(f"need at least 2 faces to train, found {len(items)}")
    n_val = max(1, round(len(items) * 0.1))
    return items[n_val:], items[:n_val]


def exclude_sources(synthetic: list, val_items: list) -> list:
    """Synthetic faces not rendered from a validation face (``trainer.validation.split_synthetic``'s first part)."""
    return split_synthetic(synthetic, val_items)[0]


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Per-task training and validation losses against epoch, phases marked."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS) + 1, figsize=(4 * (len(TASKS) + 1), 3.2))
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes, (*TASKS, "total")):
        curves = {side: np.array([float(h.get(f"{side}_{key}") or "nan") for h in history])
                  for side in ("train", "val")}
        ax.plot(epochs, curves["train"], label="train")
        ax.plot(epochs, curves["val"], label="validation")
        starts = [h["epoch"] for h in history if h["phase"] == 2]
        if starts:
            ax.axvline(starts[0] - 0.5, color="grey", linestyle=":", label="phase 2")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        if any((values > 0).any() for values in curves.values()):
            ax.set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_log(history: list[dict[str, Any]], path: Path) -> None:
    """The whole history as CSV (rewritten each epoch so it always matches the checkpoint); columns are every
    row's keys in order of appearance, blank where a row (an older epoch) lacks one."""
    fields = list(dict.fromkeys(key for row in history for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(history)


def make_optimizer(model: MNN, lr: float) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """Adam, and the schedule that halves its rate after a 15-epoch validation plateau."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=PLATEAU_EPOCHS)
    return optimizer, scheduler


def annealed_lr(base: float, floor: float, epoch: int, total_epochs: int, anneal_epochs: int) -> float | None:
    """The rate of ``epoch`` inside the last ``anneal_epochs`` (cosine from ``base`` to ``floor``, sampled at
    each epoch's middle), or None before that window, where the plateau schedule rules."""
    i = epoch - (total_epochs - anneal_epochs)
    if anneal_epochs <= 0 or i < 0:
        return None
    return float(floor + (base - floor) * 0.5 * (1.0 + np.cos(np.pi * (i + 0.5) / anneal_epochs)))


def resolve_options(args: argparse.Namespace, state: dict[str, Any] | None) -> None:
    """Fill the ``STICKY`` options left unset: from a resumed checkpoint (format 1: ``LEGACY``), else defaults."""
    for key, default in STICKY.items():
        if getattr(args, key) is not None:
            continue
        if state is None:
            value = default
        elif key == "pose_head":
            value = model_config(state)["pose_head"]
        else:
            value = state["args"].get(key, LEGACY.get(key, default))
        setattr(args, key, value)


def head_fit_images(dataset: Dataset, count: int) -> torch.Tensor:
    """The first ``count`` normalised crops of ``dataset`` (augmented training crops) as one batch."""
    return torch.stack([dataset[i]["image"] for i in range(min(count, len(dataset)))])


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) training as ``args`` say; returns the checkpoint path."""
    if args.anneal_from is not None and not args.anneal_from > 0:
        raise ValueError(f"--anneal-from must be a positive rate, got {args.anneal_from}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    state = load_checkpoint(ckpt_path) if args.resume and ckpt_path.exists() else None
    if args.resume and state is None:
        log.info("no checkpoint in %s: starting afresh", out)
    init = load_checkpoint(args.init_from) if state is None and args.init_from else None
    source = state if state is not None else init
    if state is not None:
        saved = state["args"]
        for key in ("input_size", "seed", "limit", "batch_size", "lr", "pretrain_epochs"):
            setattr(args, key, saved[key])
    elif init is not None:
        args.input_size = init["config"]["input_size"]
        for key in ("seed", "limit"):  # the same split: the old run's validation faces stay unseen
            setattr(args, key, init["args"][key])
    resolve_options(args, state)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    datasets = [open_dataset(spec) for spec in args.data]
    synthetic_sets = [open_dataset(spec) for spec in args.synthetic or []]
    landmarks = {ds[0].landmarks.shape[0] for ds in datasets + synthetic_sets if len(ds)}
    if len(landmarks) != 1:
        raise ValueError(f"all --data and --synthetic must share one landmark layout, found counts {sorted(landmarks)}")
    n_landmarks = landmarks.pop()
    mean_face = build_mean_face() if source is None else np.asarray(source["mean_face"])
    train_items, val_items = split_items(datasets, args.seed, args.limit)
    labelled = label_items(train_items + val_items, args.pose_labels, out / CACHE_FILE, mean_face)
    train_items, val_items = labelled[:len(train_items)], labelled[len(train_items):]
    synthetic_items, val_renders = split_synthetic([(ds, i) for ds in synthetic_sets for i in range(len(ds))],
                                                   val_items)
    model = (model_from_state(source) if source is not None
             else MNN(args.input_size, n_landmarks, pose_head=args.pose_head))
    cfg = model.config
    augment = AugmentConfig()
    synthetic_augment = replace(augment, translation=args.synthetic_translation, scale=args.synthetic_scale)
    train_set = CropDataset(train_items, cfg.input_size, mean_face, cfg.mean, cfg.std, augment, args.seed,
                            synthetic_items, args.synthetic_ratio, synthetic_augment)
    val_set = CropDataset(val_items + val_renders, cfg.input_size, mean_face, cfg.mean, cfg.std, None, args.seed)
    converted = cfg.pose_head != args.pose_head
    if converted:
        if args.pose_head != "rot6d":
            raise ValueError(f"cannot turn a {cfg.pose_head} pose head into {args.pose_head}")
        model, gap = to_rot6d_head(model, head_fit_images(train_set, HEAD_FIT_CROPS))
        cfg = model.config
        log.info("6D pose head fitted to the Euler head on %d training crops: %.2f deg apart on them",
                 min(HEAD_FIT_CROPS, len(train_set)), gap)
    model = model.to(device)
    loader_args = {"batch_size": args.batch_size, "num_workers": args.workers}
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > args.batch_size,
                              generator=torch.Generator().manual_seed(args.seed), **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    mean_face_t = torch.as_tensor(mean_face, dtype=torch.float32, device=device)
    sigma = heatmap_sigma(cfg.input_size)
    weights = LossWeights(*args.loss_weights)
    total_epochs = args.pretrain_epochs + args.epochs
    optimizer, scheduler = make_optimizer(model, args.lr)
    plateau_lr = args.lr
    history: list[dict[str, Any]] = []
    start, best = 0, float("inf")
    if source is not None:
        history, start = list(source["history"]), source["epoch"] + 1
    if state is not None and not converted:
        optimizer.load_state_dict(expand_optimizer_state(state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        best = state["best_val"]
        plateau_lr = state.get("plateau_lr", optimizer.param_groups[0]["lr"])
    if source is not None:
        log.info("%s %s at epoch %d of %d", "resuming" if state is not None else f"starting from {args.init_from}:",
                 out, start, total_epochs)
    log.info("training on %s: %d train (%d synthetic) / %d validation faces (+%d renders of them), %d px, "
             "%d landmarks, %d + %d epochs, %s pose head, %s labels", device, len(train_set), train_set.extra,
             len(val_items), len(val_renders), cfg.input_size, n_landmarks, args.pretrain_epochs, args.epochs,
             cfg.pose_head, args.pose_labels)
    for epoch in range(start, total_epochs):
        phase = 1 if epoch < args.pretrain_epochs else 2
        if phase == 2 and epoch == args.pretrain_epochs and epoch > 0:
            optimizer, scheduler = make_optimizer(model, args.lr)
            best, plateau_lr = float("inf"), args.lr
        anneal_base = plateau_lr if args.anneal_from is None else args.anneal_from
        annealed = (annealed_lr(anneal_base, args.lr_floor, epoch, total_epochs, args.anneal_epochs)
                    if phase == 2 else None)
        for group in optimizer.param_groups:
            group["lr"] = plateau_lr if annealed is None else annealed
        train_set.set_epoch(epoch)
        started = time.time()
        decoder = not encoder_only(epoch, args.pretrain_epochs, total_epochs, args.encoder_only_epochs)
        train_losses = run_epoch(model, train_loader, optimizer, phase, weights, mean_face_t, sigma, device,
                                 f"epoch {epoch + 1}/{total_epochs} phase {phase}" + ("" if decoder else " encoder"),
                                 decoder, args.distill_weight)
        poses: list = []
        val_losses = run_epoch(model, val_loader, None, phase, weights, mean_face_t, sigma, device, "validation",
                               distill_weight=args.distill_weight, poses=poses)
        pred, true, has_pose = (np.concatenate(p) for p in zip(*poses))
        report = pose_report(pred, true, has_pose, len(val_items))
        if annealed is None:
            scheduler.step(val_losses["total"])
            plateau_lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, "phase": phase, "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - started, 1),
               "decoder": int(decoder),
               **{f"train_{k}": round(v, 6) for k, v in train_losses.items()},
               **{f"val_{k}": round(v, 6) for k, v in val_losses.items()},
               **{f"val_{k}": round(v, 3) for k, v in report.items()}}
        history.append(row)
        bands = " ".join(f"{k.rsplit('_', 1)[1]} {v:.2f}" for k, v in report.items() if k.startswith("renders_mae_"))
        tqdm.write(f"epoch {epoch + 1}/{total_epochs} phase {phase}{'' if decoder else ' encoder-only'}: "
                   f"train {train_losses['total']:.4f} val {val_losses['total']:.4f}; fc_pose MAE validation faces "
                   f"{report['mae']:.2f} deg, their renders {report['renders_mae']:.2f} deg (|yaw| {bands}) "
                   f"({row['seconds']} s)")
        if val_losses["total"] < best:
            best = val_losses["total"]
            save_checkpoint(out / "best.pt", {**model_state(model, mean_face), "epoch": epoch, "phase": phase,
                                              "val": val_losses | report})
        save_checkpoint(ckpt_path, {
            **model_state(model, mean_face), "optimizer": compact_optimizer_state(optimizer.state_dict()),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history, "best_val": best,
            "plateau_lr": plateau_lr,
            "args": vars(args) | {"out": str(args.out), "init_from": args.init_from and str(args.init_from)},
            "augment": asdict(augment), "synthetic_augment": asdict(synthetic_augment),
        })
        write_log(history, out / "log.csv")
        plot_history(history, out / "losses.png")
    return ckpt_path
