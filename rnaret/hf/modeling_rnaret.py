"""The RNAret encoder as ``transformers`` models: ``RnaretModel``, ``RnaretForMaskedLM``,
``RnaretForSequenceClassification``, ``RnaretForTokenClassification``.

Each wraps the one encoder implementation (``rnaret.model.encoder``: parallel or chunkwise O(n)
retention, chosen by length as in ``rnaret``), under the attribute ``rnaret.encoder`` with the
published state-dict names below it. ``attention_mask`` (1 real, 0 padding) is the encoder's
padding mask: a padded row gives what the row gives alone.

Outputs (the library's dataclasses):
* ``last_hidden_state`` (B, L, d): the last layer's output before the final RMSNorm (what the
  published task heads and ``rnaret embed`` read);
* ``hidden_states`` (``output_hidden_states=True``): n_layers + 1 tensors (B, L, d), the token
  embeddings and then each layer's output (the published ``inner_states``; the last equals
  ``last_hidden_state``), zero at padding;
* ``attentions`` (``output_attentions=True``): per layer the retention scores (B, H, L, L) of
  every head (``rnaret.model.scores``: the published ``rttn``), zero at padding. They cost
  O(L^2) memory per layer and are only formed when asked for.
The masked-LM logits are the encoder's MLM head (final RMSNorm, ``output_projection``).

Exported model folders carry this file (``rnaret export-hf``); it imports only ``torch``,
``transformers`` and, through relative imports in the folder, the encoder's modules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import (BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput,
                                           TokenClassifierOutput)

from rnaret.heads.generic import SequenceHead, TokenHead
from rnaret.hf.configuration_rnaret import RnaretConfig
from rnaret.model.encoder import RetNetEncoder, RetNetRelPos
from rnaret.model.retention import decay_log, rotary_angle
from rnaret.model.scores import layer_retention_scores
from rnaret.model.transformer import TransformerEncoder

IGNORE_INDEX = -100


class RnaretPreTrainedModel(PreTrainedModel):
    """Shared by the RNAret models: the config class, the weight prefix, initialisation."""

    config_class = RnaretConfig
    base_model_prefix = "rnaret"
    main_input_name = "input_ids"
    _supports_sdpa = False
    _no_split_modules = ["RetNetLayer", "TransformerLayer"]

    def _init_weights(self, module):
        """Task heads (``rnaret.heads.generic``): normal(0, 0.02) weights, zero biases in their
        Linear and Conv1d layers; the encoder's fixed buffers (rotary angles, decays)
        recomputed. The encoder's parameters keep the initialisation they got when built (or
        the checkpoint's weights)."""
        # the library initialises the layers a checkpoint lacks one by one, so a head's layers
        # are told by being inside the head (``self.classifier``), not by their own class
        head = getattr(self, "classifier", None)
        if isinstance(module, (nn.Linear, nn.Conv1d)) and isinstance(head, (SequenceHead, TokenHead)) \
                and any(module is layer for layer in head.modules()):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, RetNetRelPos):
            config = self.config.encoder_config()
            init.copy_(module.angle, rotary_angle(config.key_dim))
            init.copy_(module.decay, decay_log(config.retnet_retention_heads))
        elif isinstance(module, TransformerEncoder):
            init.copy_(module.rotary_angle, rotary_angle(module.config.key_dim))


class RnaretModel(RnaretPreTrainedModel):
    """The encoder: ``forward(input_ids (B, L), attention_mask (B, L) = None, ...)`` ->
    ``BaseModelOutput`` (see the module docstring)."""

    def __init__(self, config: RnaretConfig):
        super().__init__(config)
        encoder_config = config.encoder_config()
        self.encoder = (TransformerEncoder(encoder_config) if encoder_config.architecture == "transformer"
                        else RetNetEncoder(encoder_config))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder.embed_tokens = value

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None, return_logits: bool,
               output_hidden_states: bool, output_attentions: bool):
        """The encoder's output for ``input_ids`` (with ``hidden_states`` when either option
        asks) and the retention scores per layer (or None)."""
        if input_ids is None:
            raise ValueError("input_ids is required")
        mask = None if attention_mask is None else attention_mask.to(device=input_ids.device).bool()
        out = self.encoder(input_ids, padding_mask=mask, return_logits=return_logits,
                           output_hidden_states=output_hidden_states or output_attentions)
        attentions = None
        if output_attentions:
            if not isinstance(self.encoder, RetNetEncoder):
                raise ValueError("output_attentions: retention scores exist for the RetNet encoder only")
            with torch.no_grad():
                attentions = tuple(layer_retention_scores(self.encoder, out.hidden_states[i], i, out.padding_mask)
                                   for i in range(len(self.encoder.layers)))
        return out, attentions

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BaseModelOutput | tuple:
        hidden, attn, return_dict = _options(self.config, output_hidden_states, output_attentions, return_dict)
        out, attentions = self.encode(input_ids, attention_mask, False, hidden, attn)
        result = BaseModelOutput(last_hidden_state=out.last_inner_state,
                                 hidden_states=out.hidden_states if hidden else None, attentions=attentions)
        return result if return_dict else result.to_tuple()


class _RnaretWithHead(RnaretPreTrainedModel):
    """The models that put a head on the encoder (``self.rnaret``) and compare its logits with
    ``labels``: one ``forward``; each subclass builds its head after calling this ``__init__``
    and defines ``head_logits(out)`` (the head's logits from the encoder's ``EncoderOutput``),
    ``head_loss(logits, labels)`` (on the logits' device) and ``output_class``."""

    return_logits = False  # whether the encoder's MLM logits are needed
    output_class = None

    def __init__(self, config: RnaretConfig):
        super().__init__(config)
        self.rnaret = RnaretModel(config)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None, **kwargs):
        hidden, attn, return_dict = _options(self.config, output_hidden_states, output_attentions, return_dict)
        out, attentions = self.rnaret.encode(input_ids, attention_mask, self.return_logits, hidden, attn)
        logits = self.head_logits(out)
        loss = None if labels is None else self.head_loss(logits, labels.to(logits.device))
        result = self.output_class(loss=loss, logits=logits, hidden_states=out.hidden_states if hidden else None,
                                   attentions=attentions)
        return result if return_dict else result.to_tuple()


def _token_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the positions, -100 labels left out: logits (B, L, C), labels (B, L)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX)


class RnaretForMaskedLM(_RnaretWithHead):
    """Masked-language model: the encoder and its MLM head (the published pretraining model).
    ``labels`` (B, L): the token ids to predict, -100 where nothing is predicted."""

    return_logits = True
    output_class = MaskedLMOutput

    def __init__(self, config: RnaretConfig):
        super().__init__(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.rnaret.encoder.output_projection

    def set_output_embeddings(self, value: nn.Linear):
        self.rnaret.encoder.output_projection = value

    def head_logits(self, out) -> Tensor:
        return out.logits

    def head_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return _token_loss(logits, labels)


class RnaretForSequenceClassification(_RnaretWithHead):
    """One label per sequence (``config.num_labels``; ``problem_type`` regression,
    single_label_classification or multi_label_classification, inferred from ``labels`` as the
    library does when not set). ``labels`` (B,) or (B, num_labels).

    The head is ``rnaret``'s sequence head (``rnaret.heads.generic.SequenceHead``, what
    ``rnaret finetune --task sequence-classification`` trains and the interaction head's
    layout): the state pooled by ``config.classifier_pooling`` (mean over the real positions,
    or position 0) -> dropout -> Linear(d, d) -> tanh -> dropout -> Linear(d, num_labels),
    dropout ``config.classifier_dropout``."""

    output_class = SequenceClassifierOutput

    def __init__(self, config: RnaretConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.classifier = SequenceHead(config.retnet_embed_dim, config.num_labels, config.classifier_pooling,
                                       config.classifier_dropout)
        self.post_init()

    def head_logits(self, out) -> Tensor:
        return self.classifier(out.last_inner_state, out.padding_mask)

    def head_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return _sequence_loss(self.config, logits, labels)


class RnaretForTokenClassification(_RnaretWithHead):
    """One label per token (per nucleotide: n nt give n tokens), or one number per token when
    ``problem_type`` is regression (``num_labels`` 1). ``labels`` (B, L): class ids, -100
    where no label (padding); for a regression the values, NaN or -100 where no label.

    The head is ``rnaret``'s per-position head (``rnaret.heads.generic.TokenHead``, what
    ``rnaret finetune --task token-classification`` trains): Linear(d, classifier_hidden) ->
    dropout -> zero at padding -> Conv1d(classifier_hidden, num_labels,
    classifier_kernel_size), so each position also sees its neighbours; logits are 0 at padding."""

    output_class = TokenClassifierOutput

    def __init__(self, config: RnaretConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.classifier = TokenHead(config.retnet_embed_dim, config.num_labels, config.classifier_hidden,
                                    config.classifier_kernel_size, config.classifier_dropout)
        self.post_init()

    def head_logits(self, out) -> Tensor:
        logits = self.classifier(out.last_inner_state, out.padding_mask)
        return logits.masked_fill(~out.padding_mask[..., None], 0)

    def head_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.config.problem_type == "regression":
            values = labels.float().reshape(logits.shape[:2] + (-1,))
            labelled = ~torch.isnan(values) & (values != IGNORE_INDEX)
            if not labelled.any():
                return logits.float().sum() * 0.0
            return F.mse_loss(logits.float()[labelled], values[labelled])
        return _token_loss(logits, labels)


def _options(config, output_hidden_states, output_attentions, return_dict) -> tuple[bool, bool, bool]:
    """The call's options, the config's where the call leaves them None."""
    pick = lambda value, default: bool(default) if value is None else bool(value)  # noqa: E731
    return (pick(output_hidden_states, config.output_hidden_states),
            pick(output_attentions, config.output_attentions),
            pick(return_dict, getattr(config, "return_dict", True)))


def _sequence_loss(config, logits: Tensor, labels: Tensor) -> Tensor:
    """The library's sequence-classification loss for ``config.problem_type`` (set from the
    labels on first use, as ``transformers``' own models do)."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1)) if config.num_labels == 1 \
            else F.mse_loss(logits.float(), labels.float())
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels).float(), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
