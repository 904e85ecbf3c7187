"""Training: MLM pretraining (``pretrain``), its config and presets (``config``), masking batches
(``data``), what every training loop shares — seeds and random streams, run folder, resume and
saving (``skeleton``; the checkpoint files: ``rnaret.checkpoint.training``) —, what a run was
started from (``fingerprint``), skipped non-finite steps and on-device bookkeeping (``guard``),
batches built in a background thread (``prefetch``), learning-rate schedules (``schedule``),
data-parallel helpers (``distributed``), the metrics logs and loss curve (``curves``), and the
torchrun launcher (``launch``). The fine-tuning loop (``rnaret.tasks.finetune``) runs on the
same skeleton.

Kept free of imports so that ``rnaret launch`` starts without loading torch; import the
submodules, e.g. ``from rnaret.train.pretrain import pretrain``.
"""
