"""The book's data: a small bilingual corpus, and the seeded synthetic tasks the chapters train on.

:func:`load_corpus` reads the corpus shipped with the package. The synthetic
tasks live in :mod:`qkv.tasks` (the labelled tasks and the special-id table
they share: ``PAD_ID`` = 0, ``BOS_ID`` = 1, ``EOS_ID`` = 2, ``CLS_ID`` = 3,
``SEP_ID`` = 4, ``MASK_ID`` = 5, a task's own tokens from
:data:`qkv.tasks.N_SPECIAL` on) and in :mod:`qkv.markov`
(:class:`qkv.markov.MarkovLanguage`, for masked-LM); every one of their names
is importable from here too, e.g. ``qkv.data.digit_seq2seq``.
"""

from __future__ import annotations

from importlib import resources

# Re-exported so that `qkv.data.<name>` is one entry point (`X as X` marks a re-export).
# They stay out of __all__, so the API page documents each name once, in its own module.
from qkv.markov import MarkovLanguage as MarkovLanguage
from qkv.tasks import BOS_ID as BOS_ID
from qkv.tasks import CLS_ID as CLS_ID
from qkv.tasks import DIGIT_VOCAB_SIZE as DIGIT_VOCAB_SIZE
from qkv.tasks import EOS_ID as EOS_ID
from qkv.tasks import MASK_ID as MASK_ID
from qkv.tasks import N_SPECIAL as N_SPECIAL
from qkv.tasks import PAD_ID as PAD_ID
from qkv.tasks import SEP_ID as SEP_ID
from qkv.tasks import SPECIAL_IDS as SPECIAL_IDS
from qkv.tasks import ClassificationBatch as ClassificationBatch
from qkv.tasks import LongDocBatch as LongDocBatch
from qkv.tasks import RecallBatch as RecallBatch
from qkv.tasks import Seq2SeqBatch as Seq2SeqBatch
from qkv.tasks import associative_recall as associative_recall
from qkv.tasks import digit_seq2seq as digit_seq2seq
from qkv.tasks import long_documents as long_documents
from qkv.tasks import sequence_classification as sequence_classification

__all__ = ["load_corpus"]


def load_corpus(lang: str, split: str = "train") -> list[str]:
    """Return the book's corpus as a list of sentences (one per line of the file).

    About 340 short original sentences per language (attention, Transformers and
    everyday topics), 4/5 for training and every fifth for testing. Line ``i``
    of the English and the Chinese file say the same thing.

    Args:
        lang: ``"en"`` or ``"zh"``.
        split: ``"train"`` or ``"test"``.
    Used in: Q13, Q26.
    """
    if lang not in ("en", "zh"):
        raise ValueError(f"lang must be 'en' or 'zh', got {lang!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    # one name per joinpath: Python 3.10's Traversable.joinpath takes a single argument
    corpus = resources.files("qkv").joinpath("corpus").joinpath(f"{lang}_{split}.txt")
    text = corpus.read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]
