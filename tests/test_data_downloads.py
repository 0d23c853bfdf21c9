"""Downloads of published files through pooch (checksums, cache, mirrors, offline errors) and
safe extraction of archives (path escapes, links, member-count and size caps).

No network: files are served by a local HTTP server on 127.0.0.1, and "offline" is a port on
127.0.0.1 nothing listens on.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from storage.archives import SafeUnpack, safe_extract
from storage.downloads import fetch, verify
from tasks.data import published
from tasks.data.errors import ChecksumError, DataUnavailableError, UnsafeArchiveError
from tests.conftest_data import LocalServer, closed_port_url, isolated_cache, leftovers  # noqa: F401

DATA = b"published bytes\n" * 100


@pytest.fixture
def http_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """A local HTTP server (127.0.0.1, no network) serving the fresh folder ``tmp_path/served``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "served").mkdir()
    with LocalServer(tmp_path / "served") as server:
        yield server


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _publish(monkeypatch: pytest.MonkeyPatch, *specs: published.PublishedFile) -> None:
    """Register the data set ``toy`` made of ``specs``."""
    monkeypatch.setitem(published.PUBLISHED, "toy", specs)
    monkeypatch.setitem(published.WHERE_TO_GET, "toy", "the toy files")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ downloads
def test_download_is_verified_then_served_from_the_cache(http_files: LocalServer, tmp_path, monkeypatch):
    (http_files.folder / "x.bin").write_bytes(DATA)
    spec = published.PublishedFile("x.bin", (http_files.url("x.bin"),), md5=_md5(DATA),
                                   sha256=_sha(DATA), size=len(DATA))
    _publish(monkeypatch, spec)
    folder = published.ensure_files("toy", tmp_path / "cache")
    assert (Path(folder) / "x.bin").read_bytes() == DATA
    assert _files(tmp_path / "cache") == ["x.bin"]  # no temporary file left
    (http_files.folder / "x.bin").unlink()  # a second call must not need the server
    assert published.ensure_files("toy", tmp_path / "cache") == folder
    assert http_files.requests == {"/x.bin": 1}


def test_mirrors_are_tried_in_order(http_files: LocalServer, tmp_path, monkeypatch):
    (http_files.folder / "x.bin").write_bytes(DATA)
    urls = (closed_port_url("x.bin"), http_files.url("missing/x.bin"), http_files.url("x.bin"))
    _publish(monkeypatch, published.PublishedFile("x.bin", urls, sha256=_sha(DATA)))
    published.ensure_files("toy", tmp_path / "cache")
    assert (tmp_path / "cache" / "x.bin").read_bytes() == DATA
    assert http_files.requests == {"/missing/x.bin": 1, "/x.bin": 1}


def test_md5_match_does_not_excuse_a_sha256_mismatch(http_files: LocalServer, tmp_path, monkeypatch):
    (http_files.folder / "x.bin").write_bytes(DATA)
    other = _sha(b"the reference copy")
    spec = published.PublishedFile("x.bin", (http_files.url("x.bin"),), md5=_md5(DATA), sha256=other)
    _publish(monkeypatch, spec)
    with pytest.raises(DataUnavailableError, match=r"x\.bin.*(?i:sha256|hash)") as e:
        published.ensure_files("toy", tmp_path / "cache")
    assert other in str(e.value)
    assert _files(tmp_path / "cache") == []  # the rejected download is not kept
    # The same for a cached copy: the md5 matches, the sha256 does not -> rejected and deleted.
    with pytest.raises(ChecksumError, match="sha256"):
        verify(http_files.folder / "x.bin", sha256=other, md5=_md5(DATA))
    (tmp_path / "cache" / "x.bin").write_bytes(DATA)
    _publish(monkeypatch, replace(spec, urls=()))
    with pytest.raises(DataUnavailableError, match=r"cached copy rejected.*sha256"):
        published.ensure_files("toy", tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_every_known_checksum_and_the_size_are_checked(http_files: LocalServer, tmp_path):
    (http_files.folder / "x.bin").write_bytes(DATA)
    url = (http_files.url("x.bin"),)
    with pytest.raises(DataUnavailableError, match=r"(?i)md5"):  # md5 alone decides without sha256
        fetch("x.bin", url, tmp_path / "a", md5=_md5(b"other"))
    with pytest.raises(DataUnavailableError, match="md5"):  # and is checked next to a sha256
        fetch("x.bin", url, tmp_path / "b", sha256=_sha(DATA), md5=_md5(b"other"))
    with pytest.raises(DataUnavailableError, match="size"):
        fetch("x.bin", url, tmp_path / "c", sha256=_sha(DATA), size=len(DATA) + 1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b") == _files(tmp_path / "c") == []
    assert fetch("x.bin", url, tmp_path / "d", md5=_md5(DATA)).read_bytes() == DATA
    verify(tmp_path / "d" / "x.bin", sha256=_sha(DATA).upper(), md5=_md5(DATA), size=len(DATA))


def test_offline_download_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    offline = tuple(replace(s, urls=(closed_port_url(s.name),)) for s in published.PUBLISHED["mnist"])
    monkeypatch.setitem(published.PUBLISHED, "mnist", offline)
    with pytest.raises(DataUnavailableError) as e:
        published.ensure_files("mnist", tmp_path / "cache")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "cache") in msg and "--source" in msg
    assert list((tmp_path / "cache").glob("*.part-*")) == []
    assert _files(tmp_path / "cache") == []
    assert msg.count("not tried (offline)") == 3  # the first unreachable file stops the others
    with pytest.raises(DataUnavailableError, match=r"creditcard\.csv"):
        published.ensure_files("creditcard", tmp_path / "cc")


def test_cached_files_are_verified(tmp_path, monkeypatch):
    spec = published.PublishedFile("x.bin", (closed_port_url("x.bin"),), sha256="0" * 64)
    _publish(monkeypatch, spec)
    (tmp_path / "x.bin").write_bytes(b"corrupt")
    with pytest.raises(DataUnavailableError, match="cached copy rejected"):
        published.ensure_files("toy", tmp_path)
    assert not (tmp_path / "x.bin").exists()


def test_published_archive_is_unpacked_safely(http_files: LocalServer, tmp_path, monkeypatch):
    good = _zip(http_files.folder / "good.zip", {"d/a.txt": b"a", "b.txt": b"bb"})
    spec = published.PublishedFile("good.zip", (http_files.url("good.zip"),),
                                   sha256=_sha(good.read_bytes()), extract=True)
    _publish(monkeypatch, spec)
    published.ensure_files("toy", tmp_path / "cache")
    assert (tmp_path / "cache" / "d" / "a.txt").read_bytes() == b"a"
    (tmp_path / "cache" / "b.txt").unlink()  # cached archive: only missing files are written
    published.ensure_files("toy", tmp_path / "cache")
    assert (tmp_path / "cache" / "b.txt").read_bytes() == b"bb"
    assert http_files.requests == {"/good.zip": 1}
    evil = _zip(http_files.folder / "evil.zip", {"ok.txt": b"x", "../evil.txt": b"gotcha"})
    _publish(monkeypatch, replace(spec, name="evil.zip", urls=(http_files.url("evil.zip"),),
                                  sha256=_sha(evil.read_bytes())))
    with pytest.raises(UnsafeArchiveError, match=r"evil\.zip.*'\.\./evil\.txt'.*outside"):
        published.ensure_files("toy", tmp_path / "cache2")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache2" / "ok.txt").exists()


# ------------------------------------------------------------------------------- archives
def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _refused(archive: Path, dest: Path, member: str, match: str, **caps: int) -> UnsafeArchiveError:
    """Extraction refused with an error naming ``archive`` and ``member``; nothing written."""
    with pytest.raises(UnsafeArchiveError, match=match) as e:
        safe_extract(archive, dest, **caps)
    assert e.value.file == str(archive) and e.value.member == member
    assert str(archive) in str(e.value) and repr(member) in str(e.value)
    assert _files(dest) == [] and leftovers(archive.parent) == []
    return e.value


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path.txt", "a/../../escape.txt"])
def test_safe_extract_refuses_zip_escapes(tmp_path, name):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "bad")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written
    _refused(z, tmp_path / "out", name, "outside")


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/path.txt", "d/../../escape.txt", "C:/x.txt"])
def test_safe_extract_refuses_tar_escapes(tmp_path, name):
    t = _tar(tmp_path / "a.tar.gz", [tarfile.TarInfo("ok.txt"), tarfile.TarInfo(name)],
             {"ok.txt": b"fine", name: b"bad"})
    _refused(t, tmp_path / "out", name, "outside")


def test_safe_extract_tar(tmp_path):
    t = tmp_path / "a.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("d/ok.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert [p.endswith("ok.txt") for p in safe_extract(t, tmp_path / "out")] == [True]
    t2 = tmp_path / "b.tar"
    with tarfile.open(t2, "w") as tf:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(t2, tmp_path / "out2")


@pytest.mark.parametrize(
    ("member", "target", "kind"),
    [("etc", "/etc", tarfile.SYMTYPE), ("d/up", "../../secret", tarfile.SYMTYPE),
     ("hard", "../outside.txt", tarfile.LNKTYPE)],
)
def test_safe_extract_refuses_links_pointing_out(tmp_path, member, target, kind):
    t = _tar(tmp_path / "links.tar", [tarfile.TarInfo("ok.txt"), _link(member, target, kind)],
             {"ok.txt": b"fine"})
    _refused(t, tmp_path / "out", member, rf"link to '{target}', which points outside")


def test_safe_extract_refuses_zip_symlinks_and_inner_links(tmp_path):
    z = tmp_path / "sym.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.txt", "fine")
        info = zipfile.ZipInfo("up")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16  # a Unix symlink as zip stores it
        zf.writestr(info, "../../etc/passwd")
    _refused(z, tmp_path / "out", "up", r"symbolic link to '\.\./\.\./etc/passwd', which points outside")
    inner = _tar(tmp_path / "inner.tar", [tarfile.TarInfo("a.txt"), _link("b.txt", "a.txt")],
                 {"a.txt": b"a"})
    _refused(inner, tmp_path / "out2", "b.txt", "links are not extracted")


def test_safe_extract_caps_the_member_count(tmp_path):
    z = _zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(5)})
    _refused(z, tmp_path / "out", "f3.txt", "past the limit of 3 members", max_members=3)
    t = _tar(tmp_path / "many.tar.gz", [tarfile.TarInfo(f"f{i}.txt") for i in range(5)],
             {f"f{i}.txt": b"x" for i in range(5)})
    _refused(t, tmp_path / "out", "f3.txt", "past the limit of 3 members", max_members=3)
    assert len(safe_extract(z, tmp_path / "out", max_members=5)) == 5


def test_safe_extract_caps_the_uncompressed_size(tmp_path):
    # A "zip bomb": 8 MB of zeros deflate to a few kB.
    bomb = _zip(tmp_path / "bomb.zip", {"small.txt": b"ok", "zeros.bin": bytes(8 << 20)},
                zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 100_000
    _refused(bomb, tmp_path / "out", "zeros.bin", "past the limit of 1048576 bytes", max_bytes=1 << 20)
    t = _tar(tmp_path / "big.tar.gz", [tarfile.TarInfo("a.bin"), tarfile.TarInfo("b.bin")],
             {"a.bin": bytes(600), "b.bin": bytes(600)})
    _refused(t, tmp_path / "out", "b.bin", "past the limit of 1000 bytes", max_bytes=1000)
    # Only the selected members count against the cap.
    assert safe_extract(t, tmp_path / "out", select=lambda n: n == "a.bin", max_bytes=1000)


def test_safe_unpack_is_a_pooch_processor(tmp_path):
    z = _zip(tmp_path / "a.zip", {"x/y.txt": b"y"})
    unpack = SafeUnpack(tmp_path / "out", flatten=True)
    assert unpack(str(z), "download", None) == [str((tmp_path / "out" / "y.txt").resolve())]
    (tmp_path / "out" / "y.txt").write_bytes(b"kept")
    unpack(str(z), "fetch", None)  # cached: existing files are left alone
    assert (tmp_path / "out" / "y.txt").read_bytes() == b"kept"
    unpack(str(z), "update", None)  # a new download: written again
    assert (tmp_path / "out" / "y.txt").read_bytes() == b"y"
