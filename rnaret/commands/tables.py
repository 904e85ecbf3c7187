"""`rnaret tables`: one results table per task (TSV + Markdown) from metrics.tsv files.

    rnaret tables results/structure/bprna/vienna/metrics.tsv ... \\
        --published resources/published_results.tsv --output-dir results/tables

Writes ``{task}.tsv``, ``{task}.md`` and ``{task}.html`` for each task of ``--tasks`` (default all three; a task
without evaluations gets a table that says so). Rows, sources and formats: ``rnaret.tables``.
"""
from __future__ import annotations

import sys

HELP = "collect metrics.tsv files and published figures into one table per task (TSV and Markdown)"


def add_arguments(parser) -> None:
    parser.add_argument("metrics", nargs="*",
                        help="metrics.tsv files at .../{task}/{dataset}/{model}/metrics.tsv")
    parser.add_argument("--published", default=None,
                        help="published figures with their sources (resources/published_results.tsv)")
    parser.add_argument("--output-dir", required=True, help="folder for {task}.tsv, {task}.md and {task}.html")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="tasks to write (default: structure interaction coding; the generic tasks "
                             "sequence-classification, ... when named)")


def run(args) -> int:
    from rnaret.io.errors import InputError
    from rnaret.tables import PAPER_TASKS, TASKS, write_tables

    tasks = args.tasks or list(PAPER_TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise InputError(None, f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    written = write_tables(args.metrics, args.published, args.output_dir, tasks)
    for task, paths in written.items():
        print(f"rnaret tables: {task}: {', '.join(map(str, paths))}", file=sys.stderr)
    return 0
