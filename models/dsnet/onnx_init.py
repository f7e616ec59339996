"""Start training from a committed ONNX model's weights (`train.py --init-onnx models/dsnet/dsnet.onnx`).

The export folds every BatchNorm into the convolution before it, so the ONNX file holds, for each
conv + BatchNorm pair, one folded weight W' and bias b'. They are loaded back as: conv weight W', and a
BatchNorm that reproduces the folded function in both modes. One pass over training batches measures the
per-channel mean m and variance v of each folded conv's output z = W'x; the BatchNorm then gets
running statistics (m, v), gamma = sqrt(v + eps) and beta = m + b', so that in eval mode it returns z + b'
exactly (the committed model's function), and in training mode, with batch statistics near (m, v), about
the same. Every other parameter (attention, layer norms, the head ...) keeps its name in the ONNX file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _conv_bn_pairs(net: nn.Module) -> dict[str, str]:
    """conv module name -> the BatchNorm2d that directly follows it in the same Sequential."""
    pairs = {}
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.named_children())
            for (a, ma), (b, mb) in zip(kids, kids[1:], strict=False):
                if isinstance(ma, nn.Conv2d) and isinstance(mb, nn.BatchNorm2d):
                    pairs[f"{name}.{a}" if name else a] = f"{name}.{b}" if name else b
    return pairs


def load_onnx_weights(net: nn.Module, onnx_path: Path, size: int = 256) -> list[str]:
    """Load the ONNX model's weights into `net` (the same architecture); returns the folded BatchNorm names.

    Convolutions are matched to the ONNX Conv nodes in execution order, checked by shape.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    order: list[str] = []
    names = {m: n for n, m in net.named_modules()}
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(names[mod]))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 1, size, size))
    for h in hooks:
        h.remove()
    if len(order) != len(convs):
        raise ValueError(f"{len(order)} convolutions in the model, {len(convs)} in {onnx_path}")
    modules = dict(net.named_modules())
    pairs = _conv_bn_pairs(net)
    state = net.state_dict()
    loaded = set()
    folded = []
    for cname, node in zip(order, convs, strict=False):
        conv = modules[cname]
        w = inits[node.input[1]]
        b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{cname}: shape {tuple(conv.weight.shape)} != ONNX {w.shape}")
        state[f"{cname}.weight"] = torch.from_numpy(w.copy())
        loaded.add(f"{cname}.weight")
        if cname in pairs:
            bn = pairs[cname]
            c = w.shape[0]
            eps = modules[bn].eps
            state[f"{bn}.weight"] = torch.ones(c)
            state[f"{bn}.bias"] = torch.from_numpy(b.copy()) if b is not None else torch.zeros(c)
            state[f"{bn}.running_mean"] = torch.zeros(c)
            state[f"{bn}.running_var"] = torch.full((c,), 1.0 - eps)
            loaded.update(f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))
            folded.append(bn)
        elif b is not None:
            state[f"{cname}.bias"] = torch.from_numpy(b.copy())
            loaded.add(f"{cname}.bias")
    # Parameters the exporter renamed: named after the node that consumes them instead.
    conv_inputs = {i for n in convs for i in n.input[1:]}
    for node in model.graph.node:
        for inp in node.input:
            if inp not in inits or inp in conv_inputs or inp.startswith("net."):
                continue
            path = [seg.rsplit(".", 1)[-1] for seg in node.name.strip("/").split("/")[1:-1]]
            mod = ".".join(path)
            value = inits[inp]
            if node.op_type == "MatMul":  # Linear weight, stored transposed
                key, value = f"{mod}.weight", value.T
            elif node.op_type == "Mul" and isinstance(modules.get(mod), nn.GroupNorm):
                key = f"{mod}.weight"
            elif node.op_type == "Add" and isinstance(modules.get(mod), nn.GroupNorm):
                key = f"{mod}.bias"
            elif node.op_type == "Add" and hasattr(modules.get(mod), "window"):  # relative position bias
                from models.dsnet.model import _relative_index

                attn = modules[mod]
                idx = _relative_index(attn.window).reshape(-1).numpy()
                table = np.zeros(tuple(state[f"{mod}.bias"].shape), np.float32)
                table[idx] = value[0].transpose(1, 2, 0).reshape(-1, table.shape[1])
                key, value = f"{mod}.bias", table
            else:
                continue
            state[key] = torch.from_numpy(np.ascontiguousarray(value).reshape(state[key].shape).copy())
            loaded.add(key)
    for key in state:
        if key in loaded or key.endswith("num_batches_tracked"):
            continue
        onnx_name = f"net.{key}"
        if onnx_name not in inits:
            raise ValueError(f"{key} has no counterpart in {onnx_path}")
        state[key] = torch.from_numpy(np.array(inits[onnx_name]).reshape(state[key].shape).copy())
    net.load_state_dict(state)
    return folded


@torch.no_grad()
def calibrate_folded(net: nn.Module, folded: list[str], batches: Iterable[torch.Tensor]) -> None:
    """Give each folded BatchNorm the statistics of its input over `batches` (see the module docstring)."""
    modules = dict(net.named_modules())
    sums: dict[str, list[torch.Tensor]] = {n: [] for n in folded}

    def hook(name: str):
        def run(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            z = inputs[0]
            sums[name].append(torch.stack([z.mean(dim=(0, 2, 3)), (z * z).mean(dim=(0, 2, 3))]))
        return run

    hooks = [modules[n].register_forward_hook(hook(n)) for n in folded]
    net.eval()  # eval mode with identity BatchNorms is the committed model's function
    for batch in batches:
        net(batch)
    for h in hooks:
        h.remove()
    for n in folded:
        bn = modules[n]
        s = torch.stack(sums[n]).mean(dim=0)
        mean, var = s[0], (s[1] - s[0] ** 2).clamp_min(1e-6)
        beta = bn.bias.detach().clone()
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(torch.sqrt(var + bn.eps))
        bn.bias.copy_(mean + beta)
