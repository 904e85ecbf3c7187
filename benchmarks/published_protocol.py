"""Run the published fine-tuning scripts themselves and compare them with ``rnaret evaluate --protocol published``.

The published RNAret repository (DrBlackZJU/RNAret) fine-tunes and tests with ``ssp.py``
(structure), ``rri.py`` (miRNA-target interaction) and ``lnc.py`` (mRNA/lncRNA coding). This
script runs those scripts from a checkout (``--published-repo PATH``; nothing of their code is
copied here) on small inputs built from the bundled ``resources/`` in the layouts they read, and

* ``record``: writes the reference fixtures ``tests/fixtures/published_runs/`` — the inputs, each
  run's command, its log (the "Test Set —— ..." lines), the fine-tuned ``.pth`` it saved, the
  per-record outputs of that saved model (computed by the published modules' own classes and
  functions: predicted pairs for structure, logits for interaction, window scores for coding)
  and ``manifest.json``;
* ``compare``: reruns every recorded case live — the published script on the recorded ``.pth``
  (``--eval_only``) and ``python -m rnaret evaluate --protocol published`` on the same file and
  inputs — and prints, per case and metric, the recorded value, the published script's value
  now, ours, and the largest difference (the fixtures' tolerance is 0.001); ``--paper-size``
  adds one case per task trained at the paper's architecture (the scripts' defaults).

The published scripts set no seed; runs here go through a wrapper that seeds ``random``,
``numpy`` and ``torch`` (0) and uses one torch thread before it executes the script unchanged
as ``__main__`` (``runpy``), so a recording can be repeated. torchscale 0.3.0 and fairscale
0.4.13 are installed with ``pip install --no-deps --target`` (``--published-deps``), and timm's
``drop_path`` is a stand-in (``published_code.py``); the scripts' ``drop_path_rate`` is 0.

Usage::

    python benchmarks/published_protocol.py record --published-repo PATH
    python benchmarks/published_protocol.py compare --published-repo PATH [--paper-size]
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from published_code import DEFAULT_DEPS_DIR, TIMM_STAND_IN, ensure_deps  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "published_runs"
RESOURCES = ROOT / "resources"
PUBLISHED_COMMIT = "f83f25382add386c9b45c8597a50308b83198161"

# The scripts' own architecture options, set small so that the saved files stay small.
ENCODER_SMALL = ["--retnet_embed_dim", "32", "--retnet_value_embed_dim", "32", "--retnet_ffn_embed_dim", "64",
                 "--retnet_layers", "2", "--retnet_retention_heads", "2"]
HEAD_SMALL = ["--resnet_block_num", "1", "--resnet_hidden_dim", "8"]
TASK_NAMES = {"ssp.py": "structure", "rri.py": "interaction", "lnc.py": "coding"}

# ---------------------------------------------------------------------------------------------
# Inputs, built from resources/ in the published layouts
# ---------------------------------------------------------------------------------------------


def _bpseq_text(sequence: str, pairs) -> str:
    partner = [0] * len(sequence)
    for i, j in pairs:
        partner[i - 1], partner[j - 1] = j, i
    return "".join(f"{n + 1} {base} {partner[n]}\n" for n, base in enumerate(sequence))


def _structure_rows(split: str) -> list[dict]:
    with open(RESOURCES / "structure" / f"bprna_{split}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["pairs"] = [tuple(p) for p in json.loads(row["base_pairs"])]
    return rows


def _long_rrna() -> tuple[str, str]:
    """The longest rRNA of the bundled RNAcentral sample (id, sequence with U)."""
    best = ("", "")
    with gzip.open(RESOURCES / "rnacentral" / "rnacentral_sample.fa.gz", "rt") as handle:
        name, chunks = None, []
        for line in list(handle) + [">"]:
            if line.startswith(">"):
                if name and "rRNA" in name:
                    seq = "".join(chunks).upper().replace("T", "U")
                    if len(seq) > len(best[1]) and set(seq) <= set("ACGU"):
                        best = (name.split()[0], seq)
                name, chunks = line[1:].strip(), []
            else:
                chunks.append(line.strip())
    return best


def build_structure_inputs(out: Path) -> dict:
    """Train/valid/test folders of ``.bpseq`` files as ``ssp.py`` reads them; returns a description."""
    train, valid, test = _structure_rows("train"), _structure_rows("valid"), _structure_rows("test")
    short = lambda rows, lo, hi: [r for r in rows if lo <= int(r["len"]) <= hi]  # noqa: E731
    notes = {}
    for folder, rows in (("train", short(train, 40, 90)[:16]), ("valid", short(valid, 40, 90)[:4])):
        for row in rows:
            path = out / folder / f"{row['id']}.bpseq"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_bpseq_text(row["sequence"], row["pairs"]))
    test_dir = out / "test"
    picked = short(test, 50, 160)[:6]
    lower = next(r for r in test if any(c.islower() for c in r["sequence"]) and int(r["len"]) <= 260)
    nested = [r for r in short(test, 161, 300) if r is not lower][:3]
    for row in picked + [lower]:
        (test_dir / "a").mkdir(parents=True, exist_ok=True)
        (test_dir / "a" / f"{row['id']}.bpseq").write_text(_bpseq_text(row["sequence"], row["pairs"]))
    for row in nested:
        (test_dir / "a" / "b").mkdir(parents=True, exist_ok=True)
        (test_dir / "a" / "b" / f"{row['id']}.bpseq").write_text(_bpseq_text(row["sequence"], row["pairs"]))
    notes["kept"] = [r["id"] for r in picked + [lower] + nested]
    # One real record with an N (its first base replaced): ssp.py lets N pair with any base.
    n_row = short(test, 60, 120)[12]
    n_seq = "N" + n_row["sequence"][1:]
    (test_dir / "a" / f"{n_row['id']}_N1.bpseq").write_text(_bpseq_text(n_seq, n_row["pairs"]))
    # Lengths around max_len (600): a real record followed by unpaired bases of a real rRNA.
    rrna_id, rrna = _long_rrna()
    base = short(test, 400, 499)[0]
    (test_dir / "long").mkdir(parents=True, exist_ok=True)
    for total in (600, 601):
        seq = base["sequence"] + rrna[: total - len(base["sequence"])]
        (test_dir / "long" / f"{base['id']}_plus_{rrna_id}_{total}.bpseq").write_text(_bpseq_text(seq, base["pairs"]))
    (test_dir / "long" / f"{rrna_id}.bpseq").write_text(_bpseq_text(rrna, []))
    # Files ssp.py skips without a word: a '#' header line, a line of four fields, a blank last
    # line; and files it never opens: other extensions.
    bad = short(test, 50, 160)[7:10]
    text = _bpseq_text(bad[0]["sequence"], bad[0]["pairs"])
    (test_dir / "a" / f"{bad[0]['id']}_header.bpseq").write_text(f"#Name: {bad[0]['id']}\n" + text)
    lines = _bpseq_text(bad[1]["sequence"], bad[1]["pairs"]).splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + " 0\n"
    (test_dir / "a" / f"{bad[1]['id']}_four_fields.bpseq").write_text("".join(lines))
    (test_dir / "a" / f"{bad[2]['id']}_blank_line.bpseq").write_text(
        _bpseq_text(bad[2]["sequence"], bad[2]["pairs"]) + "\n")
    other = short(test, 50, 160)[10]
    (test_dir / "a" / f"{other['id']}.bpseq.txt").write_text(_bpseq_text(other["sequence"], other["pairs"]))
    (test_dir / "a" / f"{other['id']}.dbn").write_text(f">{other['id']}\n{other['sequence']}\n{other['structure']}\n")
    notes.update(n_record=n_row["id"], boundary_base=base["id"], rrna=rrna_id, rrna_length=len(rrna),
                 malformed=[b["id"] for b in bad], other_extension=other["id"])
    return notes


def build_interaction_inputs(out: Path) -> dict:
    """``train.txt`` / ``test.txt`` in the headerless 5-column layout ``rri.py`` reads."""
    def rows(name):
        with open(RESOURCES / "mirna_target" / name, newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))

    def line(r):
        return "\t".join([r["mirna_id"], r["mirna_seq_3to5"], r["target_id"], r["target_seq"], r["label"]]) + "\n"

    out.mkdir(parents=True, exist_ok=True)
    train = [r for r in rows("mirtar_deepmirtar_miraw.tsv") if r["split"] == "train"]
    pos = [r for r in train if r["label"] == "1"][:80]
    neg = [r for r in train if r["label"] == "0"][:80]
    mixed = [r for pair in zip(pos, neg) for r in pair]
    (out / "train.txt").write_text("".join(line(r) for r in mixed))
    ind = rows("mirtar_deepmirtar_indtest.tsv")
    tpos = [r for r in ind if r["label"] == "1"][:30]
    tneg = [r for r in ind if r["label"] == "0"][:30]
    (out / "test.txt").write_text("".join(line(r) for r in tpos + tneg))
    return {"train": "miRAW train rows, first 80 positive and 80 negative, alternating",
            "test": "DeepMirTar independent test, first 30 positive then first 30 negative"}


def _fasta(path: Path):
    with gzip.open(path, "rt") as handle:
        header, chunks = None, []
        for line in list(handle) + [">"]:
            if line.startswith(">"):
                if header:
                    yield header, "".join(chunks)
                header, chunks = line[1:].rstrip("\n"), []
            else:
                chunks.append(line.strip())


def _cds(header: str):
    match = re.search(r"\|CDS:(\d+)-(\d+)\|", header)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _write_fasta(path: Path, records) -> None:
    with open(path, "w") as handle:
        for header, seq in records:
            handle.write(f">{header}\n")
            for i in range(0, len(seq), 60):
                handle.write(seq[i:i + 60] + "\n")


def build_coding_inputs(out: Path, cut: int = 1000) -> dict:
    """GENCODE-layout FASTA files for ``lnc.py``: whole transcripts (``train.fa``/``test.fa``)
    and a set chosen around the cut ``cut`` (``train_cut.fa``/``test_cut.fa``).

    The bundled transcripts are at most 3,000 nt (the source capped them), so the cases where the
    CDS starts past the cut, or straddles it, are made by running ``lnc.py -l 1000`` on real
    transcripts longer than 1,000 nt: the same rule (``len >= max_len`` -> first max_len nt).
    """
    out.mkdir(parents=True, exist_ok=True)
    train = list(_fasta(RESOURCES / "mrna_lncrna" / "mouse_train.fa.gz"))
    test = list(_fasta(RESOURCES / "mrna_lncrna" / "mouse_test.fa.gz"))

    def pick(records, n_pc, n_lnc, lo, hi):
        pc = [r for r in records if _cds(r[0]) and lo <= len(r[1]) <= hi][:n_pc]
        lnc = [r for r in records if not _cds(r[0]) and lo <= len(r[1]) <= hi][:n_lnc]
        return [r for pair in zip(pc, lnc) for r in pair]

    _write_fasta(out / "train.fa", pick(train, 12, 12, 200, 3000))
    full = pick(test, 7, 7, 200, 2999)
    at_cap = [r for r in test if len(r[1]) == 3000][:1]
    short = [r for r in test if len(r[1]) < 260][:1]
    _write_fasta(out / "test.fa", full + at_cap + short)

    def around(records, n):
        past = [r for r in records if _cds(r[0]) and _cds(r[0])[0] > cut][:n]
        straddle = [r for r in records if _cds(r[0]) and _cds(r[0])[0] <= cut < _cds(r[0])[1]][:n]
        inside = [r for r in records if _cds(r[0]) and _cds(r[0])[1] <= cut and len(r[1]) > cut][:n]
        lnc_long = [r for r in records if not _cds(r[0]) and len(r[1]) > cut][:n]
        return past + straddle + inside + lnc_long

    _write_fasta(out / "train_cut.fa", around(train, 5))
    _write_fasta(out / "test_cut.fa", around(test, 4) + short)
    return {"cut": cut,
            "test_cut": "4 mRNAs whose CDS starts past nt 1000 (labelled noncoding by lnc.py -l 1000), 4 whose "
                        "CDS straddles it, 4 whose CDS ends before it, 4 lncRNAs > 1000 nt, 1 short transcript",
            "test": "7 mRNA + 7 lncRNA (200-2999 nt), one transcript of exactly 3000 nt, one short one"}


def build_inputs(out: Path) -> dict:
    """All inputs under ``out/{ssp,rri,lnc}/inputs``; returns their description."""
    return {"ssp": build_structure_inputs(out / "ssp" / "inputs"),
            "rri": build_interaction_inputs(out / "rri" / "inputs"),
            "lnc": build_coding_inputs(out / "lnc" / "inputs")}


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

def cases(paper_size: bool = False) -> list[dict]:
    """Each case: the published script, its options, and whether it trains (else ``--eval_only``
    on the checkpoint of ``from``). Paths are relative to the fixtures folder."""
    enc = [] if paper_size else ENCODER_SMALL
    head = [] if paper_size else HEAD_SMALL
    tag = "paper_" if paper_size else ""
    out = [
        dict(name=f"{tag}ssp_k1", script="ssp.py", k=1, train=True,
             options=["-k", "1", "-n", "ssp", "-i", "ssp/inputs/train", "-v", "ssp/inputs/valid",
                      "-e", "ssp/inputs/test", "--num_epochs", "4", "-lr", "0.002", "--weight_factor", "30",
                      *enc, *head],
             test=["ssp/inputs/test"], settings={"max_len": 600, "min_pair_distance": 4}),
        dict(name=f"{tag}rri_k5", script="rri.py", k=5, train=True,
             options=["-k", "5", "-n", "MirTar", "-i", "rri/inputs/train.txt", "-e", "rri/inputs/test.txt",
                      "--num_epochs", "4", "-lr", "0.003", "-bs", "16", *enc],
             test=["rri/inputs/test.txt"], settings={"max_len": 80}),
        dict(name=f"{tag}lnc_k3", script="lnc.py", k=3, train=True,
             options=["-k", "3", "-n", "lnc", "-i", "lnc/inputs/train.fa", "-e", "lnc/inputs/test.fa",
                      "--num_epochs", "3", "-lr", "0.002", "--weight_factor", "3", "-bs", "4", *enc, *head],
             test=["lnc/inputs/test.fa"], settings={"max_len": 3000}),
    ]
    if paper_size:
        return out
    out += [
        dict(name="ssp_k1_l200_d3", script="ssp.py", k=1, train=False, base="ssp_k1",
             options=["-k", "1", "-n", "ssp", "-e", "ssp/inputs/test", "-l", "200", "--min_bp_distance", "3",
                      *ENCODER_SMALL, *HEAD_SMALL],
             test=["ssp/inputs/test"], settings={"max_len": 200, "min_pair_distance": 3}),
        dict(name="rri_k5_l100", script="rri.py", k=5, train=False, base="rri_k5",
             options=["-k", "5", "-n", "MirTar", "-e", "rri/inputs/test.txt", "-l", "100", "-bs", "16",
                      *ENCODER_SMALL],
             test=["rri/inputs/test.txt"], settings={"max_len": 100}),
        dict(name="lnc_k5_l1000", script="lnc.py", k=5, train=True,
             options=["-k", "5", "-n", "lnc", "-i", "lnc/inputs/train_cut.fa", "-e", "lnc/inputs/test_cut.fa",
                      "-l", "1000", "--num_epochs", "3", "-lr", "0.002", "--weight_factor", "3", "-bs", "4",
                      *ENCODER_SMALL, *HEAD_SMALL],
             test=["lnc/inputs/test_cut.fa"], settings={"max_len": 1000}),
        dict(name="lnc_k3_l1000", script="lnc.py", k=3, train=False, base="lnc_k3",
             options=["-k", "3", "-n", "lnc", "-e", "lnc/inputs/test_cut.fa", "-l", "1000", "-bs", "4",
                      *ENCODER_SMALL, *HEAD_SMALL],
             test=["lnc/inputs/test_cut.fa"], settings={"max_len": 1000}),
    ]
    return out


def script_options(case: dict) -> dict:
    """The case's values of the script options that change numbers (``-l``, ``--min_bp_distance``),
    the scripts' defaults where the case does not set them."""
    options = case["options"]
    defaults = {"ssp.py": {"max_len": 600, "min_bp_distance": 4}, "rri.py": {"max_len": 80},
                "lnc.py": {"max_len": 3000}}[case["script"]]
    out = {"k": case["k"], **defaults}
    for flag, key in (("-l", "max_len"), ("--min_bp_distance", "min_bp_distance")):
        if flag in options:
            out[key] = int(options[options.index(flag) + 1])
    return out


MODEL_OPTION = {"ssp.py": "--ssp_model_path", "rri.py": "--rri_model_path", "lnc.py": "--lnc_model_path"}

# ---------------------------------------------------------------------------------------------
# Running the published scripts
# ---------------------------------------------------------------------------------------------

SEEDED_RUN = """import random, runpy, sys
import numpy, torch
random.seed(0); numpy.random.seed(0); torch.manual_seed(0); torch.set_num_threads(1)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, {repo!r})
runpy.run_path(script, run_name="__main__")
"""


def published_env(repo: Path, deps: Path) -> dict:
    """Environment whose PYTHONPATH holds the timm stand-in, torchscale/fairscale and the checkout."""
    stand_in = Path(tempfile.mkdtemp(prefix="rnaret-timm-"))
    (stand_in / "timm" / "models").mkdir(parents=True)
    (stand_in / "timm" / "__init__.py").write_text("")
    (stand_in / "timm" / "models" / "__init__.py").write_text("")
    (stand_in / "timm" / "models" / "layers.py").write_text(TIMM_STAND_IN)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(stand_in), str(deps), str(repo)])
    env["OMP_NUM_THREADS"] = "1"
    return env


LOG_LINES = {
    "loss": r"Test Set —— Loss: ([-\d.naif]+)",
    "accuracy": r"Accuracy: ([-\d.naif]+)",
    "precision": r"Test Set —— Precision: ([-\d.naif]+)",
    "recall": r"Recall: ([-\d.naif]+)",
    "f1": r"F1 Score: ([-\d.naif]+)",
    "auc": r"AUC: ([-\d.naif]+)",
}


def read_test_log(path: Path) -> dict:
    """The metrics of the "Test Set —— ..." lines of a published log (the last test run in it)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if "Test Set ——" in line]
    text = "\n".join(lines[-2:])
    metrics = {}
    for key, pattern in LOG_LINES.items():
        found = re.findall(pattern, text)
        if found:
            metrics[key] = float(found[-1])
    if not metrics:
        raise SystemExit(f"{path}: no 'Test Set ——' lines")
    return metrics


def run_published(repo: Path, env: dict, case: dict, work: Path, base: Path, checkpoint: Path | None) -> dict:
    """Run ``case`` with the published script in ``work`` (inputs read from ``base``); returns
    command, log path, saved model path and logged metrics."""
    script = case["script"]
    log_dir, model_dir = work / "log", work / "model"
    log_dir.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    options = [str(base / o) if "/inputs/" in o else o for o in case["options"]]
    options += ["-d", "cpu", "--log_path", str(log_dir), "-o", str(model_dir)]
    if not case["train"] or checkpoint is not None:
        options += [MODEL_OPTION[script], str(checkpoint), "--eval_only"]
    command = [sys.executable, "-c", SEEDED_RUN.format(repo=str(repo)), str(repo / script), *options]
    started = time.time()
    proc = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{script} {case['name']} failed:\n{proc.stderr[-4000:]}")
    name = options[options.index("-n") + 1]
    log = log_dir / f"{name}_{case['k']}mer.log"
    return {"options": options, "log": log, "model": model_dir / f"{name}_{case['k']}mer.pth",
            "metrics": read_test_log(log), "seconds": time.time() - started}


# ---------------------------------------------------------------------------------------------
# Per-record outputs, computed by the published modules (run in a child process: importing a
# published script parses sys.argv, so it gets the case's own options)
# ---------------------------------------------------------------------------------------------

def _records_main(argv: list[str]) -> None:
    """Child process: ``_records SCRIPT CHECKPOINT OUT.tsv -- <the script's options>``."""
    import importlib
    import numpy as np
    import torch
    torch.set_num_threads(1)
    script, checkpoint, out = argv[0], argv[1], Path(argv[2])
    options = argv[argv.index("--") + 1:]
    sys.argv = [script, *options]
    mod = importlib.import_module(script[:-3])
    args = mod.args
    config = mod.RetNetConfig(vocab_size=4 ** args.k_num + 6, retnet_embed_dim=args.retnet_embed_dim,
                              retnet_value_embed_dim=args.retnet_value_embed_dim,
                              retnet_ffn_embed_dim=args.retnet_ffn_embed_dim, retnet_layers=args.retnet_layers,
                              retnet_retention_heads=args.retnet_retention_heads, dropout=args.dropout,
                              activation_dropout=args.activation_dropout)
    model = getattr(mod, f"rnaret_{script[:-3]}_model")(config)
    model.load_state_dict(torch.load(checkpoint, weights_only=True, map_location="cpu"))
    model.eval()
    rows = []
    with torch.no_grad():
        if script == "ssp.py":
            post = mod.post_process()
            tokenizer = mod.seq_tokenizer(k=args.k_num, max_len=args.max_len)
            for test_dir in args.test_path:
                for root, _dirs, files in os.walk(test_dir):
                    for filename in files:
                        if not filename.endswith(".bpseq"):
                            continue
                        path = os.path.join(root, filename)
                        matrix, seq_len, seq = mod.parse_bpseq_file(path, max_len=args.max_len)
                        if matrix is None or seq_len > args.max_len:
                            continue
                        x = torch.tensor(tokenizer.tokenize(seq)).to(torch.long).unsqueeze(0)
                        mask = torch.tensor(mod.constraint(seq, args.max_len)).to(torch.int).unsqueeze(0)
                        y = torch.tensor(matrix).to(torch.float32).unsqueeze(0)
                        pred = post(model(x), mask)
                        p, r, f1 = mod.compute_metrics(y, pred)
                        pairs = [(int(i) + 1, int(j) + 1) for i, j in torch.nonzero(pred[0]).tolist() if i < j]
                        rows.append({"file": os.path.relpath(path, test_dir), "length": seq_len,
                                     "pairs": " ".join(f"{i}:{j}" for i, j in pairs),
                                     "precision": repr(float(p)), "recall": repr(float(r)), "f1": repr(float(f1))})
        elif script == "rri.py":
            for test_file in args.test_path:
                data = mod.rri_dataset(test_file, k=args.k_num, max_len=args.max_len)
                for n in range(len(data)):
                    x, label = data[n]
                    logits = model(torch.tensor(x).to(torch.long).unsqueeze(0))[0]
                    rows.append({"line": n + 1, "label": label, "logit0": repr(float(logits[0])),
                                 "logit1": repr(float(logits[1])), "pred": int(torch.argmax(logits))})
        else:
            from Bio import SeqIO
            post = mod.post_process()
            for test_file in args.test_path:
                data = mod.lnc_dataset(test_file, k=args.k_num, max_len=args.max_len)
                ids = [record.id for record in SeqIO.parse(test_file, "fasta")]
                for n in range(len(data)):
                    x, y, mask = data[n]
                    logits = model(torch.tensor(x).to(torch.long).unsqueeze(0))
                    score = post(logits, torch.tensor(mask).to(torch.int).unsqueeze(0))[0]
                    rows.append({"id": ids[n], "length_used": data.seq_lens[n], "label": int(np.sum(y) > 0),
                                 "score": repr(float(score)), "pred": int(score >= 0.5)})
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def per_record(repo: Path, env: dict, case: dict, options: list[str], checkpoint: Path, out: Path) -> None:
    """Write the per-record outputs of ``checkpoint`` on the case's test inputs to ``out`` (TSV)."""
    options = [o for o in options if o != "--eval_only"]
    command = [sys.executable, str(Path(__file__).resolve()), "_records", case["script"], str(checkpoint), str(out),
               "--", *options]
    proc = subprocess.run(command, env=env, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"per-record outputs of {case['name']} failed:\n{proc.stderr[-4000:]}")


def metrics_from_records(script: str, path: Path) -> dict:
    """The test metrics recomputed at full precision from a per-record TSV (the scripts' definitions)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if script == "ssp.py":
        n = len(rows)
        return {key: sum(float(r[key]) for r in rows) / n for key in ("precision", "recall", "f1")}
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
    labels = [int(r["label"]) for r in rows]
    preds = [int(r["pred"]) for r in rows]
    scores = [float(r["logit1"] if script == "rri.py" else r["score"]) for r in rows]
    return {"accuracy": float(accuracy_score(labels, preds)),
            "precision": float(precision_score(labels, preds, zero_division=0)),
            "recall": float(recall_score(labels, preds, zero_division=0)),
            "f1": float(f1_score(labels, preds, zero_division=0)), "auc": float(roc_auc_score(labels, scores))}


# ---------------------------------------------------------------------------------------------
# record
# ---------------------------------------------------------------------------------------------

def record(args) -> None:
    """Build the inputs, run every case with the published scripts and write the fixtures."""
    repo = Path(args.published_repo).resolve()
    env = published_env(repo, ensure_deps(Path(args.published_deps)))
    out = Path(args.out).resolve()
    for task in ("ssp", "rri", "lnc"):
        shutil.rmtree(out / task, ignore_errors=True)
    inputs = build_inputs(out)
    manifest = {"published_repository": "DrBlackZJU/RNAret", "published_commit": args.commit,
                "inputs": inputs, "cases": []}
    import numpy
    import scipy
    import sklearn
    import torch
    manifest["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "numpy": numpy.__version__, "scipy": scipy.__version__,
                            "scikit-learn": sklearn.__version__, "torchscale": "0.3.0", "fairscale": "0.4.13"}
    for case in cases():
        task_dir = out / case["script"][:-3]
        case_dir = task_dir / case["name"]
        case_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None if case["train"] else out / case["script"][:-3] / case["base"] / "model.pth"
            run = run_published(repo, env, case, Path(tmp), out, checkpoint)
            if case["train"]:
                shutil.copyfile(run["model"], case_dir / "model.pth")
                checkpoint = case_dir / "model.pth"
            shutil.copyfile(run["log"], case_dir / "test.log")
            per_record(repo, env, case, run["options"], checkpoint, case_dir / "records.tsv")
        recomputed = metrics_from_records(case["script"], case_dir / "records.tsv")
        for key, value in recomputed.items():
            if abs(round(value, 4) - run["metrics"][key]) > 6e-5:
                raise SystemExit(f"{case['name']}: per-record {key} {value} disagrees with the log "
                                 f"{run['metrics'][key]}")
        shown = [o.replace(str(out) + os.sep, "") for o in run["options"]]
        shown = [o if not o.startswith("/") else Path(o).name for o in shown]
        command = "python " + case["script"] + " " + " ".join(shown)
        (case_dir / "command.txt").write_text(command + "\n")
        with open(case_dir / "records.tsv") as handle:
            n_records = sum(1 for _ in handle) - 1
        manifest["cases"].append({
            "name": case["name"], "task": TASK_NAMES[case["script"]], "script": case["script"], "k": case["k"],
            "trained_here": case["train"], "checkpoint": str(checkpoint.relative_to(out)),
            "test": case["test"], "settings": case["settings"], "script_options": script_options(case),
            "command": command,
            "log": str((case_dir / "test.log").relative_to(out)),
            "metrics_logged": run["metrics"], "metrics": recomputed,
            "records": str((case_dir / "records.tsv").relative_to(out)), "n_records": n_records,
            "seconds": round(run["seconds"], 1)})
        print(f"{case['name']}: {run['metrics']} ({n_records} records, {run['seconds']:.0f} s)", flush=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------

def evaluate_ours(case: dict, base: Path, checkpoint: Path, work: Path, root: Path = ROOT
                  ) -> tuple[dict, list[float]]:
    """``python -m rnaret evaluate --protocol published`` on the case -> (its metrics, its
    per-record values sorted: F1 for structure, the score for interaction and coding)."""
    out = work / "ours"
    command = [sys.executable, "-m", "rnaret", "evaluate", "--checkpoint", str(checkpoint),
               "--task", case["task"], "--protocol", "published", "--out", str(out),
               "--device", "cpu", "--precision", "fp32", "--quiet"]
    for path in case["test"]:
        command += ["--split", f"test={base / path}"]
    for key, value in case["settings"].items():
        command += ["--set", f"{key}={value}"]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}, []
    with open(out / "metrics.tsv", newline="") as handle:
        found = {}
        for row in csv.DictReader(handle, delimiter="\t"):
            try:
                found[row["metric"]] = float(row["value"])
            except (TypeError, ValueError):
                pass
    values = []
    predictions = out / "predictions.tsv"
    if predictions.is_file():
        column = "f1" if case["task"] == "structure" else "score"
        with open(predictions, newline="") as handle:
            values = sorted(float(r[column]) for r in csv.DictReader(handle, delimiter="\t"))
    return found, values


def record_values(script: str, path: Path) -> list[float]:
    """The per-record values of a records.tsv, sorted (F1; logit1 for interaction, the score the
    script's AUC ranks; score for coding)."""
    column = {"ssp.py": "f1", "rri.py": "logit1", "lnc.py": "score"}[script]
    with open(path, newline="") as handle:
        return sorted(float(r[column]) for r in csv.DictReader(handle, delimiter="\t"))


def compare(args) -> None:
    """Rerun each recorded case live and print recorded / published now / ours, per metric and for
    the per-record values (sorted lists compared element by element)."""
    repo = Path(args.published_repo).resolve()
    env = published_env(repo, ensure_deps(Path(args.published_deps)))
    fixtures = Path(args.fixtures).resolve()
    manifest = json.loads((fixtures / "manifest.json").read_text())
    worst = 0.0
    # published_full_now: recomputed from per-record outputs taken one record at a time; the script
    # batches (rri.py, lnc.py), which moves logits by ~1e-7 and can move an AUC that rests on
    # near-ties; the last column compares ours, rounded as the log prints, with the log itself.
    print("case\tmetric\trecorded_log\tpublished_log_now\tpublished_full_now\tours\t|ours - published_full|"
          "\t|round(ours, 4) - published_log|")
    todo = [dict(c, train=False, options=next(x for x in cases() if x["name"] == c["name"])["options"])
            for c in manifest["cases"]]
    if args.paper_size:
        todo += [dict(c, task=TASK_NAMES[c["script"]], paper=True) for c in cases(paper_size=True)]
    if args.cases:
        todo = [c for c in todo if c["name"] in args.cases]
    for case in todo:
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if case.get("paper"):
                run = run_published(repo, env, case, work, fixtures, None)
                checkpoint, recorded = run["model"], {}
            else:
                checkpoint = fixtures / case["checkpoint"]
                run = run_published(repo, env, case, work, fixtures, checkpoint)
                recorded = case["metrics_logged"]
            per_record(repo, env, case, run["options"], checkpoint, work / "records.tsv")
            theirs = record_values(case["script"], work / "records.tsv")
            full = metrics_from_records(case["script"], work / "records.tsv")
            ours, our_values = evaluate_ours(case, fixtures, checkpoint, work, Path(args.rnaret_root))
        for key, now in run["metrics"].items():
            if key == "loss":
                continue
            mine, exact = ours.get(key), full.get(key)
            if recorded and recorded.get(key) != now:
                print(f"{case['name']}\t{key}\tTHE PUBLISHED SCRIPT NOW LOGS {now}, RECORDED {recorded.get(key)}")
                worst = float("inf")
            diff = abs(mine - exact) if mine is not None and exact is not None else float("nan")
            worst = max(worst, diff) if diff == diff else float("inf")
            to_log = "" if mine is None else f"{abs(round(mine, 4) - now):.4f}"
            print(f"{case['name']}\t{key}\t{recorded.get(key, '')}\t{now}\t{exact!r}\t{mine!r}\t{diff:.2e}\t{to_log}")
        if "error" in ours:
            print(f"{case['name']}\trnaret evaluate failed: {ours['error']}")
        elif len(our_values) == len(theirs):
            diff = max((abs(a - b) for a, b in zip(theirs, our_values)), default=0.0)
            worst = max(worst, diff)
            print(f"{case['name']}\tper-record\t{len(theirs)} records\t\t\t{len(our_values)} records\t{diff:.2e}")
        else:
            print(f"{case['name']}\tper-record\t{len(theirs)} records\t\t\t{len(our_values)} records\tDIFFERENT COUNT")
            worst = float("inf")
        print(f"{case['name']}\tseconds\t\t{time.time() - started:.0f}", flush=True)
    print(f"largest |ours - published| over metrics and per-record values: {worst:.2e} "
          f"(the fixtures' tests allow 0.001)")


def add_published_arguments(parser) -> None:
    """``--published-repo PATH`` (required) and ``--published-deps DIR``."""
    parser.add_argument("--published-repo", required=True, metavar="PATH",
                        help="a checkout of DrBlackZJU/RNAret (its ssp.py, rri.py, lnc.py and retnet.py are run)")
    parser.add_argument("--published-deps", default=str(DEFAULT_DEPS_DIR), metavar="DIR",
                        help=f"where torchscale 0.3.0 and fairscale 0.4.13 are (installed there with pip --no-deps "
                             f"--target if missing; default {DEFAULT_DEPS_DIR})")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_records":
        _records_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the published scripts and write the fixtures")
    add_published_arguments(rec)
    rec.add_argument("--out", default=str(FIXTURES), help=f"fixtures folder (default {FIXTURES})")
    rec.add_argument("--commit", default=PUBLISHED_COMMIT, help="the checkout's commit, written to the manifest")
    cmp_ = sub.add_parser("compare", help="rerun the recorded cases live, beside rnaret evaluate --protocol published")
    add_published_arguments(cmp_)
    cmp_.add_argument("--fixtures", default=str(FIXTURES))
    cmp_.add_argument("--paper-size", action="store_true",
                      help="also train one case per task at the paper's architecture and compare on it")
    cmp_.add_argument("--cases", nargs="+", default=None, metavar="NAME",
                      help="only these cases (names in manifest.json; paper_ssp_k1 ... with --paper-size)")
    cmp_.add_argument("--rnaret-root", default=str(ROOT),
                      help="the checkout whose `python -m rnaret evaluate` is run (default: this one)")
    args = parser.parse_args(argv)
    (record if args.command == "record" else compare)(args)


if __name__ == "__main__":
    main()
