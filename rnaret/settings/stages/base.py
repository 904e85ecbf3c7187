"""What every stage shares: the plan it belongs to, and the helpers that write command-line options.

A stage object (``rnaret.settings.stages.<stage>``) holds one stage of the pipeline: its output
path templates (the rule's ``output:`` and the targets use the same ones), its jobs' inputs,
command-line options and resources, all resolved from the plan's checked config. Stages reach each
other through the plan (``self.plan.pretrain``), so each is built once and none copies another.
"""
from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnaret.settings.dataset_sources import SplitSource
    from rnaret.settings.plan import Plan


class Stage:
    """One stage of the pipeline, resolved from ``plan`` (its config, datasets and SLURM site)."""

    def __init__(self, plan: "Plan"):
        self.plan = plan

    @property
    def config(self) -> dict[str, Any]:
        """The validated config (every schema default filled)."""
        return self.plan.config


def join(args) -> str:
    """The options ``args`` as one shell-quoted string (each value through ``str``)."""
    return shlex.join(str(a) for a in args)


def compact_json(value) -> str:
    """``value`` as JSON with sorted keys and no spaces (one shell word once quoted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def labels_option(split: "SplitSource") -> list[str]:
    """``--labels NAME=TABLE`` for a FASTA split with a side table of labels, else nothing."""
    return [] if split.labels is None else ["--labels", f"{split.split}={split.labels.path}"]


# Snakemake starts the ready jobs of highest priority first (ties: larger inputs first). The
# corpus stages gate every pretraining and the pretrainings gate most fine-tunes, so they go
# first; then the longest jobs, the coding fine-tunes (whole transcripts of up to 3,000 nt; the
# Transformer's is the run's longest job), then the other fine-tunes. On 2 cores the default run
# otherwise ended with one long fine-tune running alone for minutes.
PRIORITY = {"corpus": 4, "pretrain": 3, "finetune": 1}
