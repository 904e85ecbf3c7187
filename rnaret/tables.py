"""The results tables: one per task, from the run's ``metrics.tsv`` files and the published figures.

Inputs
- ``metrics.tsv`` files at ``.../{task}/{dataset}/{model}/metrics.tsv`` (the results layout: README.md),
  given as an explicit list (the workflow passes the evaluations it ran, under every protocol of
  the run; nothing is globbed). Each file's ``protocol`` row says what computed it: ``rnaret``
  (this project's corrected protocol) or ``published`` (what the published scripts compute); a
  file without the row is ``rnaret``. The same evaluation may come once per protocol.
  A ``vienna`` file holds the MFE metrics and, prefixed ``mea_``, those of the MEA structures:
  they become two rows, ``vienna`` ``MFE`` and ``vienna`` ``MEA``.
- ``resources/published_results.tsv``: one published figure a row, columns ``task, dataset,
  test_set, model, metric, value, source, table, note`` (``dataset`` is the config's key when
  the published test set corresponds to one). A figure without a ``source`` is rejected; a value
  written ``NA`` or left empty is a figure that is *not available*.

Outputs per task (``write_tables``): ``{task}.tsv``, ``{task}.md`` and ``{task}.html`` (for the
HTML report; self-contained) with the same rows:
``this run`` rows (model order ``MODEL_ORDER``; a model's rows of both protocols next to each
other, ``rnaret`` first, labelled in the ``protocol`` column), then ``cited`` rows of the same dataset
(each with its source, table, test set and a numbered footnote in the Markdown), then a
``not available`` row where no published RNAret figure exists for the dataset. Cited rows of
datasets this run did not evaluate follow those of the run's datasets. No figure is invented:
every number comes from a ``metrics.tsv`` or, verbatim, from the published file.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from rnaret.io.atomic import atomic_open
from rnaret.io.errors import InputError
from rnaret.metrics import read_metrics_tsv

PAPER_TASKS = ("structure", "interaction", "coding")
# the generic tasks (rnaret.tasks.generic): a table each when the run evaluates a dataset of theirs
GENERIC_TASKS = ("sequence-classification", "sequence-regression", "token-classification", "token-regression")
TASKS = PAPER_TASKS + GENERIC_TASKS
TASK_TITLES = {"structure": "Secondary structure prediction",
               "interaction": "miRNA-target interaction",
               "coding": "mRNA / lncRNA classification",
               "sequence-classification": "Sequence classification",
               "sequence-regression": "Sequence regression",
               "token-classification": "Per-nucleotide classification",
               "token-regression": "Per-nucleotide regression"}
# the columns of each task's table, in order (other metrics stay in the metrics.tsv files)
TASK_METRICS = {
    "structure": ("f1", "precision", "recall", "f1_pk", "n", "n_pk"),
    "interaction": ("accuracy", "precision", "recall", "f1", "auc", "mcc", "n"),
    "coding": ("accuracy", "precision", "recall", "f1", "auc", "mcc", "n"),
    "sequence-classification": ("accuracy", "f1_macro", "mcc", "auc", "n"),
    "sequence-regression": ("pearson", "spearman", "rmse", "r2", "n"),
    "token-classification": ("accuracy", "f1_macro", "mcc", "auc", "n", "n_positions"),
    "token-regression": ("pearson", "spearman", "rmse", "r2", "n", "n_positions"),
}
METRIC_TITLES = {"f1": "F1", "precision": "precision", "recall": "recall", "f1_pk": "F1 (pk pairs)",
                 "n": "n", "n_pk": "n (pk)", "accuracy": "accuracy", "auc": "AUC", "mcc": "MCC",
                 "f1_macro": "macro-F1", "pearson": "Pearson r", "spearman": "Spearman rho", "rmse": "RMSE",
                 "r2": "R2", "n_positions": "n (positions)"}
# row order of the run's models within a dataset; unknown models follow, sorted by name
MODEL_ORDER = ("rnaret-k1", "rnaret-k3", "rnaret-k5", "transformer-k1", "transformer-k3",
               "transformer-k5", "vienna", "onehot")
# the protocols a metrics.tsv may name, in the order their rows are shown; a file without the
# row was computed under DEFAULT_PROTOCOL
PROTOCOLS = ("rnaret", "published")
DEFAULT_PROTOCOL = "rnaret"
# metrics.tsv keys with this prefix form a second row of the same model (ViennaRNA's MEA)
VARIANT_PREFIXES = {"mea_": "MEA"}
BASE_VARIANT = {"vienna": "MFE"}
PUBLISHED_COLUMNS = ("task", "dataset", "test_set", "model", "metric", "value", "source", "table", "note")
NOT_AVAILABLE = ("NA", "", "not available", "n/a")
RNARET_PAPER = ("RNAret paper (Communications Biology 2026, doi:10.1038/s42003-026-09757-x): no citable "
                "source of its result tables is available, so no RNAret figure is given for this dataset")

INTRO = ("Rows `this run` come from the pipeline's `metrics.tsv` files, each under the protocol in "
         "its `protocol` column: `rnaret`, this project's corrected protocol, or `published`, what the "
         "published RNAret scripts compute (their filters, cuts, decoding and metrics); a model's rows "
         "of both protocols stand next to each other. `cited` rows are figures copied verbatim from "
         "the cited source (numbered notes below), on the test set the source names, which may differ "
         "from this run's; `not available` means no citable figure is available and none is given. "
         "`NA`: undefined for this run (e.g. no pseudoknotted sequence, one class only); `–`: not "
         "reported.")
ORIGIN_RUN, ORIGIN_PUBLISHED, ORIGIN_MISSING = "this run", "cited", "not available"
TSV_COLUMNS_BEFORE = ("dataset", "model", "variant", "protocol", "origin")
TSV_COLUMNS_AFTER = ("test_set", "source", "source_table", "note", "footnote")


@dataclass
class Row:
    """One table row. ``values``: metric -> number (run rows) or the published text (verbatim).
    ``protocol``: the protocol of a run row (``PROTOCOLS``), empty for a cited figure."""

    task: str
    dataset: str
    model: str
    variant: str = ""
    origin: str = ORIGIN_RUN
    values: dict = field(default_factory=dict)
    test_set: str = ""
    source: str = ""
    source_table: str = ""
    note: str = ""
    footnote: int | None = None
    protocol: str = ""

    @property
    def label(self) -> str:
        """The model as shown in the Markdown: ``vienna (MFE)``."""
        return f"{self.model} ({self.variant})" if self.variant else self.model


@dataclass
class Table:
    """One task's table: ``rows`` in display order over ``columns`` (metric names)."""

    task: str
    columns: list
    rows: list
    footnotes: list  # footnote texts; footnote k (1-based) is footnotes[k - 1]


# ------------------------------------------------------------------ reading


def parse_metrics_path(path) -> tuple[str, str, str]:
    """``.../{task}/{dataset}/{model}/metrics.tsv`` -> ``(task, dataset, model)``.

    Raises ``InputError`` when the path does not follow the contract.
    """
    parts = Path(path).parts
    if len(parts) < 4 or parts[-1] != "metrics.tsv" or parts[-4] not in TASKS:
        raise InputError(path, "not a results/{task}/{dataset}/{model}/metrics.tsv path "
                               f"(task one of {', '.join(TASKS)})")
    return parts[-4], parts[-3], parts[-2]


def metrics_protocol(metrics: dict, path) -> str:
    """Remove and return the ``protocol`` row of a read ``metrics.tsv`` (``DEFAULT_PROTOCOL`` when
    the file has none). Raises ``InputError`` naming the file for a protocol not in ``PROTOCOLS``."""
    protocol = metrics.pop("protocol", DEFAULT_PROTOCOL)
    if protocol not in PROTOCOLS:
        raise InputError(path, f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}", record="protocol")
    return protocol


def run_rows(metrics_paths: Iterable) -> list[Row]:
    """Rows of the run's evaluations, one per ``metrics.tsv`` (two for a file with ``mea_`` keys),
    each labelled with the protocol its file names."""
    rows, seen = [], {}
    for path in metrics_paths:
        task, dataset, model = parse_metrics_path(path)
        metrics = read_metrics_tsv(path)
        protocol = metrics_protocol(metrics, path)
        key = (task, dataset, model, protocol)
        if key in seen:
            raise InputError(path, f"{task}/{dataset}/{model} under the {protocol} protocol is given twice "
                                   f"(also {seen[key]})")
        seen[key] = os.fspath(path)
        base = {k: v for k, v in metrics.items() if not k.startswith(tuple(VARIANT_PREFIXES))}
        rows.append(Row(task, dataset, model, BASE_VARIANT.get(model, ""), ORIGIN_RUN, base,
                        source=os.fspath(path), protocol=protocol))
        for prefix, variant in VARIANT_PREFIXES.items():
            extra = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
            if extra:
                # the variant scores the same sequences: the counts are the base row's
                extra = {**{k: base[k] for k in ("n", "n_pk") if k in base}, **extra}
                rows.append(Row(task, dataset, model, variant, ORIGIN_RUN, extra, source=os.fspath(path),
                                protocol=protocol))
    return rows


def read_published(path) -> list[Row]:
    """Published figures grouped into rows: one per (task, dataset, test set, model, source, table).

    ``values`` hold the published text verbatim (``"0.540"``); a not-available value is kept as
    ``None``. Raises ``InputError`` for a missing column, an unknown task, a value that is not a
    number, a figure without a source and a metric given twice for the same row.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    groups: dict[tuple, Row] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in PUBLISHED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"missing column(s) {', '.join(missing)}", line=1)
        for row in reader:
            line = reader.line_num
            if None in row:
                raise InputError(path, "more fields than header columns", line=line)
            get = {c: (row.get(c) or "").strip() for c in PUBLISHED_COLUMNS}
            record = f"{get['model']} {get['metric']} on {get['dataset']}"
            if get["task"] not in TASKS:
                raise InputError(path, f"task {get['task']!r} is not one of {', '.join(TASKS)}",
                                 record=record, line=line)
            for required in ("dataset", "model", "metric", "source"):
                if not get[required]:
                    raise InputError(path, f"empty {required!r}: every published figure needs it",
                                     record=record, line=line)
            value: str | None = get["value"]
            if value in NOT_AVAILABLE:
                value = None
            else:
                try:
                    float(value)
                except ValueError:
                    raise InputError(path, f"value {value!r} is not a number (write NA when the "
                                           f"figure is not available)", record=record, line=line) from None
            key = (get["task"], get["dataset"], get["test_set"], get["model"], get["source"], get["table"])
            target = groups.get(key)
            if target is None:
                target = groups[key] = Row(get["task"], get["dataset"], get["model"], "",
                                           ORIGIN_PUBLISHED, {}, test_set=get["test_set"],
                                           source=get["source"], source_table=get["table"], note=get["note"])
            elif get["note"] and get["note"] not in target.note:
                target.note = f"{target.note}; {get['note']}" if target.note else get["note"]
            if get["metric"] in target.values:
                raise InputError(path, f"metric {get['metric']!r} given twice for this row",
                                 record=record, line=line)
            target.values[get["metric"]] = value
    for row in groups.values():
        if all(v is None for v in row.values.values()):
            row.origin = ORIGIN_MISSING
    return list(groups.values())


# ------------------------------------------------------------------ building


def is_rnaret_name(model: str) -> bool:
    """True for a published model name that is RNAret itself (``RNAret``, ``RNAret-1mer`` ...)."""
    return model.strip().lower().startswith("rnaret")


def _model_rank(row: Row) -> tuple:
    # a model's rows of both protocols next to each other (side by side), rnaret first
    order = MODEL_ORDER.index(row.model) if row.model in MODEL_ORDER else len(MODEL_ORDER)
    return order, row.model, 0 if row.variant in ("", "MFE") else 1, PROTOCOLS.index(row.protocol)


def build_table(task: str, run: Sequence[Row], published: Sequence[Row]) -> Table:
    """The table of ``task`` from the run's rows and the published rows (rows of other tasks are
    ignored). Datasets: those of the run in first-seen order, then published-only ones."""
    run = [r for r in run if r.task == task]
    published = [r for r in published if r.task == task]
    datasets = list(dict.fromkeys([r.dataset for r in run] + [r.dataset for r in published]))
    columns = list(TASK_METRICS[task])
    for r in published:  # a published figure is never dropped: its metric gets a column
        for metric in r.values:
            if metric not in columns:
                columns.append(metric)
    rows: list[Row] = []
    footnotes: list[str] = []

    def footnote(text: str) -> int:
        if text not in footnotes:
            footnotes.append(text)
        return footnotes.index(text) + 1

    for dataset in datasets:
        rows += sorted((r for r in run if r.dataset == dataset), key=_model_rank)
        pub = [r for r in published if r.dataset == dataset]
        for r in pub:
            parts = [r.source, r.source_table, f"Test set: {r.test_set}" if r.test_set else "",
                     f"Note: {r.note}" if r.note else ""]
            rows.append(dataclasses.replace(r, footnote=footnote(". ".join(p.rstrip(".") for p in parts if p) + ".")))
        # RNAret's own published figure: from the file (which may itself say "not available"),
        # otherwise a row that says explicitly that there is none
        if task in PAPER_TASKS and not any(is_rnaret_name(r.model) for r in pub):
            rows.append(Row(task, dataset, "RNAret (paper)", "", ORIGIN_MISSING, {}, source=RNARET_PAPER,
                            footnote=footnote(RNARET_PAPER + ".")))
    return Table(task, columns, rows, footnotes)


def build_tables(metrics_paths: Iterable, published_path=None, tasks: Sequence[str] = TASKS) -> dict:
    """``{task: Table}`` for every task in ``tasks`` (a task without rows gets an empty table)."""
    run = run_rows(metrics_paths)
    published = read_published(published_path) if published_path else []
    return {task: build_table(task, run, published) for task in tasks}


# ------------------------------------------------------------------ writing


def format_tsv_value(value) -> str:
    """TSV cell of a metric: published text verbatim, ints as ints, floats in full, NaN as NA,
    missing as empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return "NA" if math.isnan(value) else repr(value)
    return str(value)


def format_md_value(value) -> str:
    """Markdown cell of a metric: published text verbatim, floats to 3 decimals, NaN as NA,
    missing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return "NA" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _cell(row: Row, metric: str):
    """A row's value of ``metric``: None when not reported or the row is not available."""
    if row.origin == ORIGIN_MISSING:
        return None
    return row.values.get(metric)


def tsv_lines(table: Table) -> list[list[str]]:
    """The TSV rows (header first) of a table."""
    header = list(TSV_COLUMNS_BEFORE) + table.columns + list(TSV_COLUMNS_AFTER)
    out = [header]
    for r in table.rows:
        cells = [r.dataset, r.model, r.variant, r.protocol, r.origin]
        cells += [format_tsv_value(_cell(r, m)) for m in table.columns]
        cells += [r.test_set, r.source, r.source_table, r.note, str(r.footnote or "")]
        out.append([c.replace("\t", " ").replace("\n", " ") for c in cells])
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_text(table: Table) -> str:
    """The Markdown of a table: title, what the columns mean, the table, footnotes."""
    title = TASK_TITLES.get(table.task, table.task)
    lines = [f"## {title} (`{table.task}`)", ""]
    if not table.rows:
        lines += [f"No {table.task} evaluations in this run and no published figures for it.", ""]
        return "\n".join(lines)
    lines += [INTRO, ""]
    header = (["dataset", "model", "protocol", "origin"] + [METRIC_TITLES.get(m, m) for m in table.columns]
              + ["source"])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 4 + ["---:"] * len(table.columns) + ["---"]) + "|")
    for r in table.rows:
        source = f"`{r.source}`" if r.origin == ORIGIN_RUN else f"{_citation(r)} [{r.footnote}]"
        origin = "**not available**" if r.origin == ORIGIN_MISSING else r.origin
        cells = [r.dataset, r.label, r.protocol or "–", origin]
        cells += [format_md_value(_cell(r, m)) for m in table.columns]
        lines.append("| " + " | ".join(_md_escape(str(c)) for c in cells + [source]) + " |")
    if table.footnotes:
        lines += ["", "Sources:", ""]
        lines += [f"{k}. {_md_escape(text)}" for k, text in enumerate(table.footnotes, start=1)]
    lines.append("")
    return "\n".join(lines)


def _citation(row: Row) -> str:
    """The source cell's text of a row that is not from this run: the short citation (or "not
    available") and the table of the source it comes from, if named (its footnote is added by
    each format)."""
    short = short_citation(row.source) if row.origin == ORIGIN_PUBLISHED else "not available"
    return short + (f", {row.source_table}" if row.source_table else "")


def short_citation(source: str) -> str:
    """A short label of a citation: ``Tan et al. 2024 (RFold)`` from ``Tan C, Gao Z, ... et al.
    ... (RFold). Proc. ICML 2024 ...``; the first comma-separated part otherwise."""
    first = source.split(",")[0].strip()
    if "et al" in source:
        first = f"{first.split()[0]} et al."
    year = re.search(r"\b(19|20)\d\d\b(?![.\d/])", source)
    acronym = re.search(r"\(([A-Z][A-Za-z0-9.-]{1,20})\)", source)
    parts = [first] + ([year.group(0)] if year else []) + ([f"({acronym.group(1)})"] if acronym else [])
    return " ".join(parts)


HTML_STYLE = ("body{font-family:sans-serif;font-size:13px;margin:12px}"
              "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px}"
              "th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}"
              "tr.cited td{background:#f7f9ff}tr.missing td{background:#fff6e6}"
              "ol{max-width:70em}")


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (inline style, no external resources: the report works offline)."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def html_text(table: Table) -> str:
    """The table as a self-contained HTML page (the same rows and cells as the Markdown)."""
    title = f"{TASK_TITLES.get(table.task, table.task)} ({table.task})"
    if not table.rows:
        return html_page(title, f"<h2>{html.escape(title)}</h2><p>No {table.task} evaluations in this "
                                "run and no published figures for it.</p>")
    head = ["dataset", "model", "protocol", "origin"] + [METRIC_TITLES.get(m, m) for m in table.columns] + ["source"]
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(INTRO.replace('`', ''))}</p>", "<table>",
             "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    css = {ORIGIN_RUN: "run", ORIGIN_PUBLISHED: "cited", ORIGIN_MISSING: "missing"}
    for r in table.rows:
        source = (f"<code>{html.escape(r.source)}</code>" if r.origin == ORIGIN_RUN else
                  f"{html.escape(_citation(r))} [<a href=\"#note{r.footnote}\">{r.footnote}</a>]")
        origin = "<b>not available</b>" if r.origin == ORIGIN_MISSING else html.escape(r.origin)
        cells = [f"<td>{html.escape(r.dataset)}</td>", f"<td>{html.escape(r.label)}</td>",
                 f"<td>{html.escape(r.protocol or '–')}</td>", f"<td>{origin}</td>"]
        cells += [f"<td class=\"num\">{html.escape(format_md_value(_cell(r, m)))}</td>" for m in table.columns]
        cells.append(f"<td>{source}</td>")
        parts.append(f"<tr class=\"{css[r.origin]}\">" + "".join(cells) + "</tr>")
    parts.append("</table>")
    if table.footnotes:
        parts.append("<p>Sources:</p><ol>" + "".join(
            f"<li id=\"note{k}\">{html.escape(text)}</li>" for k, text in enumerate(table.footnotes, start=1))
            + "</ol>")
    return html_page(title, "\n".join(parts))


def write_table(table: Table, tsv_path, md_path, html_path=None) -> None:
    """Write one table as TSV and Markdown (and HTML when ``html_path`` is given), atomically."""
    with atomic_open(tsv_path, newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerows(tsv_lines(table))
    with atomic_open(md_path) as handle:
        handle.write(markdown_text(table))
    if html_path is not None:
        with atomic_open(html_path) as handle:
            handle.write(html_text(table))


def write_tables(metrics_paths: Iterable, published_path, out_dir, tasks: Sequence[str] = TASKS
                 ) -> dict[str, tuple[Path, Path, Path]]:
    """Build and write ``{out_dir}/{task}.tsv``, ``.md`` and ``.html`` for each task; return the
    paths ``{task: (tsv, md, html)}``."""
    out_dir = Path(out_dir)
    written = {}
    for task, table in build_tables(metrics_paths, published_path, tasks).items():
        paths = (out_dir / f"{task}.tsv", out_dir / f"{task}.md", out_dir / f"{task}.html")
        write_table(table, *paths)
        written[task] = paths
    return written


def read_table_tsv(path) -> list[dict]:
    """Read a written ``{task}.tsv`` back as a list of dicts (all cells as text)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
