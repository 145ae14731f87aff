"""``python -m trainer summary``: parameter and multiply-accumulate counts of MNN and its encoder."""
from __future__ import annotations


import torch
from torch import nn

from trainer.mnn import MNN


def count_macs(model: MNN, input_size: int, encoder_only: bool) -> int:
    """Multiply-accumulates of convolutions (and transposed convolutions) for one image."""
    total = 0

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0][0].numel() * module.out_channels * kh * kw // module.groups
        else:
            total += output[0].numel() * module.in_channels * kh * kw // module.groups

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            image = torch.zeros(1, 3, input_size, input_size)
            if encoder_only:
                model.forward_encoder(image)
            else:
                model(image)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def summarise(input_size: int, landmarks: int) -> dict[str, int]:
    """Parameter and MAC counts of the full network and of the encoder with its pose heads."""
    model = MNN(input_size, landmarks).eval()
    return {
        "params_full": sum(p.numel() for p in model.parameters()),
        "params_encoder": sum(p.numel() for p in model.encoder_parameters()),
        "macs_full": count_macs(model, input_size, encoder_only=False),
        "macs_encoder": count_macs(model, input_size, encoder_only=True),
    }
