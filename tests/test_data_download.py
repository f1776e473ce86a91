"""Download machinery against a real HTTP server on 127.0.0.1 (no network): verification,
resume, corrupt and truncated archives, missing members, mirrors, unreachable sources, status."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from uci_fixture import write_fixture_archive

from bnaf.cli import main
from bnaf.core.errors import BnafError
from bnaf.data import recheck
from bnaf.data.fetch import ChecksumError, DatasetSpec, DataUnavailable, RemoteFile, fetch
from bnaf.data.registry import get, names
from bnaf.data.uci import MAF_ARCHIVE, MAF_MD5

ROWS = {"power": 300, "gas": 200, "hepmass": 200, "miniboone": 120, "bsds300": 60}


class _Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support; ``/flaky/...`` paths stop
    halfway through their first response, as a dropped connection would."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                served.requests.append((self.path, self.headers.get("Range")))
                body = served.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                chunk = body[start:]
                first = sum(1 for p, _ in served.requests if p == self.path) == 1
                if self.path.startswith("/flaky/") and first:
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("fx") / "data.tar.gz"
    md5 = write_fixture_archive(path, rows=ROWS)
    return path.read_bytes(), md5


@pytest.fixture
def server(archive: tuple[bytes, str]):
    data = archive[0]
    truncated = data[: len(data) // 2]
    srv = _Server(
        {
            "/data.tar.gz": data,
            "/flaky/data.tar.gz": data,
            "/truncated.tar.gz": truncated,
            "/other.tar.gz": data[:-1] + bytes([data[-1] ^ 1]),
        }
    )
    yield srv
    srv.close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.tar.gz"


def _spec(urls: list[str], checksum: str, members: tuple[str, ...] = ("power/data.npy",)):
    f = RemoteFile(MAF_ARCHIVE, tuple(urls), checksum, members=members)
    return DatasetSpec("power", (f,), get("power").prepare, "uci", "test")


def _finished(raw: Path) -> list[str]:
    """Files that look finished: anything but *.part, *.corrupt, *.lock."""
    bad = (".part", ".corrupt", ".lock")
    return sorted(
        str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file() and not p.name.endswith(bad)
    )


def test_url_download_verifies_extracts_and_is_never_repeated(server, archive, tmp_path):
    spec = _spec([server.url + "/data.tar.gz"], f"md5:{archive[1]}")
    got = fetch(spec, tmp_path, retries=0, timeout=5)
    assert got.sources[MAF_ARCHIVE] == f"url:{server.url}/data.tar.gz"
    assert (tmp_path / MAF_ARCHIVE).read_bytes() == archive[0]
    assert got.paths["power/data.npy"] == tmp_path / "power" / "data.npy"
    with tarfile.open(fileobj=io.BytesIO(archive[0])) as tar:
        member = tar.extractfile("data/power/data.npy").read()
    assert got.paths["power/data.npy"].read_bytes() == member
    marker = json.loads((tmp_path / (MAF_ARCHIVE + ".verified")).read_text())
    assert marker["checksum"] == f"md5:{archive[1]}"
    n = len(server.requests)
    again = fetch(spec, tmp_path, retries=0, timeout=5)
    assert again.sources[MAF_ARCHIVE] == "cache" and len(server.requests) == n


def test_dropped_connection_is_retried_and_resumed(server, archive, tmp_path):
    spec = _spec([server.url + "/flaky/data.tar.gz"], f"md5:{archive[1]}")
    fetch(spec, tmp_path, retries=2, timeout=5)
    assert (tmp_path / MAF_ARCHIVE).read_bytes() == archive[0]
    ranges = [r for p, r in server.requests if p == "/flaky/data.tar.gz"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(archive[0]) // 2}-"


def test_checksum_mismatch_moves_the_file_aside(server, archive, tmp_path):
    spec = _spec([server.url + "/other.tar.gz"], f"md5:{archive[1]}")
    with pytest.raises(ChecksumError, match="moved aside"):
        fetch(spec, tmp_path, retries=0, timeout=5)
    assert (tmp_path / (MAF_ARCHIVE + ".corrupt")).is_file()
    assert _finished(tmp_path) == []


def test_real_runs_verify_the_official_checksum(archive, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.tar.gz").write_bytes(archive[0])  # not the real archive
    with pytest.raises(ChecksumError, match=MAF_MD5):
        fetch(get("power"), tmp_path / "raw", mirror, retries=0, timeout=1)
    assert _finished(tmp_path / "raw") == []
    assert (mirror / "data.tar.gz").read_bytes() == archive[0]  # the mirror is left alone


def test_truncated_archive_is_an_error_even_with_its_own_checksum(server, archive, tmp_path):
    cut = archive[0][: len(archive[0]) // 2]
    spec = _spec([server.url + "/truncated.tar.gz"], "md5:" + hashlib.md5(cut).hexdigest())
    with pytest.raises(ChecksumError, match="truncated"):
        fetch(spec, tmp_path, retries=0, timeout=5)
    assert (tmp_path / (MAF_ARCHIVE + ".corrupt")).read_bytes() == cut
    assert _finished(tmp_path) == []


def test_missing_member(server, archive, tmp_path):
    spec = _spec([server.url + "/data.tar.gz"], f"md5:{archive[1]}", ("power/nothing.npy",))
    with pytest.raises(BnafError, match="no member power/nothing.npy"):
        fetch(spec, tmp_path, retries=0, timeout=5)
    assert not (tmp_path / "power").exists()


def test_unknown_dataset_lists_the_known_ones(capsys):
    with pytest.raises(BnafError, match="known datasets: .*bsds300.*power"):
        get("powr")
    assert main(["data", "download", "powr", "--raw-dir", "x"]) == 2
    assert "unknown dataset 'powr'" in capsys.readouterr().err
    assert {"power", "gas", "hepmass", "miniboone", "bsds300"} <= set(names("uci"))


def test_unreachable_without_mirror_says_what_to_put_where(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BNAF_MIRROR", raising=False)
    url = _closed_port_url()
    spec = _spec([url], MAF_MD5)
    with pytest.raises(DataUnavailable) as err:
        fetch(spec, tmp_path / "raw", tmp_path / "nomirror", retries=1, timeout=2)
    msg = str(err.value)
    for needle in ("'power'", url, "maf/data.tar.gz", str(tmp_path / "raw" / MAF_ARCHIVE)):
        assert needle in msg
    assert "\n" not in msg and _finished(tmp_path) == []


def test_status_mode_and_mirror(archive, tmp_path, monkeypatch):
    """CLI: no source -> status 'not available' and exit 0; the same with a mirror -> available."""
    monkeypatch.delenv("BNAF_MIRROR", raising=False)
    params = tmp_path / "data.yaml"
    params.write_text(
        "data:\n  datasets: [power]\n  raw_dir: raw\n  mirror: null\n  retries: 0\n"
        f"  timeout_s: 2\n  checksums: {{maf/data.tar.gz: 'md5:{archive[1]}'}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bnaf.data.uci.MAF_URLS", (_closed_port_url(),))
    import bnaf.data.registry as registry

    spec = registry.get("power")
    monkeypatch.setitem(
        registry.REGISTRY,
        "power",
        DatasetSpec(
            "power",
            (RemoteFile(MAF_ARCHIVE, (_closed_port_url(),), MAF_MD5, ("power/data.npy",)),),
            spec.prepare,
            "uci",
            spec.source,
        ),
    )
    status = tmp_path / "power.status.json"
    assert (
        main(["data", "download", "power", "--params", str(params), "--status", str(status)]) == 0
    )
    info = json.loads(status.read_text())
    assert info["available"] is False and "no copy of maf/data.tar.gz" in info["reason"]
    assert "put it at raw/maf/data.tar.gz" in info["how_to_supply"]
    assert (
        main(
            [
                "data",
                "prepare",
                "power",
                "--raw-dir",
                "raw",
                "--out",
                "p.h5",
                "--status",
                str(status),
            ]
        )
        == 2
    )
    assert not Path("p.h5").exists()

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.tar.gz").write_bytes(archive[0])
    monkeypatch.setenv("BNAF_MIRROR", str(mirror))
    assert (
        main(["data", "download", "power", "--params", str(params), "--status", str(status)]) == 0
    )
    info = json.loads(status.read_text())
    assert info["available"] is True
    assert info["obtained_from"][MAF_ARCHIVE] == f"mirror:{mirror / 'data.tar.gz'}"
    assert info["checksum_source"][MAF_ARCHIVE] == "override"
    assert Path("raw/power/data.npy").is_file()


def test_extracted_mirror_with_member_checksums(archive, tmp_path):
    mirror = tmp_path / "mirror"
    with tarfile.open(fileobj=io.BytesIO(archive[0])) as tar:
        tar.extractall(mirror, filter="data")  # mirror/data/power/data.npy, ...
    member = mirror / "data" / "power" / "data.npy"
    good = "sha256:" + hashlib.sha256(member.read_bytes()).hexdigest()
    spec = _spec([_closed_port_url()], MAF_MD5)
    got = fetch(spec, tmp_path / "raw", mirror, {"power/data.npy": good}, retries=0, timeout=1)
    assert got.paths["power/data.npy"].read_bytes() == member.read_bytes()
    assert got.checksum_source[MAF_ARCHIVE] == "override"
    bad = "sha256:" + "0" * 64
    with pytest.raises(ChecksumError, match="not used"):
        fetch(spec, tmp_path / "raw2", mirror, {"power/data.npy": bad}, retries=0, timeout=1)
    assert _finished(tmp_path / "raw2") == []


def test_inventory_changes_only_when_a_file_appears_where_a_status_looked(
    archive, tmp_path, monkeypatch
):
    """DVC's data trigger (``python -m bnaf data inventory``): unchanged by a download that finds
    nothing, changed once the archive is in the mirror, unchanged by the download that uses it
    (given the inputs Snakemake passes, ``--watched``)."""
    monkeypatch.delenv("BNAF_MIRROR", raising=False)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    params = tmp_path / "data.yaml"
    params.write_text(
        f"data:\n  datasets: [power]\n  raw_dir: {tmp_path / 'raw'}\n  mirror: {mirror}\n"
        f"  retries: 0\n  timeout_s: 2\n  checksums: {{maf/data.tar.gz: 'md5:{archive[1]}'}}\n"
        f"  urls: {{maf/data.tar.gz: ['{_closed_port_url()}']}}\n"
    )
    status = str(tmp_path / "{name}.status.json")

    def inventory() -> dict:
        out = tmp_path / "inventory.json"
        assert (
            main(
                ["data", "inventory", "--params", str(params), "--out", str(out)]
                + ["--status", status]
            )
            == 0
        )
        return json.loads(out.read_text())["datasets"]

    def download() -> dict:
        path = status.format(name="power")
        watched = recheck.watch(path)
        args = ["data", "download", "power", "--params", str(params), "--status", path]
        assert main([*args, "--watched", *watched]) == 0
        return json.loads(Path(path).read_text())

    assert inventory() == {"power": []}
    assert download()["available"] is False
    assert inventory() == {"power": []}
    (mirror / "data.tar.gz").write_bytes(archive[0])
    assert inventory() == {"power": [str(mirror / "data.tar.gz")]}
    assert download()["available"] is True
    assert inventory() == {"power": [str(mirror / "data.tar.gz")]}
