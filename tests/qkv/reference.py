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


def left_padded(
    lengths: list[int], n: int, *, vocab_size: int, seed: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids (B, n), attention_mask (B, n))``: seeded prompts of ``lengths`` padded on the left
    with token 0 (any id: the mask hides it); the mask is 1 on real tokens."""
    mask = (torch.arange(n) >= n - torch.tensor(lengths)[:, None]).long()
    return random_ids(len(lengths), n, vocab_size=vocab_size, seed=seed) * mask, mask


def hf_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """The position ids of Hugging Face's ``generate``: each row counts its real tokens from 0,
    padding at 0 (``GenerationMixin._prepare_position_ids_for_generation``)."""
    return (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
