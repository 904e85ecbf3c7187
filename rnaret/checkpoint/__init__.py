"""Every checkpoint format rnaret reads and writes, one module per format.

- ``encoder``: our encoder folders (``config.json`` + ``weights.safetensors``) and the checks
  every weights reader shares (keys, shapes, kinds, checked before a model is allocated);
- ``published``: the published code's released ``.pth`` files (pretrained and fine-tuned);
- ``finetuned``: fine-tuned checkpoint folders (``task.json``, ``encoder/``, ``head.safetensors``);
- ``onehot``: the one-hot control model's folder (``onehot.json``);
- ``training``: the resumable state of a training run (``step-*/`` folders, ``best/``).

The package itself offers the two calls most code needs: :func:`load_encoder` (any encoder
format, published ``.pth`` included) and :func:`save_encoder`.
"""
from rnaret.checkpoint.encoder import load_encoder, save_encoder

__all__ = ["load_encoder", "save_encoder"]
