"""The paper's analyses (`rnaret analyses`) on tiny models and the bundled data: per-family F1
from a real ViennaRNA evaluation, PCA of CLS states, CLS retention on miRNA-target pairs checked
against ``rnaret.model.scores.retention_scores``, and transcript retention with codon counts."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from rnaret import analyses
from rnaret.checkpoint import save_encoder
from rnaret.cli import main
from rnaret.io.errors import InputError
from rnaret.io.structure import read_structures
from rnaret.model import EncoderConfig, build_encoder
from rnaret.model.scores import retention_scores
from rnaret.tasks import get_task
from rnaret.checkpoint.finetuned import save_finetuned
from rnaret.tasks.finetune import TaskModel
from rnaret.tasks.interaction import pair_tokens

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = "mirna_target/mirtar_deepmirtar_miraw.tsv"


def tiny_config(k: int) -> EncoderConfig:
    return EncoderConfig.paper(k, retnet_embed_dim=16, retnet_value_embed_dim=16, retnet_ffn_embed_dim=32,
                               retnet_layers=2, retnet_retention_heads=2, dropout=0.0, activation_dropout=0.0)


def tiny_finetuned(task_name: str, k: int, folder, seed: int):
    """A fine-tuned checkpoint folder of a tiny seeded encoder and head (the real format)."""
    torch.manual_seed(seed)
    task = get_task(task_name, {"k": k})
    encoder = build_encoder(tiny_config(k))
    model = TaskModel(encoder, task.build_head(encoder.config.retnet_embed_dim)).eval()
    return save_finetuned(model, task, folder, encoder_kind="retnet", init="tiny")


@pytest.fixture(scope="module")
def pair_subset(resources, tmp_path_factory):
    """40 test pairs of the bundled table (20 of each label), our TSV layout."""
    table = pd.read_csv(resources / PAIRS, sep="\t", dtype=str)
    test = table[table.split == "test"]
    subset = pd.concat([test[test.label == "1"].head(20), test[test.label == "0"].head(20)])
    path = tmp_path_factory.mktemp("pairs") / "pairs.tsv"
    subset.to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="module")
def interaction_checkpoint(tmp_path_factory):
    return tiny_finetuned("interaction", 5, tmp_path_factory.mktemp("ft") / "interaction", seed=1)


def test_family_of_bprna_and_archiveii_ids():
    assert analyses.family_of("bpRNA_RFAM_1234") == "RFAM"
    assert analyses.family_of("bpRNA_tmRNA_12") == "tmRNA"
    assert analyses.family_of("5s_Acanthamoeba-castellanii-1") == "5s"
    assert analyses.family_of("RNaseP_R.norvegicus") == "RNaseP"
    assert analyses.family_of("plain") == "plain"
    assert analyses.family_order(["RFAM", "tRNA", "5s", "CRW"]) == ["5s", "tRNA", "CRW", "RFAM"]


def test_structure_families_from_a_vienna_evaluation(resources, tmp_path):
    table = pd.read_csv(resources / "structure/bprna_test.csv")
    table["family"] = table["id"].str.split("_").str[1]
    # a few records of every database the bundled test split holds
    subset = table.groupby("family").head(3).drop(columns="family")
    truth = tmp_path / "test.csv"
    subset.to_csv(truth, index=False)
    assert main(["vienna", "--dataset", str(truth), "--output-dir", str(tmp_path / "vienna"),
                 "--method", "mfe", "--quiet"]) == 0
    out = tmp_path / "out"
    args = ["analyses", "structure", "--truth", str(truth), "--predictions", str(tmp_path / "vienna/per_sequence.tsv"),
            "--column", "mfe_f1", "--title", "vienna", "--per-sequence-tsv", str(out / "f1.tsv"),
            "--family-tsv", str(out / "family.tsv"), "--family-png", str(out / "family.png"),
            "--length-png", str(out / "length.png")]
    assert main(args) == 0
    per_sequence = pd.read_csv(out / "f1.tsv", sep="\t")
    family = pd.read_csv(out / "family.tsv", sep="\t")
    vienna = pd.read_csv(tmp_path / "vienna/per_sequence.tsv", sep="\t")
    assert len(per_sequence) == len(subset) and set(family["family"]) == {"CRW", "RFAM", "RNP", "SPR", "SRP", "tmRNA"}
    assert family["n"].sum() == len(subset)
    # the family means are those of ViennaRNA's own per-sequence F1, and not all alike
    merged = per_sequence.merge(vienna, on="id")
    assert np.allclose(merged["f1"], merged["mfe_f1"], atol=1e-6)
    expected = merged.groupby("family")["mfe_f1"].mean()
    assert np.allclose(family.set_index("family")["mean_f1"], expected.reindex(family["family"]), atol=1e-6)
    assert family["mean_f1"].std() > 0.01 and per_sequence["length"].nunique() > 10
    for png in ("family.png", "length.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a truth record without a score names the record; the command names the file and fails
    with pytest.raises(InputError, match="no per-sequence F1") as info:
        analyses.structure_by_family(vienna.iloc[1:].rename(columns={"mfe_f1": "f1"}), list(read_structures(truth)))
    assert info.value.record == vienna["id"].iloc[0]
    vienna.iloc[1:].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    assert main(args[:5] + [str(tmp_path / "short.tsv")] + args[6:]) == 1


def test_pca_of_cls_states(resources, tmp_path, pair_subset, interaction_checkpoint):
    torch.manual_seed(2)
    pretrained = save_encoder(build_encoder(tiny_config(5)), tmp_path / "pretrained")
    out = tmp_path / "pca"
    assert main(["analyses", "pca", "--checkpoint", str(interaction_checkpoint), "--pretrained", str(pretrained),
                 "--test", str(pair_subset), "--points-tsv", str(out / "points.tsv"),
                 "--variance-tsv", str(out / "variance.tsv"), "--png", str(out / "pca.png")]) == 0
    points = pd.read_csv(out / "points.tsv", sep="\t")
    variance = pd.read_csv(out / "variance.tsv", sep="\t")
    assert list(dict.fromkeys(points["model"])) == ["Fine-tuned", "Pretrained", "Random"]
    assert len(points) == 3 * 40 and points.groupby("model")["label"].sum().tolist() == [20, 20, 20]
    for model, part in points.groupby("model"):
        assert part["pc1"].std() > 0 and part["pc2"].std() > 0
        # PCA output is centred
        assert abs(part["pc1"].mean()) < 1e-4 * max(1.0, part["pc1"].abs().max())
    ratios = variance.pivot(index="model", columns="component", values="explained_variance_ratio")
    assert ((ratios["PC1"] >= ratios["PC2"]) & (ratios["PC1"] <= 1) & (ratios["PC2"] > 0)).all()
    # three different encoders: three different projections
    fine, pre = (points[points.model == m]["pc1"].abs().to_numpy() for m in ("Fine-tuned", "Pretrained"))
    assert not np.allclose(fine, pre)
    assert (out / "pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cls_retention_matches_the_retention_scores(tmp_path, pair_subset, interaction_checkpoint):
    out = tmp_path / "cls"
    files = {o: out / n for o, n in (("--profile-tsv", "profile.tsv"), ("--example-tsv", "example.tsv"),
                                     ("--map-tsv", "map.tsv"), ("--bars-png", "bars.png"), ("--map-png", "map.png"))}
    assert main(["analyses", "cls-retention", "--checkpoint", str(interaction_checkpoint), "--test", str(pair_subset),
                 *[str(x) for kv in files.items() for x in kv]]) == 0
    profile = pd.read_csv(files["--profile-tsv"], sep="\t")
    example = pd.read_csv(files["--example-tsv"], sep="\t", keep_default_na=False)
    long_map = pd.read_csv(files["--map-tsv"], sep="\t")
    table = pd.read_csv(pair_subset, sep="\t", dtype=str)
    lengths = [len(a) + len(b) + 2 for a, b in zip(table["mirna_seq"], table["target_seq"])]
    assert len(profile) == max(lengths) and profile["n_pairs"].iloc[0] == 40
    assert profile["n_pairs"].iloc[-1] == sum(n == max(lengths) for n in lengths)
    assert np.allclose(profile["head_mean"], profile[["head_1", "head_2"]].mean(axis=1))
    # the example (the first positive pair) against rnaret.model.scores on the fine-tuned encoder
    first = table.iloc[0]
    tokens = torch.from_numpy(pair_tokens(first["mirna_seq"], first["target_seq"], 5))[None]
    from rnaret.tasks.run import load_for_evaluation

    _, model = load_for_evaluation(interaction_checkpoint)
    for head in (0, 1):
        expected = retention_scores(model.encoder, tokens, layer=1, head=head)[0, 0].numpy()
        assert np.allclose(example[f"head_{head + 1}"], expected, atol=1e-5)
    assert example["head_mean"].abs().max() > 1e-4
    assert example["token"].iloc[0] == "CLS" and list(example["token"]).count("SEP") == 1
    assert "".join(example["token"].iloc[1:len(first["mirna_seq"]) + 1]) == first["mirna_seq"]
    n = len(example)
    assert len(long_map) == n * n
    matrix = long_map["score"].to_numpy().reshape(n, n)
    assert np.allclose(matrix[0], example["head_mean"], atol=1e-6)
    # the mean over pairs differs from any one pair
    assert not np.allclose(profile["head_mean"].iloc[:n], example["head_mean"])
    for png in ("--bars-png", "--map-png"):
        assert files[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="layer 5 out of range"):
        analyses.last_layer(model.encoder, 5)


def test_cls_retention_under_the_published_protocol(tmp_path, pair_subset):
    """Published-protocol pairs are padded to 81 tokens and the model sees the padding: the
    profile and the example still cover the pairs' own tokens only."""
    torch.manual_seed(2)
    task = get_task("interaction", {"k": 5, "protocol": "published"})
    encoder = build_encoder(tiny_config(5))
    model = TaskModel(encoder, task.build_head(encoder.config.retnet_embed_dim)).eval()
    checkpoint = save_finetuned(model, task, tmp_path / "ft", encoder_kind="retnet", init="tiny")
    examples = task.read_split(str(pair_subset), None)
    assert task.collate(examples[:2]).tokens.shape[1] == 81  # padded, unmasked
    profile, example, long_map = analyses.cls_retention(
        encoder, task, examples, example_index=0, example_labels=analyses.pair_token_labels(
            *pd.read_csv(pair_subset, sep="\t", dtype=str).iloc[0][["mirna_seq", "target_seq"]]))
    lengths = [len(e.tokens) for e in examples]
    assert len(profile) == max(lengths) < 81 and profile["n_pairs"].iloc[0] == 40
    assert len(example) == lengths[0] and len(long_map) == lengths[0] ** 2
    assert example["head_mean"].abs().max() > 1e-4
    # the model saw the padding: the scores differ from those of the pair alone
    alone = retention_scores(encoder, torch.from_numpy(examples[0].tokens)[None], layer=1, head=0)[0, 0].numpy()
    assert not np.allclose(example["head_1"], alone, atol=1e-5)
    out = tmp_path / "cls"
    assert main(["analyses", "cls-retention", "--checkpoint", str(checkpoint), "--test", str(pair_subset),
                 "--profile-tsv", str(out / "p.tsv"), "--example-tsv", str(out / "e.tsv"), "--map-tsv",
                 str(out / "m.tsv"), "--bars-png", str(out / "b.png"), "--map-png", str(out / "m.png")]) == 0
    assert len(pd.read_csv(out / "p.tsv", sep="\t")) == max(lengths)


def test_transcript_retention_reads_a_transcript_as_its_task_pads_it():
    torch.manual_seed(4)
    encoder = build_encoder(tiny_config(5)).eval()
    tokens = np.random.default_rng(0).integers(6, 6 + 4 ** 5, size=120)
    alone = analyses.transcript_retention(encoder, tokens)
    padded = analyses.transcript_retention(encoder, tokens, padded_length=200)
    assert alone.shape == padded.shape == (120, 120) and np.abs(alone).max() > 1e-4
    # the published model saw its padding: the transcript's own map changes with it
    assert not np.allclose(alone, padded, atol=1e-6)
    assert np.allclose(padded, analyses.transcript_retention(encoder, tokens, padded_length=200))


def test_transcript_retention_and_codon_counts(resources, tmp_path):
    # 12 mouse test transcripts of 300-1200 nt, both classes
    records, kept = [], {0: 0, 1: 0}
    with gzip.open(resources / "mrna_lncrna/mouse_test.fa.gz", "rt") as handle:
        text = handle.read().split(">")[1:]
    for block in text:
        header, *lines = block.splitlines()
        seq = "".join(lines)
        label = 1 if "CDS:" in header else 0
        if 300 <= len(seq) <= 1200 and kept[label] < 6:
            kept[label] += 1
            records.append(f">{header}\n{seq}\n")
    assert kept == {0: 6, 1: 6}
    fasta = tmp_path / "test.fa"
    fasta.write_text("".join(records))
    checkpoint = tiny_finetuned("coding", 5, tmp_path / "coding", seed=3)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"),
                 "--split", f"test={fasta}", "--quiet"]) == 0
    out = tmp_path / "tx"
    names = ("profile-tsv", "map-tsv", "mrna-png", "lncrna-png", "codons-tsv", "kmers-tsv", "codons-png")
    files = {n: out / n.replace("-", ".", 1) for n in names}
    assert main(["analyses", "transcripts", "--checkpoint", str(checkpoint), "--test", str(fasta),
                 "--predictions", str(tmp_path / "eval/predictions.tsv"), "--min-length", "300",
                 "--max-length", "1200", "--map-size", "50", "--max-transcripts", "3",
                 *[x for n, p in files.items() for x in (f"--{n}", str(p))]]) == 0
    predictions = pd.read_csv(tmp_path / "eval/predictions.tsv", sep="\t")
    profile = pd.read_csv(files["profile-tsv"], sep="\t")
    chosen = profile.groupby("class")["transcript"].first()
    best_mrna = predictions[predictions.label == 1].sort_values("score", ascending=False)["id"].iloc[0]
    assert chosen["mRNA"] == best_mrna
    assert predictions.set_index("id").loc[chosen["lncRNA"], "label"] == 0
    for name, tid in chosen.items():
        part = profile[profile.transcript == tid]
        assert len(part) == predictions.set_index("id").loc[tid, "length"] and part["retention"].std() > 0
    heat = pd.read_csv(files["map-tsv"], sep="\t")
    assert heat.groupby("transcript").size().max() <= 50 * 50 and heat["score"].abs().max() > 0
    codons = pd.read_csv(files["codons-tsv"], sep="\t")
    kmers = pd.read_csv(files["kmers-tsv"], sep="\t")
    assert codons["codon"].str.fullmatch("[ACGUN]{3}").all() and kmers["kmer"].str.fullmatch("[ACGUN]{9}").all()
    # one codon and one 9-mer per top-1 % position of each transcript (about 1 % of 6 transcripts' nt);
    # the file lists its 6 coding transcripts first: the cap of 3 is per class, so both columns fill
    assert codons["count_all"].sum() == kmers["count_all"].sum() > 0
    assert codons["count_pc"].sum() > 0 and codons["count_lnc"].sum() > 0
    centres = kmers.assign(codon=kmers["kmer"].str[3:6]).groupby("codon")["count_all"].sum()
    assert centres.to_dict() == codons.set_index("codon")["count_all"].to_dict()
    assert np.isclose(codons["frequency_all"].sum(), 1.0)
    for png in ("mrna-png", "lncrna-png", "codons-png"):
        assert files[png].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_centred_kmers_follow_the_notebook():
    sequence = "ACGTACGTACGTACGTACGT"
    profile = np.zeros(len(sequence))
    profile[10] = 1.0  # the single top position
    codons, nines = analyses.centred_kmers(sequence, profile, percentile=99)
    assert codons == ["CGU"] and nines == ["GUACGUACG"]
    profile[:] = 0
    profile[2] = 1.0  # too near the start for a 9-mer: skipped, as published
    assert analyses.centred_kmers(sequence, profile, percentile=99) == ([], [])


def test_block_mean_keeps_the_mean():
    matrix = np.arange(49, dtype=float).reshape(7, 7)
    small = analyses.block_mean(matrix, 3)
    assert small.shape == (3, 3) and small[0, 0] == matrix[:3, :3].mean() and small[2, 2] == matrix[6, 6]


def test_pick_transcripts_prefers_the_length_range_then_the_nearest_length():
    predictions = pd.DataFrame({"id": list("abcdef"), "label": [1, 1, 1, 0, 0, 0],
                                "length": [600, 900, 5000, 4000, 2000, 3000],
                                "score": [0.7, 0.9, 0.99, 0.1, 0.5, 0.3]})
    # the mRNA: the best-scoring in range (c scores higher but is out of range); the lncRNAs are all
    # longer than the range: the nearest (e, 2,000 nt) although d scores lower
    assert analyses.pick_transcripts(predictions, min_length=500, max_length=1500) == {"mRNA": "b", "lncRNA": "e"}
    # a test split of one class: the other is left out (its figure says so)
    assert analyses.pick_transcripts(predictions[predictions.label == 1], min_length=500, max_length=1500) == \
        {"mRNA": "b"}
    with pytest.raises(InputError, match="no transcripts"):
        analyses.pick_transcripts(predictions.iloc[:0], min_length=500, max_length=1500)
