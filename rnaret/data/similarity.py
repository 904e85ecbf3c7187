"""Nucleotide similarity search with MMseqs2: which searched sequences (the corpus, or a
dataset's train split) hold a test sequence, whole or nearly so.

One search mechanism serves the corpus leakage stage and the within-dataset homology check:
the *searched* set is MMseqs2's query database (it can be the 29.8 M-record corpus: queries are
streamed, never indexed) and the small *test* set is the target database, whose k-mer index is
what has to fit in memory. Putting the big set on the query side also means MMseqs2's
``--max-seqs`` cap (candidates kept per query) limits how many test sequences one corpus record
is compared with, never how many corpus records one test sequence can remove.

Parameters (tested in tests/data/test_similarity.py on the bundled data):

- forward strand only (``--strand 1``): an RNA and its reverse complement are different molecules;
- k-mer length by test length: MMseqs2 seeds a nucleotide alignment only from exact (spaced)
  k-mer matches, and its default k = 15 misses a 22-nt miRNA with two mismatches. Test sequences
  shorter than 30 nt are searched with k = 7, longer ones with k = 11 (both classes were checked
  with two and three evenly spaced mismatches, the worst case for exact seeds); a smaller k on the
  long sequences would multiply the prefilter's work without finding more;
- long searched sequences are cut by MMseqs2 into chunks; the chunks overlap by the longest test
  sequence, so a contained test sequence always lies whole inside one chunk;
- E-values: MMseqs2 reports an E-value against the *target* (test) set; what matters here is the
  chance of an alignment this good anywhere in the searched set, so ``Hit.evalue`` is recomputed
  from the bit score as ``test_length * searched_nucleotides * 2**-bits`` (the relation MMseqs2's
  own E-values follow). The search reports every alignment that could pass ``max_evalue`` after
  that rescaling.

MMseqs2 14 with more than one thread sometimes reports a forward alignment's target (test)
coordinates on the reverse strand (start > end, counted from the other end); the alignment,
its identity and score are right. ``parse_hits`` maps such coordinates back.
"""
from __future__ import annotations

import heapq
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

# The conda environment whose pin provides `mmseqs` when the pipeline runs with --use-conda.
MMSEQS_ENV = "envs/data.yaml"
MMSEQS_CONDA_PIN = "mmseqs2=14.7e284"  # bioconda; the version Debian 12 ships
MMSEQS_DEBIAN = "mmseqs2 (Debian 12: MMseqs2 14)"

# Search parameters shared by every length class (see the module docstring).
COMMON_OPTIONS = ("--search-type", "3", "--strand", "1", "-a", "1", "--alignment-mode", "3")
SHORT_BELOW = 30          # test sequences shorter than this (nt) use the short class's k
DEFAULT_MAX_SEQS = 300    # candidate test sequences aligned per searched chunk (MMseqs2's default)
CHUNK_LENGTH = 10_000     # MMseqs2's nucleotide chunk length (raised to fit twice the longest test)
HIT_FIELDS = ("query", "target", "fident", "alnlen", "mismatch", "gapopen", "qstart", "qend",
              "tstart", "tend", "qlen", "tlen", "bits")


class MMseqsError(RuntimeError):
    """MMseqs2 is missing or one of its steps failed (the message says which and how to fix)."""


@dataclass(frozen=True)
class LengthClass:
    """Test sequences with ``min_length <= length < max_length`` (None: no upper bound)."""

    name: str
    min_length: int
    max_length: int | None
    kmer: int

    def holds(self, length: int) -> bool:
        return length >= self.min_length and (self.max_length is None or length < self.max_length)


LENGTH_CLASSES = (LengthClass("short", 1, SHORT_BELOW, 7), LengthClass("long", SHORT_BELOW, None, 11))


@dataclass(frozen=True)
class Thresholds:
    """When an alignment counts as the test sequence being in the searched sequence.

    ``min_identity``: identical positions / aligned columns; ``min_test_coverage``: aligned test
    positions / test length; ``max_evalue``: chance alignments this good expected in the whole
    searched set (see ``Hit.evalue``). Raises ``ValueError`` naming the key when out of range.
    """

    min_identity: float = 0.8
    min_test_coverage: float = 0.8
    max_evalue: float = 1.0

    def __post_init__(self):
        for key in ("min_identity", "min_test_coverage"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise ValueError(f"leakage.{key} must be a number in (0, 1], got {value!r}")
        if not isinstance(self.max_evalue, (int, float)) or not self.max_evalue > 0:
            raise ValueError(f"leakage.max_evalue must be a number > 0, got {self.max_evalue!r}")

    def passes(self, hit: "Hit", searched_nucleotides: int) -> bool:
        """True when ``hit`` meets all three thresholds."""
        return (hit.identity >= self.min_identity and hit.test_coverage >= self.min_test_coverage
                and hit.evalue(searched_nucleotides) <= self.max_evalue)


@dataclass(frozen=True)
class Hit:
    """One forward-strand local alignment of a test sequence inside a searched sequence.

    ``searched`` and ``test`` are the ids written to the search FASTA files (ordinals); positions
    are 1-based and inclusive, start <= end on both sides.
    """

    searched: int
    test: int
    identity: float
    aligned_length: int
    mismatches: int
    gap_opens: int
    searched_start: int
    searched_end: int
    test_start: int
    test_end: int
    searched_length: int
    test_length: int
    bits: float

    @property
    def test_coverage(self) -> float:
        """Fraction of the test sequence inside the alignment."""
        return (self.test_end - self.test_start + 1) / self.test_length

    @property
    def searched_coverage(self) -> float:
        """Fraction of the searched sequence inside the alignment."""
        return (self.searched_end - self.searched_start + 1) / self.searched_length

    def evalue(self, searched_nucleotides: int) -> float:
        """Expected chance alignments at least this good between the test sequence and a
        searched set of ``searched_nucleotides`` (``m n 2^-S'``, S' the bit score)."""
        return self.test_length * searched_nucleotides * 2.0 ** (-self.bits)


def mmseqs_binary(binary: str | None = None) -> str:
    """Path of the ``mmseqs`` executable (``binary``, else $RNARET_MMSEQS, else ``mmseqs`` on PATH).

    Raises ``MMseqsError`` naming the ways to get it when it is not there.
    """
    name = binary or os.environ.get("RNARET_MMSEQS") or "mmseqs"
    found = shutil.which(name)
    if found is None:
        raise MMseqsError(
            f"MMseqs2 ({name!r}) was not found on PATH. Install {MMSEQS_DEBIAN} with "
            f"'apt-get install mmseqs2', or run the pipeline with --use-conda: the environment "
            f"{MMSEQS_ENV} pins bioconda's {MMSEQS_CONDA_PIN}; a binary elsewhere is named by "
            f"--mmseqs or $RNARET_MMSEQS.")
    return found


def mmseqs_version(binary: str) -> str:
    """The version string ``mmseqs version`` prints (e.g. '14-7e284+ds-1+b2')."""
    return _run([binary, "version"], "version").strip()


def _run(command: Sequence[str], step: str, log=None) -> str:
    """Run one MMseqs2 step; its output goes to ``log`` (a text handle) or is returned.
    Raises ``MMseqsError`` with the step, the command and the end of its output on failure."""
    result = subprocess.run(list(command), capture_output=True, text=True)
    if log is not None:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
        log.flush()
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise MMseqsError(f"mmseqs {step} failed (exit {result.returncode}): {' '.join(command)}\n"
                          + "\n".join(tail))
    return result.stdout


def write_search_fasta(path, records: Iterable[tuple[int, str]]) -> tuple[int, int]:
    """Write (id, sequence) pairs as single-line FASTA records ``>id`` (ids increasing: what
    ``Hit.searched`` refers to; single lines let MMseqs2 link the file instead of copying it).
    Returns (records, nucleotides) written."""
    n = nt = 0
    with open(path, "w", encoding="ascii") as handle:
        for key, sequence in records:
            handle.write(f">{key}\n{sequence}\n")
            n += 1
            nt += len(sequence)
    return n, nt


@dataclass(frozen=True)
class SearchRecord:
    """What one search ran: the MMseqs2 version and, per length class, its options."""

    version: str
    classes: dict        # class name -> {"test_sequences", "kmer", "options", "evalue_cutoff"}
    thresholds: dict
    searched_nucleotides: int


@contextmanager
def workspace(tmp_dir=None):
    """A temporary directory for MMseqs2's databases (under ``tmp_dir``, default $TMPDIR),
    removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="rnaret-mmseqs-", dir=tmp_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def search(searched_fasta, test_sequences: Sequence[str], workdir, *, thresholds: Thresholds,
           searched_nucleotides: int, threads: int = 1, memory_mb: int | None = None,
           binary: str | None = None, max_seqs: int = DEFAULT_MAX_SEQS, log=None
           ) -> tuple[Iterator[Hit], SearchRecord]:
    """Align every test sequence against every sequence of ``searched_fasta``.

    ``searched_fasta``: a FASTA written by ``write_search_fasta`` (increasing integer ids);
    ``test_sequences``: the test sequences, ``Hit.test`` indexing this list; ``workdir``: an
    existing scratch directory (see ``workspace``); ``searched_nucleotides``: the size of the
    searched set for E-values (the whole corpus, also when records were left out of the file);
    ``memory_mb``: the job's memory (MMseqs2 gets 3/4 as ``--split-memory-limit``, GNU sort half
    as its buffer; they run one after the other).
    Returns (hits, ran): hits are every forward alignment with ``Hit.evalue`` within reach of
    ``thresholds.max_evalue``, ordered by searched id (all hits of one searched record together),
    best first within a record; ``ran`` records the version and options used.
    """
    if not test_sequences or os.path.getsize(searched_fasta) == 0:  # MMseqs2 refuses empty input
        return iter(()), SearchRecord(version="not run: nothing to search", classes={},
                                    thresholds=asdict(thresholds), searched_nucleotides=searched_nucleotides)
    mmseqs = mmseqs_binary(binary)
    version = mmseqs_version(mmseqs)
    workdir = Path(workdir)
    searched_db = workdir / "searched"
    _run([mmseqs, "createdb", str(searched_fasta), str(searched_db), "--dbtype", "2",
          "--createdb-mode", "1", "--shuffle", "0", "-v", "1"], "createdb", log)
    outputs, classes = [], {}
    for length_class in LENGTH_CLASSES:
        members = [i for i, s in enumerate(test_sequences) if length_class.holds(len(s))]
        if not members:
            continue
        test_fasta = workdir / f"test_{length_class.name}.fa"
        with open(test_fasta, "w", encoding="ascii") as handle:
            for i in members:
                handle.write(f">{i}\n{test_sequences[i]}\n")
        test_db = workdir / f"test_{length_class.name}"
        _run([mmseqs, "createdb", str(test_fasta), str(test_db), "--dbtype", "2", "-v", "1"],
             "createdb", log)
        lengths = [len(test_sequences[i]) for i in members]
        longest, shortest = max(lengths), min(lengths)
        chunk = max(CHUNK_LENGTH, 2 * longest)
        # MMseqs2's E-value is qlen * test_nt * 2^-bits (query = searched chunk); the loosest
        # cutoff that keeps every alignment whose searched-set E-value can pass max_evalue:
        cutoff = thresholds.max_evalue * chunk * sum(lengths) / (shortest * max(searched_nucleotides, 1))
        options = [*COMMON_OPTIONS, "-k", str(length_class.kmer), "-e", f"{min(cutoff, 1e300):.6g}",
                   "--max-seqs", str(max_seqs), "--max-seq-len", str(chunk),
                   "--sequence-overlap", str(longest), "--threads", str(threads)]
        if memory_mb:  # MMseqs2 and sort run one after the other, beside this process's own arrays
            options += ["--split-memory-limit", f"{max(int(memory_mb * 0.75), 100)}M"]
        result_db = workdir / f"hits_{length_class.name}"
        _run([mmseqs, "search", str(searched_db), str(test_db), str(result_db),
              str(workdir / f"tmp_{length_class.name}"), *options, "--remove-tmp-files", "1",
              "-v", "2"], "search", log)
        table = workdir / f"hits_{length_class.name}.tsv"
        unsorted = workdir / f"hits_{length_class.name}.unsorted.tsv"
        _run([mmseqs, "convertalis", str(searched_db), str(test_db), str(result_db), str(unsorted),
              "--search-type", "3", "--format-output", ",".join(HIT_FIELDS),
              "--threads", str(threads), "-v", "1"], "convertalis", log)
        # convertalis keeps each record's lines together but not the records in id order
        _sort_by_searched(unsorted, table, workdir, threads, memory_mb, log)
        unsorted.unlink()
        outputs.append(table)
        classes[length_class.name] = {
            "test_sequences": len(members), "test_lengths": [shortest, longest],
            "kmer": length_class.kmer, "mmseqs_evalue_cutoff": float(f"{cutoff:.6g}"),
            "options": options}
    ran = SearchRecord(version=version, classes=classes, thresholds=asdict(thresholds),
                      searched_nucleotides=searched_nucleotides)
    return merge_hits(outputs), ran


def _sort_by_searched(source: Path, target: Path, workdir: Path, threads: int,
                     memory_mb: int | None, log=None) -> None:
    """Sort a convertalis table numerically by its first column (the searched id) with GNU
    sort, which spills to ``workdir`` when the table outgrows memory."""
    sort = shutil.which("sort")
    if sort is None:
        raise MMseqsError("the `sort` program (GNU coreutils) is needed to order MMseqs2's hits")
    command = [sort, "-t", "\t", "-k1,1n", "-s", "-S", f"{max(int(memory_mb or 1000) // 2, 64)}M",
               "-T", str(workdir), f"--parallel={max(threads, 1)}", "-o", str(target), str(source)]
    env = dict(os.environ, LC_ALL="C")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if log is not None:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise MMseqsError(f"sorting the hits failed (exit {result.returncode}): {result.stderr.strip()}")


def parse_hits(line: str) -> Hit:
    """One convertalis line (``HIT_FIELDS``) as a ``Hit``, target coordinates on the forward
    strand (``--strand 1`` gives forward alignments only; see the module docstring)."""
    q, t, fident, alnlen, mismatch, gapopen, qs, qe, ts, te, qlen, tlen, bits = line.rstrip("\n").split("\t")
    ts_, te_, tlen_ = int(ts), int(te), int(tlen)
    if ts_ > te_:  # mirrored by MMseqs2 14's multi-threaded offsetalignment
        ts_, te_ = tlen_ - ts_ + 1, tlen_ - te_ + 1
    qs_, qe_ = sorted((int(qs), int(qe)))
    return Hit(searched=int(q), test=int(t), identity=float(fident), aligned_length=int(alnlen),
               mismatches=int(mismatch), gap_opens=int(gapopen), searched_start=qs_, searched_end=qe_,
               test_start=ts_, test_end=te_, searched_length=int(qlen), test_length=tlen_,
               bits=float(bits))


def _read_table(path) -> Iterator[Hit]:
    previous = -1
    with open(path, encoding="ascii") as handle:
        for line in handle:
            hit = parse_hits(line)
            if hit.searched < previous:  # merge_hits relies on the sorted tables
                raise MMseqsError(f"{path}: results are not in searched-id order "
                                  f"({hit.searched} after {previous})")
            previous = hit.searched
            yield hit


def merge_hits(tables: Sequence) -> Iterator[Hit]:
    """The hits of several tables sorted by searched id, merged in that order; best (highest bit
    score) first within each searched record."""
    merged = heapq.merge(*(_read_table(t) for t in tables), key=lambda h: h.searched)
    group: list[Hit] = []
    for hit in merged:
        if group and hit.searched != group[0].searched:
            yield from sorted(group, key=lambda h: -h.bits)
            group = []
        group.append(hit)
    yield from sorted(group, key=lambda h: -h.bits)


def group_by_searched(hits: Iterable[Hit]) -> Iterator[tuple[int, list[Hit]]]:
    """(searched id, its hits) for each searched record with at least one hit, in id order."""
    current, group = None, []
    for hit in hits:
        if hit.searched != current:
            if group:
                yield current, group
            current, group = hit.searched, []
        group.append(hit)
    if group:
        yield current, group


def best_per_test(hits: Iterable[Hit]) -> list[Hit]:
    """The highest-scoring alignment of each test sequence among ``hits`` (one searched record:
    overlapping chunks can report the same alignment twice)."""
    best: dict[int, Hit] = {}
    for hit in hits:
        kept = best.get(hit.test)
        if kept is None or (hit.bits, hit.test_coverage) > (kept.bits, kept.test_coverage):
            best[hit.test] = hit
    return sorted(best.values(), key=lambda h: (-h.bits, h.test))
