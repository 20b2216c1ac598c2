"""Helpers for the tests that compare qkv with a reference implementation."""

import torch
from torch import nn


def perturbed(model: nn.Module, scale: float = 0.1, *, seed: int = 1) -> nn.Module:
    """``model`` in eval mode with seeded noise added to every parameter.

    PyTorch and Hugging Face start biases at 0 and norm gains at 1: random values make
    a bias or gain loaded into the wrong place visible.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def random_ids(*shape: int, vocab_size: int, seed: int = 1) -> torch.Tensor:
    """Seeded token ids of ``shape`` in ``[0, vocab_size)``."""
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))
