"""Checkers for the coding exercises at the end of every chapter.

A chapter gives the reader a stub such as::

    def padding_mask(lengths, max_len):
        raise NotImplementedError  # your code here

    check_padding_mask(padding_mask)

The checker runs property tests on the reader's function against the
library's reference, on seeded random inputs, and returns a
:class:`~qkv.exercises.core.Verdict` that shows as one friendly line:
*passed*, *not attempted yet* (the stub still raises ``NotImplementedError``)
or *failed* with the first counter-example.

The framework is in :mod:`qkv.exercises.core`; each chapter's checkers sit in
a module named after the chapter (``qkv.exercises.q08_padding_mask``) and are
re-exported here.
"""

from .core import Case, Mismatch, Verdict, assert_close, run_checks
from .q01_what_is_attention import check_nadaraya_watson
from .q02_attention_step_by_step import check_attention
from .q03_attention_vs_seq2seq import check_context_vector
from .q04_self_vs_target_attention import check_target_attention
from .q05_self_attention_core import check_self_attention
from .q06_keys_equal_values import check_tie_keys_and_values
from .q07_attention_variants import check_rotary
from .q08_padding_mask import check_padding_mask
from .q09_attention_vs_fully_connected import check_token_mixing_matrix
from .q10_multi_head_dimensions import check_split_heads
from .q11_weight_sharing import check_tied_gradient
from .q12_scaling_sqrt_dk import check_softmax_jacobian
from .q13_char_vs_word import check_wordpiece_split
from .q14_encoder_decoder_masks import check_decoder_self_mask
from .q15_bert_encoder_or_decoder import check_bert_parameter_count
from .q16_mask_rate import check_bert_masking
from .q17_cls_token import check_mean_pooling
from .q18_nonlinearity import check_gelu
from .q19_warmup import check_adam_step
from .q20_long_text import check_sliding_windows
from .q21_positional_encodings import check_sinusoidal_table
from .q22_residual_layernorm import check_layer_norm
from .q23_kv_cache import check_cached_attention_step
from .q24_original_training_recipe import check_label_smoothed_loss
from .q25_weaknesses import check_attention_flops
from .q26_bert_inputs_and_pretraining_tasks import check_bert_input_sum
from .q27_compute_and_memory import check_forward_flops
from .q28_flash_attention import check_merge_partials
from .q29_long_context import check_pi_frequencies
from .q30_llama_block import check_swiglu
from .q31_training_stability import check_soft_cap
from .q32_decoder_only import check_prefix_lm_mask
from .q33_mixture_of_experts import check_load_balancing_loss

__all__ = [
    "Case",
    "Mismatch",
    "Verdict",
    "assert_close",
    "run_checks",
    "check_nadaraya_watson",
    "check_attention",
    "check_context_vector",
    "check_target_attention",
    "check_self_attention",
    "check_tie_keys_and_values",
    "check_rotary",
    "check_padding_mask",
    "check_token_mixing_matrix",
    "check_split_heads",
    "check_tied_gradient",
    "check_softmax_jacobian",
    "check_wordpiece_split",
    "check_decoder_self_mask",
    "check_cached_attention_step",
    "check_bert_parameter_count",
    "check_bert_masking",
    "check_mean_pooling",
    "check_gelu",
    "check_sliding_windows",
    "check_sinusoidal_table",
    "check_attention_flops",
    "check_bert_input_sum",
    "check_adam_step",
    "check_layer_norm",
    "check_label_smoothed_loss",
    "check_forward_flops",
    "check_merge_partials",
    "check_pi_frequencies",
    "check_swiglu",
    "check_soft_cap",
    "check_prefix_lm_mask",
    "check_load_balancing_loss",
]
