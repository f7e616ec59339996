"""DS-Net (paper 000, §II.C) and the plain U-Net baseline, sized for a 2-core edge CPU at 256x256.

DS-Net = two encoders fused by Triplet Attention, then a U-shaped decoder:
- CalibNeXt (local features, eq. 4): conv + BatchNorm + ReLU stages, each refined by a Spatial-Channel
  Calibration (SCC) block: parallel multi-scale depthwise branches (dilation 1, 2, 3) mixed by adaptive
  (softmax) branch weights, then channel re-weighting (squeeze-excitation) and spatial re-weighting
  (7x7 conv on channel mean/max), with a residual connection.
- Residual Swin Transformer (global context, eq. 5): patch embedding (4x4), residual Swin stages of
  window / shifted-window multi-head self-attention with relative position bias and an MLP, patch merging.
- Triplet Attention fusion (eq. 6) of local and global features at 1/4 and 1/8 resolution.
- Decoder (eq. 7): upsampling + skip connections to 1/2 and 1/1 CalibNeXt features, 1x1 head.

The forward pass returns lesion logits (N, 1, H, W); `with_sigmoid=True` (used for ONNX export) returns
probabilities. H and W must be multiples of 32 (windows of 4x4 tokens at 1/8 resolution).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SCC(nn.Module):
    """Spatial-Channel Calibration: multi-scale parallel branches, adaptive weighting, SE + spatial gates.

    The three branches see the features at 1x, 1/2 and 1/4 scale (pool -> 3x3 conv -> upsample), which
    widens the receptive field like dilated branches do but with dense convolutions, which train several
    times faster than depthwise/dilated ones on a CPU.
    """

    def __init__(self, c: int, reduction: int = 4) -> None:
        super().__init__()
        self.scales = (1, 2, 4)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in self.scales)
        hidden = max(8, c // reduction)
        self.select = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c * 3, 1))
        self.channel = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c, 1))
        self.spatial = nn.Conv2d(2, 1, 7, 1, 3)
        self.project = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for scale, branch in zip(self.scales, self.branches, strict=False):
            if scale == 1:
                feats.append(branch(x))
            else:
                y = branch(F.avg_pool2d(x, scale))
                feats.append(F.interpolate(y, scale_factor=float(scale), mode="bilinear", align_corners=False))
        stacked = torch.stack(feats, dim=1)  # N,3,C,H,W
        n, _, c, _, _ = stacked.shape
        summary = stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        weights = torch.softmax(self.select(summary).view(n, 3, c, 1, 1), dim=1)
        y = (stacked * weights).sum(dim=1)
        y = y * torch.sigmoid(self.channel(y.mean(dim=(2, 3), keepdim=True)))
        pooled = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)
        y = y * torch.sigmoid(self.spatial(pooled))
        return F.relu(x + self.project(y))


class CalibNeXt(nn.Module):
    """Convolutional encoder; returns features at 1/1, 1/2, 1/4, 1/8.

    The full-resolution stage is a plain conv: an SCC block there costs more than the rest of the network
    on a CPU (three depthwise branches over 65k pixels) for little gain, so calibration starts at 1/2.
    """

    def __init__(self, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        self.s1 = conv_bn_relu(1, c1)
        self.s2 = nn.Sequential(conv_bn_relu(c1, c2, 2), SCC(c2))
        self.s3 = nn.Sequential(conv_bn_relu(c2, c3, 2), SCC(c3))
        self.s4 = nn.Sequential(conv_bn_relu(c3, c4, 2), SCC(c4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.s1(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        return [f1, f2, f3, f4]


@lru_cache(maxsize=16)
def _relative_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


@lru_cache(maxsize=16)
def _shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Attention mask for shifted windows: tokens from different regions of the rolled map never attend."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = _partition(img, window).squeeze(-1)  # nW, window*window
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def _merge(windows: torch.Tensor, window: int, n: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(n, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, c)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.bias[_relative_index(self.window).view(-1)].view(t, t, self.heads).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b // nw, nw, self.heads, t, t) + mask[None, :, None]
            attn = attn.view(b, self.heads, t, t)
        attn = torch.softmax(attn, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, c))


class SwinBlock(nn.Module):
    """(Shifted-)window multi-head self-attention + MLP, each with pre-norm and a residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: N,H,W,C
        n, h, w, c = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = _shift_mask(h, w, self.window, self.shift).to(x.device)
        else:
            mask = None
        y = _merge(self.attn(_partition(y, self.window), mask), self.window, n, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin Transformer block: a W-MSA + SW-MSA pair, a 3x3 conv, and a residual around them."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(SwinBlock(dim, heads, window, 0), SwinBlock(dim, heads, window, window // 2))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N,C,H,W
        y = self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv(y)


class ResidualSwin(nn.Module):
    """Global encoder: 4x4 patch embedding, RSTB at 1/4, patch merging, RSTB at 1/8."""

    def __init__(self, dims: tuple[int, int], heads: tuple[int, int], window: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(1, dims[0], 4, 4), nn.GroupNorm(1, dims[0]))
        self.stage1 = RSTB(dims[0], heads[0], window)
        self.merge = nn.Sequential(nn.Conv2d(dims[0], dims[1], 2, 2), nn.GroupNorm(1, dims[1]))
        self.stage2 = RSTB(dims[1], heads[1], window)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        g3 = self.stage1(self.embed(x))
        g4 = self.stage2(self.merge(g3))
        return [g3, g4]


class ZPoolGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(2, 1, 7, 1, 3, bias=False), nn.BatchNorm2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class TripletAttention(nn.Module):
    """Triplet attention over (C,W), (H,C) and (H,W) interactions, averaged (Misra et al. 2021)."""

    def __init__(self) -> None:
        super().__init__()
        self.cw, self.hc, self.hw = ZPoolGate(), ZPoolGate(), ZPoolGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
        b = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
        c = self.hw(x)
        return (a + b + c) / 3.0


class TAMFusion(nn.Module):
    """F_fused = TAM(F_local, F_global): concatenate, project, triplet attention, residual."""

    def __init__(self, c_local: int, c_global: int, c_out: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(c_local + c_global, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
                                     nn.ReLU(inplace=True))
        self.tam = TripletAttention()

    def forward(self, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        y = self.project(torch.cat([local, glob], dim=1))
        return y + self.tam(y)


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class DSNet(nn.Module):
    """Dual-encoder segmentation network (CalibNeXt + Residual Swin, Triplet Attention, U-decoder)."""

    def __init__(self, base: int = 8, window: int = 4) -> None:
        super().__init__()
        widths = (base, base * 2, base * 4, base * 8)
        self.local = CalibNeXt(widths)
        self.glob = ResidualSwin((base * 4, base * 8), (2, 4), window)
        self.fuse3 = TAMFusion(widths[2], base * 4, widths[2])
        self.fuse4 = TAMFusion(widths[3], base * 8, widths[3])
        self.up3 = UpBlock(widths[3], widths[2], widths[2])
        self.up2 = UpBlock(widths[2], widths[1], widths[1])
        self.up1 = UpBlock(widths[1], widths[0], widths[0])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor, with_sigmoid: bool = False) -> torch.Tensor:
        f1, f2, f3, f4 = self.local(x)
        g3, g4 = self.glob(x)
        d4 = self.fuse4(f4, g4)
        d3 = self.up3(d4, self.fuse3(f3, g3))
        d2 = self.up2(d3, f2)
        d1 = self.up1(d2, f1)
        logits = self.head(d1)
        return torch.sigmoid(logits) if with_sigmoid else logits


class UNet(nn.Module):
    """Plain U-Net baseline (Ronneberger et al. 2015), four levels, same width budget as DS-Net."""

    def __init__(self, base: int = 8) -> None:
        super().__init__()
        w = (base, base * 2, base * 4, base * 8)
        self.e1 = nn.Sequential(conv_bn_relu(1, w[0]), conv_bn_relu(w[0], w[0]))
        self.e2 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(w[0], w[1]), conv_bn_relu(w[1], w[1]))
        self.e3 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(w[1], w[2]), conv_bn_relu(w[2], w[2]))
        self.e4 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(w[2], w[3]), conv_bn_relu(w[3], w[3]))
        self.up3 = UpBlock(w[3], w[2], w[2])
        self.up2 = UpBlock(w[2], w[1], w[1])
        self.up1 = UpBlock(w[1], w[0], w[0])
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor, with_sigmoid: bool = False) -> torch.Tensor:
        f1 = self.e1(x)
        f2 = self.e2(f1)
        f3 = self.e3(f2)
        f4 = self.e4(f3)
        logits = self.head(self.up1(self.up2(self.up3(f4, f3), f2), f1))
        return torch.sigmoid(logits) if with_sigmoid else logits


def build(arch: str, base: int = 8) -> nn.Module:
    """The network named `arch` ("dsnet" or "unet")."""
    if arch == "dsnet":
        return DSNet(base)
    if arch == "unet":
        return UNet(base)
    raise ValueError(f"unknown architecture {arch!r} (expected 'dsnet' or 'unet')")
