"""The evaluation protocol of a downstream task: ``rnaret`` (ours, the default) or ``published``
(what the published scripts ``ssp.py``, ``rri.py`` and ``lnc.py`` of DrBlackZJU/RNAret compute).

The protocol is one task setting, ``protocol``; ``published`` also brings the published
scripts' options that change numbers as settings of its own (``PROTOCOL_SETTINGS``), applied by
``rnaret.tasks.settings.resolve_task_settings`` over the task's defaults and preset and under the
explicit settings, so ``--set max_len=1000`` evaluates a file trained with ``lnc.py -l 1000``.
The task classes read the protocol through :func:`is_published` at the few places where the
published scripts compute something else (see docs/protocol.md):

- every task: the model tested after fine-tuning is the one after the last epoch (``keep:
  last``), validation only logged; fine-tuning and evaluation in fp32 (:func:`protocol_precision`);
- structure: only ``.bpseq`` files of a folder, unreadable files skipped (counted), records over
  ``max_len`` left out of every split (counted), the published constraint mask, decoding and
  per-sequence F1 over the L x L map;
- interaction: inputs padded to ``max_len + 1`` tokens without a padding mask; AUC on the raw
  class-1 logit, predictions by argmax;
- coding: transcripts cut to their first ``max_len`` nt, labels from the CDS left in the cut,
  inputs padded to ``max_len`` without a padding mask.

Kept free of torch (the pipeline resolves settings when it builds its DAG).
"""
from __future__ import annotations

from typing import Any, Mapping

RNARET = "rnaret"
PUBLISHED = "published"
PROTOCOLS = (RNARET, PUBLISHED)
DEFAULT_PROTOCOL = RNARET

# The published scripts' options that change numbers, per task (their argparse defaults):
# ssp.py -l 600, --min_bp_distance 4; rri.py -l 80 (+1 for its leading CLS); lnc.py -l 3000.
# Over the task's own defaults: "keep" the last epoch's model, and the structure head in the
# published orientation.
PROTOCOL_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    RNARET: {},
    PUBLISHED: {
        "structure": {"max_len": 600, "min_pair_distance": 4, "symmetrize": "lower", "keep": "last"},
        "interaction": {"max_len": 80, "keep": "last"},
        "coding": {"max_len": 3000, "keep": "last"},
    },
}
# The scripts' default -k. Not a protocol setting: k is the encoder's (read from a released file
# by `rnaret evaluate`, checked against the pretrained encoder by `rnaret finetune`); lnc.py's
# default is 3 although its README says 5, so the released lnc_{H,M}_5mer.pth were run with -k 5.
PUBLISHED_K = {"structure": 1, "interaction": 5, "coding": 3}


def check_protocol(protocol: Any) -> str:
    """``protocol`` as one of ``PROTOCOLS``; ValueError naming the known ones otherwise."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return str(protocol)


def protocol_settings(task: str, protocol: str) -> dict[str, Any]:
    """The settings ``protocol`` brings to ``task`` (a new dict; empty for ``rnaret``, and for a
    task the published scripts do not have)."""
    return dict(PROTOCOL_SETTINGS[check_protocol(protocol)].get(task, {}))


def with_protocol(task: str, settings: Mapping[str, Any], protocol: str | None) -> dict[str, Any]:
    """Explicit task ``settings`` (e.g. read from a file written for another protocol) switched
    to ``protocol`` (None: unchanged), which is then named explicitly (so that it also overrides
    the protocol a fine-tuned checkpoint was trained under); when it differs from the settings'
    own, the protocol's settings replace theirs (``--set`` overrides then go over the result)."""
    out = dict(settings)
    if protocol is None:
        return out
    if check_protocol(protocol) == out.get("protocol", DEFAULT_PROTOCOL):
        return {**out, "protocol": protocol}
    for key in PROTOCOL_SETTINGS[out.get("protocol", DEFAULT_PROTOCOL)].get(task, {}):
        out.pop(key, None)
    return {**out, **protocol_settings(task, protocol), "protocol": protocol}


def is_published(settings: Mapping[str, Any]) -> bool:
    """True when resolved task ``settings`` ask for the published protocol."""
    return settings.get("protocol", DEFAULT_PROTOCOL) == PUBLISHED


def protocol_precision(protocol: str, precision: str | None) -> str | None:
    """The precision a command runs in: the published scripts fine-tune and evaluate in fp32,
    so ``auto`` (or None) becomes ``fp32`` under ``published``; an explicit choice is kept."""
    if check_protocol(protocol) == PUBLISHED and precision in (None, "auto"):
        return "fp32"
    return precision


def add_protocol_argument(parser) -> None:
    """The shared ``--protocol rnaret|published`` option of ``finetune`` and ``evaluate``."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="rnaret (ours, the default) or published: compute what the published "
                             "ssp.py/rri.py/lnc.py compute (length cuts, padding, decoding, metric "
                             "definitions, last epoch, fp32); see docs/protocol.md. Also a task "
                             "setting (--set protocol=published)")


__all__ = ["RNARET", "PUBLISHED", "PROTOCOLS", "DEFAULT_PROTOCOL", "PROTOCOL_SETTINGS", "PUBLISHED_K",
           "check_protocol", "protocol_settings", "with_protocol", "is_published", "protocol_precision",
           "add_protocol_argument"]
