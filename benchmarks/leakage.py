"""Time and peak memory of the leakage stage (identity + MMseqs2 similarity) for 1x, 10x and 50x
the bundled corpus sample, against the valid/test splits of the default config.

The sample (16,201 RNAcentral records, 8.7 M nt) is repeated with ids made unique
(``<id>_r<n>``), as in benchmarks/shards.py. Each size runs ``rnaret.data.leakage.remove_leakage``
in a fresh subprocess; it reports the Python process's peak resident memory and the largest
peak of the MMseqs2 steps it ran (``ru_maxrss`` of self and of the waited-for children), the
wall time, the records removed, and the peak size of the scratch folder (sampled every 0.5 s:
the plain search copy of the corpus, MMseqs2's prefilter and alignment results, the hits).
MMseqs2 maps its databases: its peak resident memory counts the pages of the mapped corpus copy
(file-backed, reclaimable page cache); the anonymous part, sampled every 0.5 s from /proc, is what
it allocates itself.

``--swapped`` also times the search with the roles exchanged, as a corpus-indexed search would
run it: the split sequences as MMseqs2's queries against the corpus as its target database
(same k-mer classes, MMseqs2's default ``--max-seqs 300``), and counts the corpus records it
finds: the corpus's k-mer index then grows with the corpus, and ``--max-seqs`` caps how many
records one split sequence can reach.

``--shuffled`` adds a control: the 1x sample with every record's letters shuffled (same lengths
and composition, no homology): what it removes is what the thresholds let through by chance,
with the default E-value bound and without one (identity and coverage alone).

``--seeds`` measures instead which k-mer lengths find short sequences: windows of 20-100 nt of
bundled test sequences, each planted with two and with three evenly spaced substitutions (the
worst case for MMseqs2's exact k-mer seeds) inside a bundled corpus record, searched with
k = 7, 8, 9, 11, 13 and 15; it prints how many of 40 windows per length each k finds within the
default thresholds.

    python benchmarks/leakage.py [--scales 1 10 50] [--threads 2] [--swapped] [--shuffled]
    python benchmarks/leakage.py --seeds
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"

CHILD = r"""
import json, os, resource, sys, threading, time
import yaml
from rnaret.settings.dataset_sources import split_sources
from rnaret.data.leakage import remove_leakage
from rnaret.data.similarity import Thresholds
fasta, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
max_evalue = float(sys.argv[5]) if len(sys.argv) > 5 else Thresholds().max_evalue
scratch = os.path.join(out, "scratch")
os.makedirs(scratch)
datasets = yaml.safe_load(open(sys.argv[4]))["datasets"]
sources = split_sources(datasets, splits=("valid", "test"))


def children(root):
    # every descendant process of root, from /proc/*/stat (Linux)
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    kids.setdefault(int(handle.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        for pid in kids.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


anon_peak = [0]  # KiB: the largest anonymous (not file-backed) resident memory of one child
scratch_peak = [0]  # bytes in the scratch folder (links not counted: MMseqs2 links the copy)
stop = threading.Event()


def scratch_bytes():
    total = 0
    for root, _dirs, files in os.walk(scratch):
        for name in files:
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path):
                    total += os.lstat(path).st_size
            except OSError:
                pass
    return total


def sample():
    while not stop.wait(0.5):
        scratch_peak[0] = max(scratch_peak[0], scratch_bytes())
        for pid in children(os.getpid()):
            try:
                with open(f"/proc/{pid}/status") as handle:
                    for line in handle:
                        if line.startswith("RssAnon:"):
                            anon_peak[0] = max(anon_peak[0], int(line.split()[1]))
            except OSError:
                pass


sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start = time.perf_counter()
with open(os.devnull, "w") as log:
    counts = remove_leakage(fasta, out + "/out.fa.gz", sources, out + "/table.tsv", threads=threads,
                            tmp_dir=scratch, show_progress=False, log=log,
                            thresholds=Thresholds(max_evalue=max_evalue))
seconds = time.perf_counter() - start
stop.set()
print(json.dumps({"seconds": seconds,
                  "python_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "mmseqs_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "mmseqs_anon_mib": anon_peak[0] / 1024, "scratch_mib": scratch_peak[0] / 2**20,
                  "records": counts["records_in"], "nucleotides": counts["nucleotides_in"],
                  "identical": counts["records_removed_identical"],
                  "similar": counts["records_removed_similar"]}))
"""


def make_corpus(scale: int, path: Path, shuffle: bool = False) -> int:
    """Write the sample ``scale`` times (ids suffixed _r<n>) as plain FASTA; with ``shuffle`` each
    record's letters are permuted (seeded). Returns the records written."""
    from rnaret.io.fasta import read_fasta

    rng = random.Random(0)
    records = [(r.id, r.description[len(r.id):], r.sequence) for r in read_fasta(SAMPLE)]
    with open(path, "w") as out:
        for copy in range(scale):
            for rid, rest, seq in records:
                if shuffle:
                    seq = "".join(rng.sample(seq, len(seq)))
                out.write(f">{rid}_r{copy}{rest}\n{seq}\n")
    return len(records) * scale


def run_stage(fasta: Path, work: Path, threads: int, max_evalue: float | None = None) -> dict:
    """One leakage run in a fresh process (see CHILD); ``max_evalue`` over the default."""
    extra = [] if max_evalue is None else [str(max_evalue)]
    result = subprocess.run([sys.executable, "-c", CHILD, str(fasta), str(work), str(threads),
                             str(ROOT / "config.yaml"), *extra], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"leakage run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_swapped(fasta: Path, work: Path, threads: int) -> dict:
    """The split sequences searched against the corpus as MMseqs2's target: seconds, peak RSS
    of the largest step, corpus records with a passing alignment."""
    import resource

    import yaml

    from rnaret.data.sequence_key import normalized
    from rnaret.io.dataset_readers import iter_sequences
    from rnaret.settings.dataset_sources import split_sources
    from rnaret.data.similarity import COMMON_OPTIONS, LENGTH_CLASSES, Thresholds, mmseqs_binary
    from rnaret.io.fasta import read_fasta

    mmseqs = mmseqs_binary()
    datasets = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]
    tests = sorted({normalized(s) for src in split_sources(datasets, splits=("valid", "test"))
                    for _, s in iter_sequences(src.path, src.row_split, task=src.task)} - {""})
    corpus_nt = sum(len(r.sequence) for r in read_fasta(fasta, check_letters=False))
    thresholds = Thresholds()
    run = lambda *cmd: subprocess.run([mmseqs, *map(str, cmd), "-v", "1"], check=True,
                                      capture_output=True, text=True)
    start = time.perf_counter()
    run("createdb", fasta, work / "corpus", "--dbtype", "2")
    found = set()
    for length_class in LENGTH_CLASSES:
        members = [s for s in tests if length_class.holds(len(s))]
        query = work / f"q_{length_class.name}.fa"
        query.write_text("".join(f">{i}\n{s}\n" for i, s in enumerate(members)))
        run("createdb", query, work / f"q_{length_class.name}", "--dbtype", "2")
        result = work / f"r_{length_class.name}"
        run("search", work / f"q_{length_class.name}", work / "corpus", result, work / "tmp",
            *COMMON_OPTIONS, "-k", length_class.kmer, "-e", "1e6", "--threads", threads,
            "--sequence-overlap", max(map(len, members)), "--max-seq-len", max(10_000, 2 * max(map(len, members))))
        table = work / f"r_{length_class.name}.tsv"
        run("convertalis", work / f"q_{length_class.name}", work / "corpus", result, table,
            "--search-type", "3", "--format-output", "query,target,fident,qstart,qend,qlen,bits",
            "--threads", threads)
        for line in open(table):
            q, t, fident, qs, qe, qlen, bits = line.split("\t")
            coverage = (abs(int(qe) - int(qs)) + 1) / int(qlen)
            evalue = int(qlen) * corpus_nt * 2.0 ** -float(bits)
            if float(fident) >= thresholds.min_identity and coverage >= thresholds.min_test_coverage \
                    and evalue <= thresholds.max_evalue:
                found.add(t)
    seconds = time.perf_counter() - start
    # run in a fresh process (--swapped-child): the children's peak is this search's alone
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "rss_mib": peak / 1024, "found": len(found)}


def seed_sweep(work: Path, threads: int, per_length: int = 40,
               lengths=(20, 22, 25, 30, 35, 40, 50, 60, 80, 100), kmers=(7, 8, 9, 11, 13, 15)) -> None:
    """Print, per k-mer length and window length, how many planted windows pass the thresholds."""
    import yaml

    from rnaret.data.sequence_key import normalized
    from rnaret.io.dataset_readers import iter_sequences
    from rnaret.settings.dataset_sources import split_sources
    from rnaret.data.similarity import COMMON_OPTIONS, Thresholds, mmseqs_binary, parse_hits
    from rnaret.io.fasta import read_fasta

    rng = random.Random(5)
    mmseqs = mmseqs_binary()
    datasets = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]
    tests = sorted({normalized(s) for src in split_sources(datasets, splits=("valid", "test"))
                    for _, s in iter_sequences(src.path, src.row_split, task=src.task) if len(s) >= 150 and set(normalized(s)) <= set("ACGT")})
    corpus = [r.sequence.upper() for r in read_fasta(SAMPLE)]
    swap = str.maketrans("ACGT", "CGTA")

    def mismatched(seq, count):
        letters = list(seq)
        for j in range(1, count + 1):
            p = round(j * len(letters) / (count + 1)) - 1
            letters[p] = letters[p].translate(swap)
        return "".join(letters)

    windows, planted = [], []
    for length in lengths:
        for _ in range(per_length):
            seq = rng.choice(tests)
            start = rng.randrange(len(seq) - length)
            windows.append(seq[start:start + length])
            flank = rng.choice(corpus)
            cut = rng.randrange(len(flank))
            for count in (2, 3):
                planted.append((len(windows) - 1, count, flank[:cut] + mismatched(windows[-1], count) + flank[cut:]))
    (work / "t.fa").write_text("".join(f">{i}\n{w}\n" for i, w in enumerate(windows)))
    (work / "q.fa").write_text("".join(f">{i}\n{p[2]}\n" for i, p in enumerate(planted)))
    run = lambda *cmd: subprocess.run([mmseqs, *map(str, cmd), "-v", "1"], check=True, capture_output=True)
    run("createdb", work / "q.fa", work / "q", "--dbtype", "2")
    run("createdb", work / "t.fa", work / "t", "--dbtype", "2")
    searched_nt = sum(len(p[2]) for p in planted)
    print(f"windows of bundled test sequences planted with 2 / 3 evenly spaced substitutions; found "
          f"(of {per_length}) within identity 0.8, test coverage 0.8, E <= 1:")
    print("     k " + " ".join(f"{n:>7}" for n in lengths))
    for k in kmers:
        result = work / f"r{k}"
        run("search", work / "q", work / "t", result, work / f"tmp{k}", *COMMON_OPTIONS, "-k", k, "-e", "1e6",
            "--threads", threads)
        run("convertalis", work / "q", work / "t", result, work / f"r{k}.tsv", "--search-type", "3",
            "--format-output", "query,target,fident,alnlen,mismatch,gapopen,qstart,qend,tstart,tend,qlen,tlen,bits")
        found = set()
        for line in open(work / f"r{k}.tsv"):
            hit = parse_hits(line)
            if planted[hit.searched][0] == hit.test and Thresholds().passes(hit, searched_nt):
                found.add(hit.searched)
        cells = []
        for index, length in enumerate(lengths):
            block = range(index * per_length * 2, (index + 1) * per_length * 2)
            two = sum(1 for i in block if i in found and planted[i][1] == 2)
            three = sum(1 for i in block if i in found and planted[i][1] == 3)
            cells.append(f"{two:>3}/{three:<3}")
        print(f"{k:>6} " + " ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swapped", action="store_true", help="also run the corpus-as-target search")
    parser.add_argument("--shuffled", action="store_true", help="also run the shuffled-corpus control")
    parser.add_argument("--seeds", action="store_true", help="only the k-mer length sweep on short sequences")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--swapped-child", nargs=3, metavar=("FASTA", "WORK", "THREADS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.swapped_child:
        fasta, work, threads = args.swapped_child
        print(json.dumps(run_swapped(Path(fasta), Path(work), int(threads))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.seeds:
        with tempfile.TemporaryDirectory(dir=args.out) as work:
            seed_sweep(Path(work), args.threads)
        return 0
    rows = []
    for scale in args.scales:
        fasta = args.out / f"leakage_corpus_x{scale}.fa"
        make_corpus(scale, fasta)
        with tempfile.TemporaryDirectory(dir=args.out) as work:
            wall = time.perf_counter()
            row = run_stage(fasta, Path(work), args.threads)
            row["wall_s"] = time.perf_counter() - wall
        row["scale"] = scale
        if args.swapped:
            with tempfile.TemporaryDirectory(dir=args.out) as work:
                child = subprocess.run([sys.executable, __file__, "--swapped-child", str(fasta), work,
                                        str(args.threads)], capture_output=True, text=True, cwd=ROOT)
                if child.returncode != 0:
                    raise SystemExit(f"swapped search failed:\n{child.stderr[-3000:]}")
                row["swapped"] = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        fasta.unlink()
        print(json.dumps(row), file=sys.stderr, flush=True)
    base = rows[0]
    print(f"leakage stage (identity + MMseqs2 similarity), valid+test splits of config.yaml, "
          f"{args.threads} threads")
    print(f"{'scale':>5} {'records':>10} {'nt':>13} {'time s':>8} {'time/1x':>8} {'python MiB':>10} "
          f"{'mmseqs MiB':>10} {'(anon)':>7} {'scratch MiB':>11} {'identical':>9} {'similar':>8}")
    for row in rows:
        print(f"{row['scale']:>5} {row['records']:>10,} {row['nucleotides']:>13,} {row['seconds']:>8.1f} "
              f"{row['seconds'] / base['seconds']:>8.1f} {row['python_rss_mib']:>10.0f} "
              f"{row['mmseqs_rss_mib']:>10.0f} {row['mmseqs_anon_mib']:>7.0f} {row['scratch_mib']:>11.0f} "
              f"{row['identical']:>9,} {row['similar']:>8,}")
    last = rows[-1]
    print(f"{last['scale']}x the records: time x{last['seconds'] / base['seconds']:.1f} (linear would be "
          f"x{last['scale'] / base['scale']:.0f}), MMseqs2 peak RSS x{last['mmseqs_rss_mib'] / base['mmseqs_rss_mib']:.2f} "
          f"(anonymous x{last['mmseqs_anon_mib'] / max(base['mmseqs_anon_mib'], 1e-9):.2f}), "
          f"Python peak RSS x{last['python_rss_mib'] / base['python_rss_mib']:.2f}")
    if args.swapped:
        print("swapped roles (split sequences as queries, corpus as the indexed target, --max-seqs 300):")
        print(f"{'scale':>5} {'time s':>8} {'vs ours':>8} {'peak MiB':>9} {'records found':>13} {'ours':>8}")
        for row in rows:
            s = row["swapped"]
            ours = row["similar"] + row["identical"]
            print(f"{row['scale']:>5} {s['seconds']:>8.1f} {s['seconds'] / row['seconds']:>8.2f} "
                  f"{s['rss_mib']:>9.0f} {s['found']:>13,} {ours:>8,}")
    if args.shuffled:
        fasta = args.out / "leakage_corpus_shuffled.fa"
        make_corpus(1, fasta, shuffle=True)
        with tempfile.TemporaryDirectory(dir=args.out) as work:
            control = run_stage(fasta, Path(work), args.threads)
        with tempfile.TemporaryDirectory(dir=args.out) as work:
            unbounded = run_stage(fasta, Path(work), args.threads, max_evalue=float("inf"))
        fasta.unlink()
        print(f"shuffled 1x control: {control['similar'] + control['identical']} of {control['records']:,} "
              f"records removed by chance (real sample: {base['similar'] + base['identical']:,}); "
              f"without the E-value bound {unbounded['similar'] + unbounded['identical']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
