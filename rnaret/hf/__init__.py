"""RNAret for Hugging Face ``transformers`` (the optional extra ``rnaret[hf]``).

``RnaretConfig``, ``RnaretModel``, ``RnaretForMaskedLM``, ``RnaretForSequenceClassification``,
``RnaretForTokenClassification`` and ``RnaretTokenizer``, registered with the library's Auto
classes on import (model type ``rnaret``). ``rnaret.hf.export.export_hf`` (``rnaret export-hf``)
writes a model folder that loads with ``trust_remote_code=True`` where ``rnaret`` is not
installed: the folder carries these modules and the encoder's, made self-contained.
"""
from __future__ import annotations

from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer)

from rnaret.hf.configuration_rnaret import RnaretConfig
from rnaret.hf.modeling_rnaret import (RnaretForMaskedLM, RnaretForSequenceClassification,
                                       RnaretForTokenClassification, RnaretModel, RnaretPreTrainedModel)
from rnaret.hf.tokenization_rnaret import RnaretTokenizer

# Auto class -> the model class it builds for ``model_type: rnaret``
AUTO_MODELS = {
    AutoModel: RnaretModel,
    AutoModelForMaskedLM: RnaretForMaskedLM,
    AutoModelForSequenceClassification: RnaretForSequenceClassification,
    AutoModelForTokenClassification: RnaretForTokenClassification,
}


def register() -> None:
    """Register the classes with the Auto classes (idempotent)."""
    AutoConfig.register(RnaretConfig.model_type, RnaretConfig, exist_ok=True)
    for auto, model in AUTO_MODELS.items():
        auto.register(RnaretConfig, model, exist_ok=True)
    AutoTokenizer.register(RnaretConfig, RnaretTokenizer, exist_ok=True)


register()

__all__ = ["RnaretConfig", "RnaretModel", "RnaretForMaskedLM", "RnaretForSequenceClassification",
           "RnaretForTokenClassification", "RnaretPreTrainedModel", "RnaretTokenizer", "register"]
