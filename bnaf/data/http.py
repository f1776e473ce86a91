r"""HTTP download with resume (Range requests) and retries, standard library only."""

from __future__ import annotations

import http.client
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from bnaf.data.verify import CHUNK

__all__ = ["http_to", "download"]


def http_to(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server allows."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "bnaf-reproduction/1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # our partial file is already whole (or bad): restart
            part.unlink()
            return http_to(url, part, timeout)
        raise
    with resp, open(part, "ab" if start and resp.status == 206 else "wb") as out:
        shutil.copyfileobj(resp, out, CHUNK)
        # read(amt) returns b"" at a premature end instead of raising: compare with the header
        expected, got = (
            resp.headers.get("Content-Length"),
            out.tell() - (start if resp.status == 206 else 0),
        )
        if expected is not None and got < int(expected):
            raise http.client.IncompleteRead(b"", int(expected) - got)


def download(url: str, dest: Path, retries: int, timeout: float, log: list[str]) -> bool:
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 2):
        try:
            http_to(url, part, timeout)
            return True
        except urllib.error.HTTPError as exc:  # 404 and friends: retrying will not help
            log.append(f"{url}: HTTP {exc.code} {exc.reason}")
            return False
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
            if attempt <= retries:
                time.sleep(min(2.0 ** (attempt - 1), 30.0) * 0.5)
    log.append(f"{url}: {error} ({attempt} attempt{'s' if attempt > 1 else ''})")
    return False
