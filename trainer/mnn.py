"""MNN: the multi-task encoder-decoder of Valle et al. (TPAMI 2020), Tables 1 and 2 of its supplementary.

A U-Net of bottleneck residual blocks: one stage per resolution from ``S×S`` down to ``1×1``
(9 stages at 256, 8 at 128), 64 → 128 → 256 feature maps, BatchNorm + ReLU after every convolution,
lateral skips by concatenation. ``fc_pose`` and ``fc_pose_proj`` sit on the bottleneck; ``fc_lnd``
(softmax heatmaps) and ``fc_vis`` (average-pooled visibility logits) at the decoder end.

Readings of the tables where they are ambiguous:

- Each stage's next stage and its skip connection take the residual sum (``add_k_4``); the table's
  "connected to conv_k_4" for the down-sampling conv is read as the block's output, since a residual
  block whose sum fed only the skip would not be residual along the main path.
- Convolutions followed by BatchNorm carry no bias (BatchNorm's shift replaces it); the four heads
  keep theirs. This gives 2,073,292 encoder and 4,912,084 full parameters at 256 with L = 68
  (+1.20% and +0.23% against the paper's 2,048,710 and 4,900,948, which Keras counts with its own
  conventions); BatchNorm's running statistics are buffers, not parameters.
- ``up_1_5`` is a nearest-neighbour ``UpSampling (2x2)``; every later up-sampling is the table's
  ``Conv2DTrans (2x2)`` with stride 2.
- Visibility is one logit per landmark (sigmoid); the paper's two-class cross-entropy (eq. 4) on a
  softmax over {visible, occluded} is the same model with one logit fixed at zero.

Pose head. ``pose_head="euler"`` is the paper's: ``fc_pose`` gives (yaw, pitch, roll, tx, ty, tz).
``pose_head="rot6d"`` gives a 6D rotation (``trainer.rotation``) and the translation, 9 outputs, and the
forward pass turns the rotation into the same Euler vector, so both export to one ONNX contract while the
6D head trains on rotation matrices (well conditioned at yaw ±90°, where Euler angles lock).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from trainer.rotation import IDENTITY_6D, matrix_to_angles, rot6d_to_matrix

POSE_HEADS = ("euler", "rot6d")
BOTTLENECK_WIDTH = 64
TYPICAL_TZ = 1.6
"""Initial bias of the ``tz`` outputs: the PnP labels of augmented training crops put the unit-RMS mean
face at 1.56 ± 0.19 (afw), so ``L_AE``'s projection ``1 / tz`` starts sane rather than at its clamp."""


@dataclass(frozen=True)
class MNNConfig:
    """The configuration that travels with a model: input size, landmarks and input normalisation."""

    input_size: int = 128
    landmarks: int = 68
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pose_head: str = "euler"

    @property
    def stages(self) -> int:
        """One stage per resolution from ``input_size`` down to 1."""
        return int(math.log2(self.input_size)) + 1


@dataclass
class MNNOutput:
    """Raw network outputs: pose vectors (radians), heatmap logits ``(N, L, S, S)``, visibility logits ``(N, L)``
    (None when the decoder did not run); for a 6D head, ``fc_pose``'s rotation ``(N, 3, 3)`` and translation
    ``(N, 3)``, what its loss reads (else None)."""

    pose: torch.Tensor
    pose_proj: torch.Tensor
    heatmap_logits: torch.Tensor | None = None
    visibility_logits: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    translation: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution + BatchNorm + ReLU, 'same' padding for odd kernels."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if kernel % 2 else 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def up_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """``Conv2DTrans (2x2)`` stride 2 + BatchNorm + ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """``conv_k_2..4`` (1×1 → 64, 3×3, 1×1 → channels) added to the stage's entry (``add_k_4``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, BOTTLENECK_WIDTH, 1),
            conv_bn_relu(BOTTLENECK_WIDTH, BOTTLENECK_WIDTH, 3),
            conv_bn_relu(BOTTLENECK_WIDTH, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage_channels(stages: int) -> list[int]:
    """Feature maps per stage from the top (full resolution) down: 64, 128, then 256."""
    return [min(64 * 2 ** i, 256) for i in range(stages)]


class MNN(nn.Module):
    """The multi-task network; ``forward_encoder`` alone is the pose-only model."""

    def __init__(self, input_size: int = 128, landmarks: int = 68,
                 mean: tuple[float, float, float] = MNNConfig.mean, std: tuple[float, float, float] = MNNConfig.std,
                 pose_head: str = "euler") -> None:
        super().__init__()
        if input_size < 8 or input_size & (input_size - 1):
            raise ValueError(f"input size must be a power of two >= 8, got {input_size}")
        if pose_head not in POSE_HEADS:
            raise ValueError(f"pose head must be one of {', '.join(POSE_HEADS)}, got {pose_head!r}")
        self.config = MNNConfig(input_size, landmarks, tuple(mean), tuple(std), pose_head)
        channels = stage_channels(self.config.stages)
        self.channels = channels
        entries: list[nn.Module] = [conv_bn_relu(3, channels[0], 1)]
        entries += [conv_bn_relu(channels[i - 1], channels[i], 2, stride=2) for i in range(1, len(channels) - 1)]
        entries.append(nn.MaxPool2d(2))
        self.down = nn.ModuleList(entries)
        self.enc_blocks = nn.ModuleList(Bottleneck(c) for c in channels)
        self.fc_pose = nn.Conv2d(channels[-1], 9 if pose_head == "rot6d" else 6, 1)
        self.fc_pose_proj = nn.Conv2d(channels[-1], 6, 1)
        for head in (self.fc_pose, self.fc_pose_proj):
            nn.init.constant_(head.bias[-1], TYPICAL_TZ)
        if pose_head == "rot6d":
            with torch.no_grad():
                self.fc_pose.bias[:6] = torch.tensor(IDENTITY_6D)

        # Decoder, from the stage just above the bottleneck up to full resolution.
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        self.dec_blocks = nn.ModuleList()
        below = channels[-1]
        for level in range(len(channels) - 2, -1, -1):
            c = channels[level]
            self.up.append(nn.Upsample(scale_factor=2, mode="nearest") if level == len(channels) - 2 else up_bn_relu(below, c))
            up_channels = below if level == len(channels) - 2 else c
            self.merge.append(conv_bn_relu(c + up_channels, c, 1))
            self.dec_blocks.append(Bottleneck(c))
            below = c
        self.fc_lnd = nn.Conv2d(channels[0], landmarks, 1)
        self.fc_vis = nn.Conv2d(channels[0], landmarks, 1)

    def encode(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None,
                                                   torch.Tensor | None, torch.Tensor]:
        """Stage outputs (top to bottom), ``fc_pose`` as Euler pose ``(N, 6)``, for a 6D head its rotation
        ``(N, 3, 3)`` and translation ``(N, 3)`` straight from the layer (None for an Euler head), ``fc_pose_proj``."""
        skips = []
        x = image
        for entry, block in zip(self.down, self.enc_blocks):
            x = block(entry(x))
            skips.append(x)
        pose = self.fc_pose(x).flatten(1)
        rotation = translation = None
        if self.config.pose_head == "rot6d":
            rotation, translation = rot6d_to_matrix(pose[:, :6]), pose[:, 6:]
            pose = torch.cat([matrix_to_angles(rotation), translation], 1)
        return skips, pose, rotation, translation, self.fc_pose_proj(x).flatten(1)

    def forward_encoder(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Stage outputs (top to bottom) and the two pose vectors ``(N, 6)`` (yaw, pitch, roll radians, tx, ty, tz)."""
        skips, pose, _, _, pose_proj = self.encode(image)
        return skips, pose, pose_proj

    def forward_decoder(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits ``(N, L, S, S)`` and visibility logits ``(N, L)`` from the encoder's stage outputs."""
        x = skips[-1]
        for up, merge, block, skip in zip(self.up, self.merge, self.dec_blocks, reversed(skips[:-1])):
            x = block(merge(torch.cat([skip, up(x)], 1)))
        return self.fc_lnd(x), self.fc_vis(x).mean((2, 3))

    def forward(self, image: torch.Tensor, decoder: bool = True) -> MNNOutput:
        """Every output; with ``decoder=False`` the pose outputs only (the decoder is not run)."""
        skips, pose, rotation, translation, pose_proj = self.encode(image)
        if not decoder:
            return MNNOutput(pose, pose_proj, rotation=rotation, translation=translation)
        heatmap_logits, visibility_logits = self.forward_decoder(skips)
        return MNNOutput(pose, pose_proj, heatmap_logits, visibility_logits, rotation, translation)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pose-only model (encoder and the two pose heads)."""
        modules = [self.down, self.enc_blocks, self.fc_pose, self.fc_pose_proj]
        return [p for m in modules for p in m.parameters()]


def heatmap_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Per-landmark softmax over the ``S×S`` positions (``fc_lnd``'s activation)."""
    n, l, h, w = logits.shape
    return F.softmax(logits.reshape(n, l, h * w), -1).reshape(n, l, h, w)
