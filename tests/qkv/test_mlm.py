"""Tests for qkv.mlm.mask_tokens: BERT's 15% and 80/10/10, specials and padding, seeds."""

import math

import pytest
import torch

from qkv.mlm import IGNORE_INDEX, mask_tokens

V = 99
PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP)  # MASK is special even when not listed
N_ALLOWED = V - 4  # ids a random replacement may take


def _batch(batch_size=3, length=7, seed=0):
    """[CLS] w ... w [SEP] [PAD]...: row b has length - b real positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (batch_size, length), generator=g)
    ids[:, 0] = CLS
    for b in range(batch_size):
        n_real = max(2, length - b)
        ids[b, n_real - 1] = SEP
        ids[b, n_real:] = PAD
    return ids


def _mask(ids, seed=0, **kw):
    kw = {"vocab_size": V, "mask_id": MASK, "special_ids": SPECIAL, **kw}
    return mask_tokens(ids, generator=torch.Generator().manual_seed(seed), **kw)


def _within(count, total, p, n_se=5.0):
    """|count/total - p| <= n_se standard errors of a binomial proportion.

    5 standard errors: a correct implementation fails with probability ~6e-7 per
    check (and the seed is fixed), while a wrong split (e.g. 0.75 instead of 0.8
    on ~30k chosen tokens, 21 standard errors off) cannot pass.
    """
    se = math.sqrt(p * (1 - p) / total)
    return abs(count / total - p) <= n_se * se


def test_proportions_on_a_large_sample():
    ids = _batch(batch_size=400, length=512, seed=1)
    inputs, labels = _mask(ids, seed=2)
    is_special = torch.isin(ids, torch.tensor(SPECIAL))
    chosen = labels != IGNORE_INDEX
    n_candidates, n_chosen = int((~is_special).sum()), int(chosen.sum())
    assert _within(n_chosen, n_candidates, 0.15)

    masked = chosen & (inputs == MASK)
    changed = chosen & (inputs != MASK) & (inputs != ids)
    unchanged = chosen & (inputs == ids)
    assert int(masked.sum() + changed.sum() + unchanged.sum()) == n_chosen
    # a random draw equals the original token with probability 1 / N_ALLOWED
    assert _within(int(masked.sum()), n_chosen, 0.8)
    assert _within(int(changed.sum()), n_chosen, 0.1 * (1 - 1 / N_ALLOWED))
    assert _within(int(unchanged.sum()), n_chosen, 0.1 + 0.1 / N_ALLOWED)


def test_labels_hold_original_ids_and_inputs_change_only_where_chosen():
    ids = _batch(batch_size=30, length=37)
    inputs, labels = _mask(ids, rate=0.5)
    chosen = labels != IGNORE_INDEX
    assert chosen.any() and (~chosen).any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    assert labels.dtype == torch.int64 and inputs.dtype == ids.dtype


def test_specials_and_padding_never_chosen_nor_changed():
    ids = _batch(batch_size=50, length=23)
    inputs, labels = _mask(ids, rate=1.0)
    is_special = torch.isin(ids, torch.tensor(SPECIAL))
    assert (ids == PAD).any()
    assert torch.all(labels[is_special] == IGNORE_INDEX)
    assert torch.equal(inputs[is_special], ids[is_special])
    assert torch.all(labels[~is_special] != IGNORE_INDEX)


def test_mask_id_in_input_is_never_chosen():
    ids = _batch(batch_size=5, length=11)
    ids[:, 1] = MASK
    _, labels = _mask(ids, rate=1.0)
    assert torch.all(labels[:, 1] == IGNORE_INDEX)


def test_random_replacements_are_never_special_and_cover_the_vocabulary():
    ids = _batch(batch_size=100, length=203)
    inputs, labels = _mask(ids, rate=1.0, split=(0.0, 1.0, 0.0))
    replaced = inputs[labels != IGNORE_INDEX]
    assert not torch.isin(replaced, torch.tensor((*SPECIAL, MASK))).any()
    # ~20k uniform draws over 95 ids: every allowed id appears
    assert set(replaced.tolist()) == set(range(4, V))


@pytest.mark.parametrize(
    ("split", "expect"), [((1.0, 0.0, 0.0), "mask"), ((0.0, 0.0, 1.0), "keep")]
)
def test_rate_one_with_pure_splits(split, expect):
    ids = _batch(batch_size=3, length=7)
    inputs, labels = _mask(ids, rate=1.0, split=split)
    real = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert torch.equal(labels[real], ids[real])
    expected = torch.where(real, MASK, ids) if expect == "mask" else ids
    assert torch.equal(inputs, expected)


def test_rate_zero_changes_nothing():
    ids = _batch(batch_size=3, length=7)
    inputs, labels = _mask(ids, rate=0.0)
    assert torch.equal(inputs, ids)
    assert torch.all(labels == IGNORE_INDEX)


def test_input_is_never_modified_and_outputs_are_new_tensors():
    ids = _batch(batch_size=3, length=7)
    before = ids.clone()
    inputs, labels = _mask(ids, rate=1.0, split=(0.0, 0.0, 1.0))
    assert torch.equal(ids, before)
    assert inputs.data_ptr() != ids.data_ptr() and labels.data_ptr() != ids.data_ptr()


def test_reproducible_with_a_generator(device):
    ids = _batch(batch_size=3, length=37).to(device)
    a = _mask(ids, seed=5)
    b = _mask(ids, seed=5)
    c = _mask(ids, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # a CPU generator gives the same corruption on every device
    cpu = _mask(ids.cpu(), seed=5)
    assert torch.equal(a[0].cpu(), cpu[0]) and torch.equal(a[1].cpu(), cpu[1])
    assert a[0].device == ids.device


def test_special_ids_may_be_a_tensor_and_int32_input_works():
    ids = _batch(batch_size=3, length=7).to(torch.int32)
    inputs, labels = _mask(ids, special_ids=torch.tensor(SPECIAL), rate=1.0)
    assert inputs.dtype == torch.int32
    assert torch.all(labels[:, 0] == IGNORE_INDEX)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"rate": 1.5}, ValueError, r"rate must be a number in \[0, 1\]"),
        ({"rate": -0.1}, ValueError, r"rate must be a number in \[0, 1\]"),
        ({"rate": float("nan")}, ValueError, r"rate must be a number in \[0, 1\]"),
        ({"split": (0.8, 0.1, 0.2)}, ValueError, "summing to 1"),
        ({"split": (1.1, -0.1, 0.0)}, ValueError, "non-negative"),
        ({"split": (0.5, 0.5)}, ValueError, "split must be 3 numbers"),
        ({"mask_id": V}, ValueError, r"mask_id must be in \[0, vocab_size=99\)"),
        ({"mask_id": 3.0}, TypeError, "mask_id must be an int, got float"),
        ({"special_ids": (0, 120)}, ValueError, r"special id must be in \[0, vocab_size"),
        ({"vocab_size": 0}, ValueError, "vocab_size must be >= 1"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ({"special_ids": None}, TypeError, r"special_ids must be an iterable .*\[\] if there are"),
        ({"special_ids": 0}, TypeError, "special_ids must be an iterable of token ids"),
        ({"vocab_size": 99.0}, TypeError, "vocab_size must be an int, got float"),
    ],
)
def test_bad_arguments(change, error, match):
    kw = {"vocab_size": V, "mask_id": MASK, "special_ids": SPECIAL, **change}
    with pytest.raises(error, match=match):
        mask_tokens(_batch(), **kw)


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (torch.full((2, 3), 5.0), TypeError, "input_ids must have an integer dtype"),
        (torch.ones(2, 3, dtype=torch.bool), TypeError, "integer dtype"),
        ([[5, 6]], TypeError, "input_ids must be a torch.Tensor"),
        (torch.tensor([[5, V]]), ValueError, r"input_ids must lie in \[0, vocab_size=99\)"),
        (torch.tensor([[5, -1]]), ValueError, r"got values in \[-1, 5\]"),
    ],
)
def test_bad_input_ids(ids, error, match):
    with pytest.raises(error, match=match):
        mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=SPECIAL)


def test_random_replacement_needs_a_non_special_id():
    with pytest.raises(ValueError, match="every id is special"):
        mask_tokens(torch.tensor([[0, 1]]), vocab_size=2, mask_id=1, special_ids=(0,))


# --- BERT's masked-LM head -------------------------------------------------


def test_masked_lm_matches_hugging_face_bert_for_masked_lm():
    transformers = pytest.importorskip("transformers")
    from qkv.bert import BertConfig, bert_from_hf_state_dict
    from qkv.mlm import MaskedLM

    config = BertConfig(
        vocab_size=37,
        hidden_size=12,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=19,
        max_position_embeddings=11,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    hf_config = transformers.BertConfig(
        vocab_size=37,
        hidden_size=12,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=19,
        max_position_embeddings=11,
        hidden_act="gelu",
    )
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(hf_config).eval()
    ours = MaskedLM(config).eval()
    ours.bert = bert_from_hf_state_dict(hf.bert.state_dict() | _hf_pooler(config), config)
    head = hf.cls.predictions
    with torch.no_grad():
        ours.transform.load_state_dict(head.transform.dense.state_dict())
        ours.norm.load_state_dict(head.transform.LayerNorm.state_dict())
        ours.bias.copy_(head.bias)
    ids = torch.randint(0, 37, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got = ours(ids, mask)
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)


def _hf_pooler(config):
    # BertForMaskedLM has no pooler; give the loader a zero one (unused by the MLM head)
    H = config.hidden_size
    return {"pooler.dense.weight": torch.zeros(H, H), "pooler.dense.bias": torch.zeros(H)}


def test_numpy_numbers_are_numbers() -> None:
    import numpy as np

    ids = torch.randint(5, 50, (4, 30), generator=torch.Generator().manual_seed(0))
    kw = {"vocab_size": 50, "mask_id": 3, "special_ids": [0, 1, 2]}
    expected = mask_tokens(ids, **kw, rate=0.2, generator=torch.Generator().manual_seed(1))
    for rate in (np.float32(0.2), np.float64(0.2)):
        got = mask_tokens(ids, **kw, rate=rate, generator=torch.Generator().manual_seed(1))
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    split = (np.float32(0.8), 0.1, 0.1)
    mask_tokens(ids, **kw, split=split, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="rate must be a number"):
        mask_tokens(ids, **kw, rate=True)
