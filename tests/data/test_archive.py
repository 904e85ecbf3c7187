"""Archives as the published repository ships them: get (local or from a loopback server), check
the md5, refuse dangerous members before writing anything, unpack atomically with a manifest,
resume an interrupted download."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from loopback import Server
from published_archives import make_datasets_tree, pack

from rnaret.data.archive import MANIFEST, read_members, unpack
from rnaret.data.download import DownloadError
from rnaret.io.errors import InputError


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    """The stand-in datasets.tar.gz and the tree it was made from."""
    tree = make_datasets_tree(tmp_path_factory.mktemp("tree"), rows_per_file=40)
    archive = pack(tree, tmp_path_factory.mktemp("archives") / "datasets.tar.gz", "data")
    return {"tree": tree, "archive": archive, "bytes": archive.read_bytes(),
            "md5": hashlib.md5(archive.read_bytes()).hexdigest()}


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under root (relative POSIX path -> bytes), the manifest left out."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != MANIFEST}


def _left(parent: Path) -> list[str]:
    """Names left in the output's parent folder (to show that a failure leaves nothing)."""
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_unpack_from_a_url_checks_md5_and_writes_the_manifest(tmp_path, published):
    out = tmp_path / "archives" / "datasets"
    with Server({"datasets.tar.gz": published["bytes"]}) as server:
        result = unpack(server.url("datasets.tar.gz"), out, md5=published["md5"], show_progress=False)
    assert result.extracted
    assert _files(out) == _files(published["tree"])
    # nested by family, as the published ssp.py expects to walk it
    nested = [p.relative_to(out / "data" / "RNAStrAlign") for p in (out / "data" / "RNAStrAlign").rglob("*.bpseq")]
    assert nested and all(len(p.parts) == 3 for p in nested)  # family/subfamily/file
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["md5"] == published["md5"] and manifest["md5_checked"] and manifest["format"] == "tar.gz"
    sizes = {m["path"]: m["size"] for m in manifest["members"] if m["kind"] == "file"}
    assert sizes == {name: len(data) for name, data in _files(out).items()}
    assert manifest["files"] == len(sizes) and manifest["bytes"] == sum(sizes.values())
    # the downloaded archive and every temporary folder are gone
    assert _left(out.parent) == ["datasets"]


@pytest.mark.parametrize("fmt", ["tgz", "tar", "zip"])
def test_local_archives_of_each_format(tmp_path, published, fmt):
    tree = published["tree"]
    path = tmp_path / f"datasets.{fmt}"
    files = sorted(p for p in (tree / "data").rglob("*") if p.is_file())
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, p.relative_to(tree).as_posix())
    else:
        with tarfile.open(path, "w:gz" if fmt == "tgz" else "w") as tar:
            tar.add(tree / "data", arcname="data")
    out = tmp_path / "out" / "datasets"
    result = unpack(str(path), out, md5=hashlib.md5(path.read_bytes()).hexdigest())
    assert result.manifest["format"] == {"tgz": "tar.gz", "tar": "tar", "zip": "zip"}[fmt]
    assert _files(out) == _files(tree)
    assert path.exists()  # a local archive is read in place, never moved or deleted


def test_checksum_file_and_file_url(tmp_path, published):
    sums = tmp_path / "md5sums.txt"
    sums.write_text(f"{'0' * 32}  model.tar.gz\n{published['md5']}  datasets.tar.gz\n")
    out = tmp_path / "out" / "datasets"
    result = unpack(published["archive"].as_uri(), out, md5=str(sums))
    assert result.manifest["md5_checked"] and result.manifest["checksum_source"] == str(sums)
    # the same source and md5 again: nothing to do
    again = unpack(published["archive"].as_uri(), out, md5=str(sums))
    assert not again.extracted and _files(out) == _files(published["tree"])


def test_wrong_checksum_leaves_nothing_that_looks_done(tmp_path, published):
    out = tmp_path / "archives" / "datasets"
    with Server({"datasets.tar.gz": published["bytes"]}) as server:
        with pytest.raises(DownloadError, match="md5 mismatch"):
            unpack(server.url("datasets.tar.gz"), out, md5="f" * 32, show_progress=False)
    assert _left(out.parent) == []
    with pytest.raises(InputError, match="md5 mismatch"):
        unpack(str(published["archive"]), out, md5="0" * 32)
    assert _left(out.parent) == []


def _tar_with(tmp_path: Path, name: str, *members) -> Path:
    """A .tar.gz holding one good file and then ``members`` (TarInfo, payload bytes or None)."""
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("data/good.txt")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"abc"))
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


BAD_TAR_MEMBERS = {
    "parent": ([(_info("../evil.txt", size=4), b"evil")], "'..' component"),
    "nested_parent": ([(_info("data/../../evil.txt", size=4), b"evil")], "'..' component"),
    "absolute": ([(_info("/tmp/evil.txt", size=4), b"evil")], "absolute path"),
    "symlink_out": ([(_info("data/link", tarfile.SYMTYPE, link="../../etc/passwd"), None)],
                    "symbolic link to '../../etc/passwd', outside"),
    "symlink_absolute": ([(_info("data/link", tarfile.SYMTYPE, link="/etc/passwd"), None)],
                         "symbolic link to the absolute path"),
    "hardlink_out": ([(_info("data/hard", tarfile.LNKTYPE, link="../outside.txt"), None)], "'..' component"),
    "hardlink_absolute": ([(_info("data/hard", tarfile.LNKTYPE, link="/etc/passwd"), None)],
                          "hard link to the absolute path"),
    "hardlink_missing": ([(_info("data/hard", tarfile.LNKTYPE, link="data/absent.txt"), None)],
                         "no earlier file"),
    "character_device": ([(_info("data/null", tarfile.CHRTYPE), None)], "device file or FIFO"),
    "block_device": ([(_info("data/disk", tarfile.BLKTYPE), None)], "device file or FIFO"),
    "fifo": ([(_info("data/pipe", tarfile.FIFOTYPE), None)], "device file or FIFO"),
    "duplicate": ([(_info("data/good.txt", size=4), b"evil")], "appears twice"),
    "under_a_file": ([(_info("data/good.txt/inner.txt", size=4), b"evil")], "lies under 'data/good.txt'"),
    "through_a_link": ([(_info("data/inside", tarfile.SYMTYPE, link="."), None),
                        (_info("data/inside/x.txt", size=4), b"evil")], "lies under 'data/inside'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TAR_MEMBERS))
def test_dangerous_tar_members_are_refused_before_anything_is_written(tmp_path, case):
    members, message = BAD_TAR_MEMBERS[case]
    archive = _tar_with(tmp_path, f"{case}.tar.gz", *members)
    out = tmp_path / "out" / "bad"
    with pytest.raises(InputError, match=message) as caught:
        unpack(str(archive), out)
    assert str(archive) in str(caught.value) and "not unpacked" in str(caught.value)
    assert _left(out.parent) == []
    assert not (tmp_path / "evil.txt").exists()


def test_dangerous_zip_members_are_refused(tmp_path):
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as zf:
        zf.writestr("data/good.txt", b"abc")
        zf.writestr("../evil.txt", b"evil")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("data/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../etc/passwd")
    for archive, message in ((escape, "'..' component"), (link, "outside the output folder")):
        out = tmp_path / "out" / archive.stem
        with pytest.raises(InputError, match=message):
            unpack(str(archive), out)
        assert _left(out.parent) == []


def test_links_that_stay_inside_are_kept(tmp_path):
    archive = _tar_with(tmp_path, "links.tar.gz",
                        (_info("data/latest", tarfile.SYMTYPE, link="good.txt"), None),
                        (_info("data/copy.txt", tarfile.LNKTYPE, link="data/good.txt"), None))
    out = tmp_path / "out" / "links"
    unpack(str(archive), out)
    assert os.readlink(out / "data" / "latest") == "good.txt"
    assert (out / "data" / "latest").read_bytes() == b"abc" == (out / "data" / "copy.txt").read_bytes()
    kinds = {m["path"]: m["kind"] for m in json.loads((out / MANIFEST).read_text())["members"]}
    assert kinds == {"data/good.txt": "file", "data/latest": "symlink", "data/copy.txt": "hardlink"}


def test_a_downloaded_archive_with_a_dangerous_member_is_deleted(tmp_path):
    archive = _tar_with(tmp_path, "evil.tar.gz", (_info("../evil.txt", size=4), b"evil"))
    out = tmp_path / "archives" / "evil"
    with Server({"evil.tar.gz": archive.read_bytes()}) as server:
        with pytest.raises(InputError, match="'..' component"):
            unpack(server.url("evil.tar.gz"), out, md5=hashlib.md5(archive.read_bytes()).hexdigest(),
                   show_progress=False)
    assert _left(out.parent) == []


def test_truncated_and_foreign_files_are_refused(tmp_path, published):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(published["bytes"][: len(published["bytes"]) // 2])
    text = tmp_path / "notes.tar.gz"
    text.write_text("this is not an archive\n")
    for path, message in ((truncated, "truncated or corrupt tar.gz archive"), (text, "not a tar or zip archive")):
        out = tmp_path / "out" / path.name
        with pytest.raises(InputError, match=message):
            unpack(str(path), out)
        assert _left(out.parent) == []
    with pytest.raises(InputError, match="archive not found"):
        unpack(str(tmp_path / "absent.tar.gz"), tmp_path / "out" / "absent")


def test_interrupted_download_resumes_on_the_next_run(tmp_path, published):
    out = tmp_path / "archives" / "datasets"
    data = published["bytes"]
    with Server({"datasets.tar.gz": data}) as server:
        cut = len(data) // 2
        server.cut_after, server.cuts = cut, 1
        with pytest.raises(DownloadError, match="partial file kept"):
            unpack(server.url("datasets.tar.gz"), out, md5=published["md5"], retries=0, show_progress=False)
        part = out.parent / ".datasets-download" / "datasets.tar.gz.part"
        assert part.stat().st_size == cut and not out.exists()
        # a killed extraction of an earlier run left its temporary folder: the next run removes it
        stale = out.parent / ".datasets.ab12cd34"
        (stale / "data").mkdir(parents=True)
        unpack(server.url("datasets.tar.gz"), out, md5=published["md5"], show_progress=False)
        assert server.payload_ranges() == [None, f"bytes={cut}-"]
    assert _files(out) == _files(published["tree"])
    assert _left(out.parent) == ["datasets"]


def test_read_members_lists_without_writing(published):
    fmt, members = read_members(published["archive"])
    assert fmt == "tar.gz"
    files = [m for m in members if m.kind == "file"]
    assert len(files) == len(_files(published["tree"]))
    assert all(not m.path.startswith(("/", "..")) for m in members)


def test_unpack_command(tmp_path, published):
    from rnaret.cli import main

    out = tmp_path / "out" / "datasets"
    assert main(["unpack", str(published["archive"]), "--output-dir", str(out), "--md5", published["md5"]]) == 0
    assert (out / "data" / "bpRNA" / "TS0").is_dir()
    bad = tmp_path / "out" / "bad"
    assert main(["unpack", str(published["archive"]), "--output-dir", str(bad), "--md5", "0" * 32]) == 1
    assert not bad.exists()
