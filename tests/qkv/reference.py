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


def check_cached_pass(model: nn.Module, chunks: list[int], *, atol: float) -> None:
    """A left-padded batch fed to ``model`` ``chunks`` tokens at a time through its cache gives
    the logits of the full pass on the real tokens (``model(ids, cache, attention_mask=...,
    position_ids=...) -> (logits, cache)``, as qkv.gpt and qkv.llama)."""
    device = next(model.parameters()).device
    n = sum(chunks)
    x, mask = (t.to(device) for t in left_padded([n, n - 3, 2], n, vocab_size=model.vocab_size))
    positions = hf_positions(mask)
    with torch.no_grad():
        full, _ = model(x, attention_mask=mask, position_ids=positions)
        steps, cache, m = [], None, 0
        for size in chunks:
            step = slice(m, m + size)
            seen = mask[:, : m + size]  # the mask covers the cache and the new tokens
            logits, cache = model(
                x[:, step], cache, attention_mask=seen, position_ids=positions[:, step]
            )
            steps.append(logits)
            m += size
    real = mask.bool()
    torch.testing.assert_close(torch.cat(steps, dim=1)[real], full[real], atol=atol, rtol=0)


def check_left_padding(ours: nn.Module, theirs: nn.Module, lengths: list[int], n: int) -> dict:
    """A left-padded batch of prompts of ``lengths``: qkv's ``ours`` gives Hugging Face's
    ``theirs`` logits with Hugging Face's position ids and without them ("shifted": counted
    from column 0), and with them each row equals its prompt run alone without padding.
    Returns the logits (``"ours"``, ``"ours_shifted"``) and each prompt's ``"alone"``."""
    device = next(ours.parameters()).device
    x, mask = (t.to(device) for t in left_padded(lengths, n, vocab_size=ours.vocab_size))
    positions = hf_positions(mask)
    with torch.no_grad():
        out = {
            "ours": ours(x, attention_mask=mask, position_ids=positions)[0],
            "ours_shifted": ours(x, attention_mask=mask)[0],
            "alone": [ours(x[b : b + 1, n - k :])[0][0] for b, k in enumerate(lengths)],
        }
        expected = theirs(x, attention_mask=mask, position_ids=positions).logits
        expected_shifted = theirs(x, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(out["ours"][real], expected[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["ours_shifted"][real], expected_shifted[real], atol=1e-5, rtol=0)
    for b, k in enumerate(lengths):
        torch.testing.assert_close(out["ours"][b, n - k :], out["alone"][b], atol=1e-5, rtol=0)
    return out


def hf_greedy(
    model: nn.Module,
    ids: torch.Tensor,
    steps: int,
    attention_mask: torch.Tensor | None = None,
    **kw,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face ``generate``'s greedy ``(sequences (B, n + steps), logits (B, steps, V))``,
    exactly ``steps`` new tokens (no early stop at an end-of-sequence token)."""
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids) if attention_mask is None else attention_mask,
        do_sample=False,
        max_new_tokens=steps,
        min_new_tokens=steps,
        return_dict_in_generate=True,
        output_logits=True,
        **kw,
    )
    return out.sequences, torch.stack(out.logits, dim=1)
