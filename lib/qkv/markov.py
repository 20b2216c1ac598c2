"""A synthetic language with a known answer for masked-LM: a sparse first-order Markov chain.

Because the chain is known, so is the best any model can do on a masked word
(:meth:`MarkovLanguage.masked_posterior`, Bayes' rule over both neighbours): the
ceiling against which a trained masked-LM is measured. Importable from
:mod:`qkv.data` too; word ids start after the special ids of :mod:`qkv.tasks`.
"""

from __future__ import annotations

import torch

from qkv._checks import check_generator
from qkv._checks import check_positive_ints as _check_positive
from qkv.tasks import N_SPECIAL

__all__ = ["MarkovLanguage"]


class MarkovLanguage:
    """A synthetic language for masked-LM: a sparse first-order Markov chain over words.

    Each word may be followed by only ``branching`` words (chosen at random,
    with random probabilities), so a masked word is constrained by its left
    neighbour *and* its right one: context on both sides helps, as in BERT's
    masked-LM task. The chain is fixed by ``seed``; samples vary with the
    generator given to :meth:`sample`.

    Args:
        n_words: number of words; word ``i`` has id ``N_SPECIAL + i``.
        branching: successors per word, ``1 <= branching <= n_words``.
        seed: fixes the transition matrix.

    Attributes:
        transition: ``(n_words, n_words)``; row ``i`` is P(next word | word ``i``).
    Used in: Q16.
    """

    def __init__(self, n_words: int, *, branching: int = 3, seed: int = 0):
        _check_positive(n_words=n_words, branching=branching)
        if branching > n_words:
            raise ValueError(f"branching must be <= n_words, got {branching} > {n_words}")
        g = check_generator(seed)
        successors = torch.rand(n_words, n_words, generator=g).argsort(dim=1)[:, :branching]
        # normalised exponentials are Dirichlet(1, ..., 1) probabilities
        weights = -torch.log1p(-torch.rand(n_words, branching, generator=g))
        transition = torch.zeros(n_words, n_words)
        transition.scatter_(1, successors, weights / weights.sum(dim=1, keepdim=True))
        self.n_words = n_words
        self.transition = transition

    @property
    def vocab_size(self) -> int:
        """``V``: special ids plus words."""
        return N_SPECIAL + self.n_words

    def sample(
        self, batch_size: int, length: int, *, generator: torch.Generator | int
    ) -> torch.Tensor:
        """Return ``(B, length)`` word ids; the first word is uniform, the rest follow the chain."""
        _check_positive(batch_size=batch_size, length=length)
        g = check_generator(generator)
        words = torch.empty(batch_size, length, dtype=torch.long)
        words[:, 0] = torch.randint(0, self.n_words, (batch_size,), generator=g)
        for t in range(1, length):
            next_probs = self.transition[words[:, t - 1]]  # (B, n_words)
            words[:, t] = torch.multinomial(next_probs, 1, generator=g).squeeze(1)
        return words + N_SPECIAL

    def masked_posterior(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """P(word | left and right neighbour) for one masked word between two known ones.

        By Bayes' rule the probability is proportional to
        ``transition[left, w] * transition[w, right]``; the best any masked-LM can do
        on an isolated mask. ``left, right: (...)`` token ids; returns ``(..., n_words)``
        (all zeros where no word can follow ``left`` and precede ``right``).
        """
        left, right = left - N_SPECIAL, right - N_SPECIAL
        if left.min() < 0 or right.min() < 0 or max(left.max(), right.max()) >= self.n_words:
            raise ValueError(f"neighbours must be word ids in [{N_SPECIAL}, {self.vocab_size})")
        joint = self.transition[left] * self.transition.T[right]  # (..., n_words)
        # a (left, right) pair no word can link has total 0: return zeros, not NaN
        total = joint.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(joint.dtype).tiny)
        return joint / total
