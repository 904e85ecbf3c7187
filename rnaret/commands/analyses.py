"""`rnaret analyses <kind>`: the paper's analyses (``rnaret.analyses``), each figure with its
data as TSV.

    rnaret analyses structure --truth resources/structure/bprna_test.csv \\
        --predictions results/structure/bprna/rnaret-k1/predictions.tsv --title "rnaret-k1 on bprna" \\
        --per-sequence-tsv f1.tsv --family-tsv family.tsv --family-png family.png --length-png length.png
    rnaret analyses pca --checkpoint results/interaction/mirtar/rnaret-k5/checkpoint \\
        --pretrained results/pretrain/rnaret-k5/checkpoint --test PATH --split test \\
        --points-tsv pca.tsv --variance-tsv variance.tsv --png pca.png
    rnaret analyses cls-retention --checkpoint results/interaction/mirtar/rnaret-k5/checkpoint \\
        --test PATH --split test --profile-tsv cls.tsv --example-tsv example.tsv --map-tsv map.tsv \\
        --bars-png cls.png --map-png map.png
    rnaret analyses transcripts --checkpoint results/coding/mouse/rnaret-k5/checkpoint \\
        --test resources/mrna_lncrna/mouse_test.fa.gz --predictions results/coding/mouse/rnaret-k5/predictions.tsv \\
        --profile-tsv profile.tsv --map-tsv map.tsv --mrna-png mrna.png --lncrna-png lncrna.png \\
        --codons-tsv codons.tsv --kmers-tsv kmers.tsv --codons-png codons.png

Retention: last layer unless ``--layer`` (0-based, negative from the end); heads averaged, each
head also listed in the CLS tables. Models run in float32 on ``--device`` (default cpu).
"""
from __future__ import annotations

import sys

HELP = "the paper's analyses: per-family F1, PCA of CLS states, retention of the CLS token and of transcripts"
KINDS = ("structure", "pca", "cls-retention", "transcripts")


def add_arguments(parser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="{" + ",".join(KINDS) + "}",
                                  help="which analysis (each has its own --help)")
    s = kinds.add_parser("structure", help="per-family F1 and F1 against length of a structure evaluation")
    s.add_argument("--truth", required=True, help="the structure test split the evaluation scored")
    s.add_argument("--split", default=None, help="rows of the truth table whose `split` column equals this")
    s.add_argument("--predictions", required=True,
                   help="the evaluation's per-sequence TSV (a model's predictions.tsv, ViennaRNA's per_sequence.tsv)")
    s.add_argument("--column", default="f1", help="its F1 column (default f1; ViennaRNA's: mfe_f1, mea_f1)")
    s.add_argument("--title", default="", help="figure title (e.g. 'rnaret-k1 on bprna')")
    for option in ("--per-sequence-tsv", "--family-tsv", "--family-png", "--length-png"):
        s.add_argument(option, required=True)

    p = kinds.add_parser("pca", help="PCA of CLS states of a fine-tuned, a pretrained and a random encoder")
    _model_arguments(p)
    p.add_argument("--pretrained", required=True, help="the pretrained encoder checkpoint the model started from")
    p.add_argument("--seed", type=int, default=0, help="seed of the random encoder (default 0)")
    for option in ("--points-tsv", "--variance-tsv", "--png"):
        p.add_argument(option, required=True)

    c = kinds.add_parser("cls-retention", help="retention of the CLS token on interaction pairs")
    _model_arguments(c)
    c.add_argument("--layer", type=int, default=None, help="0-based layer (negative: from the end; default last)")
    c.add_argument("--example", type=int, default=None,
                   help="index in the split of the example pair (default: the first positive pair)")
    for option in ("--profile-tsv", "--example-tsv", "--map-tsv", "--bars-png", "--map-png"):
        c.add_argument(option, required=True)

    t = kinds.add_parser("transcripts", help="retention maps of an mRNA and a lncRNA, codons at high retention")
    _model_arguments(t)
    t.add_argument("--predictions", required=True, help="the coding evaluation's predictions.tsv (picks the two)")
    t.add_argument("--layer", type=int, default=None, help="0-based layer (negative: from the end; default last)")
    t.add_argument("--min-length", type=int, default=500, help="length range of the two transcripts (nt)")
    t.add_argument("--max-length", type=int, default=1500)
    t.add_argument("--max-nt", type=int, default=3000,
                   help="transcripts are cut to their first N nt for the codon counts, as published (default 3000)")
    t.add_argument("--max-transcripts", type=int, default=0,
                   help="count codons on the first N test transcripts of each class (file order; default 0 = "
                        "all): a test file that lists one class first still gives both columns")
    t.add_argument("--map-size", type=int, default=300, help="rows/columns of the TSV heat map (block means)")
    for option in ("--profile-tsv", "--map-tsv", "--mrna-png", "--lncrna-png", "--codons-tsv", "--kmers-tsv",
                   "--codons-png"):
        t.add_argument(option, required=True)


def _model_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint folder")
    parser.add_argument("--test", required=True, help="the test file")
    parser.add_argument("--split", default=None, help="rows of a table whose `split` column equals this")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def write_tsv(table, path) -> None:
    """Write a table as TSV atomically (floats with 6 significant digits)."""
    from rnaret.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def _log(message: str) -> None:
    print(f"rnaret analyses: {message}", file=sys.stderr)


def run(args) -> int:
    return {"structure": run_structure, "pca": run_pca, "cls-retention": run_cls_retention,
            "transcripts": run_transcripts}[args.kind](args)


def run_structure(args) -> int:
    import pandas as pd

    from rnaret import analyses
    from rnaret.io.errors import InputError
    from rnaret.io.structure import read_structures

    truth = list(read_structures(args.truth, args.split))
    predictions = pd.read_csv(args.predictions, sep="\t", dtype={"id": str})
    if args.column not in predictions.columns:
        raise InputError(args.predictions, f"no column {args.column!r} (found {list(predictions.columns)})")
    try:
        per_sequence, summary = analyses.structure_by_family(
            predictions.drop(columns=["f1"] if args.column != "f1" and "f1" in predictions else []).rename(
                columns={args.column: "f1"}), truth)
    except InputError as exc:
        raise InputError(args.predictions, exc.what, record=exc.record) from None
    title = args.title or "structure predictions"
    write_tsv(per_sequence, args.per_sequence_tsv)
    write_tsv(summary, args.family_tsv)
    analyses.plot_family_f1(per_sequence, summary, args.family_png, f"Per-family F1: {title}")
    analyses.plot_f1_length(per_sequence, args.length_png, f"F1 against length: {title}")
    _log(f"structure: {len(per_sequence)} sequences in {len(summary)} families: "
         + ", ".join(f"{r.family} {r.mean_f1:.3f} (n={r.n})" for r in summary.itertuples()))
    return 0


def _load(args, task_name: str):
    from rnaret.commands.finetune import set_threads
    from rnaret.tasks.finetune import pick_device
    from rnaret.tasks.run import load_for_evaluation

    from rnaret.io.errors import InputError

    set_threads(args.threads)
    task, model = load_for_evaluation(args.checkpoint, task_name)
    if task.name != task_name:
        raise InputError(args.checkpoint, f"a fine-tuned {task.name} checkpoint, not a {task_name} one")
    examples = task.read_split(args.test, args.split)
    if not examples:
        raise InputError(args.test, "no examples in the test split" + (f" {args.split!r}" if args.split else ""))
    return task, model, examples, pick_device(args.device)


def _retnet(encoder, path):
    from rnaret.io.errors import InputError
    from rnaret.model.encoder import RetNetEncoder

    if not isinstance(encoder, RetNetEncoder):
        raise InputError(path, f"retention needs a RetNet encoder; this checkpoint's is a {type(encoder).__name__}")
    return encoder


def run_pca(args) -> int:
    import torch

    from rnaret import analyses
    from rnaret.checkpoint import load_encoder
    from rnaret.model import build_encoder

    task, model, examples, device = _load(args, "interaction")
    pretrained = load_encoder(args.pretrained)
    torch.manual_seed(args.seed)
    random = build_encoder(model.encoder.config).eval()
    encoders = {"Fine-tuned": model.encoder, "Pretrained": pretrained, "Random": random}
    embeddings = {name: analyses.cls_states(encoder, task, examples, batch_size=args.batch_size, device=device)
                  for name, encoder in encoders.items()}
    points, variance = analyses.cls_pca(embeddings, [e.id for e in examples], [int(e.target) for e in examples])
    write_tsv(points, args.points_tsv)
    write_tsv(variance, args.variance_tsv)
    analyses.plot_pca(points, variance, args.png, f"CLS states of {len(examples)} test pairs")
    _log(f"pca: {len(examples)} pairs; PC1 share " + ", ".join(
        f"{m} {v:.3f}" for m, v in variance[variance["component"] == "PC1"][["model", "explained_variance_ratio"]]
        .itertuples(index=False)))
    return 0


def run_cls_retention(args) -> int:
    from rnaret import analyses
    from rnaret.io.dataset_readers import read_dataset
    from rnaret.io.errors import InputError

    task, model, examples, device = _load(args, "interaction")
    encoder = _retnet(model.encoder, args.checkpoint)
    rows = list(read_dataset(args.test, "interaction", args.split))  # the same rows, in the same order
    if args.example is None:
        index = next((i for i, e in enumerate(examples) if int(e.target) == 1), 0)
    else:
        index = args.example
    if not 0 <= index < len(examples):
        raise InputError(args.test, f"--example {index} out of range: {len(examples)} pairs")
    labels = analyses.pair_token_labels(rows[index].mirna, rows[index].site)
    if task.k % 2 == 0 or len(labels) != len(examples[index].tokens):
        labels = None  # even k: tokens are not nucleotides
    profile, example, long_map = analyses.cls_retention(
        encoder, task, examples, layer=args.layer, example_index=index, example_labels=labels,
        batch_size=args.batch_size, device=device)
    write_tsv(profile, args.profile_tsv)
    write_tsv(example, args.example_tsv)
    write_tsv(long_map, args.map_tsv)
    layer = analyses.last_layer(encoder, args.layer) + 1
    name = examples[index].id
    analyses.plot_cls_bars(profile, example, args.bars_png,
                           f"CLS retention, layer {layer}, head mean, mean of {len(examples)} pairs "
                           f"(axis: example pair {name})")
    n = len(example)
    matrix = long_map["score"].to_numpy().reshape(n, n)
    sep = example["token"].tolist().index("SEP") if "SEP" in example["token"].tolist() else None
    analyses.plot_retention_map(matrix, args.map_png, f"Retention, layer {layer}, head mean: pair {name}",
                                limit=None, separator=sep)
    _log(f"cls-retention: {len(examples)} pairs, layer {layer}, example {name} ({n} tokens)")
    return 0


def run_transcripts(args) -> int:
    from collections import Counter

    import numpy as np
    import pandas as pd

    from rnaret import analyses
    from rnaret.io.dataset_readers import read_dataset
    from rnaret.io.errors import InputError

    task, model, examples, device = _load(args, "coding")
    encoder = _retnet(model.encoder, args.checkpoint)
    if task.k % 2 == 0:
        raise InputError(args.checkpoint, f"k={task.k}: retention per nucleotide needs an odd k")
    predictions = pd.read_csv(args.predictions, sep="\t", dtype={"id": str})
    try:
        chosen = analyses.pick_transcripts(predictions, min_length=args.min_length, max_length=args.max_length)
    except InputError as exc:
        raise InputError(args.predictions, exc.what) from None
    transcripts = {t.id: t for t in read_dataset(args.test, "coding", args.split)}
    by_id = {e.id: e for e in examples}
    layer = analyses.last_layer(encoder, args.layer)
    padded = task.padded_length()  # the published protocol's fixed length: read as in evaluation
    profiles, maps = [], []
    for name in ("mRNA", "lncRNA"):
        if name not in chosen:  # said in the figure and the log, and no rows in the TSVs
            analyses.plot_absent(getattr(args, f"{name.lower()}_png"), f"no {name} in the test split {args.test}")
            _log(f"transcripts: no {name} in the test split")
    for name, tid in chosen.items():
        if tid not in by_id:
            raise InputError(args.predictions, "a predicted transcript is not in the test file", record=tid)
        sequence = transcripts[tid].sequence
        matrix = analyses.transcript_retention(encoder, by_id[tid].tokens, layer=layer, padded_length=padded,
                                               device=device)
        profile = analyses.retention_profile(matrix)
        profiles.append(pd.DataFrame({"transcript": tid, "class": name, "position": range(1, len(profile) + 1),
                                      "base": list(sequence.upper().replace("T", "U")), "retention": profile}))
        small = analyses.block_mean(matrix, args.map_size)
        q, k = np.indices(small.shape)
        maps.append(pd.DataFrame({"transcript": tid, "class": name, "query_bin": q.ravel(), "key_bin": k.ravel(),
                                  "bin_nt": -(-len(sequence) // args.map_size) if len(sequence) > args.map_size else 1,
                                  "score": small.ravel()}))
        analyses.plot_retention_map(small, getattr(args, f"{name.lower()}_png"),
                                    f"{name} {tid.split('|')[0]} ({len(sequence)} nt), layer {layer + 1}, head mean",
                                    profile=profile, extent=len(sequence))
    codons = {"pc": Counter(), "lnc": Counter()}
    nines = {"pc": Counter(), "lnc": Counter()}
    counted = analyses.first_of_each_class(examples, args.max_transcripts)
    for example in counted:
        tokens = example.tokens[:args.max_nt]
        sequence = transcripts[example.id].sequence[:args.max_nt]
        matrix = analyses.transcript_retention(encoder, tokens, layer=layer, padded_length=padded, device=device)
        profile = analyses.retention_profile(matrix)
        found_codons, found_nines = analyses.centred_kmers(sequence, profile)
        cls = "pc" if example.info["label"] == 1 else "lnc"
        codons[cls].update(found_codons)
        nines[cls].update(found_nines)
    write_tsv(pd.concat(profiles, ignore_index=True), args.profile_tsv)
    write_tsv(pd.concat(maps, ignore_index=True), args.map_tsv)
    codon_table = analyses.count_table(codons, "codon")
    write_tsv(codon_table, args.codons_tsv)
    write_tsv(analyses.count_table(nines, "kmer"), args.kmers_tsv)
    per_class = Counter("coding" if e.info["label"] == 1 else "noncoding" for e in counted)
    described = f"{per_class['coding']} coding and {per_class['noncoding']} noncoding transcripts"
    analyses.plot_codons(codon_table, args.codons_png, f"Codons at the top 1 % retention\n{described}")
    _log(f"transcripts: {', '.join(f'{k} {v}' for k, v in chosen.items())}; {int(codon_table['count_all'].sum())} "
         f"codons from {described}")
    return 0
