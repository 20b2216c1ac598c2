"""BERT's masked-language-model corruption: choose 15%, then 80/10/10.

Devlin et al. 2019 (§3.1, Appendix C.2): a fraction ``rate`` of the tokens is
chosen for prediction; a chosen token is replaced by ``[MASK]`` 80% of the
time, by a random token 10% of the time, and left unchanged 10% of the time.
The model must predict the original token at every chosen position. Because
``[MASK]`` never occurs at fine-tuning time, the random and unchanged cases
make the model keep a useful representation of *every* input token.

:class:`MaskedLM` is BERT with its prediction head (:class:`qkv.bert.Bert`, then
dense + GELU + LayerNorm and the tied word embeddings). Q16's experiments that train
it live in :mod:`qkv.experiments.q16_mask_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_int
from qkv.bert import Bert, BertConfig

__all__ = [
    "IGNORE_INDEX",
    "mask_tokens",
    "MaskedLM",
]

IGNORE_INDEX = -100
"""Label of positions with nothing to predict (``ignore_index`` of ``cross_entropy``)."""


def _check_id(name: str, value: object, vocab_size: int) -> int:
    value = check_int(name, value)
    if not 0 <= value < vocab_size:
        raise ValueError(f"{name} must be in [0, vocab_size={vocab_size}), got {value}")
    return int(value)


def _check_split(split: Sequence[float]) -> tuple[float, float, float]:
    if len(split) != 3 or any(not isinstance(p, int | float) for p in split):
        raise ValueError(f"split must be 3 numbers (mask, random, keep), got {split!r}")
    if any(not p >= 0 for p in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
        raise ValueError(f"split must be 3 non-negative fractions summing to 1, got {split!r}")
    return split[0], split[1], split[2]


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    rate: float = 0.15,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for masked language modelling; return new inputs and labels.

    Each token that is not special is chosen independently with probability
    ``rate`` (as Hugging Face's ``DataCollatorForLanguageModeling`` does;
    Google's original code picks exactly ``round(rate * L)`` per sequence: the
    expected count is the same). A chosen token becomes ``mask_id`` with
    probability ``split[0]``, a random token with ``split[1]``, and stays with
    ``split[2]``. Random tokens are drawn uniformly from the non-special ids,
    so they can coincide with the original token (as in BERT).

    Special tokens (``[CLS]``, ``[SEP]``, ...) are never chosen. **Padding is
    handled the same way: put the pad id in** ``special_ids``. ``mask_id`` is
    always treated as special, whether listed or not.

    Args:
        input_ids: integer ids ``(B, L)`` (any shape works), all in ``[0, V)``;
            never modified.
        vocab_size: ``V``.
        mask_id: the ``[MASK]`` id.
        special_ids: ids never chosen and never drawn as random replacements.
        rate: probability that a non-special token is chosen, in [0, 1].
        split: fractions (mask, random, keep) of the chosen tokens, summing to 1.
        generator: a :class:`torch.Generator` for reproducible masking; the
            random numbers are drawn on its device and moved to the input's,
            so a CPU generator gives the same result on every device.
    Returns:
        ``(inputs, labels)``, both new tensors of the input's shape: ``inputs``
        has the input's dtype; ``labels`` (int64) holds the original id where a
        token was chosen and ``IGNORE_INDEX`` (-100) elsewhere.
    Used in: Q14, Q16.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype == torch.bool or input_ids.is_floating_point() or input_ids.is_complex():
        raise TypeError(f"input_ids must have an integer dtype, got {input_ids.dtype}")
    vocab_size = check_int("vocab_size", vocab_size, 1)
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise ValueError(
            f"input_ids must lie in [0, vocab_size={vocab_size}), got values in "
            f"[{int(input_ids.min())}, {int(input_ids.max())}]"
        )
    mask_id = _check_id("mask_id", mask_id, vocab_size)
    if isinstance(special_ids, torch.Tensor):
        special_ids = special_ids.tolist()
    if isinstance(special_ids, str | bytes) or not isinstance(special_ids, Iterable):
        raise TypeError(
            "special_ids must be an iterable of token ids (e.g. [pad_id, cls_id, sep_id]; "
            f"[] if there are none), got {special_ids!r}"
        )
    special = {_check_id("special id", s, vocab_size) for s in special_ids} | {mask_id}
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a number in [0, 1], got {rate!r}")
    p_mask, p_random, _ = _check_split(split)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator)}")

    device = input_ids.device
    draw_on = generator.device if generator is not None else device
    # ids a random replacement may take: everything but the special tokens
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special], device=draw_on)
    if p_random > 0 and len(allowed) == 0:
        raise ValueError("split gives random replacements, but every id is special")

    # Three independent draws per position: chosen?, which action?, which random id?
    shape = input_ids.shape
    chosen = torch.rand(shape, generator=generator, device=draw_on) < rate
    action = torch.rand(shape, generator=generator, device=draw_on)
    pick = torch.randint(max(len(allowed), 1), shape, generator=generator, device=draw_on)
    chosen, action = chosen.to(device), action.to(device)
    random_ids = allowed[pick].to(device) if len(allowed) else torch.zeros_like(input_ids)

    is_special = torch.isin(input_ids, torch.tensor(sorted(special), device=device))
    chosen &= ~is_special
    to_mask = chosen & (action < p_mask)
    to_random = chosen & (action >= p_mask) & (action < p_mask + p_random)

    inputs = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    inputs = torch.where(to_random, random_ids.to(input_ids.dtype), inputs)
    labels = torch.where(chosen, input_ids.long(), IGNORE_INDEX)
    return inputs, labels


class MaskedLM(nn.Module):
    """BERT with its masked-LM head: ``LayerNorm(GELU(W h + b))``, then the tied word embeddings.

    ``forward(input_ids (B, L), attention_mask (B, L) or None) -> logits (B, L, V)``;
    ``attention_mask`` is 1 for keys that may be attended to (Hugging Face's convention).
    The output projection is the token-embedding table (weight tying, as in BERT)
    plus a bias of size ``V``.
    Used in: Q16 (bert/q16_mask_rate).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.bert = Bert(config)
        H = config.hidden_size
        self.transform = nn.Linear(H, H)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        hidden, _ = self.bert(input_ids, attention_mask=attention_mask)  # (B, L, H)
        hidden = self.norm(F.gelu(self.transform(hidden)))
        return hidden @ self.bert.embeddings.word_embeddings.weight.T + self.bias  # (B, L, V)
