"""How homologous a dataset's evaluation splits are to its own training data (reported, nothing
removed): each test sequence is looked up in train and valid, each valid sequence in train,
first by identity, then with the MMseqs2 search and thresholds of the leakage stage
(``rnaret.data.similarity``). A test-only dataset that names ``finetuned_on`` is compared with
the splits of that dataset, whose fine-tuned models evaluate it.

One row per (dataset, split, reference split), ``TABLE_COLUMNS``; the E-values are against the
reference split's nucleotides.
"""
from __future__ import annotations

from dataclasses import dataclass

from rnaret.data.similarity import Thresholds, best_per_test, group_by_searched, search, workspace, \
    write_search_fasta
from rnaret.settings.dataset_sources import SplitSource, split_sources

TABLE_COLUMNS = ("task", "dataset", "split", "reference", "sequences", "unique_sequences",
                 "identical_in_reference", "similar_in_reference", "in_reference",
                 "fraction_in_reference", "reference_sequences")
HIT_COLUMNS = ("task", "dataset", "split", "reference", "test_record", "reference_record",
               "identity", "test_coverage", "aligned_length", "test_length", "bits", "evalue")
# (evaluated split, reference split) pairs, in report order. The settings resolver reads them to
# plan one job per dataset: this module imports the readers (Biopython) only when it reads.
COMPARISONS = (("test", "train"), ("test", "valid"), ("valid", "train"))


@dataclass(frozen=True)
class Comparison:
    """One evaluated split against one reference split (possibly of another dataset)."""

    evaluated: SplitSource
    reference: SplitSource

    @property
    def reference_label(self) -> str:
        return f"{self.reference.dataset}/{self.reference.split}"


def comparisons(datasets: dict, task: str, name: str) -> list[Comparison]:
    """The comparisons of dataset ``task/name`` of a ``datasets:`` mapping (``COMPARISONS`` that
    both splits exist for; the reference splits of a test-only dataset come from its
    ``finetuned_on`` dataset). Raises ``KeyError`` naming an unknown dataset."""
    try:
        entry = datasets[task][name]
    except KeyError:
        raise KeyError(f"datasets.{task}.{name} is not in the datasets mapping") from None
    reference_name = entry.get("finetuned_on") or name
    own = {s.split: s for s in split_sources({task: {name: entry}})}
    reference_entry = datasets[task].get(reference_name)
    if reference_entry is None:
        raise KeyError(f"datasets.{task}.{name}.finetuned_on: no dataset {reference_name!r} in {task}")
    reference = {s.split: s for s in split_sources({task: {reference_name: reference_entry}})}
    out = []
    for evaluated, against in COMPARISONS:
        if evaluated in own and against in reference:
            out.append(Comparison(own[evaluated], reference[against]))
    return out


def _unique(source: SplitSource) -> tuple[int, dict[str, str]]:
    """(records read, normalised sequence -> first record) of one split."""
    from rnaret.data.sequence_key import normalized
    from rnaret.io.dataset_readers import iter_sequences

    n, first = 0, {}
    for record, sequence in iter_sequences(source.path, source.row_split, task=source.task):
        n += 1
        key = normalized(sequence)
        if key:
            first.setdefault(key, record)
    return n, first


def check_dataset(datasets: dict, task: str, name: str, *, thresholds: Thresholds = Thresholds(),
                  threads: int = 1, memory_mb: int | None = None, tmp_dir=None,
                  mmseqs: str | None = None, log=None) -> tuple[list[dict], list[dict]]:
    """Rows (``TABLE_COLUMNS``) and best hits (``HIT_COLUMNS``, one per evaluated sequence found
    similar) of every comparison of dataset ``task/name``."""
    rows, hits_out = [], []
    cache: dict[SplitSource, tuple[int, dict[str, str]]] = {}
    for comparison in comparisons(datasets, task, name):
        for source in (comparison.evaluated, comparison.reference):
            if source not in cache:
                cache[source] = _unique(source)
        n_eval, evaluated = cache[comparison.evaluated]
        _, reference = cache[comparison.reference]
        tests = list(evaluated)
        identical = {i for i, s in enumerate(tests) if s in reference}
        similar: dict[int, object] = {}
        reference_seqs = list(reference)
        reference_nt = sum(map(len, reference_seqs))
        if reference_seqs and tests:
            with workspace(tmp_dir) as work:
                fasta = work / "reference.fa"
                write_search_fasta(fasta, enumerate(reference_seqs))
                hits, _ran = search(fasta, tests, work, thresholds=thresholds,
                                     searched_nucleotides=reference_nt, threads=threads,
                                     memory_mb=memory_mb, binary=mmseqs, log=log)
                for _key, group in group_by_searched(hits):
                    for hit in best_per_test(group):
                        if hit.test in identical or not thresholds.passes(hit, reference_nt):
                            continue
                        kept = similar.get(hit.test)
                        if kept is None or hit.bits > kept.bits:
                            similar[hit.test] = hit
        found = len(identical) + len(similar)
        rows.append({"task": task, "dataset": name, "split": comparison.evaluated.split,
                     "reference": comparison.reference_label, "sequences": n_eval,
                     "unique_sequences": len(tests), "identical_in_reference": len(identical),
                     "similar_in_reference": len(similar), "in_reference": found,
                     "fraction_in_reference": f"{found / len(tests):.4f}" if tests else "nan",
                     "reference_sequences": len(reference_seqs)})
        for index, hit in sorted(similar.items()):
            hits_out.append({"task": task, "dataset": name, "split": comparison.evaluated.split,
                             "reference": comparison.reference_label,
                             "test_record": evaluated[tests[index]],
                             "reference_record": reference[reference_seqs[hit.searched]],
                             "identity": f"{hit.identity:.3f}", "test_coverage": f"{hit.test_coverage:.3f}",
                             "aligned_length": hit.aligned_length, "test_length": hit.test_length,
                             "bits": f"{hit.bits:g}", "evalue": f"{hit.evalue(reference_nt):.3g}"})
    return rows, hits_out
