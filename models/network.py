"""The segmentation network: a compact polar U-Net with circular padding along the angle.

Input ``(B, 1, K, J)`` float32: a batch of preprocessed frames on the model grid (K model
A-lines over 360 degrees, J depth samples from the catheter centre, values in [0, 1]). A-line 0
is the neighbour of A-line K-1, so every convolution pads the A-line axis circularly
(:func:`torch.nn.functional.pad` ``mode="circular"``) and the depth axis with zeros (nothing lies
inside the catheter centre or beyond the grid). Strided convolutions keep the A-line phase: a
roll of the input by a multiple of :attr:`SegNet.stride` rolls every output by the same amount.

The input is folded ``fold x fold`` into channels (pixel unshuffle; 4x4 since octseg 2.0, 2x2
before) so that all convolutions run at 1/fold resolution or below, and the class logits are
unfolded back to full resolution (pixel shuffle): the full-resolution boundary position survives
in the sub-pixel channels while the compute stays 1/fold^2 of a full-resolution U-Net's (the
segment stage's budget is 8 ms p50 on a machine 3x slower than the build machine).

Outputs (training form, logits):

* ``class_logits`` ``(B, N_CLASSES, K, J)``: :class:`models.classes.TissueClass` logits.
* ``aline_logits`` ``(B, N_ALINE_OUTPUTS, K)``: :class:`models.classes.ALineOutput` logits.
* ``confidence_logit`` ``(B, 1)``: logit of "the frame is fit for measurement".

:class:`InferenceModel` wraps the network with the softmax/sigmoids for export, so the shipped
ONNX graph returns probabilities.

torch is needed only here, in training and in export (the ``[train]`` extra).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.classes import N_ALINE_OUTPUTS, N_CLASSES

FOLD = 2  #: pixel-unshuffle factor of octseg 1.x checkpoints (which do not record NetworkConfig.fold)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters.

    Attributes
    ----------
    widths : tuple of int
        Channels per resolution level, from half resolution down; each further level halves
        both axes.
    aline_hidden : int
        Channels of the hidden 1-D layer of the per-A-line head.
    fold : int
        Pixel-unshuffle factor of the input (4 since octseg 2.0: all convolutions at quarter
        resolution or below, 0.41x the ONNX Runtime latency of the 2x2 fold of octseg 1.x at the
        same widths and grid, ``bench/bench_architectures.py``).
    separable : bool
        Depthwise-separable 3x3 convolutions after the stem (not used by the shipped model).
    """

    widths: tuple[int, ...] = (16, 32, 64, 96)
    aline_hidden: int = 32
    fold: int = 4
    separable: bool = False

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        """From :meth:`as_dict`; checkpoints written before ``fold``/``separable`` existed
        (octseg 1.x) get 2 and False."""
        return cls(widths=tuple(data["widths"]), aline_hidden=int(data["aline_hidden"]),
                   fold=int(data.get("fold", FOLD)), separable=bool(data.get("separable", False)))


class CircularConv(nn.Module):
    """3x3 convolution (optionally strided) + batch norm + ReLU, circular along the A-lines.

    Parameters
    ----------
    cin, cout : int
        Input and output channels.
    stride : int
        1, or 2 to halve both axes.
    separable : bool
        Depthwise 3x3 then pointwise 1x1 (about 1/8 of the multiply-adds at these widths)
        instead of a full 3x3 convolution.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, separable: bool = False):
        super().__init__()
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, padding=(0, 1), groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride, padding=(0, 1), bias=False)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (left, right) pads depth (done by the conv, zeros); (top, bottom) wraps the A-lines.
        x = F.pad(x, (0, 0, 1, 1), mode="circular")
        return F.relu(self.norm(self.conv(x)))


class SegNet(nn.Module):
    """Polar U-Net: see the module docstring for shapes.

    Parameters
    ----------
    config : NetworkConfig
        Architecture.
    """

    def __init__(self, config: NetworkConfig = NetworkConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        f = config.fold
        sep = config.separable
        self.unfold = nn.PixelUnshuffle(f)
        # The stem sees the raw folded pixels: always a full convolution.
        self.stem = nn.Sequential(CircularConv(f * f, w[0]), CircularConv(w[0], w[0], separable=sep))
        self.down = nn.ModuleList(
            nn.Sequential(CircularConv(w[i - 1], w[i], stride=2, separable=sep),
                          CircularConv(w[i], w[i], separable=sep))
            for i in range(1, len(w))
        )
        self.lateral = nn.ModuleList(
            nn.Conv2d(w[i], w[i - 1], 1, bias=False) for i in range(len(w) - 1, 0, -1)
        )
        self.up = nn.ModuleList(CircularConv(w[i - 1], w[i - 1], separable=sep)
                                for i in range(len(w) - 1, 0, -1))
        self.class_head = nn.Conv2d(w[0], N_CLASSES * f * f, 1)
        self.fold = nn.PixelShuffle(f)
        self.aline_hidden = nn.Conv1d(2 * w[0], config.aline_hidden, 3, padding=0)
        # Stride-FOLD transposed convolution with kernel FOLD: half-res A-line i gives the outputs
        # of full-res A-lines FOLD*i .. FOLD*i+FOLD-1 (a 1x1 head per sub-A-line).
        self.aline_head = nn.ConvTranspose1d(
            config.aline_hidden, N_ALINE_OUTPUTS, f, stride=f
        )
        self.confidence_head = nn.Linear(2 * w[-1], 1)

    @property
    def stride(self) -> int:
        """Total down-sampling: K and J must be multiples of it."""
        return self.config.fold * 2 ** (len(self.config.widths) - 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, 1, K, J)`` -> class logits, A-line logits, confidence logit (module docstring)."""
        h = self.stem(self.unfold(x))
        skips = [h]
        for level in self.down:
            h = level(h)
            skips.append(h)
        confidence = self.confidence_head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))
        for i, (lateral, up) in enumerate(zip(self.lateral, self.up)):
            h = up(F.interpolate(lateral(h), scale_factor=2.0, mode="nearest") + skips[-2 - i])
        classes = self.fold(self.class_head(h))
        # Per-A-line evidence pooled along depth: a shadow is dark over all depths behind a
        # bright reflector; the EEL line is a narrow peak somewhere along the A-line.
        profile = torch.cat([h.mean(3), h.amax(3)], 1)
        profile = F.relu(self.aline_hidden(F.pad(profile, (1, 1), mode="circular")))
        return classes, self.aline_head(profile), confidence


class InferenceModel(nn.Module):
    """:class:`SegNet` returning probabilities: the graph that is exported to ONNX.

    Returns ``class_prob`` ``(B, N_CLASSES, K, J)`` (softmax over classes), ``aline_prob``
    ``(B, N_ALINE_OUTPUTS, K)`` and ``confidence`` ``(B, 1)`` (sigmoids), all float32 in [0, 1].

    The softmax is spelt out (max, exp, sum, divide over the class axis): ONNX Runtime's
    ``Softmax`` on a non-last axis transposes the tensor and took 48% of the CPU inference time;
    the element-wise form halves the whole model's latency and gives the same values (2e-7).
    """

    def __init__(self, net: SegNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        classes, aline, confidence = self.net(x)
        shifted = torch.exp(classes - classes.amax(1, keepdim=True))
        return shifted / shifted.sum(1, keepdim=True), torch.sigmoid(aline), torch.sigmoid(confidence)
