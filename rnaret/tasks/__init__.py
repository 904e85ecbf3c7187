"""Downstream tasks: the registry ``TASKS`` (name -> "module:Class"), imported on demand.

Adding a task is adding one line here (and its module, a subclass of ``rnaret.tasks.base.Task``).
The interface and the fine-tuning loop: ``rnaret.tasks.base`` and ``rnaret.tasks.finetune``.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

TASKS: dict[str, str] = {
    "interaction": "rnaret.tasks.interaction:InteractionTask",
    "coding": "rnaret.tasks.coding:CodingTask",
    "structure": "rnaret.tasks.structure:StructureTask",
    # the generic tasks on any labelled table (rnaret.tasks.generic)
    "sequence-classification": "rnaret.tasks.generic:SequenceClassificationTask",
    "sequence-regression": "rnaret.tasks.generic:SequenceRegressionTask",
    "token-classification": "rnaret.tasks.generic:TokenClassificationTask",
    "token-regression": "rnaret.tasks.generic:TokenRegressionTask",
}


def task_class(name: str):
    """The Task subclass registered as ``name``; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module_name, class_name = TASKS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_task(name: str, settings: Mapping[str, Any] | None = None):
    """An instance of task ``name`` with ``settings`` (the config's ``finetune.<name>.settings``) over its defaults."""
    return task_class(name)(settings)


__all__ = ["TASKS", "task_class", "get_task"]
