"""Resumable, verified HTTP downloads into a run's `raw/` folder, with a provenance manifest.

Guarantees:
- A file appears under its final name only when complete (and verified, when a size or
  sha256 was given): bytes arrive in `<name>.part`, which is renamed into place at the end.
- A broken connection resumes with an HTTP Range request guarded by `If-Range` (the ETag
  or Last-Modified of the first response), so a file that changed on the server restarts
  from byte 0 instead of splicing two versions. A `.part` left by a killed run resumes the
  same way on the next run.
- 429, 5xx and connection errors are retried with capped exponential backoff and jitter.
  `max_attempts` bounds the failures in a row that made no progress (an attempt that
  received bytes resets the count, so a flaky link still finishes a large file). Every
  retry is logged at WARNING on the `pipeline.download` logger.
- A size or sha256 mismatch raises `ChecksumError` naming the URL; the bytes are deleted
  and never used. A mismatch after a resume is retried once from byte 0 first (a resume
  is the one way our own transfer can corrupt a file).
- Every file gets a line in `raw/MANIFEST.jsonl`: url, path, size, sha256 (always
  computed), etag, last_modified, fetched_at, license, source. A rerun reuses a file whose
  bytes still hash to the manifest's (or the expected) sha256 instead of fetching it again.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3

from pipeline.io import atomic_path, sha256_file

log = logging.getLogger("pipeline.download")

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MANIFEST_NAME = "MANIFEST.jsonl"


class DownloadError(IOError):
    """A file could not be fetched; the message names the URL and the last error."""


class ChecksumError(DownloadError):
    """The fetched bytes do not match the expected size or sha256; they were deleted."""


class PermanentDownloadError(DownloadError):
    """A failure a retry cannot fix (HTTP 4xx, a redirect loop, a refused address): never retried."""


class BlockedAddressError(PermanentDownloadError):
    """The URL (or a redirect's target) resolves to a loopback, private or link-local address
    and the source did not opt in with `allow_private_networks: true`."""


MAX_REDIRECTS = 10
REDIRECT_STATUS = {301, 302, 303, 307, 308}


def check_address(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local (cloud metadata),
    multicast, reserved or unspecified address, unless `allow_private` (BlockedAddressError,
    logged). An unresolvable host is left to the request to report."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        return
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            msg = (f"{url}: refused: host {host!r} resolves to {ip}, a loopback, private or link-local address; "
                   "set `allow_private_networks: true` on the source (or the recipe) to allow it")
            log.warning(msg)
            raise BlockedAddressError(msg)


def get_following_redirects(session, url: str, *, allow_private: bool, origin: str | None = None, **kw):
    """GET `url`, following at most MAX_REDIRECTS redirects by hand so that every hop's
    address is checked (check_address) and a loop ends in a PermanentDownloadError naming the URL."""
    origin = origin or url
    seen = []
    while True:
        check_address(url, allow_private)
        r = session.get(url, allow_redirects=False, **kw)
        if r.status_code not in REDIRECT_STATUS or not r.headers.get("Location"):
            return r
        r.close()
        seen.append(url)
        url = urljoin(url, r.headers["Location"])
        if url in seen:
            raise PermanentDownloadError(f"{origin}: redirect loop ({' -> '.join(seen + [url])})")
        if len(seen) > MAX_REDIRECTS:
            raise PermanentDownloadError(f"{origin}: more than {MAX_REDIRECTS} redirects (last {url})")
        if not url.startswith(("http://", "https://")):
            raise PermanentDownloadError(f"{origin}: redirected to a non-http(s) URL {url!r}")


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: its URL and, when the publisher gives them, its size and sha256."""

    url: str
    sha256: str | None = None
    size: int | None = None

    @classmethod
    def parse(cls, entry) -> "FileSpec":
        if isinstance(entry, FileSpec):
            return entry
        if isinstance(entry, str):
            return cls(entry)
        if isinstance(entry, dict):
            if "url" not in entry:
                raise ValueError(f"file entry {entry!r} has no 'url'")
            sha = entry.get("sha256")
            return cls(str(entry["url"]), sha.lower() if sha else None, int(entry["size"]) if entry.get("size") is not None else None)
        # pydantic models (the recipe's UrlEntry)
        return cls(entry.url, entry.sha256.lower() if entry.sha256 else None, entry.size)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # failures in a row without progress before giving up
    backoff_base: float = 1.0  # seconds before the first retry; doubles each time
    backoff_max: float = 60.0  # cap on one wait (also caps a server's Retry-After)
    jitter: float = 0.5  # each wait is multiplied by a uniform factor in [1, 1 + jitter]

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        d = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        d *= 1 + random.random() * self.jitter  # spread clients that failed together
        if retry_after is not None:
            d = max(d, min(retry_after, self.backoff_max))
        return d


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after


def local_name(url: str) -> Path:
    """Where a URL's bytes live under raw/: host/path, so different URLs never collide."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s not in ("", ".", "..")] or ["index"]
    segments = [re.sub(r"[^A-Za-z0-9._=+-]", "_", s) for s in segments]
    if parts.query:
        stem = hashlib.sha256(parts.query.encode()).hexdigest()[:8]
        segments[-1] = f"{stem}-{segments[-1]}"
    host = re.sub(r"[^A-Za-z0-9._-]", "_", parts.netloc) or "local"
    return Path(host, *segments)


class RawManifest:
    """`raw/MANIFEST.jsonl`: one JSON line per fetched URL, rewritten atomically under a
    file lock so parallel sources (threads or processes) never lose each other's lines."""

    def __init__(self, raw_dir: Path):
        self.raw_dir = Path(raw_dir)
        self.path = self.raw_dir / MANIFEST_NAME
        self._lock = threading.Lock()

    def entries(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        out = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                e = json.loads(line)
                out[e["url"]] = e
        return out

    def get(self, url: str) -> dict | None:
        return self.entries().get(url)

    @contextlib.contextmanager
    def _locked(self):
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.raw_dir / ".MANIFEST.lock", "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lf, fcntl.LOCK_UN)

    def update(self, entry: dict) -> None:
        with self._locked():
            entries = self.entries()
            entries[entry["url"]] = entry
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for _, e in sorted(entries.items())),
                               encoding="utf-8")


def _range_headers(st) -> dict[str, str]:
    """Headers asking for the bytes after the `st.have` already on disk, only if the file is
    still the one they came from (If-Range on a strong ETag or Last-Modified); the file's own
    bytes, never a re-encoding."""
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={st.have}-"}
    if st.validator.get("etag") and not st.validator["etag"].startswith("W/"):
        headers["If-Range"] = st.validator["etag"]
    elif st.validator.get("last_modified"):
        headers["If-Range"] = st.validator["last_modified"]
    return headers


class Downloader:
    """Fetches FileSpecs into `raw_dir` (see the module docstring for the guarantees)."""

    def __init__(self, raw_dir: str | os.PathLike, *, retry: RetryPolicy | None = None, concurrency: int = 4,
                 timeout: float = 60.0, license: str | None = None, source: str | None = None,
                 session: requests.Session | None = None, chunk_size: int = 1 << 20,
                 allow_private_networks: bool = False):
        self.allow_private_networks = allow_private_networks
        self.raw_dir = Path(raw_dir)
        self.retry = retry or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.license = license
        self.source = source
        self.chunk_size = chunk_size
        self.manifest = RawManifest(self.raw_dir)
        self._session = session
        self._local = threading.local()

    def _http(self) -> requests.Session:
        if self._session is not None:
            return self._session
        if not hasattr(self._local, "session"):  # requests.Session is not thread-safe: one per thread
            self._local.session = requests.Session()
            self._local.session.headers["User-Agent"] = "opencorpus-downloader/0.1"
        return self._local.session

    # -- many files -------------------------------------------------------------------

    def fetch_all(self, specs: Iterable, *, fail_fast: bool = False) -> list[dict]:
        """Fetch every spec with at most `concurrency` transfers at a time; return the
        manifest entries in input order. If any file fails, the others still finish (a rerun
        then reuses them) and one DownloadError listing every failed URL is raised."""
        specs = [FileSpec.parse(s) for s in specs]
        seen = set()
        for s in specs:
            if s.url in seen:
                raise ValueError(f"URL listed twice: {s.url}")
            seen.add(s.url)
        results: list[dict | BaseException] = [None] * len(specs)  # type: ignore[list-item]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="download") as pool:
            futures = [pool.submit(self.fetch, s) for s in specs]
            for i, f in enumerate(futures):
                try:
                    results[i] = f.result()
                except DownloadError as e:
                    results[i] = e
                    if fail_fast:
                        for g in futures:
                            g.cancel()
                        raise
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            if len(errors) == 1:
                raise errors[0]
            kind = ChecksumError if all(isinstance(e, ChecksumError) for e in errors) else DownloadError
            raise kind(f"{len(errors)} of {len(specs)} downloads failed:\n" + "\n".join(f"  - {e}" for e in errors))
        return results  # type: ignore[return-value]

    # -- one file ---------------------------------------------------------------------

    def fetch(self, spec) -> dict:
        spec = FileSpec.parse(spec)
        dest = self.raw_dir / local_name(spec.url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Two sources (threads or processes) naming the same URL: one downloads, the other
        # waits here and then reuses the verified file.
        with open(dest.with_name(dest.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._fetch_locked(spec, dest)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _fetch_locked(self, spec: FileSpec, dest: Path) -> dict:
        reused = self._reuse(spec, dest)
        if reused is not None:
            return reused
        info = self._transfer(spec, dest)
        if info["resumed"] and not self._verified(spec, info):
            # A resume may have spliced two versions of the file: retry once from byte 0.
            log.warning("GET %s: checksum mismatch after a resumed transfer; fetching again from byte 0", spec.url)
            _part(dest).unlink(missing_ok=True)
            _part_meta(dest).unlink(missing_ok=True)
            info = self._transfer(spec, dest)
        part = _part(dest)
        problem = _mismatch(spec, info)
        if problem:
            part.unlink(missing_ok=True)
            _part_meta(dest).unlink(missing_ok=True)
            raise ChecksumError(f"{spec.url}: {problem}; the downloaded bytes were deleted and not used")
        os.replace(part, dest)
        _part_meta(dest).unlink(missing_ok=True)
        entry = self._entry(spec, dest, info["size"], info["sha256"], info.get("etag"), info.get("last_modified"),
                            attempts=info["attempts"], resumed=info["resumed"], content_type=info.get("content_type"))
        self.manifest.update(entry)
        log.info("fetched %s (%d bytes, sha256 %s)", spec.url, info["size"], info["sha256"][:12])
        return entry

    def _entry(self, spec: FileSpec, dest: Path, size: int, sha: str, etag, last_modified, **extra) -> dict:
        return {
            "url": spec.url,
            "path": str(dest.relative_to(self.raw_dir.parent)) if self.raw_dir.parent in dest.parents else str(dest),
            "local_path": str(dest),
            "size": size,
            "sha256": sha,
            "sha256_verified": spec.sha256 is not None,
            "size_verified": spec.size is not None,
            "etag": etag,
            "last_modified": last_modified,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "license": self.license,
            "source": self.source,
            **extra,
        }

    def _reuse(self, spec: FileSpec, dest: Path) -> dict | None:
        """A file already in raw/ is reused only if its bytes hash to what we expect."""
        if not dest.exists():
            return None
        previous = self.manifest.get(spec.url)
        want = spec.sha256 or (previous or {}).get("sha256")
        if want is None:
            return None  # nothing to check it against: fetch again
        size = dest.stat().st_size
        sha = sha256_file(dest)
        if sha != want or (spec.size is not None and size != spec.size):
            log.warning("%s: %s no longer matches its sha256; fetching again", spec.url, dest)
            dest.unlink()
            return None
        entry = dict(previous) if previous else self._entry(spec, dest, size, sha, None, None)
        entry.update(sha256_verified=spec.sha256 is not None, size_verified=spec.size is not None,
                     license=self.license, source=self.source, reused=True)
        if previous != entry:
            self.manifest.update(entry)
        return entry

    def _transfer(self, spec: FileSpec, dest: Path) -> dict:
        """Bring the whole body into `<dest>.part`, resuming and retrying as needed."""
        st = _Partial.resume_or_new(spec.url, _part(dest), _part_meta(dest))
        if st.have:
            log.info("GET %s: resuming a previous run's partial file at byte %d", spec.url, st.have)
        resumed = st.have > 0
        failures = attempts = 0
        while True:
            attempts += 1
            before = st.have
            try:
                total, restarted = self._attempt(spec, st)
                resumed = resumed and not restarted
                if total is not None and st.have < total:
                    raise _Retryable(f"connection closed at byte {st.have} of {total}")
                if total is None and spec.size is None and not st.self_delimited:
                    # No length anywhere: a cut connection looks like the end of the body. Ask again.
                    attempts += 1
                    self._confirm_end(spec, st)
                return {"size": st.have, "sha256": st.hasher.hexdigest(), "etag": st.validator.get("etag"),
                        "last_modified": st.validator.get("last_modified"), "attempts": attempts, "resumed": resumed,
                        "content_type": st.content_type}
            except (_Retryable, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError) as e:
                failures = 1 if st.have > before else failures + 1  # progress resets the count
                if failures >= self.retry.max_attempts:
                    raise DownloadError(f"{spec.url}: giving up after {attempts} attempts "
                                        f"({failures} in a row without progress); last error: {_short(e)}") from e
                wait = self.retry.delay(failures, getattr(e, "retry_after", None))
                resumed = resumed or st.have > 0
                log.warning("GET %s: attempt %d failed (%s); %sretrying in %.2f s (%d/%d)", spec.url, attempts,
                            _short(e), f"resuming at byte {st.have}, " if st.have else "", wait, failures,
                            self.retry.max_attempts)
                time.sleep(wait)

    def _attempt(self, spec: FileSpec, st: "_Partial") -> tuple[int | None, bool]:
        """One GET, appending to (or restarting) the partial file. Returns (total size if
        known, whether a resume turned into a restart). `st` stays consistent with the
        bytes on disk even when this raises half way."""
        headers = _range_headers(st) if st.have else {"Accept-Encoding": "identity"}
        with get_following_redirects(self._http(), spec.url, allow_private=self.allow_private_networks,
                                     headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
            if r.status_code == 416 and st.have:  # our partial file is no prefix of theirs: start over
                st.discard()
                raise _Retryable("HTTP 416 on resume; restarting from byte 0")
            if r.status_code not in (200, 206):
                raise PermanentDownloadError(f"{spec.url}: HTTP {r.status_code} {r.reason}")
            st.content_type = r.headers.get("Content-Type")
            # chunked bodies end with a zero-length chunk: urllib3 raises when one is cut
            st.self_delimited = "chunked" in (r.headers.get("Transfer-Encoding") or "").lower()
            restarted = False
            if r.status_code == 206:
                start, total = _content_range(r.headers.get("Content-Range"))
                if start != st.have:
                    raise DownloadError(f"{spec.url}: asked for bytes from {st.have}, server sent from {start}")
            else:  # a full body: the server ignored Range or the file changed (If-Range failed)
                if st.have:
                    log.warning("GET %s: server sent the whole file instead of bytes %d-; restarting", spec.url, st.have)
                    restarted = True
                cl = r.headers.get("Content-Length")
                total = int(cl) if cl is not None else None
                if spec.size is not None and total is not None and total != spec.size:
                    st.discard()
                    raise ChecksumError(f"{spec.url}: size mismatch: the server reports {total} bytes, "
                                        f"expected {spec.size} bytes; not downloaded")
                st.restart({"url": spec.url, "etag": r.headers.get("ETag"), "last_modified": r.headers.get("Last-Modified")})
            with open(st.path, "ab") as f, _PipelinedHash(st.hasher) as ph:
                # raw bytes, never decoded: a .gz served with Content-Encoding: gzip stays the .gz file
                for chunk in r.raw.stream(self.chunk_size, decode_content=False):
                    f.write(chunk)
                    ph.update(chunk)
                    st.have += len(chunk)
                    if spec.size is not None and st.have > spec.size:
                        break  # more bytes than promised: stop; the size check rejects it
            return total, restarted

    def _confirm_end(self, spec: FileSpec, st: "_Partial") -> None:
        """The body came without a Content-Length (and the recipe gives no size): check that
        the server has nothing after byte `st.have` (a Range request answered 416), or, from a
        server without ranges, that a second full transfer has the same length. Raises
        _Retryable (so the transfer resumes or restarts) when the body was cut short."""
        headers = _range_headers(st)
        with get_following_redirects(self._http(), spec.url, allow_private=self.allow_private_networks,
                                     headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:
                return
            if r.status_code == 206:
                raise _Retryable(f"the body ended at byte {st.have} without a Content-Length, "
                                 f"but the server has more ({r.headers.get('Content-Range')})")
            if r.status_code == 200:
                n = sum(len(chunk) for chunk in r.raw.stream(self.chunk_size, decode_content=False))
                if n == st.have:
                    return
                raise _Retryable(f"two transfers without a Content-Length gave {st.have} and {n} bytes")
            if r.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
            raise PermanentDownloadError(f"{spec.url}: HTTP {r.status_code} {r.reason} when checking the end of a body "
                                         "sent without a Content-Length")

    @staticmethod
    def _verified(spec: FileSpec, info: dict) -> bool:
        return not _mismatch(spec, info)


@dataclass
class _Partial:
    """A `.part` file and what we know of it: its length, the sha256 of those bytes, and the
    validator (ETag / Last-Modified) of the response that wrote them (kept in `.part.json`
    so that the next run can resume too)."""

    path: Path
    meta: Path
    have: int = 0
    hasher: object = None
    validator: dict = None
    content_type: str | None = None
    self_delimited: bool = False

    @classmethod
    def resume_or_new(cls, url: str, path: Path, meta: Path) -> "_Partial":
        st = cls(path, meta, 0, hashlib.sha256(), {})
        if path.exists() and meta.exists():
            validator = json.loads(meta.read_text())
            if validator.get("url") == url and (validator.get("etag") or validator.get("last_modified")):
                st.validator = validator
                with open(path, "rb") as f:  # a killed run's partial bytes: hash them, then resume
                    while block := f.read(1 << 20):
                        st.hasher.update(block)
                        st.have += len(block)
                return st
        st.discard()
        return st

    def restart(self, validator: dict) -> None:
        self.path.write_bytes(b"")
        self.have, self.hasher, self.validator = 0, hashlib.sha256(), validator
        self.meta.write_text(json.dumps(validator))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
        self.have, self.hasher, self.validator = 0, hashlib.sha256(), {}


class _PipelinedHash:
    """Feeds a hasher on a helper thread so hashing chunk i overlaps receiving chunk i+1
    (hashlib releases the GIL on large buffers). One update in flight keeps the order."""

    def __init__(self, hasher):
        self.hasher = hasher
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256")
        self._pending = None

    def update(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self.hasher.update, data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self._pending is not None:
                self._pending.result()  # the hash always covers exactly the bytes written
        finally:
            self._pool.shutdown()


def _mismatch(spec: FileSpec, info: dict) -> str | None:
    if spec.size is not None and info["size"] != spec.size:
        return f"size mismatch: expected {spec.size} bytes, got {info['size']}"
    if spec.sha256 is not None and info["sha256"] != spec.sha256:
        return f"sha256 mismatch: expected {spec.sha256}, got {info['sha256']}"
    return None


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _part_meta(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def _content_range(value: str | None) -> tuple[int, int | None]:
    m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", value or "")
    if not m:
        raise DownloadError(f"unusable Content-Range header {value!r}")
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def _short(e: BaseException) -> str:
    s = str(e) or type(e).__name__
    return s if len(s) < 200 else s[:200] + "..."


def fetch_text(url: str, *, retry: RetryPolicy | None = None, timeout: float = 60.0,
               allow_private_networks: bool = False) -> bytes:
    """Small files (manifests, path listings) straight into memory, with the same retries
    and the same address checks."""
    retry = retry or RetryPolicy()
    failures = 0
    while True:
        try:
            with requests.Session() as session:
                r = get_following_redirects(session, url, allow_private=allow_private_networks, timeout=timeout)
            if r.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
            if r.status_code != 200:
                raise PermanentDownloadError(f"{url}: HTTP {r.status_code} {r.reason}")
            return r.content
        except (_Retryable, requests.ConnectionError, requests.Timeout) as e:
            failures += 1
            if failures >= retry.max_attempts:
                raise DownloadError(f"{url}: giving up after {failures} attempts; last error: {_short(e)}") from e
            wait = retry.delay(failures, getattr(e, "retry_after", None))
            log.warning("GET %s: attempt %d failed (%s); retrying in %.2f s", url, failures, _short(e), wait)
            time.sleep(wait)
