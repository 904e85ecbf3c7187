"""Training: MLM pretraining (``pretrain``), its config and presets (``config``), masking batches
(``data``), checkpoints and resume (``checkpointing``), learning-rate schedules (``schedule``),
data-parallel helpers (``distributed``), the metrics table and loss curve (``curves``), and the
torchrun launcher (``launch``).

Kept free of imports so that ``rnaret launch`` starts without loading torch; import the
submodules, e.g. ``from rnaret.train.pretrain import pretrain``.
"""
