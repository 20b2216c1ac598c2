"""BERT (Devlin et al. 2019): the Transformer's encoder stack with learned positions and a pooler.

:class:`Bert` follows Hugging Face's ``BertModel`` module for module, so that
:func:`bert_from_hf_state_dict` loads its weights and reproduces its outputs:

- embeddings: token + learned position + token-type (segment), then LayerNorm and dropout;
- ``num_hidden_layers`` Post-LN :class:`qkv.layers.TransformerEncoderLayer` with
  exact (erf) GELU; bidirectional: only the padding mask, no causal mask;
- pooler: ``tanh(W h_[CLS] + b)`` over the first token's final hidden state.

Names follow Hugging Face's :class:`BertConfig` fields. :mod:`qkv.models` imports
these names too (``qkv.models.Bert``); this module does not import :mod:`qkv.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qkv._checks import check_ids, check_positive_ints, check_probability
from qkv.layers import TransformerEncoderLayer
from qkv.masks import key_mask

__all__ = [
    "BertConfig",
    "bert_parameter_breakdown",
    "bert_parameter_count",
    "BertEmbeddings",
    "Bert",
    "bert_from_hf_state_dict",
]


@dataclass
class BertConfig:
    """BERT's sizes, with Hugging Face's field names and defaults (BERT-base).

    ``hidden_size`` is ``d_model``, ``num_attention_heads`` is ``h``,
    ``intermediate_size`` is ``d_ff``, ``vocab_size`` is ``V``.
    Used in: Q15, Q16, Q17, Q18, Q20, Q25, Q26.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_positive_ints(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        check_probability(
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    @classmethod
    def base(cls) -> BertConfig:
        """BERT-base: L=12, H=768, A=12, about 110M parameters (Devlin et al. 2019 §3)."""
        return cls(30522, 768, 12, 12, 3072, 512, 2)

    @classmethod
    def large(cls) -> BertConfig:
        """BERT-large: L=24, H=1024, A=16, about 340M parameters (Devlin et al. 2019 §3)."""
        return cls(30522, 1024, 24, 16, 4096, 512, 2)


def bert_parameter_breakdown(config: BertConfig) -> dict[str, int]:
    """Count BERT's parameters by part, analytically (no model is built).

    With ``H = hidden_size`` and ``I = intermediate_size``: embeddings
    ``(V + max_positions + type_vocab) H`` plus LayerNorm ``2H``; each layer
    ``4(H² + H)`` (Q, K, V, output) + ``2(HI) + I + H`` (FFN) + ``2 · 2H`` (two
    LayerNorms); pooler ``H² + H``.

    Returns:
        ``{"embeddings", "per_layer", "encoder", "pooler", "total"}``.
    Used in: Q15.
    """
    H, intermediate = config.hidden_size, config.intermediate_size
    tables = config.vocab_size + config.max_position_embeddings + config.type_vocab_size
    embeddings = tables * H + 2 * H
    attention = 4 * (H * H + H)
    ffn = H * intermediate + intermediate + intermediate * H + H
    per_layer = attention + ffn + 2 * (2 * H)
    encoder = config.num_hidden_layers * per_layer
    pooler = H * H + H
    return {
        "embeddings": embeddings,
        "per_layer": per_layer,
        "encoder": encoder,
        "pooler": pooler,
        "total": embeddings + encoder + pooler,
    }


def bert_parameter_count(config: BertConfig) -> int:
    """Total number of BERT parameters, analytically: 109,482,240 for BERT-base."""
    return bert_parameter_breakdown(config)["total"]


class BertEmbeddings(nn.Module):
    """Token + learned position + token-type embeddings, then LayerNorm and dropout.

    ``input_ids, token_type_ids: (B, L)`` -> ``(B, L, hidden_size)``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, H)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, H)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, H)
        self.layer_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (L,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)  # (B, L, H) + (L, H)
        return self.dropout(self.layer_norm(x))


class Bert(nn.Module):
    """BERT's encoder (Devlin et al. 2019): embeddings, Post-LN encoder layers, tanh pooler.

    Weights are initialised as in BERT: normal with standard deviation
    ``initializer_range``, zero biases, LayerNorm 1 and 0.
    Used in: Q15, Q17, Q18, Q20, Q25.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                config.hidden_dropout_prob,
                norm_first=False,  # Post-LN, as in BERT
                activation="gelu",  # exact erf GELU, Hugging Face's "gelu"
                layer_norm_eps=config.layer_norm_eps,
                attention_dropout=config.attention_probs_dropout_prob,
            )
            for _ in range(config.num_hidden_layers)
        )
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encode a batch of token ids.

        Args:
            input_ids: ``(B, L)`` in ``[0, vocab_size)``, ``L <= max_position_embeddings``.
            token_type_ids: ``(B, L)`` segment ids (0 = sentence A, 1 = sentence B);
                default all 0.
            attention_mask: ``(B, L)``, as in Hugging Face: 1 (or True) = real token,
                0 = padding; padding keys are masked for every query. Default: no padding.

        Returns:
            ``sequence_output (B, L, hidden_size)`` and
            ``pooled_output (B, hidden_size) = tanh(W h_[CLS] + b)``.
        """
        cfg = self.config
        check_ids(input_ids, cfg.vocab_size, cfg.max_position_embeddings, "input_ids")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        _check_same_shape(token_type_ids, input_ids, "token_type_ids")
        check_ids(token_type_ids, cfg.type_vocab_size, input_ids.shape[1], "token_type_ids")
        mask = None
        if attention_mask is not None:
            _check_same_shape(attention_mask, input_ids, "attention_mask")
            if not ((attention_mask == 0) | (attention_mask == 1)).all():
                raise ValueError("attention_mask must hold only 0 and 1 (1 = real token)")
            mask = key_mask(attention_mask.bool())  # (B, L) -> (B, 1, 1, L)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        pooled = torch.tanh(self.pooler(x[:, 0]))  # the [CLS] position
        return x, pooled


def _check_same_shape(tensor: Tensor, like: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor) or tensor.shape != like.shape:
        got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise ValueError(f"{name} must have the shape of input_ids {tuple(like.shape)}, got {got}")


def _hf_names(config: BertConfig) -> dict[str, str]:
    """Hugging Face ``BertModel`` state-dict name -> qkv :class:`Bert` name."""
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight": "embeddings.layer_norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.layer_norm.bias",
        "pooler.dense.weight": "pooler.weight",
        "pooler.dense.bias": "pooler.bias",
    }
    per_layer = {
        "attention.self.query": "self_attn.w_q",  # W^Q of all heads
        "attention.self.key": "self_attn.w_k",
        "attention.self.value": "self_attn.w_v",
        "attention.output.dense": "self_attn.w_o",  # W^O
        "attention.output.LayerNorm": "norm1",
        "intermediate.dense": "ffn.linear1",  # W_1, b_1
        "output.dense": "ffn.linear2",  # W_2, b_2
        "output.LayerNorm": "norm2",
    }
    for i in range(config.num_hidden_layers):
        for hf, ours in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{kind}"] = f"layers.{i}.{ours}.{kind}"
    return names


# buffers Hugging Face keeps in some checkpoints; they hold no weights
_HF_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def bert_from_hf_state_dict(state_dict: Mapping[str, Tensor], config: BertConfig) -> Bert:
    """Build a :class:`Bert` holding the weights of a Hugging Face ``BertModel``.

    Args:
        state_dict: ``BertModel.state_dict()`` (a ``"bert."`` prefix, as in
            ``BertForPreTraining``, is removed).
        config: the sizes of that model.

    Returns:
        A :class:`Bert` in eval mode (as ``from_pretrained`` returns), on the device and
        dtype of the word embeddings, whose outputs match ``BertModel``'s.

    Raises:
        ValueError: listing missing and unexpected keys, or a tensor of the wrong shape.
    Used in: Q15, Q26.
    """
    state = {k.removeprefix("bert."): v for k, v in state_dict.items()}
    names = _hf_names(config)
    missing = sorted(set(names) - set(state))
    unexpected = sorted(set(state) - set(names) - set(_HF_BUFFERS))
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not fit BertModel: missing {missing}, unexpected {unexpected}"
        )
    model = Bert(config)
    ours = model.state_dict()
    for hf, name in names.items():
        if state[hf].shape != ours[name].shape:
            raise ValueError(
                f"{hf} has shape {tuple(state[hf].shape)}, expected {tuple(ours[name].shape)}"
            )
    model.load_state_dict({name: state[hf] for hf, name in names.items()})
    weight = state["embeddings.word_embeddings.weight"]
    return model.to(device=weight.device, dtype=weight.dtype).eval()
