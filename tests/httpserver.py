"""A loopback HTTP file server for tests, with fault injection.

    with FileServer({"/corpora": corpora_dir}) as srv:
        srv.fault("/corpora/web/x.warc.gz", drop_at=50_000, times=2)   # close the socket mid-body
        srv.fault("/corpora/classic/a.txt", status=[503, 429])          # answer these first
        url = srv.url("/corpora/web/x.warc.gz")

It serves real files from the mapped folders, with Content-Length, ETag, Last-Modified
and single-range `Range` requests (206), like a static file server or an object store.
Every request is logged in `srv.requests` (method, path, Range header, status sent).
"""
from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    status: list[int] = field(default_factory=list)  # answer these statuses first, one per request
    retry_after: str | None = None  # Retry-After header sent with them
    drop_at: int | None = None  # close the connection after this many body bytes (absolute offset)...
    times: int = 1  # ...this many times
    body: bytes | None = None  # serve these bytes instead of the file's (a tampered mirror)
    truncate: int | None = None  # serve only the first N bytes, as if that were the whole file
    no_range: bool = False  # ignore Range headers (always 200 with the full body)
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    chunked: bool = False  # Transfer-Encoding: chunked (no Content-Length), 4096-byte chunks
    redirect: str | None = None  # answer 302 with this Location (a path on this server or a URL)
    content_type: str | None = None  # Content-Type header sent with the body


class FileServer:
    def __init__(self, roots: dict[str, str | os.PathLike]):
        self.roots = {prefix.rstrip("/"): Path(d) for prefix, d in roots.items()}
        self.faults: dict[str, Fault] = {}
        self.requests: list[dict] = []
        self.delay = 0.0  # seconds to sleep before each body (to observe concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                server._serve(self, head=True)

            def do_GET(self):
                server._serve(self, head=False)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # a client that hangs up mid-body (as the downloader does on a size mismatch)
                # is expected here: record it instead of printing a traceback
                import sys

                server.errors.append(repr(sys.exc_info()[1]))

        self.errors: list[str] = []
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def fault(self, path: str, **kw) -> Fault:
        f = Fault(**kw)
        self.faults[path] = f
        return f

    def hits(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def _file(self, path: str) -> Path | None:
        for prefix, root in self.roots.items():
            if path == prefix or path.startswith(prefix + "/"):
                rel = path[len(prefix):].lstrip("/")
                p = (root / rel).resolve()
                if p.is_file() and (root.resolve() in p.parents):
                    return p
        return None

    def _serve(self, h: BaseHTTPRequestHandler, head: bool):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(h, head)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h: BaseHTTPRequestHandler, head: bool):
        path = unquote(urlsplit(h.path).path)
        rng = h.headers.get("Range")
        record = {"method": h.command, "path": path, "range": rng, "if_range": h.headers.get("If-Range")}
        with self._lock:
            self.requests.append(record)
            fault = self.faults.get(path)
            status = fault.status.pop(0) if fault and fault.status else None
        if fault and fault.redirect is not None:
            record["status"] = 302
            h.send_response(302)
            h.send_header("Location", fault.redirect)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if status is not None:
            record["status"] = status
            h.send_response(status)
            if fault.retry_after is not None:
                h.send_header("Retry-After", fault.retry_after)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        f = self._file(path)
        if f is None:
            record["status"] = 404
            h.send_error(404)
            return
        data = f.read_bytes()
        if fault and fault.body is not None:
            data = fault.body
        if fault and fault.truncate is not None:
            data = data[: fault.truncate]
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start, end = 0, len(data)
        code = 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m and not (fault and fault.no_range):
            if_range = h.headers.get("If-Range")
            if if_range is None or if_range == etag:
                start = int(m.group(1))
                end = int(m.group(2)) + 1 if m.group(2) else len(data)
                if start >= len(data):
                    record["status"] = 416
                    h.send_response(416)
                    h.send_header("Content-Range", f"bytes */{len(data)}")
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
                code = 206
        record["status"] = code
        h.send_response(code)
        if fault and fault.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        elif fault and fault.no_length:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(end - start))
        if fault and fault.content_type:
            h.send_header("Content-Type", fault.content_type)
        h.send_header("ETag", etag)
        h.send_header("Last-Modified", email.utils.formatdate(f.stat().st_mtime, usegmt=True))
        h.send_header("Accept-Ranges", "bytes")
        if code == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        h.end_headers()
        if head:
            return
        if self.delay:
            time.sleep(self.delay)
        body = data[start:end]
        drop = None
        with self._lock:
            if fault and fault.drop_at is not None and fault.times > 0 and start < fault.drop_at < end:
                fault.times -= 1
                drop = fault.drop_at - start
        if fault and fault.chunked:
            sent = body[:drop] if drop is not None else body
            for i in range(0, len(sent), 4096):
                piece = sent[i:i + 4096]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if drop is None:
                h.wfile.write(b"0\r\n\r\n")
                return
            record["dropped_after"] = drop
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # cut between chunks: no terminating zero-length chunk
            return
        if drop is not None:
            record["dropped_after"] = drop
            h.wfile.write(body[:drop])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # the peer sees a body shorter than Content-Length
            return
        h.wfile.write(body)
