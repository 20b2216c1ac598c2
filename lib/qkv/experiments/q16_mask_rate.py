"""Q16 (bert/q16_mask_rate): why BERT masks 15%, and why it hides in the input.

The chapter's experiments on a tiny :class:`qkv.mlm.MaskedLM` (BERT plus its
prediction head) trained on :class:`qkv.markov.MarkovLanguage`:

- :func:`leak_by_path`: hide one word with an attention mask (its key removed for
  every query) and see which outputs still change with it: with the residual, without
  it (the query and the feed-forward block still carry the word), and with a query
  built from the position alone (XLNet's query stream), which is the only variant
  that hides it.
- :func:`leak_run`: a masked LM trained with the targets hidden by the attention mask
  beats the Bayes-optimal prediction, which is possible only by copying.
- :func:`rate_runs`: the same model trained at four masking rates on one budget,
  scored against the exact posterior of an isolated masked word.
- :func:`mismatch_runs`: 80/10/10 against 100% ``[MASK]``: equal on masked input,
  far apart on clean input (the fine-tuning input), where only 80/10/10 ever
  trained the head to read a visible word.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qkv._checks import check_generator, check_int
from qkv.bert import BertConfig
from qkv.experiments import Claim, claims, experiment
from qkv.layers import TransformerEncoderLayer
from qkv.markov import MarkovLanguage
from qkv.mlm import IGNORE_INDEX, MaskedLM, mask_tokens
from qkv.tasks import MASK_ID, SPECIAL_IDS
from qkv.train import History, TrainConfig, train

__all__ = [
    "RATES",
    "STEPS",
    "LEAK_STEPS",
    "MISMATCH_STEPS",
    "CLAIMS",
    "MaskedLMRun",
    "MismatchScores",
    "clean_accuracy",
    "mismatch_runs",
    "isolated_mask_batch",
    "train_masked_lm",
    "leak_by_path",
    "leak_run",
    "rate_runs",
]

RATES = (0.05, 0.15, 0.40, 0.80)  # the masking rates compared on one budget
STEPS = 150  # AdamW updates per rate (batches of 64 sentences of 16 words)
LEAK_STEPS = 40  # updates of the model that hides its targets with the attention mask
MISMATCH_STEPS = 250  # updates of the 80/10/10 and 100%-[MASK] models of mismatch_runs
SEEDS = tuple(range(6))


class MaskedLMRun(NamedTuple):
    """A trained :class:`qkv.mlm.MaskedLM`, its history, and its scores on isolated masks.

    ``accuracy`` and ``loss`` (cross-entropy, nats) are the model's; ``bayes_accuracy``
    and ``bayes_loss`` those of the exact posterior on the same held-out words.
    """

    model: MaskedLM
    history: History
    accuracy: float
    loss: float
    bayes_accuracy: float
    bayes_loss: float


@experiment
def leak_by_path(seed: int = 0, *, length: int = 12, position: int = 5) -> dict[str, Tensor]:
    """Which outputs move when a word "hidden" by the attention mask changes.

    One untrained BERT layer (Post-LN, BERT's initialisation, seeded with ``seed``)
    reads a sentence of ``length`` words; key ``position`` is removed for every query,
    and the word there is replaced by the next word of the vocabulary. Returns, per
    variant, the largest change of each position's output ``(length,)``:

    - ``"BERT layer"``: ``h = LN(x + Attn(x))``, ``out = LN(h + FFN(h))``;
    - ``"no residual"``: ``out = LN(FFN(LN(Attn(x))))``. Position ``p``'s query is
      ``W_Q x_p``, so the word still reaches its own output through the query (and
      from there through the feed-forward block);
    - ``"no residual, position-only queries"``: the same, but every query is built
      from its position embedding alone, as XLNet's query stream is: nothing of the
      hidden word reaches any output.

    Used in: Q16.
    """
    check_int("seed", seed, 0)
    check_int("length", length, 3)
    check_int("position", position, 0)
    if position >= length:
        raise ValueError(f"position must be < length={length}, got {position}")
    language = MarkovLanguage(24, branching=3, seed=0)
    config = BertConfig(
        vocab_size=language.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=length,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    bert = MaskedLM(config).bert.eval()
    emb = bert.embeddings
    layer = cast(TransformerEncoderLayer, bert.layers[0])  # a ModuleList's items are typed Module
    sentence = language.sample(1, length, generator=torch.Generator().manual_seed(seed))
    n_words = language.vocab_size - len(SPECIAL_IDS)
    other = sentence.clone()  # the same sentence with the next word at `position`
    other[0, position] = (sentence[0, position] - len(SPECIAL_IDS) + 1) % n_words + len(SPECIAL_IDS)
    keep = torch.ones(1, 1, 1, length, dtype=torch.bool)
    keep[..., position] = False  # key `position` is hidden from every query
    types = torch.zeros(1, length, dtype=torch.long)
    position_only = emb.layer_norm(
        emb.position_embeddings.weight[:length][None] + emb.token_type_embeddings(types)
    )

    def outputs(ids: Tensor) -> dict[str, Tensor]:
        x = emb(ids, types)
        attended, _ = layer.self_attn(x, mask=keep)
        h = layer.norm1(x + attended)
        from_position, _ = layer.self_attn(position_only, x, x, mask=keep)
        return {
            "BERT layer": layer.norm2(h + layer.ffn(h)),
            "no residual": layer.norm2(layer.ffn(layer.norm1(attended))),
            "no residual, position-only queries": layer.norm2(
                layer.ffn(layer.norm1(from_position))
            ),
        }

    with torch.no_grad():
        before, after = outputs(sentence), outputs(other)
    return {k: (before[k] - after[k]).abs().amax(-1)[0] for k in before}


def _hide(
    words: Tensor,
    hide: str,
    rate: float,
    vocab_size: int,
    generator: torch.Generator,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(inputs, labels, attention_mask)`` for one training batch of ``words (B, L)``."""
    if hide == "input":  # BERT: corrupt the input, 80/10/10 unless told otherwise
        inputs, labels = mask_tokens(
            words,
            vocab_size=vocab_size,
            mask_id=MASK_ID,
            special_ids=SPECIAL_IDS,
            rate=rate,
            split=split,
            generator=generator,
        )
        return inputs, labels, None
    # keep every token in the input; hide the chosen ones from every query instead
    _, labels = mask_tokens(
        words,
        vocab_size=vocab_size,
        mask_id=MASK_ID,
        special_ids=SPECIAL_IDS,
        rate=rate,
        split=(0.0, 0.0, 1.0),
        generator=generator,
    )
    return words, labels, (labels == IGNORE_INDEX).long()  # 0 = hidden key


def isolated_mask_batch(
    language: MarkovLanguage, size: int, length: int, *, generator: torch.Generator | int
) -> tuple[Tensor, Tensor]:
    """Held-out sentences with one hidden word each: ``words (size, L)``, ``position (size,)``.

    The position is uniform over ``1 .. L - 2``, so both neighbours are known and
    :meth:`qkv.markov.MarkovLanguage.masked_posterior` gives the best possible prediction.
    """
    check_int("size", size, 1)
    check_int("length", length, 3)
    g = check_generator(generator)  # a generator, or an int seed (numpy integers too)
    words = language.sample(size, length, generator=g)
    position = torch.randint(1, length - 1, (size,), generator=g)
    return words, position


@experiment
def train_masked_lm(
    rate: float,
    *,
    hide: str = "input",
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    steps: int = 150,
    batch_size: int = 64,
    length: int = 16,
    n_words: int = 24,
    hidden_size: int = 32,
    num_layers: int = 1,
    lr: float = 1e-2,
    device: str | torch.device | None = None,
) -> MaskedLMRun:
    """Train a tiny :class:`qkv.mlm.MaskedLM` on a Markov language; score it on isolated masks.

    Every step draws ``batch_size`` fresh sentences of ``length`` words from
    ``MarkovLanguage(n_words, branching=3, seed=0)`` (the same language for every
    seed) and chooses each word with probability ``rate``. ``hide="input"`` does
    BERT's 80/10/10 corruption of the input; ``hide="attention"`` leaves the input
    intact and removes the chosen words as keys of every query (an attention mask),
    which leaks each word to its own position (through the residual, the query and
    the feed-forward block: :func:`leak_by_path`). ``split`` is the ([MASK], random,
    unchanged) share of the chosen words for ``hide="input"``. The
    budget is the same for every rate: ``steps`` updates of AdamW (``lr``) on the
    same number of sentences. The held-out score uses 1024 sentences (generator
    seeded with ``10_000 + seed``) with one hidden word each, hidden the way the
    model was trained.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be a number in (0, 1], got {rate!r}")
    if hide not in ("input", "attention"):
        raise ValueError(f"hide must be 'input' or 'attention', got {hide!r}")
    check_int("seed", seed, 0)
    language = MarkovLanguage(n_words, branching=3, seed=0)
    config = BertConfig(
        vocab_size=language.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=length,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MaskedLM(config)

    def batch_fn(step: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        words = language.sample(batch_size, length, generator=gen)
        return _hide(words, hide, rate, language.vocab_size, gen, split)

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor, Tensor | None]) -> Tensor:
        inputs, labels, attention_mask = batch
        logits = m(inputs, attention_mask)  # (B, L, V)
        if not (labels != IGNORE_INDEX).any():  # nothing chosen in this batch
            return logits.sum() * 0.0
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    history = train(
        model,
        batch_fn,
        loss_fn,
        TrainConfig(steps=steps, lr=lr, seed=seed, log_every=10, device=device),
    )
    words, position = isolated_mask_batch(language, 1024, length, generator=10_000 + seed)
    rows = torch.arange(len(words))
    target = words[rows, position]
    inputs, attention_mask = words.clone(), None
    if hide == "input":
        inputs[rows, position] = MASK_ID
    else:
        attention_mask = torch.ones_like(words)
        attention_mask[rows, position] = 0
    dev = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        mask = None if attention_mask is None else attention_mask.to(dev)
        logits = model(inputs.to(dev), mask)[rows, position].cpu()  # (size, V)
    posterior = language.masked_posterior(words[rows, position - 1], words[rows, position + 1])
    word_index = target - len(SPECIAL_IDS)  # posterior is over words only
    bayes_p = posterior[rows, word_index]
    return MaskedLMRun(
        model=model,
        history=history,
        accuracy=(logits.argmax(-1) == target).float().mean().item(),
        loss=F.cross_entropy(logits, target).item(),
        bayes_accuracy=(posterior.argmax(-1) == word_index).float().mean().item(),
        bayes_loss=-bayes_p.clamp_min(1e-12).log().mean().item(),
    )


@functools.cache
def _run(
    rate: float,
    hide: str,
    steps: int,
    seed: int,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> MaskedLMRun:
    return train_masked_lm(rate, hide=hide, split=split, steps=steps, seed=seed, device="cpu")


@experiment
def leak_run(seed: int = 0) -> MaskedLMRun:
    """15% of the words hidden by the attention mask (inputs intact), ``LEAK_STEPS`` updates.

    Used in: Q16.
    """
    return _run(0.15, "attention", LEAK_STEPS, seed)


@experiment
def rate_runs(seed: int = 0) -> dict[float, MaskedLMRun]:
    """One run per rate in ``RATES``, 80/10/10 in the input, ``STEPS`` updates each.

    Used in: Q16.
    """
    return {rate: _run(rate, "input", STEPS, seed) for rate in RATES}


class MismatchScores(NamedTuple):
    """One model of :func:`mismatch_runs`, scored on two held-out inputs.

    ``masked``: accuracy on one ``[MASK]`` per sentence (the pre-training input);
    ``clean``: accuracy of the prediction head at every word of sentences with nothing
    masked (the fine-tuning input), where the right answer is the word itself.
    """

    masked: float
    clean: float


def clean_accuracy(model: MaskedLM, seed: int = 0, *, size: int = 1024, length: int = 16) -> float:
    """How often ``model``'s head returns the word at its own position, nothing masked.

    ``size`` held-out sentences of ``length`` words from the chapter's Markov language
    (generator seeded with ``20_000 + seed``), fed intact, as at fine-tuning time.
    """
    check_int("seed", seed, 0)
    check_int("size", size, 1)
    language = MarkovLanguage(24, branching=3, seed=0)
    words = language.sample(size, length, generator=torch.Generator().manual_seed(20_000 + seed))
    dev = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        predicted = model(words.to(dev), None).argmax(-1).cpu()  # (size, length)
    return (predicted == words).float().mean().item()


@experiment
def mismatch_runs(seed: int = 0) -> dict[str, MismatchScores]:
    """15% chosen, ``MISMATCH_STEPS`` updates: 80/10/10 against 100% ``[MASK]``.

    The two models differ only in what the chosen words become. Both are scored on
    isolated masks and on clean sentences (:func:`clean_accuracy`). Used in: Q16.
    """
    splits = {"80/10/10": (0.8, 0.1, 0.1), "100% [MASK]": (1.0, 0.0, 0.0)}
    out = {}
    for name, split in splits.items():
        run = _run(0.15, "input", MISMATCH_STEPS, seed, split)
        out[name] = MismatchScores(run.accuracy, clean_accuracy(run.model, seed))
    return out


def _gap(high: float, low: float, seed: int) -> float:
    runs = rate_runs(seed)
    return runs[high].accuracy - runs[low].accuracy


def _above_bayes(seed: int) -> float:
    return max(run.accuracy - run.bayes_accuracy for run in rate_runs(seed).values())


CLAIMS = claims(
    Claim(
        "q16-leak-without-residual",
        "attention mask, no residual: largest change of the hidden word's own output",
        lambda s: float(leak_by_path(s)["no residual"].max()),
        ">",
        1e-3,
        SEEDS,
    ),
    Claim(
        "q16-leak-accuracy",
        "hidden by attention mask, 40 steps: accuracy − Bayes accuracy",
        lambda s: leak_run(s).accuracy - leak_run(s).bayes_accuracy,
        ">",
        0.03,
        SEEDS,
    ),
    Claim(
        "q16-leak-loss",
        "hidden by attention mask: Bayes loss − model loss (nats)",
        lambda s: leak_run(s).bayes_loss - leak_run(s).loss,
        ">",
        0.05,
        SEEDS,
    ),
    Claim(
        "q16-40-vs-5",
        "150 steps: accuracy at 40% − accuracy at 5%",
        lambda s: _gap(0.4, 0.05, s),
        ">",
        0.3,
        SEEDS,
    ),
    Claim(
        "q16-15-vs-5",
        "150 steps: accuracy at 15% − accuracy at 5%",
        lambda s: _gap(0.15, 0.05, s),
        ">",
        0.15,
        SEEDS,
    ),
    Claim(
        "q16-40-vs-15",
        "150 steps: accuracy at 40% − accuracy at 15%",
        lambda s: _gap(0.4, 0.15, s),
        ">",
        0.0,
        SEEDS,
    ),
    Claim(
        "q16-40-vs-80",
        "150 steps: accuracy at 40% − accuracy at 80%",
        lambda s: _gap(0.4, 0.8, s),
        ">",
        0.05,
        SEEDS,
    ),
    Claim(
        "q16-below-bayes",
        "input hiding: largest accuracy − Bayes accuracy over the rates",
        _above_bayes,
        "<",
        0.02,
        SEEDS,
    ),
    Claim(
        "q16-mismatch-clean",
        "clean input: head accuracy of 80/10/10 − of 100% [MASK]",
        lambda s: mismatch_runs(s)["80/10/10"].clean - mismatch_runs(s)["100% [MASK]"].clean,
        ">",
        0.15,
        SEEDS,
    ),
    Claim(
        "q16-mismatch-masked",
        "isolated [MASK]: |accuracy of 80/10/10 − of 100% [MASK]|",
        lambda s: abs(mismatch_runs(s)["80/10/10"].masked - mismatch_runs(s)["100% [MASK]"].masked),
        "<",
        0.12,
        SEEDS,
    ),
)
