"""Q15 (bert/q15_bert_encoder_or_decoder): where BERT's bidirectionality lives.

:func:`sensitivity` changes one input token at a time and measures how far every
output position of a :class:`qkv.bert.Bert` stack moves, with or without a causal
mask: BERT's outputs depend on later tokens, the same layers under a causal mask
(a GPT-style stack) do not. The chapter's other evidence (parameter counts, the
match with Hugging Face's ``BertModel``) is deterministic and needs no seeds, so
this module declares no claims.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qkv.bert import Bert
from qkv.experiments import Claim, claims, experiment

__all__ = ["sensitivity", "CLAIMS"]


@experiment
def sensitivity(model: Bert, ids: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(L, L)``: entry ``[i, j]`` is the L2 change of output ``i`` when input token ``j`` changes.

    ``ids: (1, L)`` token ids; token ``j`` is replaced by the next id of the
    vocabulary (``(id + 1) % vocab_size``), one position at a time, and the stack
    (embeddings with segment 0, then every layer with ``mask``: ``None`` for BERT,
    :func:`qkv.masks.causal_mask` for a GPT-style stack) is run again; the pooler is
    not used. Runs under one torch thread (:func:`qkv.experiments.experiment`).
    Used in: Q15.
    """
    if not isinstance(model, Bert):
        raise TypeError(f"model must be a qkv.bert.Bert, got {type(model).__name__}")
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[0] != 1:
        raise ValueError(f"ids must be a (1, L) tensor, got {getattr(ids, 'shape', ids)}")

    def encode(x_ids: Tensor) -> Tensor:
        x = model.embeddings(x_ids, torch.zeros_like(x_ids))
        for layer in model.layers:
            x = layer(x, mask)
        return x[0]  # (L, H)

    with torch.no_grad():
        clean = encode(ids)
        columns = []
        for j in range(ids.shape[1]):
            changed = ids.clone()
            changed[0, j] = (changed[0, j] + 1) % model.config.vocab_size
            columns.append((encode(changed) - clean).norm(dim=-1))
    return torch.stack(columns, dim=1)


CLAIMS: dict[str, Claim] = claims()
