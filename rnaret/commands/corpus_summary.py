"""`rnaret corpus-summary`: one table of record and nucleotide counts through the data stages."""
from __future__ import annotations

import json
from pathlib import Path

HELP = ("write a TSV of record/nucleotide counts through normalize, dedupe, leakage (identical, "
        "similar), clustering, filter and shard")
# records_removed: records dropped by the stage (the filter's windows add records besides)
COLUMNS = ("stage", "records_in", "records_out", "records_removed", "nucleotides_in",
           "nucleotides_out", "detail")


def add_arguments(parser) -> None:
    parser.add_argument("--download", default=None, help="record JSON of `rnaret download --info` (source, md5)")
    parser.add_argument("--release", default="", help="release label of the corpus, shown in the download row")
    parser.add_argument("--normalize", required=True, help="counts JSON of `rnaret normalize`")
    parser.add_argument("--dup-num", default=None, help="seqkit rmdup --dup-num-file output (none: the "
                                                        "corpus was not deduplicated, as published)")
    parser.add_argument("--leakage", default=None, help="counts JSON of `rnaret leakage` (none: no leakage "
                                                        "removal, as published)")
    parser.add_argument("--clusters", help="MMseqs2 cluster table (representative, member), when "
                                           "the corpus was clustered")
    parser.add_argument("--filter", required=True, help="counts JSON of `rnaret filter`")
    parser.add_argument("--shards", nargs="*", default=[], help="shard folders (with manifest.json)")
    parser.add_argument("-o", "--output", required=True, help="summary TSV")


def duplicates_removed(dup_num_path) -> int:
    """Records removed by seqkit rmdup: sum of (count - 1) over its '<count>\\t<ids>' lines."""
    removed = 0
    for line in Path(dup_num_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            removed += int(line.split("\t", 1)[0]) - 1
    return removed


def cluster_counts(cluster_table) -> tuple[int, int]:
    """(records, clusters) of an MMseqs2 '<representative>\\t<member>' table."""
    records, representatives = 0, set()
    for line in Path(cluster_table).read_text(encoding="utf-8").splitlines():
        if line.strip():
            records += 1
            representatives.add(line.split("\t", 1)[0])
    return records, len(representatives)


def leakage_rows(leakage: dict) -> list[dict]:
    """The identity pass and the similarity pass as two rows; the similarity row's detail gives,
    per split, the records each pass removed for it."""
    identical_out = leakage["records_in"] - leakage["records_removed_identical"]
    identical_nt_out = leakage["nucleotides_in"] - leakage["nucleotides_removed_identical"]
    per_split = "; ".join(f"{label}: {c['identical']} identical, {c['similar']} similar"
                          for label, c in leakage["per_split"].items())
    t = leakage["thresholds"]
    return [dict(stage="leakage identical", records_in=leakage["records_in"], records_out=identical_out,
                 nucleotides_in=leakage["nucleotides_in"], nucleotides_out=identical_nt_out,
                 detail=f"{len(leakage['splits_checked'])} downstream splits checked (case-insensitive, U = T)"),
            dict(stage="leakage similar", records_in=identical_out, records_out=leakage["records_out"],
                 nucleotides_in=identical_nt_out, nucleotides_out=leakage["nucleotides_out"],
                 detail=f"MMseqs2 {leakage['mmseqs']['version']}, identity >= {t['min_identity']:g}, "
                        f"test coverage >= {t['min_test_coverage']:g}, E <= {t['max_evalue']:g}; "
                        f"per split: {per_split}")]


def summary_rows(normalize: dict, dup_removed: int | None, leakage: dict | None, filt: dict,
                 manifests: list[dict], clusters: tuple[int, int] | None = None):
    """Rows (dicts over COLUMNS) of the stage table, in pipeline order; ``clusters``: (records,
    clusters) of the optional clustering stage. ``dup_removed`` and ``leakage`` None: the corpus
    went from normalize to the filter (the published corpus: nothing removed), no such rows."""
    rows = [dict(stage="normalize", records_in=normalize["records_in"], records_out=normalize["records_out"],
                 nucleotides_in=normalize["nucleotides_in"], nucleotides_out=normalize["nucleotides_out"],
                 detail=f"records written in U: {normalize['records_with_U']}; with non-ACGTU letters: "
                        f"{normalize['records_with_non_ACGTU']}; duplicate ids: {normalize['duplicate_ids']}")]
    if (dup_removed is None) != (leakage is None):
        raise ValueError("the dedupe and leakage counts come together (or neither, for the published corpus)")
    if leakage is not None:
        rows += [dict(stage="dedupe", records_in=normalize["records_out"],
                      records_out=normalize["records_out"] - dup_removed,
                      nucleotides_in=normalize["nucleotides_out"], nucleotides_out=leakage["nucleotides_in"],
                      detail="seqkit rmdup -s -i -P after U->T"),
                 *leakage_rows(leakage)]
    if clusters is not None:
        rows.append(dict(stage="cluster", records_in=clusters[0], records_out=clusters[1],
                         nucleotides_in=leakage["nucleotides_out"], nucleotides_out=filt["nucleotides_in"],
                         detail="MMseqs2 linclust representatives (dedupe.cluster_identity)"))
    # windows add records, so the filter's removals are counted, not inferred
    rows.append(dict(stage="filter", records_in=filt["records_in"], records_out=filt["records_out"],
                     records_removed=filt["too_short"] + filt["long_dropped"],
                     nucleotides_in=filt["nucleotides_in"], nucleotides_out=filt["nucleotides_out"],
                     detail=f"too short: {filt['too_short']}; long: {filt['long']} "
                            f"({filt['policy']['long']}: " + (
                                f"{filt.get('long_cut', 0)} cut to {filt['policy']['max_length']} nt, "
                                f"{filt.get('nucleotides_cut', 0)} nt cut off)" if filt['policy']['long'] == "cut"
                                else f"{filt['windows_written']} windows)")))
    for m in manifests:
        splits = m["splits"]
        # valid_from_train: the validation records are train records too, counted once
        written = ["train"] if m["shards"].get("valid_from_train") else list(splits)
        rows.append(dict(stage=f"shard k{m['k']}", records_in=filt["records_out"],
                         records_out=sum(splits[s]["records"] for s in written),
                         nucleotides_in=filt["nucleotides_out"],
                         nucleotides_out=sum(splits[s]["nucleotides"] for s in written),
                         detail="; ".join(f"{name}: {s['records']} records, {s['tokens']} tokens, "
                                          f"{len(s['files'])} shards, {s['unk_tokens']} UNK"
                                          for name, s in splits.items())
                         + ("; valid records are also in train (nothing held out)" if len(written) == 1 else "")))
    for row in rows:
        row.setdefault("records_removed", row["records_in"] - row["records_out"])
    return rows


def download_row(download: dict, release: str, normalize: dict) -> dict:
    """The first row: the corpus as downloaded (what normalize read), its release label and md5.
    The label lives here only, so that changing it reruns this summary and nothing upstream."""
    detail = "; ".join(part for part in (
        f"release: {release}" if release else "",
        f"md5 {download['md5']}" + (" (checked)" if download.get("md5_checked") else "") if download.get("md5") else "",
        f"source {download['source']}" if download.get("source") else "") if part)
    return dict(stage="download", records_in=normalize["records_in"], records_out=normalize["records_in"],
                records_removed=0, nucleotides_in=normalize["nucleotides_in"],
                nucleotides_out=normalize["nucleotides_in"], detail=detail)


def run(args) -> int:
    from rnaret.io.atomic import atomic_open
    from rnaret.io.errors import InputError

    def load(path):
        return json.loads(Path(path).read_text(encoding="utf-8"))

    manifests = [load(Path(p) / "manifest.json") for p in args.shards]
    normalize = load(args.normalize)
    if (args.dup_num is None) != (args.leakage is None):
        raise InputError(args.dup_num or args.leakage, "--dup-num and --leakage come together (neither: the "
                                                       "published corpus, nothing removed)")
    rows = summary_rows(normalize, None if args.dup_num is None else duplicates_removed(args.dup_num),
                        None if args.leakage is None else load(args.leakage), load(args.filter), manifests,
                        cluster_counts(args.clusters) if args.clusters else None)
    if args.download or args.release:
        rows.insert(0, download_row(load(args.download) if args.download else {}, args.release, normalize))
    with atomic_open(args.output, "w", encoding="utf-8") as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        for row in rows:
            handle.write("\t".join(str(row[c]) for c in COLUMNS) + "\n")
    return 0
