"""Q32 (why decoder-only): what a causal prompt buys a chat model, and what a prefix LM loses.

A conversation is one growing sequence. Turn 1: a prompt of ``PROMPT`` tokens, then an
answer of ``ANSWER`` tokens decoded one at a time with the KV cache. Turn 2: the user
adds ``FOLLOW_UP`` tokens and the model must predict the next one.

- A causal decoder keeps its turn-1 cache: under the causal mask no cached key or
  value depends on later tokens, so appending turn 2 to the cache gives exactly the
  logits of a full pass over the whole conversation.
- A prefix LM (non-causal decoder) treats everything before the reply as its prefix,
  attended bidirectionally. In turn 2 the prefix has grown, so every cached key and
  value of turn 1 is stale: reusing the cache gives other logits than the prefix LM
  itself computes over the whole conversation, which must be prefilled again.

The model is a small random GPT-2 (:mod:`qkv.gpt`): the property is one of the mask,
not of training, so random weights show it.
"""

from __future__ import annotations

import torch

from qkv.complexity import count_flops
from qkv.experiments import Claim, claims, experiment
from qkv.gpt import GPT, GPTConfig
from qkv.masks import prefix_lm_mask
from qkv.mlm import mask_tokens

CONFIG = GPTConfig(vocab_size=97, n_positions=64, n_embd=48, n_layer=2, n_head=4)
PROMPT, ANSWER, FOLLOW_UP = 16, 8, 8  # tokens of turn 1's prompt and answer, turn 2's message
LENGTH = PROMPT + ANSWER + FOLLOW_UP


def _model_and_conversation(seed: int) -> tuple[GPT, torch.Tensor]:
    torch.manual_seed(seed)  # the initialisation
    model = GPT(CONFIG).eval()
    g = torch.Generator().manual_seed(seed)
    return model, torch.randint(0, CONFIG.vocab_size, (1, LENGTH), generator=g)


def _turn_one_cache(model: GPT, ids: torch.Tensor, prefix_lm: bool):
    """Prefill the prompt (bidirectional for a prefix LM), then decode the answer token by token."""
    prompt = ids[:, :PROMPT]
    mask = prefix_lm_mask(PROMPT, PROMPT) if prefix_lm else None
    _, cache = model(prompt, mask=mask)
    for t in range(PROMPT, PROMPT + ANSWER):  # one answer token per step, as in generation
        _, cache = model(ids[:, t : t + 1], cache)
    return cache


def _relative_gap(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest |difference| of two logit vectors, in units of the reference's spread (std)."""
    return ((logits - reference).abs().max() / reference.std()).item()


@experiment
@torch.no_grad()
def turn_two_gap(seed: int, prefix_lm: bool) -> float:
    """Turn 2's next-token logits, reusing the turn-1 cache vs one full pass (relative gap).

    The full pass is the model's own definition of the turn-2 logits: causal over the
    whole conversation, or (prefix LM) bidirectional over everything before the reply.
    Used in: Q32.
    """
    model, ids = _model_and_conversation(seed)
    cache = _turn_one_cache(model, ids, prefix_lm)
    follow_up = ids[:, PROMPT + ANSWER :]
    if prefix_lm:  # the new tokens join the prefix: they see every token of the conversation
        reused, _ = model(follow_up, cache, mask=torch.ones(FOLLOW_UP, LENGTH, dtype=torch.bool))
        full, _ = model(ids, mask=prefix_lm_mask(LENGTH, LENGTH))
    else:
        reused, _ = model(follow_up, cache)
        full, _ = model(ids)
    return _relative_gap(reused[:, -1], full[:, -1])  # the next-token prediction


@experiment
@torch.no_grad()
def prefill_mask_gap(seed: int) -> float:
    """The first answer token's logits, prompt prefilled without a mask (bidirectional) vs
    with the causal mask the model was trained with (relative gap).

    Used in: Q32.
    """
    model, ids = _model_and_conversation(seed)
    prompt = ids[:, :PROMPT]
    causal, _ = model(prompt)
    bidirectional, _ = model(prompt, mask=torch.ones(PROMPT, PROMPT, dtype=torch.bool))
    return _relative_gap(bidirectional[:, -1], causal[:, -1])


def turn_two_flops() -> dict[str, int]:
    """FLOPs counted by PyTorch for turn 2: the causal decoder appends, a prefix LM re-prefills.

    Used in: Q32.
    """
    model, ids = _model_and_conversation(0)
    cache = _turn_one_cache(model, ids, prefix_lm=False)
    follow_up = ids[:, PROMPT + ANSWER :]
    return {
        "causal: append to the cache": count_flops(lambda: model(follow_up, cache))["total"],
        "prefix LM: prefill it all again": count_flops(
            lambda: model(ids, mask=prefix_lm_mask(LENGTH, LENGTH))
        )["total"],
    }


def loss_fractions(length: int = 512, prefix: int = 256, seed: int = 0) -> dict[str, float]:
    """Share of the positions of one sequence that carry a training loss, per objective.

    Causal LM: every position predicts its next token. Prefix LM: only the positions
    after the prefix. Masked LM: the positions BERT's recipe chooses (15%), counted
    from the labels :func:`qkv.mlm.mask_tokens` returns.
    Used in: Q32.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (64, length), generator=g)
    _, labels = mask_tokens(ids, vocab_size=1000, mask_id=4, special_ids=[0], generator=g)
    causal_targets = torch.ones(length, dtype=torch.bool)
    causal_targets[-1] = False  # the last token has no next token within the sequence
    prefix_targets = causal_targets & (torch.arange(length) >= prefix - 1)  # after the prefix
    return {
        "causal LM": causal_targets.float().mean().item(),
        "prefix LM (half the sequence as prefix)": prefix_targets.float().mean().item(),
        "masked LM (BERT)": (labels != -100).float().mean().item(),
    }


GAP = "largest |logit difference| / logit std"
CLAIMS = claims(
    Claim(
        "q32-causal-cache-exact",
        f"causal decoder, turn 2, turn-1 cache vs full pass: {GAP}",
        lambda seed: turn_two_gap(seed, prefix_lm=False),
        "<",
        1e-4,
    ),
    Claim(
        "q32-prefix-cache-stale",
        f"prefix LM, turn 2, turn-1 cache vs its full pass: {GAP}",
        lambda seed: turn_two_gap(seed, prefix_lm=True),
        ">",
        5e-3,
    ),
    Claim(
        "q32-prefill-needs-the-mask",
        f"causal decoder, first answer token, prefill without vs with the causal mask: {GAP}",
        prefill_mask_gap,
        ">",
        1e-2,
    ),
)
