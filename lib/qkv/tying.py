"""Weight tying: one matrix for the input embedding and the pre-softmax projection.

Vaswani et al. 2017 (§3.4) share one weight matrix between the embedding layers
and the output projection before the softmax (Press & Wolf 2017; Inan et al.
2017). An :class:`~torch.nn.Embedding` stores ``(V, d_model)`` and maps a token
id to a row; an output :class:`~torch.nn.Linear` ``d_model -> V`` also stores
``(V, d_model)`` and scores each token by the dot product with its row, so
the same matrix can serve both: tying saves ``V * d_model`` parameters.
"""

from __future__ import annotations

from torch import nn

__all__ = ["tie", "count_parameters"]


def tie(embedding: nn.Embedding, linear: nn.Linear) -> nn.Linear:
    """Make ``linear`` use the embedding's weight: one Parameter, two uses.

    After tying, ``linear.weight is embedding.weight``; its gradient is the sum
    of the gradients from both uses. The linear's bias (if any) stays its own.

    Args:
        embedding: ``nn.Embedding(V, d_model)``, weight ``(V, d_model)``.
        linear: ``nn.Linear(d_model, V)``, weight ``(V, d_model)``; its old
            weight is dropped.
    Returns:
        ``linear`` itself (changed in place, as module surgery must be).
    Used in: Q11.
    """
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    if linear.weight.shape != embedding.weight.shape:
        vocab_size, d_model = embedding.weight.shape
        raise ValueError(
            f"linear.weight must have the embedding's shape (V, d_model) = "
            f"({vocab_size}, {d_model}), i.e. nn.Linear({d_model}, {vocab_size}); "
            f"got {tuple(linear.weight.shape)}"
        )
    linear.weight = embedding.weight
    return linear


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module``, each shared tensor counted once.

    ``module.parameters()`` already yields a shared Parameter once; distinct
    Parameter objects that view the same memory (same address, shape and
    strides) are also counted once. Parameters on the ``meta`` device have no
    memory, so those are told apart by identity only.

    Args:
        module: any module.
        trainable_only: count only parameters with ``requires_grad``.
    Returns:
        the number of scalars.
    Used in: Q3, Q6, Q7, Q9, Q10, Q11, Q15, Q17, Q18, Q25, Q27, Q30.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    seen: set[object] = set()
    total = 0
    for p in module.parameters():
        if trainable_only and not p.requires_grad:
            continue
        key = id(p) if p.is_meta else (p.device, p.data_ptr(), tuple(p.shape), p.stride())
        if key not in seen:
            seen.add(key)
            total += p.numel()
    return total
