"""What the benchmark scripts share."""

import torch


class _ModelOutput(torch.autograd.Function):
    """The input as a fresh non-leaf tensor on the same memory, as a model's logits are: the in-place
    variants (``inplace_grad=True``) can then take the benchmark's leaf, which lossc refuses to overwrite."""

    @staticmethod
    def forward(ctx, x):
        return x.detach()

    @staticmethod
    def backward(ctx, grad):
        return grad


def model_output(x: torch.Tensor) -> torch.Tensor:
    return _ModelOutput.apply(x)
