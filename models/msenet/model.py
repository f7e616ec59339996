"""MSE-Net (paper §II.E): multimodal biometric embedding, scaled down for CPU.

Per modality (fingerprint 1x96x96, iris strip 1x32x256):
  multi-scale input block (parallel 3x3, 5x5 and pooled-then-3x3 branches, concatenated)
  → EfficientNet-B0-style backbone (MBConv: expand 1x1, depthwise kxk, squeeze-excitation, project 1x1,
    residual when shapes allow; SiLU)
  → dilated convolution block (parallel dilations 1, 2, 4 concatenated, 1x1 fuse, residual add)
  → global average pool → linear → L2-normalised modality embedding.
The two modality embeddings are concatenated and projected to the fused embedding, L2-normalised. All three
are outputs, so the evaluation can report fingerprint-only, iris-only and fused performance (paper Fig. 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 128


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(ch, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))


class MBConv(nn.Module):
    """EfficientNet inverted residual block with squeeze-excitation."""

    def __init__(self, cin: int, cout: int, *, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU()]
        layers += [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
                   nn.BatchNorm2d(mid), nn.SiLU(), SqueezeExcite(mid, max(4, cin // 4)),
                   nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _cbs(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.SiLU())


class MultiScaleInput(nn.Module):
    """Three receptive fields on the raw input, concatenated (the paper's multiscale input conversion)."""

    def __init__(self, cin: int, branch: int) -> None:
        super().__init__()
        self.fine = _cbs(cin, branch, 3, 2)
        self.wide = _cbs(cin, branch, 5, 2)
        self.pool = nn.Sequential(nn.AvgPool2d(2), _cbs(cin, branch, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fine(x), self.wide(x), self.pool(x)], dim=1)


class DilatedBlock(nn.Module):
    """Parallel dilated 3x3 convolutions, concatenated, fused by 1x1, plus a residual connection."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_cbs(ch, ch // 2, 3, dilation=d) for d in (1, 2, 4)])
        self.fuse = nn.Sequential(nn.Conv2d(3 * (ch // 2), ch, 1, bias=False), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.fuse(torch.cat([b(x) for b in self.branches], dim=1)))


class ModalityBranch(nn.Module):
    def __init__(self, width: int = 12) -> None:
        super().__init__()
        w = width
        self.msi = MultiScaleInput(1, w // 2 + 2)  # → 3*(w/2+2) channels at 1/2 resolution
        c0 = 3 * (w // 2 + 2)
        # EfficientNet-B0's stage pattern (k3 → k3 → k5 → k3), fewer repeats and channels for a CPU budget.
        self.backbone = nn.Sequential(
            MBConv(c0, w, expand=1, kernel=3, stride=2),
            MBConv(w, 2 * w, expand=3, kernel=3, stride=2),
            MBConv(2 * w, 2 * w, expand=3, kernel=3, stride=1),
            MBConv(2 * w, 3 * w, expand=3, kernel=5, stride=2),
            MBConv(3 * w, 3 * w, expand=3, kernel=5, stride=1),
            MBConv(3 * w, 5 * w, expand=3, kernel=3, stride=1),
        )
        self.dilated = DilatedBlock(5 * w)
        self.head = nn.Linear(5 * w, EMBED_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dilated(self.backbone(self.msi(x)))
        return F.normalize(self.head(y.mean(dim=(2, 3))), dim=1)


class MSENet(nn.Module):
    """Fingerprint + iris → (fingerprint embedding, iris embedding, fused embedding), all unit-norm."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.fingerprint = ModalityBranch(width)
        self.iris = ModalityBranch(width)
        self.fusion = nn.Sequential(nn.Linear(2 * EMBED_DIM, 2 * EMBED_DIM), nn.SiLU(),
                                    nn.Linear(2 * EMBED_DIM, EMBED_DIM))

    def forward(self, fingerprint: torch.Tensor, iris: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ef = self.fingerprint(fingerprint)
        ei = self.iris(iris)
        fused = F.normalize(self.fusion(torch.cat([ef, ei], dim=1)), dim=1)
        return ef, ei, fused
