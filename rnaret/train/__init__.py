"""Training: MLM pretraining (``pretrain``), its config and presets (``config``), masking batches
(``data``), checkpoints and resume (``checkpointing``), what a run was started from
(``fingerprint``), skipped non-finite steps and on-device bookkeeping (``guard``), batches built
in a background thread (``prefetch``), learning-rate schedules (``schedule``), data-parallel
helpers (``distributed``), the metrics table and loss curve (``curves``), and the torchrun
launcher (``launch``). The fine-tuning loop (``rnaret.tasks.finetune``) uses the same pieces.

Kept free of imports so that ``rnaret launch`` starts without loading torch; import the
submodules, e.g. ``from rnaret.train.pretrain import pretrain``.
"""
