"""Stand-ins for the published archives, ``datasets.tar.gz`` and ``model.tar.gz`` (Zenodo record
10.5281/zenodo.18313475), in the published repository's layout, made from the bundled data.

The layout is the one the published scripts read (DrBlackZJU/RNAret README and ssp.py/rri.py/
lnc.py): ``data/RNAStrAlign`` (``.bpseq`` files nested by family), ``data/archiveII`` (``.ct``),
``data/bpRNA/{TR0,VL0,TS0}`` (``.bpseq``), ``data/lncRNA_{H,M}/{train,test}.fa`` (GENCODE FASTA
with ``CDS:a-b`` headers), ``data/data_DeepMirTar_*.txt`` (headerless 5 columns: miRNA id,
miRNA 3'->5', target id, target site, label); ``model/pretrain/pretrain_{1,3,5}mer.pth``,
``model/rri/MirTar_5mer.pth``, ``model/ssp/RNAStrAlign_1mer.pth``, ``model/lnc/lnc_{H,M}_5mer.pth``.
The contents are the bundled samples (resources/), re-laid-out; the weights are random (small
encoders with the published key names, seeded), for plumbing tests only.
"""
from __future__ import annotations

import csv
import gzip
import io
import tarfile
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "resources"

# the files of model.tar.gz and the (k, task) each holds: task None = pretrained encoder only
MODEL_FILES = {
    "model/pretrain/pretrain_1mer.pth": (1, None),
    "model/pretrain/pretrain_3mer.pth": (3, None),
    "model/pretrain/pretrain_5mer.pth": (5, None),
    "model/rri/MirTar_5mer.pth": (5, "interaction"),
    "model/ssp/RNAStrAlign_1mer.pth": (1, "structure"),
    "model/lnc/lnc_H_5mer.pth": (5, "coding"),
    "model/lnc/lnc_M_5mer.pth": (5, "coding"),
}


def _fasta_records(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt") as fh:
        text = fh.read()
    records = []
    for block in text.split(">")[1:]:
        header, _, body = block.partition("\n")
        records.append((header.strip(), body.replace("\n", "")))
    return records


def _write_fasta(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f">{h}\n{s}\n" for h, s in records))


def _mirna_rows(path: Path, splits=None) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [[r["mirna_id"], r["mirna_seq_3to5"], r["target_id"], r["target_seq"], r["label"]]
            for r in rows if splits is None or r["split"] in splits]


def make_datasets_tree(root: Path, rows_per_file: int = 200) -> Path:
    """Write ``root/data/...`` in the published layout (module docstring); returns ``root``.

    rows_per_file: at most this many records per FASTA/miRNA file (bpseq files: all 20)."""
    data = root / "data"
    bpseq = sorted((RESOURCES / "structure" / "bpseq" / "bprna_test").glob("*.bpseq"))
    for i, src in enumerate(bpseq):
        split = "TR0" if i < 12 else ("VL0" if i < 16 else "TS0")
        target = data / "bpRNA" / split / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        # RNAStrAlign is nested by family (and sub-family): the published ssp.py walks it recursively
        family = data / "RNAStrAlign" / ("5S_rRNA" if i % 2 else "tRNA") / f"subfamily_{i % 3}"
        family.mkdir(parents=True, exist_ok=True)
        (family / src.name).write_bytes(src.read_bytes())
    from rnaret.io.structure import format_ct, read_bpseq

    archive_ii = data / "archiveII"
    archive_ii.mkdir(parents=True, exist_ok=True)
    for src in bpseq[:6]:
        (archive_ii / f"{src.stem}.ct").write_text(format_ct(read_bpseq(src)))
    for species in ("H", "M"):
        for split in ("train", "test"):
            records = _fasta_records(RESOURCES / "mrna_lncrna" / f"mouse_{split}.fa.gz")
            # lncRNA_H is a stand-in made from the mouse sample (the bundled data hold no human set)
            start = 0 if species == "M" else rows_per_file
            _write_fasta(data / f"lncRNA_{species}" / f"{split}.fa", records[start:start + rows_per_file])
    main = RESOURCES / "mirna_target" / "mirtar_deepmirtar_miraw.tsv"
    files = {
        "data_DeepMirTar_miRAW_noRepeats_3folds_train.txt": _mirna_rows(main, {"train", "valid"}),
        "data_DeepMirTar_miRAW_noRepeats_3folds_test.txt": _mirna_rows(main, {"test"}),
        "data_DeepMirTar_IndTest_noRepeats_3folds.txt":
            _mirna_rows(RESOURCES / "mirna_target" / "mirtar_deepmirtar_indtest.tsv"),
    }
    for name, rows in files.items():
        # keep both labels: the rows alternate between the two halves of the file
        half = max(1, rows_per_file // 2)
        chosen = rows[:half] + rows[-half:]
        (data / name).write_text("".join("\t".join(r) + "\n" for r in chosen))
    return root


def make_model_tree(root: Path, dim: int = 16, layers: int = 1, seed: int = 0) -> Path:
    """Write ``root/model/...`` (module docstring): random small encoders saved as published
    ``.pth`` state dicts (bare keys for pretraining files, ``ret.*`` + ``classifier.*`` for the
    fine-tuned ones, the head's published key names). Returns ``root``."""
    import torch

    from rnaret.model import EncoderConfig, build_encoder

    torch.manual_seed(seed)
    for name, (k, task) in MODEL_FILES.items():
        config = EncoderConfig(vocab_size=4 ** k + 6, retnet_embed_dim=dim, retnet_value_embed_dim=dim,
                               retnet_ffn_embed_dim=dim, retnet_layers=layers, retnet_retention_heads=4)
        state = {key: value.clone() for key, value in build_encoder(config).state_dict().items()}
        if task is not None:
            state = {**{f"ret.{key}": v for key, v in state.items()},
                     **{f"classifier.{key}": v for key, v in _published_head_state(task, dim).items()}}
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, target)
    return root


def _published_head_state(task: str, dim: int) -> dict:
    """A random head of ``task`` for width ``dim`` under the published ``classifier.*`` names
    (prefix stripped), built from our head and its published-name table."""
    if task == "interaction":
        from rnaret.heads.interaction import PUBLISHED_RENAME, InteractionHead as Head
    elif task == "coding":
        from rnaret.heads.coding import PUBLISHED_RENAME, CodingHead as Head
    else:
        from rnaret.heads.structure import StructureHead, published_rename

        head = StructureHead(dim, channels=8, blocks=2)
        ours = head.state_dict()
        return {published: ours[name].clone() for published, name in published_rename(2).items()}
    ours = Head(dim).state_dict()
    return {published: ours[name].clone() for published, name in PUBLISHED_RENAME.items()}


def pack(tree: Path, archive: Path, top: str) -> Path:
    """``tree/top`` as a gzip tar ``archive`` with members ``top/...`` (sorted, fixed mtimes and
    owners, so the same tree gives the same bytes); returns ``archive``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [tree / top, *sorted((tree / top).rglob("*"))]:
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(tree)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    with open(archive, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return archive
