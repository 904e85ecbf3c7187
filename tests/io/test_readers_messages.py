"""The bad-input table of docs/inputs.md is what users see: each kind of input the project
refuses is run here through the command a user would type, and its message must stand in that
page as printed.

``python tests/io/test_readers_messages.py`` (with the repository on PYTHONPATH) prints the table's
rows; paste them into docs/inputs.md's bad-input table when a message changes.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
EMBED = ["--checkpoint", "ckpt", "--output", "emb.safetensors", "--no-progress"]
VIENNA = ["--output-dir", "vienna", "--quiet"]
UNPACK = ["unpack", "a.tar.gz", "--output-dir", "unpacked/a"]
PAIRS = "mirna_id\tmirna_seq_3to5\ttarget_id\ttarget_seq\tlabel\n"
ROW = "m1\tCCAUUAGGGACCGUUACACUA\tNM_1\tUCUGGUCCCUUGCAGCUAG\t1\n"
CT3 = "3 r1\n1 G 0 2 0 1\n2 G 1 3 0 2\n3 C 2 0 0 3\n"
TRANSCRIPT = "ACGUACGUACGUACGUACGUACGUACGUAC\n"


def finetune(task: str, split: str) -> list[str]:
    return ["finetune", "--task", task, "--init", "onehot", "--split", f"train={split}", "--split",
            f"valid={split}", "--out", "ft_out", "--quiet"]


def evaluate(folder: str = "ft") -> list[str]:
    return ["evaluate", "--checkpoint", folder, "--split", "test=pairs.tsv", "--out", "eval", "--quiet"]


@dataclass
class Case:
    group: str
    kind: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: str | None = None       # a name in SETUPS: what else the case's folder needs


CASES = [
    # FASTA: every command reading sequences (embed, classify, fold, the data stages, the server)
    Case("FASTA", "missing file", ["embed", "absent.fa", *EMBED]),
    Case("FASTA", "a folder given as a FASTA", ["embed", "reads.fa", *EMBED], setup="folder"),
    Case("FASTA", "a file that cannot be read (no permission)", ["embed", "reads.fa", *EMBED],
         {"reads.fa": ">a\nACGU\n"}, setup="unreadable"),
    Case("FASTA", "empty file", ["embed", "reads.fa", *EMBED], {"reads.fa": ""}),
    Case("FASTA", "no header at all", ["embed", "reads.fa", *EMBED], {"reads.fa": "ACGUACGU\n"}),
    Case("FASTA", "text before the first header", ["embed", "reads.fa", *EMBED], {"reads.fa": "junk\n>a\nACGU\n"}),
    Case("FASTA", "a header with no id", ["embed", "reads.fa", *EMBED], {"reads.fa": ">a\nACGU\n>\nACGU\n"}),
    Case("FASTA", "a header with no sequence", ["embed", "reads.fa", *EMBED], {"reads.fa": ">a\n>b\nACGU\n"}),
    Case("FASTA", "a letter that is not a nucleotide", ["embed", "reads.fa", *EMBED],
         {"reads.fa": ">a\nACGU\nACGU\nACGX\n"}),
    Case("FASTA", "a duplicate id", ["embed", "reads.fa", *EMBED], {"reads.fa": ">a\nACGU\n>b\nGG\n>a\nCC\n"}),
    Case("FASTA", "bytes that are not UTF-8 (a Latin-1 header)", ["embed", "reads.fa", *EMBED],
         {"reads.fa": b">a caf\xe9\nACGU\n"}),
    Case("FASTA", "binary data", ["embed", "reads.fa", *EMBED], {"reads.fa": b">a\nAC\x00GU\n"}),
    Case("FASTA", "a truncated gzip", ["embed", "reads.fa.gz", *EMBED], setup="truncated_gzip"),
    # structure files: ViennaRNA, fine-tuning and evaluation of the structure task, the tables
    Case("structure", "an opening bracket never closed", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n(((...)).\n"}),
    Case("structure", "a closing bracket with nothing open", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n())......\n"}),
    Case("structure", "mismatched brackets `(]`", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGAAACC\n(]..[).\n"}),
    Case("structure", "structure and sequence of different lengths", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n(((...))\n"}),
    Case("structure", "a character that is not dot-bracket", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n((*...)).\n"}),
    Case("structure", "a record without its structure line", ["vienna", "--dataset", "s.dbn", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n>r2\nGGGAAACCC\n(((...)))\n"}),
    Case("structure", "an empty .bpseq", ["vienna", "--dataset", "r1.bpseq", *VIENNA], {"r1.bpseq": ""}),
    Case("structure", "a .bpseq with no numbered lines", ["vienna", "--dataset", "r1.bpseq", *VIENNA],
         {"r1.bpseq": "Filename: r1.bpseq\nOrganism: unknown\n"}),
    Case("structure", "a pairing that is not symmetric", ["vienna", "--dataset", "r1.bpseq", *VIENNA],
         {"r1.bpseq": "1 G 3\n2 A 0\n3 C 0\n"}),
    Case("structure", "positions out of order", ["vienna", "--dataset", "r1.bpseq", *VIENNA],
         {"r1.bpseq": "1 G 0\n3 A 0\n"}),
    Case("structure", "a partner outside the sequence", ["vienna", "--dataset", "r1.bpseq", *VIENNA],
         {"r1.bpseq": "1 G 12\n2 A 0\n"}),
    Case("structure", "a CT record longer than its header says", ["vienna", "--dataset", "s.ct", *VIENNA],
         {"s.ct": CT3 + "4 C 3 0 0 4\n"}),
    Case("structure", "a CT record shorter than its header says", ["vienna", "--dataset", "s.ct", *VIENNA],
         {"s.ct": CT3.replace("3 r1", "5 r1", 1) + "3 r2\n1 G 0 2 0 1\n2 G 1 3 0 2\n3 C 2 0 0 3\n"}),
    Case("structure", "a CT file cut short", ["vienna", "--dataset", "s.ct", *VIENNA], {"s.ct": CT3[:-12]}),
    Case("structure", "a CT header without a length", ["vienna", "--dataset", "s.ct", *VIENNA],
         {"s.ct": "r1 3\n1 G 0 2 0 1\n"}),
    Case("structure", "a table without the needed columns", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": "name,sequence,structure\nr1,GGGAAACCC,(((...)))\n"}),
    Case("structure", "a table with a header and no rows", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": "id,sequence,structure\n"}),
    Case("structure", "a row with more fields than the header", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": "id,sequence,structure\nr1,GGGAAACCC,(((...))),x\n"}),
    Case("structure", "a row with fewer fields than the header", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": "id,sequence,structure\nr1,GGGAAACCC\n"}),
    Case("structure", "base_pairs that are not JSON", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1, 9]"\n'}),
    Case("structure", "a base in two pairs", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": 'id,sequence,base_pairs\nr1,GGGAAACCC,"[[1, 9], [1, 8]]"\n'}),
    Case("structure", "a duplicate id", ["vienna", "--dataset", "s.csv", *VIENNA],
         {"s.csv": "id,sequence,structure\nr1,GGGAAACCC,(((...)))\nr1,GGGAAACCC,(((...)))\n"}),
    Case("structure", "a folder (and subfolders) without .bpseq/.ct files", ["vienna", "--dataset", "RNAStrAlign", *VIENNA],
         {"RNAStrAlign/5S/notes.txt": "nothing\n"}),
    Case("structure", "a name that is no structure format", ["vienna", "--dataset", "s.fold", *VIENNA],
         {"s.fold": ">r1\nGGGAAACCC\n(((...)))\n"}),
    Case("structure", "a split asked of a file without a split column", ["vienna", "--dataset", "s.dbn", "--split",
                                                                          "test", *VIENNA],
         {"s.dbn": ">r1\nGGGAAACCC\n(((...)))\n"}),
    # task tables: fine-tuning, evaluation and the leakage stage read them through one reader
    Case("tables", "a miRNA table in neither layout", finetune("interaction", "pairs.tsv"),
         {"pairs.tsv": "a\tb\tc\n1\t2\t3\n"}),
    Case("tables", "a miRNA table with a header and no rows", finetune("interaction", "pairs.tsv"),
         {"pairs.tsv": PAIRS}),
    Case("tables", "a ragged miRNA row", finetune("interaction", "pairs.tsv"),
         {"pairs.tsv": PAIRS + ROW.replace("\t1\n", "\n")}),
    Case("tables", "a label other than 0 or 1", finetune("interaction", "pairs.tsv"),
         {"pairs.tsv": PAIRS + ROW.replace("\t1\n", "\t2\n")}),
    Case("tables", "letters that are not nucleotides", finetune("interaction", "pairs.tsv"),
         {"pairs.tsv": PAIRS + ROW.replace("UCUGG", "UCUXG")}),
    Case("tables", "the published 5-column .txt with a short row", finetune("interaction", "pairs.txt"),
         {"pairs.txt": "m1\tCCAUU\tNM_1\tACGU\t1\nm2\tCCAUU\tNM_1\tACGU\n"}),
    Case("tables", "a split the table does not have", finetune("interaction", "pairs.tsv#dev"),
         {"pairs.tsv": PAIRS.replace("label", "label\tsplit") + ROW.replace("\t1\n", "\t1\ttrain\n")}),
    Case("tables", "a file of another task's format", finetune("interaction", "s.dbn"),
         {"s.dbn": ">r1\nGGGAAACCC\n(((...)))\n"}),
    Case("tables", "a CDS outside the transcript", finetune("coding", "t.fa"),
         {"t.fa": ">t1|CDS:5-90| pc\n" + TRANSCRIPT}),
    Case("tables", "a malformed CDS field", finetune("coding", "t.fa"), {"t.fa": ">t1|CDS:a-b|\n" + TRANSCRIPT}),
    Case("tables", "a transcript tagged pc without a CDS", finetune("coding", "t.fa"),
         {"t.fa": ">t1|UTR5:1-4| pc\n" + TRANSCRIPT}),
    Case("tables", "a split asked of a FASTA", finetune("coding", "t.fa#test"), {"t.fa": ">t1\n" + TRANSCRIPT}),
    # settings and dataset files given to the commands (--dataset-config, --settings)
    Case("settings", "a YAML syntax error", ["finetune", "--task", "interaction", "--init", "onehot",
                                             "--dataset-config", "data.yaml", "--dataset", "d", "--out", "x"],
         {"data.yaml": "datasets:\n  interaction: {d: {train: a.tsv\n"}),
    Case("settings", "a file that is not a mapping", ["finetune", "--task", "interaction", "--init", "onehot",
                                                      "--dataset-config", "data.yaml", "--dataset", "d", "--out", "x"],
         {"data.yaml": "- a.tsv\n- b.tsv\n"}),
    Case("settings", "a value YAML cannot build", ["finetune", "--task", "interaction", "--init", "onehot",
                                                   "--split", "train=pairs.tsv", "--settings", "s.yaml", "--out", "x"],
         {"s.yaml": "epochs: 2\nstarted: 2024-13-45\n"}),
    # checkpoints: embed, fine-tuning's --init, evaluate, classify, fold, serve
    Case("checkpoints", "a checkpoint folder without weights", ["embed", "reads.fa", *EMBED], setup="no_weights"),
    Case("checkpoints", "a config.json that is not JSON", ["embed", "reads.fa", *EMBED], setup="config_not_json"),
    Case("checkpoints", "a config.json value of the wrong type", ["embed", "reads.fa", *EMBED], setup="config_type"),
    Case("checkpoints", "a config.json key the encoder does not have", ["embed", "reads.fa", *EMBED],
         setup="config_key"),
    Case("checkpoints", "a config.json that does not fit the weights", ["embed", "reads.fa", *EMBED],
         setup="config_misfit"),
    Case("checkpoints", "a truncated weights.safetensors", ["embed", "reads.fa", *EMBED], setup="weights_cut"),
    Case("checkpoints", "a .pth holding pickled code", ["embed", "reads.fa", "--checkpoint", "model.pth",
                                                        "--output", "e.safetensors"], setup="pth_code"),
    Case("checkpoints", "a damaged .pth", ["embed", "reads.fa", "--checkpoint", "model.pth", "--output",
                                           "e.safetensors"], setup="pth_cut"),
    Case("checkpoints", "a folder that is no fine-tuned checkpoint", evaluate("ckpt"), {"pairs.tsv": PAIRS + ROW}),
    Case("checkpoints", "a damaged task.json", evaluate(), setup="task_json_cut"),
    Case("checkpoints", "a task.json naming an unknown task", evaluate(), setup="task_unknown"),
    Case("checkpoints", "a missing head.safetensors", evaluate(), setup="head_missing"),
    Case("checkpoints", "a head.safetensors that does not fit the task", evaluate(), setup="head_misfit"),
    # archives: `rnaret unpack` (rule unpack_archive) refuses before writing anything
    Case("archives", "a member with a '..' component", UNPACK, setup="archive_parent"),
    Case("archives", "a member with an absolute path", UNPACK, setup="archive_absolute"),
    Case("archives", "a symbolic link out of the archive", UNPACK, setup="archive_symlink"),
    Case("archives", "a device file in the archive", UNPACK, setup="archive_device"),
    Case("archives", "a truncated archive", UNPACK, setup="archive_truncated"),
    Case("archives", "a file that is no archive", UNPACK, {"a.tar.gz": "just text\n"}),
    Case("archives", "an archive whose md5 does not match", [*UNPACK, "--md5", "0" * 32], setup="archive_good"),
    # other stages
    Case("other", "a download whose md5 does not match", ["download", "src.fa", "-o", "out/dl.fa", "--md5",
                                                          "0" * 32], {"src.fa": ">a\nACGU\n"}),
    Case("other", "`--device cuda` without a GPU", ["embed", "reads.fa", *EMBED, "--device", "cuda"], setup="no_cuda"),
    Case("other", "a bad option value", ["vienna", "--dataset", "s.dbn", *VIENNA, "--threads", "0"],
         {"s.dbn": ">r1\nGGGAAACCC\n(((...)))\n"}),
    # the leakage stage's similarity pass
    Case("leakage", "MMseqs2 not installed", ["leakage", "c.fa", "-o", "o.fa", "--table", "t.tsv", "--datasets",
                                              '{"coding": {"m": {"test": "m.fa"}}}', "--mmseqs", "mmseqs-absent"],
         {"c.fa": ">a\nACGUACGUACGUACGGGAUUC\n", "m.fa": ">t\nACGUACGUACGUACGGGAUU\n"}),
    Case("leakage", "--datasets text that is not JSON", ["leakage", "c.fa", "-o", "o.fa", "--table", "t.tsv",
                                                         "--datasets", '{"coding": '],
         {"c.fa": ">a\nACGUACGUACGUACGGGAUUC\n"}),
]


def _tiny_checkpoint(folder: Path) -> None:
    import torch

    from rnaret.checkpoint import save_encoder
    from rnaret.model import EncoderConfig, RetNetEncoder

    torch.manual_seed(0)
    save_encoder(RetNetEncoder(EncoderConfig(vocab_size=1030, retnet_embed_dim=8, retnet_value_embed_dim=8,
                                             retnet_ffn_embed_dim=16, retnet_layers=1, retnet_retention_heads=2)),
                 folder)


def _finetuned(folder: Path) -> None:
    from rnaret.checkpoint import load_encoder
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel

    _tiny_checkpoint(folder.parent / "ft_encoder")
    task = get_task("interaction")
    save_finetuned(TaskModel(load_encoder(folder.parent / "ft_encoder"), task.build_head(8)), task, folder,
                   encoder_kind="retnet", init="ft_encoder")
    shutil.rmtree(folder.parent / "ft_encoder")


def _archive(name: str, path: Path) -> None:
    """A .tar.gz holding one good file and the member the case ``name`` refuses."""
    import tarfile

    def member(member_name: str, kind=tarfile.REGTYPE, payload: bytes = b"", link: str = "") -> tuple:
        info = tarfile.TarInfo(member_name)
        info.type, info.size, info.linkname = kind, len(payload), link
        return info, (io.BytesIO(payload) if payload else None)

    extra = {"archive_parent": [member("data/../../evil.txt", payload=b"evil")],
             "archive_absolute": [member("/tmp/evil.txt", payload=b"evil")],
             "archive_symlink": [member("data/link", tarfile.SYMTYPE, link="../../etc/passwd")],
             "archive_device": [member("data/null", tarfile.CHRTYPE)]}.get(name, [])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(*member("data/good.txt", payload=b"ACGU\n"))
        for info, payload in extra:
            tar.addfile(info, payload)
    # gzip without a time stamp: the same bytes (and md5) on every run
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    if name == "archive_truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


class _Code:
    def __reduce__(self):
        return (os.system, ("true",))


def setup_case(name: str | None, here: Path) -> None:
    """Make what a case needs beyond its files, in ``here`` (the case's working folder)."""
    import torch

    (here / "reads.fa").exists() or (here / "reads.fa").write_text(">a\nACGUACGU\n")
    if name in (None, "folder", "unreadable", "truncated_gzip"):
        if name == "folder":
            (here / "reads.fa").unlink()
            (here / "reads.fa").mkdir()
        elif name == "unreadable":
            (here / "reads.fa").chmod(0)
        elif name == "truncated_gzip":
            data = gzip.compress(b"".join(b">r%d\nACGU\n" % k for k in range(2000)))
            (here / "reads.fa.gz").write_bytes(data[: len(data) // 2])
        return
    if name.startswith(("task_", "head_")):
        _finetuned(here / "ft")
        (here / "pairs.tsv").write_text(PAIRS + ROW)
        if name == "task_json_cut":
            (here / "ft/task.json").write_text((here / "ft/task.json").read_text()[:30])
        elif name == "task_unknown":
            _edit_json(here / "ft/task.json", task="folding")
        elif name == "head_missing":
            (here / "ft/head.safetensors").unlink()
        elif name == "head_misfit":
            _edit_json(here / "ft/task.json", task="coding", settings={})
        return
    if name.startswith("archive_"):
        _archive(name, here / "a.tar.gz")
        return
    _tiny_checkpoint(here / "ckpt")
    if name == "no_weights":
        (here / "ckpt/weights.safetensors").unlink()
    elif name == "config_not_json":
        (here / "ckpt/config.json").write_text('{"vocab_size": 1030,\n "retnet_layers": 1,,\n}\n')
    elif name == "config_type":
        _edit_json(here / "ckpt/config.json", retnet_embed_dim="8")
    elif name == "config_key":
        _edit_json(here / "ckpt/config.json", depth=8)
    elif name == "config_misfit":
        _edit_json(here / "ckpt/config.json", retnet_embed_dim=1_000_000)
    elif name == "weights_cut":
        data = (here / "ckpt/weights.safetensors").read_bytes()
        (here / "ckpt/weights.safetensors").write_bytes(data[:100])
    elif name == "pth_code":
        torch.save({"embed_tokens.weight": _Code()}, here / "model.pth")
    elif name == "pth_cut":
        from safetensors.torch import load_file

        torch.save(load_file(here / "ckpt/weights.safetensors"), here / "model.pth")
        data = (here / "model.pth").read_bytes()
        (here / "model.pth").write_bytes(data[: len(data) // 2])


@contextlib.contextmanager
def _as_ordinary_user(active: bool):
    # root reads any file whatever its mode: the unreadable case reads as an ordinary user
    drop = active and os.geteuid() == 0
    if drop:
        os.seteuid(65534)
    try:
        yield
    finally:
        if drop:
            os.seteuid(0)


def run_case(case: Case, here: Path) -> str:
    """Run ``case`` in the folder ``here`` -> the error line a user sees (exit code 1 asserted)."""
    from rnaret.cli import main

    for name, content in case.files.items():
        path = here / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    setup_case(case.setup, here)
    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(here)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                _as_ordinary_user(case.setup == "unreadable"):
            if case.setup == "no_cuda":
                import torch

                assert not torch.cuda.is_available(), "the case shows a machine without CUDA"
            with _without_env("CUDA_VISIBLE_DEVICES" if case.setup == "no_cuda" else None):
                code = main(case.argv)
    finally:
        os.chdir(cwd)
    lines = [line for line in err.getvalue().splitlines() if ": error: " in line]
    assert code == 1 and lines, (case.kind, code, err.getvalue()[-2000:])
    return lines[-1]


@contextlib.contextmanager
def _without_env(name: str | None):
    """``name`` unset for the block (the no-GPU message shows CUDA_VISIBLE_DEVICES)."""
    saved = os.environ.pop(name, None) if name else None
    try:
        yield
    finally:
        if name and saved is not None:
            os.environ[name] = saved


def markdown_row(case: Case, message: str) -> str:
    """The docs/inputs.md row of a case; the machine's host name and torch version (which the no-GPU
    message names) read NODE and VERSION, so the table is the same on every machine."""
    import socket

    import torch

    message = message.replace(f"node {socket.gethostname()} ", "node NODE ")
    message = message.replace(f"torch {torch.__version__},", "torch VERSION,")
    shown = message.replace("|", "\\|")
    return f"| {case.group} | {case.kind} | `{shown}` |"


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("messages")
    os.chmod(root, 0o755)  # the unreadable case reads as an ordinary user: let it reach the file
    rows = []
    for k, case in enumerate(CASES):
        here = root / f"case{k}"
        here.mkdir()
        rows.append(markdown_row(case, run_case(case, here)))
    return rows


def test_the_table_lists_at_least_40_kinds():
    assert len({(c.group, c.kind) for c in CASES}) == len(CASES) >= 40


def test_every_message_in_the_docs_is_the_one_printed(messages):
    section = (ROOT / "docs/inputs.md").read_text()
    missing = [row for row in messages if row not in section]
    assert not missing, "docs/inputs.md rows that differ from what the commands print:\n" + "\n".join(missing)
    listed = [line for line in section.splitlines() if line.startswith("| ") and "`rnaret " in line]
    assert len(listed) == len(messages), "docs/inputs.md lists kinds that are not run here"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        for k, case in enumerate(CASES):
            folder = Path(tmp) / f"case{k}"
            folder.mkdir()
            print(markdown_row(case, run_case(case, folder)))
    sys.exit(0)
