"""The downstream tasks' settings: the common keys, each task's published recipe and its presets,
and the one function that merges them (``resolve_task_settings``), without torch.

``Task(settings)`` (``rnaret.tasks.base``) and the pipeline's settings resolution
(``rnaret.settings``, run when the Snakemake DAG is built) both call ``resolve_task_settings``, so
the settings a rule passes are the ones the run uses. Kept free of torch so that building the DAG
stays fast.

Order of precedence (later wins): ``COMMON_SETTINGS``, ``TASK_DEFAULTS[task]`` (the published
recipe), ``TASK_PRESETS[task][preset]`` (``paper`` = the recipe, ``laptop`` = the default run on 2
CPU cores), the settings of the protocol (``rnaret.tasks.protocol``: none for ``rnaret``, the
published scripts' options for ``published``), then the explicit settings. Adding a task: its
defaults and presets here, its class in ``rnaret/tasks/<name>.py``, one line in
``rnaret.tasks.TASKS``.
"""
from __future__ import annotations

from typing import Any, Mapping

from rnaret.tasks.protocol import DEFAULT_PROTOCOL, check_protocol, protocol_settings

# Settings every task understands (the generic loop reads them); tasks add their own.
COMMON_SETTINGS: dict[str, Any] = {
    "preset": "paper",            # a key of the task's presets applied over its defaults
    "k": 5,                       # tokenizer k; must equal the encoder's k
    "epochs": 3,                  # passes over the (sub-sampled) training set
    "max_steps": None,            # when set, stop after this many optimiser steps
    "lr": 1e-4,                   # AdamW learning rate of the encoder (and of the head unless head_lr)
    "head_lr": None,              # AdamW learning rate of the head; None = lr
    "weight_decay": 0.01,
    "warmup_steps": 0,            # linear warm-up, then lr_schedule
    "lr_schedule": "constant",    # constant | cosine (from lr down to lr/10 at the last step)
    "grad_clip": 1.0,             # max global grad norm; None or 0 = no clipping
    "batch_size": 32,             # examples per batch (ignored when max_tokens is set)
    "max_tokens": None,           # token budget per batch: n_examples * padded length <= max_tokens
    "eval_max_tokens": 16384,     # token budget of evaluation batches
    "train_samples_per_epoch": None,  # sub-sample this many training examples per epoch (seeded)
    "valid_max_examples": None,   # evaluate at most this many validation examples (seeded subset)
    "valid_fraction": 0.1,        # held-out fraction of train when the dataset has no valid split
    "evals_per_epoch": 1,         # validation passes per epoch (best checkpoint chosen among them)
    "eval_every_epochs": 1,       # validate in every n-th epoch only (and always in the last)
    "freeze_encoder": False,      # True: train the head only (encoder in eval mode, no grads)
    "select_on": None,            # validation metric picking the best checkpoint; None = the task's
    "dropout": None,              # encoder dropout while fine-tuning; None = the checkpoint's own
    "onehot_dim": None,           # onehot model: None = raw one-hot states, else a fixed projection width
    "max_nonfinite_steps": 10,    # stop with an error after this many skipped (non-finite) steps in a row
    "seed": 0,
    "protocol": "rnaret",         # rnaret | published (rnaret.tasks.protocol): what is computed
    "max_len": None,              # published protocol: the scripts' -l/--max_len (None: no cut)
    "keep": "best",               # best: the best validation checkpoint is kept; last: the last one
}

# Each task's own keys and its published recipe, merged over COMMON_SETTINGS.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # the published recipe (rri.py): lr 1e-5, batch 64, 50 epochs, no clipping, no warm-up
    "interaction": {"k": 5, "lr": 1e-5, "batch_size": 64, "epochs": 50, "grad_clip": None,
                    "head_dropout": 0.0},
    # the published recipe (lnc.py): lr 5e-5, batch 50, 50 epochs, weight_factor 1, no clipping
    "coding": {"k": 5, "lr": 5e-5, "batch_size": 50, "epochs": 50, "grad_clip": None,
               "train_crop": None, "positive_weight": 1.0, "window": 30, "hidden": 128},
    "structure": {
        # the published recipe (ssp.py): lr 1e-5, batch 1, 50 epochs, weight_factor 10, no clipping
        "k": 1, "lr": 1e-5, "batch_size": 1, "epochs": 50, "grad_clip": None, "eval_max_tokens": 2048,
        "head_channels": 128, "head_blocks": 16, "head_kernel": 3, "symmetrize": "mean",
        "positive_weight": 10.0, "min_pair_distance": 4, "threshold": 0.5,
        "train_max_len": 600, "train_crop": None, "contact_map_examples": 4,
    },
}

# The generic tasks (rnaret.tasks.generic): any labelled table, sequence- or per-position-level.
GENERIC_TASKS = ("sequence-classification", "sequence-regression", "token-classification", "token-regression")
# their own keys: the head (pooling: mean = the mean state over the sequence, cls = the state at
# the [CLS] token; hidden: the per-position head's width), and what the training split fixes
# (classes: the label values in order, output i = classes[i]; label_scale: [mean, sd] of the
# regression labels, the head predicting standardised values); None = taken from train and
# stored with the fine-tuned checkpoint
_GENERIC = {"k": 5, "lr": 5e-5, "batch_size": 32, "epochs": 20, "grad_clip": 1.0, "warmup_steps": 50,
            "head_dropout": 0.1, "pooling": "mean", "hidden": 128}
TASK_DEFAULTS.update({
    "sequence-classification": {**_GENERIC, "classes": None},
    "sequence-regression": {**_GENERIC, "label_scale": None},
    "token-classification": {**_GENERIC, "classes": None},
    "token-regression": {**_GENERIC, "label_scale": None},
})

# Named budgets applied over the defaults; explicit settings win over both.
TASK_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "interaction": {
        "paper": {},
        # 2 CPU cores, a few minutes: the small laptop encoder learns at a larger lr, on a fresh
        # sample of the training pairs each epoch, validated on a fixed subset
        "laptop": {"lr": 1e-3, "epochs": 2, "train_samples_per_epoch": 4000, "batch_size": 64,
                   "warmup_steps": 10, "grad_clip": 1.0, "valid_max_examples": 1000, "evals_per_epoch": 2},
    },
    "coding": {
        "paper": {},
        # 2 CPU cores, a few minutes: random crops of a fresh sample of transcripts per epoch in
        # token-budget batches; validation on a fixed subset of whole transcripts every other
        # epoch (a validation pass of the Transformer, quadratic in these 3,000-nt transcripts,
        # costs about two thirds of a training epoch)
        # positives up-weighted and the checkpoint chosen on validation accuracy, so that the
        # fixed 0.5 threshold of the window score falls between the classes after short training
        "laptop": {"lr": 3e-3, "lr_schedule": "cosine", "epochs": 8, "train_samples_per_epoch": 800,
                   "train_crop": 512, "max_tokens": 8192, "warmup_steps": 20, "grad_clip": 1.0,
                   "valid_max_examples": 300, "eval_every_epochs": 2, "positive_weight": 1.5,
                   "select_on": "accuracy"},
    },
    "structure": {
        "paper": {},
        # 2 CPU cores, a few minutes: a small head (C = 32, N = 4), random 128-nt windows in
        # batches of 8 at a larger lr, validation on a fixed subset of whole sequences
        "laptop": {"head_channels": 32, "head_blocks": 4, "lr": 1e-3, "epochs": 2, "batch_size": 8,
                   "train_crop": 128, "warmup_steps": 10, "grad_clip": 1.0, "valid_max_examples": 100,
                   "eval_max_tokens": 4096},
    },
    # 2 CPU cores, a few minutes per model on the bundled 600-sequence table: 3 epochs of small
    # batches (114 steps; batches of 8,192 tokens gave 13 steps an epoch, too few for the one-hot
    # control to leave chance) at larger learning rates, validated once per epoch (on the bundled
    # ncRNA families the laptop rnaret-k5 stayed near chance at lr 3e-3 and learned at 1e-3)
    **{task: {"paper": {}, "laptop": {"lr": 1e-3, "head_lr": 3e-3, "epochs": 3, "batch_size": 16,
                                      "warmup_steps": 10, "lr_schedule": "cosine"}}
       for task in GENERIC_TASKS},
}


def resolve_task_settings(task: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every setting of a ``task`` run: ``COMMON_SETTINGS`` < the task's defaults < the preset
    named by ``settings["preset"]`` (default: ``COMMON_SETTINGS["preset"]``) < the settings of
    the protocol named by ``settings["protocol"]`` (``rnaret.tasks.protocol``) < ``settings``.

    Returns a new dict holding every known key (``preset`` included). Raises ``ValueError`` naming
    an unknown task, preset or setting key; a ``SettingsError`` (a ValueError) naming the key of
    a value out of its bounds or of the wrong type. The bounds are the config schema's
    ``definitions.task_settings`` (workflow/schemas/config.schema.yaml): one table for the
    pipeline's config and the command line's ``--settings``/``--set``.
    """
    import difflib

    from rnaret.settings.errors import SettingsError
    from rnaret.settings.files import check_fragment

    if task not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASK_DEFAULTS))}")
    merged = {**COMMON_SETTINGS, **TASK_DEFAULTS[task]}
    settings = dict(settings or {})
    presets = TASK_PRESETS[task]
    preset = settings.get("preset") or merged["preset"]
    if isinstance(preset, str) and preset not in presets:
        raise SettingsError("preset", f"unknown {task} preset {preset!r}; known: {', '.join(sorted(presets))}",
                            label="setting")
    if not isinstance(preset, str):  # refused by the bounds, naming the key, before it is looked up
        check_fragment({"preset": preset}, "task_settings")
    for key in {**presets[preset], **settings}:
        if key not in merged:
            guess = difflib.get_close_matches(str(key), sorted(merged), n=1)
            hint = f"did you mean {guess[0]!r}?" if guess else f"known: {', '.join(sorted(merged))}"
            raise SettingsError(str(key), f"unknown {task} setting {key!r}; {hint}", label="setting")
    check_fragment(settings, "task_settings")
    # the protocol's own settings sit between the preset and the explicit settings
    protocol = check_protocol(settings.get("protocol") or DEFAULT_PROTOCOL)
    merged.update({**presets[preset], **protocol_settings(task, protocol), **settings, "preset": preset,
                   "protocol": protocol})
    return merged
