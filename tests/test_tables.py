"""The results tables: written from real metrics.tsv files (ViennaRNA on bundled structures, a
seed-match scorer on the bundled miRNA-target pairs), carrying the published figures' sources,
saying where a published RNAret figure is not available, Markdown and TSV in agreement."""
from __future__ import annotations

import csv
import re

import pytest

from conftest import RESOURCES
from rnaret.cli import main as rnaret_main
from rnaret.io.errors import InputError
from rnaret.io.structure import read_structures
from rnaret.metrics import classification_metrics, read_metrics_tsv, structure_scores, write_metrics_tsv
from rnaret.tables import (ORIGIN_MISSING, ORIGIN_PUBLISHED, ORIGIN_RUN, build_tables, format_md_value,
                           read_published, read_table_tsv, write_tables)

PUBLISHED = RESOURCES / "published_results.tsv"
N_STRUCTURES = 6


def _seed_match_score(mirna: str, site: str) -> float:
    """Canonical seed match: 1 for the 7-mer (miRNA nt 2-8) complement in the site, 0.5 for the
    6-mer (nt 2-7), else 0."""
    complement = str.maketrans("ACGU", "UGCA")
    mirna, site = mirna.upper().replace("T", "U"), site.upper().replace("T", "U")
    seed7 = mirna[1:8].translate(complement)[::-1]
    seed6 = mirna[1:7].translate(complement)[::-1]
    return 1.0 if seed7 in site else 0.5 if seed6 in site else 0.0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A results folder with real evaluations: `rnaret vienna` on bundled bpRNA test structures,
    and seed-match scores of the bundled DeepMirTar independent test pairs."""
    root = tmp_path_factory.mktemp("run")
    with open(RESOURCES / "structure/bprna_test.csv", encoding="utf-8") as handle:
        lines = handle.readlines()
    subset = root / "bprna_subset.csv"
    subset.write_text("".join(lines[: N_STRUCTURES + 1]), encoding="utf-8")
    vienna_dir = root / "results/structure/bprna/vienna"
    assert rnaret_main(["vienna", "--dataset", str(subset), "--output-dir", str(vienna_dir), "--quiet"]) == 0

    labels, scores = [], []
    with open(RESOURCES / "mirna_target/mirtar_deepmirtar_indtest.tsv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            labels.append(int(row["label"]))
            scores.append(_seed_match_score(row["mirna_seq"], row["target_seq"]))
    interaction = root / "results/interaction/mirtar_indtest/seed-match/metrics.tsv"
    write_metrics_tsv(classification_metrics(labels, scores), interaction)
    return root, subset, [vienna_dir / "metrics.tsv", interaction]


@pytest.fixture(scope="module")
def written(run_dir, tmp_path_factory):
    root, _, metrics = run_dir
    out = tmp_path_factory.mktemp("tables")
    paths = write_tables(metrics, PUBLISHED, out)
    return out, paths, metrics


def _md_rows(path):
    """The Markdown table's body rows as lists of cells (header skipped)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and not line.startswith("| dataset"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_vienna_rows_are_the_metrics_files_values(written, run_dir):
    out, _, metrics = written
    _, subset, _ = run_dir
    rows = read_table_tsv(out / "structure.tsv")
    vienna = {r["variant"]: r for r in rows if r["model"] == "vienna"}
    assert set(vienna) == {"MFE", "MEA"}
    from_file = read_metrics_tsv(metrics[0])
    assert float(vienna["MFE"]["f1"]) == from_file["f1"]
    assert float(vienna["MEA"]["f1"]) == from_file["mea_f1"]
    assert float(vienna["MEA"]["recall"]) == from_file["mea_recall"]
    assert int(vienna["MFE"]["n"]) == int(vienna["MEA"]["n"]) == N_STRUCTURES
    assert vienna["MFE"]["origin"] == ORIGIN_RUN and vienna["MFE"]["source"] == str(metrics[0])
    # the F1 is the mean per-sequence base-pair F1 of the predictions beside the metrics
    truth = list(read_structures(subset))
    predicted = {r.id: r.pairs for r in read_structures(metrics[0].parent / "predictions.dbn")}
    expected, _ = structure_scores([r.pairs for r in truth], [predicted[r.id] for r in truth])
    assert float(vienna["MFE"]["f1"]) == pytest.approx(expected["f1"], abs=1e-12)


def test_published_rows_carry_their_source_and_verbatim_values(written):
    out, _, _ = written
    rows = read_table_tsv(out / "structure.tsv")
    published = [r for r in rows if r["origin"] == ORIGIN_PUBLISHED]
    with open(PUBLISHED, encoding="utf-8", newline="") as handle:
        figures = [r for r in csv.DictReader(handle, delimiter="\t") if r["task"] == "structure"
                   and r["value"] not in ("", "NA")]
    assert figures, "the published file holds structure figures"
    by_key = {(r["dataset"], r["model"], r["test_set"]): r for r in published}
    for fig in figures:  # every published figure appears, verbatim, with its source
        row = by_key[(fig["dataset"], fig["model"], fig["test_set"])]
        assert row[fig["metric"]] == fig["value"]
        assert row["source"] == fig["source"] and row["source_table"] == fig["table"]
    markdown = (out / "structure.md").read_text(encoding="utf-8")
    for row in published:
        assert row["source"] and row["footnote"]
        note = re.search(rf"^{row['footnote']}\. (.*)$", markdown, re.M).group(1)
        assert row["source"].split(".")[0] in note and row["source_table"] in note
    # the RNAfold F1 on ArchiveII of the RFold paper's Table 2, with its dataset
    archive = by_key[next(k for k in by_key if k[0] == "archiveii" and k[1] == "RNAfold")]
    assert archive["f1"] == "0.631"


def test_missing_published_rnaret_figure_is_stated(written):
    out, _, _ = written
    rows = read_table_tsv(out / "structure.tsv")
    datasets = {r["dataset"] for r in rows}
    missing = [r for r in rows if r["origin"] == ORIGIN_MISSING]
    # one explicit row per dataset, no number in it, with the reason in its source
    assert {r["dataset"] for r in missing} == datasets
    for r in missing:
        assert r["model"].lower().startswith("rnaret")
        assert all(r[m] == "" for m in ("f1", "precision", "recall"))
        assert "no citable source" in r["source"]
    md_missing = [c for c in _md_rows(out / "structure.md") if c[3] == "**not available**"]
    assert len(md_missing) == len(missing)
    assert all(c[4] == "–" for c in md_missing)


def test_markdown_and_tsv_agree(written):
    out, paths, _ = written
    for task in ("structure", "interaction"):
        tsv = read_table_tsv(out / f"{task}.tsv")
        md = _md_rows(out / f"{task}.md")
        assert len(tsv) == len(md) > 0
        header = list(tsv[0])
        metrics = header[header.index("origin") + 1: header.index("test_set")]
        for t, m in zip(tsv, md):
            label = f"{t['model']} ({t['variant']})" if t["variant"] else t["model"]
            assert m[:4] == [t["dataset"], label, t["protocol"] or "–",
                             "**not available**" if t["origin"] == ORIGIN_MISSING else t["origin"]]
            for k, metric in enumerate(metrics):
                text, cell = t[metric], m[4 + k]
                if t["origin"] == ORIGIN_RUN and text not in ("", "NA") and "." in text:
                    # a run's float: three decimals, within half a unit of the last one
                    assert re.fullmatch(r"-?\d+\.\d{3}", cell), (task, label, metric, cell)
                    assert abs(float(cell) - float(text)) <= 0.0005 + 1e-12, (task, label, metric)
                elif text == "":
                    assert cell == "–", (task, label, metric)
                else:  # published text, NA and integers verbatim
                    assert cell == text, (task, label, metric)
        html = (out / f"{task}.html").read_text(encoding="utf-8")
        assert html.count("<tr class=") == len(tsv) and "http" not in html


def test_interaction_table_from_real_classification_metrics(written, run_dir):
    out, _, metrics = written
    rows = read_table_tsv(out / "interaction.tsv")
    run = [r for r in rows if r["origin"] == ORIGIN_RUN]
    assert [(r["dataset"], r["model"]) for r in run] == [("mirtar_indtest", "seed-match")]
    from_file = read_metrics_tsv(metrics[1])
    for metric in ("accuracy", "precision", "recall", "f1", "auc", "mcc"):
        assert float(run[0][metric]) == from_file[metric]
    assert int(run[0]["n"]) == from_file["n"] == 828
    assert 0.5 < from_file["auc"] < 1  # the seed match carries signal
    # no published interaction figure: RNAret's is stated as not available
    assert [r["origin"] for r in rows if r["dataset"] == "mirtar_indtest"][-1] == ORIGIN_MISSING
    coding = (out / "coding.md").read_text(encoding="utf-8")
    assert "No coding evaluations" in coding


def test_published_rnaret_not_available_rows_from_the_file(tmp_path, run_dir):
    """A published RNAret row written NA in the file is shown as not available with its own
    source, and no generic row is added; a published RNAret number is shown as published."""
    published = tmp_path / "published.tsv"
    published.write_text(
        "task\tdataset\ttest_set\tmodel\tmetric\tvalue\tsource\ttable\tnote\n"
        "structure\tbprna\tTS0\tRNAret\tf1\tNA\tSome paper 2026\tTable 2\tnot readable\n"
        "interaction\tmirtar_indtest\tindtest\tRNAret\tauc\t0.9\tOther paper 2026\tTable 4\t\n",
        encoding="utf-8")
    tables = build_tables(run_dir[2], published)
    structure = [r for r in tables["structure"].rows if r.dataset == "bprna"]
    missing = [r for r in structure if r.origin == ORIGIN_MISSING]
    assert len(missing) == 1 and missing[0].source == "Some paper 2026" and missing[0].model == "RNAret"
    interaction = [r for r in tables["interaction"].rows if r.model == "RNAret"]
    assert len(interaction) == 1 and interaction[0].origin == ORIGIN_PUBLISHED
    assert interaction[0].values == {"auc": "0.9"}
    assert not any(r.origin == ORIGIN_MISSING for r in tables["interaction"].rows)


@pytest.mark.parametrize("body, message", [
    ("structure\tbprna\tTS0\tRNAfold\tf1\t0.5\t\tTable 1\t\n", "source"),
    ("structure\tbprna\tTS0\tRNAfold\tf1\thigh\tA paper\tTable 1\t\n", "not a number"),
    ("folding\tbprna\tTS0\tRNAfold\tf1\t0.5\tA paper\tTable 1\t\n", "task"),
    ("structure\tbprna\tTS0\tRNAfold\tf1\t0.5\tA paper\tTable 1\t\n"
     "structure\tbprna\tTS0\tRNAfold\tf1\t0.6\tA paper\tTable 1\t\n", "twice"),
])
def test_bad_published_file_is_rejected(tmp_path, body, message):
    path = tmp_path / "published.tsv"
    path.write_text("task\tdataset\ttest_set\tmodel\tmetric\tvalue\tsource\ttable\tnote\n" + body,
                    encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_published(path)
    assert str(path) in str(info.value)


def test_bad_metrics_paths_are_rejected(tmp_path, run_dir):
    wrong = tmp_path / "results/folding/bprna/vienna/metrics.tsv"
    write_metrics_tsv({"f1": 0.5}, wrong)
    with pytest.raises(InputError, match="metrics.tsv path"):
        build_tables([wrong])
    with pytest.raises(InputError, match="given twice"):
        build_tables([run_dir[2][0], run_dir[2][0]])
    broken = tmp_path / "results/structure/bprna/onehot/metrics.tsv"
    broken.parent.mkdir(parents=True)
    broken.write_text("name\tvalue\nf1\t0.5\n", encoding="utf-8")
    with pytest.raises(InputError, match="header"):
        build_tables([broken])


def test_command_writes_every_task(tmp_path, run_dir):
    out = tmp_path / "tables"
    args = ["tables", *map(str, run_dir[2]), "--published", str(PUBLISHED), "--output-dir", str(out)]
    assert rnaret_main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t}.{e}" for t in ("structure", "interaction", "coding") for e in ("tsv", "md", "html"))
    assert rnaret_main(["tables", "--output-dir", str(out), "--tasks", "folding"]) == 1


def test_structure_figures_f1_from_per_sequence_equals_predictions(run_dir, tmp_path):
    """The F1 distribution read from ViennaRNA's per_sequence.tsv is the one computed from its
    predicted structures by the tables' F1 code; both figures are written."""
    from rnaret.commands.structure_figures import read_per_sequence_f1
    from rnaret.figures import pick_examples

    _, subset, metrics = run_dir
    vienna = metrics[0].parent
    truth = list(read_structures(subset))
    from_tsv = read_per_sequence_f1(vienna / "per_sequence.tsv", [r.id for r in truth])
    for label, name in (("MFE", "predictions.dbn"), ("MEA", "predictions_mea.dbn")):
        predicted = {r.id: r.pairs for r in read_structures(vienna / name)}
        _, per_seq = structure_scores([r.pairs for r in truth], [predicted[r.id] for r in truth])
        assert from_tsv[label] == pytest.approx([s["f1"] for s in per_seq], abs=1e-12)
    examples = pick_examples(truth, 3)
    assert len(examples) == 3 and all(r.pairs for r in examples)
    assert [len(r.sequence) for r in examples] == sorted(len(r.sequence) for r in examples)
    f1_png, maps_png = tmp_path / "f1.png", tmp_path / "maps.png"
    assert rnaret_main(["structure-figures", "--truth", str(subset), "--prediction",
                        f"MFE={vienna / 'predictions.dbn'}", "--per-sequence", str(vienna / "per_sequence.tsv"),
                        "--title", "vienna on bprna", "--f1-png", str(f1_png), "--maps-png", str(maps_png),
                        "--examples", "3"]) == 0
    for png in (f1_png, maps_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # a prediction file that misses a test sequence is an error naming it
    short = tmp_path / "short.dbn"
    short.write_text("".join((vienna / "predictions.dbn").read_text().splitlines(True)[:3]))
    assert rnaret_main(["structure-figures", "--truth", str(subset), "--prediction", str(short),
                        "--f1-png", str(f1_png)]) == 1
    assert rnaret_main(["structure-figures", "--truth", str(subset), "--per-sequence",
                        str(vienna / "per_sequence.tsv"), "--maps-png", str(maps_png)]) == 1


@pytest.mark.parametrize("value, text", [
    (0.3, "0.300"), (2 / 3, "0.667"), (0.1 + 0.2, "0.300"), (0.12349, "0.123"), (0.9996, "1.000"),
    (-0.25, "-0.250"), (float("nan"), "NA"), (None, "–"), (1266, "1266"), (0, "0"), ("0.540", "0.540"),
    ("NA", "NA")])
def test_markdown_cells_by_hand(value, text):
    assert format_md_value(value) == text


def test_nan_metrics_are_written_na(written):
    out, _, _ = written
    vienna = [r for r in read_table_tsv(out / "structure.tsv") if r["model"] == "vienna"]
    # none of the first bundled test structures has a pseudoknot: f1_pk is undefined, n_pk 0
    assert all(r["f1_pk"] == "NA" and r["n_pk"] == "0" for r in vienna)


# ------------------------------------------------------------------ protocols side by side

def test_a_metrics_file_without_a_protocol_row_is_rnaret(written):
    out, _, _ = written
    run = [r for r in read_table_tsv(out / "structure.tsv") if r["origin"] == ORIGIN_RUN]
    assert run and all(r["protocol"] == "rnaret" for r in run)
    assert all(r["protocol"] == "" for r in read_table_tsv(out / "structure.tsv") if r["origin"] != ORIGIN_RUN)


needs_protocol_rows = pytest.mark.skipif(
    not hasattr(__import__("rnaret.metrics", fromlist=["x"]), "TEXT_METRICS"),
    reason="rnaret.metrics reads no protocol row (TEXT_METRICS) in this tree")


@needs_protocol_rows
def test_both_protocols_of_one_evaluation_stand_side_by_side_labelled(tmp_path, run_dir):
    """The same seed-match scores written once as an rnaret file (no protocol row) and once with
    `protocol published` (other figures): two rows of one model, next to each other, labelled."""
    _, _, metrics = run_dir
    interaction = read_metrics_tsv(metrics[1])
    published = tmp_path / "results/protocols/published/interaction/mirtar_indtest/seed-match/metrics.tsv"
    write_metrics_tsv({"protocol": "published", **interaction, "auc": 0.25}, published)
    other = tmp_path / "results/interaction/mirtar_indtest/onehot/metrics.tsv"
    write_metrics_tsv({"protocol": "rnaret", **interaction, "auc": 0.75}, other)
    out = tmp_path / "tables"
    write_tables([published, metrics[1], other], PUBLISHED, out)
    rows = [r for r in read_table_tsv(out / "interaction.tsv") if r["origin"] == ORIGIN_RUN]
    assert [(r["model"], r["protocol"]) for r in rows] == [("onehot", "rnaret"), ("seed-match", "rnaret"),
                                                            ("seed-match", "published")]
    assert [float(r["auc"]) for r in rows] == [0.75, interaction["auc"], 0.25]
    assert rows[2]["source"] == str(published)
    md = [c for c in _md_rows(out / "interaction.md") if c[1] == "seed-match"]
    assert [c[2] for c in md] == ["rnaret", "published"]
    assert "<td>published</td>" in (out / "interaction.html").read_text(encoding="utf-8")
    # one evaluation under one protocol once: the same protocol twice is refused
    twice = tmp_path / "results/protocols/rnaret/interaction/mirtar_indtest/onehot/metrics.tsv"
    write_metrics_tsv({"protocol": "rnaret", "auc": 0.5}, twice)
    with pytest.raises(InputError, match="under the rnaret protocol is given twice"):
        build_tables([other, twice])
    unknown = tmp_path / "results/interaction/mirtar_indtest/x/metrics.tsv"
    write_metrics_tsv({"protocol": "paper", "auc": 0.5}, unknown)
    with pytest.raises(InputError, match="protocol 'paper' is not one of rnaret, published") as info:
        build_tables([unknown])
    assert str(unknown) in str(info.value)
