"""The sandbox's HTTPS server: configuration, TLS sockets, HTTP/1.1 plumbing, faults, ``serve()``.

``http.server.ThreadingHTTPServer`` (a thread per connection, keep-alive) with TLS done in the
connection's thread. Request bodies may be chunked; responses are gzipped when the client asks;
large result CSVs are streamed with chunked encoding. Faults fire before or after the request is
handled, never halfway (see ``faults.py``).
"""

import gc
import json
import logging
import os
import signal
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sync_assets.sandbox.api.app import SandboxApp
from sync_assets.sandbox.api.ingest import MAX_UPLOAD_BYTES
from sync_assets.sandbox.api.messages import Request, Response, json_response
from sync_assets.sandbox.auth import TokenStore
from sync_assets.sandbox.config import SandboxConfig
from sync_assets.sandbox.dml.prepare import ParentIndex
from sync_assets.sandbox.errors import ApiError
from sync_assets.sandbox.faults import FaultInjector, FaultSpec
from sync_assets.sandbox.jobs import JobStore
from sync_assets.sandbox.limits import API_REQUESTS, BULK_BATCHES, INGEST_RECORDS, DailyLimits
from sync_assets.sandbox.metadata import open_org
from sync_assets.sandbox.org import load_org
from sync_assets.sandbox.processing import ProcessingConfig, Processor
from sync_assets.sandbox.request_encoding import body_too_large
from sync_assets.sandbox.seed import seed_accounts
from sync_assets.sandbox.store import Database
from sync_assets.sandbox.tls import ensure_certificates, server_context

CONNECTION_FILE = "connection.json"
_GZIP_MIN_BYTES = 1024
_IDLE_TIMEOUT_SECONDS = 300
# REST API status codes: 414 "The length of the URI exceeds the 16,384 byte limit", 431 "The
# combined length of the URI and headers exceeds the 16,384 byte limit". The answers' bodies are
# not documented (a front end's error page, probably): the standard library's HTML page stands in.
_MAX_REQUEST_BYTES = 16_384
log = logging.getLogger("sync_assets.sandbox")

_FAULT_ANSWERS: dict[str, ApiError] = {
    "http_500": ApiError(
        500,
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1234567890-12345 (-1234567890)",
    ),
    "http_503": ApiError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable"),
    # Not what Salesforce sends for its concurrency limit (that is ``http_403_concurrent``).
    "http_429": ApiError(
        429,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    ),
}


class _Reset(Exception):
    """Drop the connection with a TCP reset instead of answering."""


class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT_SECONDS
    server: "_SandboxHTTPServer"

    def setup(self) -> None:
        super().setup()
        assert isinstance(self.connection, ssl.SSLSocket)
        self.connection.do_handshake()

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError) as error:
            log.debug("connection from %s ended: %s", self.client_address, error)

    def parse_request(self) -> bool:
        """Refuse a request line, or URI and headers, over the limit before anything handles it."""
        if not super().parse_request():
            return False
        # Decoded as Latin-1 by the standard library: one character per byte.
        if len(self.requestline) > _MAX_REQUEST_BYTES:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        header_bytes = sum(len(name) + len(value) + 4 for name, value in self.headers.raw_items())
        if len(self.path) + header_bytes > _MAX_REQUEST_BYTES:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return False
        return True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.address_string(), format % args)

    # -- request ---------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            raise _BodyTooLarge
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_UPLOAD_BYTES:
                raise _BodyTooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _dispatch(self) -> None:
        app = self.server.app
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self.close_connection = True
            self._send_error(body_too_large(MAX_UPLOAD_BYTES))
            return
        # As sent (compressed where the client compressed): what a night uploads over the WAN.
        self.server.app.count("request_body_bytes", len(body))
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        fault = self.server.faults.request_fault() if split.path.startswith("/services") else None
        try:
            if fault is not None and not fault.endswith("_after"):
                self._fault(fault)
                return
            try:
                response = app.handle(request)
            except Exception:
                log.exception("%s %s failed inside the sandbox", self.command, split.path)
                response = json_response(_FAULT_ANSWERS["http_500"].body(), 500)
            if fault is not None:
                self._fault(fault.removesuffix("_after"))
                return
            self._send(response)
        except _Reset:
            self._reset()

    def _fault(self, name: str) -> None:
        self.server.app.count(f"fault:{name}")
        if name == "reset":
            raise _Reset
        if name == "http_403_concurrent":
            message = self.server.faults.concurrency_message()
            answer = ApiError(403, "REQUEST_LIMIT_EXCEEDED", message)
        else:
            answer = _FAULT_ANSWERS[name]
        self._send_error(answer)

    def _send_error(self, error: ApiError) -> None:
        self._send(json_response(error.body(), error.status))

    def _reset(self) -> None:
        self.close_connection = True
        # SO_LINGER 0: close() sends RST, and the client sees "connection reset by peer"
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    # -- response --------------------------------------------------------------------------

    def _accepts_gzip(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "").lower()

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self._send_bytes(response.body)
        else:
            self._send_stream(response.body)

    def _send_bytes(self, body: bytes) -> None:
        if self._accepts_gzip() and len(body) >= _GZIP_MIN_BYTES:
            body = _gzip(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self._count_sent(len(body))
            self.wfile.write(body)

    def _send_stream(self, chunks: Iterator[bytes]) -> None:
        compress = self._accepts_gzip()
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if compress else None
        for chunk in chunks:
            self._write_chunk(compressor.compress(chunk) if compressor else chunk)
        if compressor is not None:
            self._write_chunk(compressor.flush())
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self._count_sent(len(data))
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _count_sent(self, size: int) -> None:
        """Response body bytes as sent (after gzip): what a night downloads over the WAN."""
        self.server.app.count("response_body_bytes", size)


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: SandboxApp,
        faults: FaultInjector,
        context: ssl.SSLContext,
        verbose: bool,
    ) -> None:
        self.app = app
        self.faults = faults
        self.context = context
        self.verbose = verbose
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        plain, address = self.socket.accept()
        # Headers and body go out in separate writes; without NODELAY, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake runs in the connection's thread (Handler.setup), not in accept().
        wrapped = self.context.wrap_socket(plain, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


def _instance_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


def _urls(host: str, port: int, my_domain: bool) -> dict[str, str]:
    """The instance URL (``url``) and the login URL (``login``) clients reach the sandbox at.

    An org with a My Domain answers some OAuth flows only on its My Domain host. Both names must
    reach the sandbox bound on 127.0.0.1 with unmodified clients and the sandbox's certificate,
    so the My Domain host is ``localhost`` and the generic login host (login.salesforce.com's
    part) is ``127.0.0.1``; the token endpoint tells them apart by the request's Host header.
    """
    login = f"https://{_instance_host(host)}:{port}"
    return {"login": login, "url": f"https://localhost:{port}" if my_domain else login}


def _write_connection_file(
    data_dir: Path, urls: dict[str, str], token: str, app: SandboxApp, ca_path: Path
) -> None:
    identity = app.identity
    instance_url = urls["url"]
    payload = {
        "instance_url": instance_url,
        "login_url": urls["login"],
        "access_token": token,
        "client_id": identity.client_id,
        "client_secret": identity.client_secret.get_secret_value(),
        "username": identity.username,
        "password": identity.password.get_secret_value(),
        "token_url": f"{instance_url}/services/oauth2/token",
        "ca_cert": str(ca_path.resolve()),
    }
    partial = data_dir / f"{CONNECTION_FILE}.part"
    partial.write_text(json.dumps(payload, indent=2))
    os.chmod(partial, 0o600)
    os.replace(partial, data_dir / CONNECTION_FILE)


def _maintain_periodically(db: Database, limits: DailyLimits, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        limits.flush()
        db.checkpoint()


def serve(config: SandboxConfig) -> None:
    """Run the sandbox until SIGINT/SIGTERM; ``connection.json`` appears once it accepts requests."""
    logging.basicConfig(
        level=logging.INFO if config.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Parsing a 100 MB upload makes millions of small lists; default GC thresholds would make
    # the collector run constantly.
    gc.set_threshold(200_000, 50, 100)
    data_dir = config.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / CONNECTION_FILE).unlink(missing_ok=True)
    ca_path, server_path = ensure_certificates(data_dir)
    org = load_org(config.org)
    db = Database(data_dir / "sandbox.db")
    identity, catalog = open_org(db, org)
    seed_accounts(db, identity.user_id, config.accounts)
    parents = ParentIndex()
    parents.load(db.connection())
    tokens = TokenStore(db, identity, config.token_ttl)
    limits = DailyLimits(
        db,
        {
            API_REQUESTS: config.daily_api_requests,
            BULK_BATCHES: config.daily_batches,
            INGEST_RECORDS: config.daily_records,
        },
    )
    faults = FaultInjector(FaultSpec.parse(config.faults), config.seed)
    jobs = JobStore(db)
    jobs.adopt_orphans(identity.user_id)
    processor = Processor(
        db,
        jobs,
        data_dir / "jobs",
        parents,
        limits,
        faults,
        catalog,
        ProcessingConfig(
            slots=config.slots,
            rate=config.rate,
            lock_timeout=config.lock_timeout,
            batch_time_limit=config.batch_time_limit,
            batch_retries=config.batch_retries,
        ),
        org,
    )
    address: dict[str, str] = {}
    app = SandboxApp(
        db,
        identity,
        tokens,
        limits,
        jobs,
        processor,
        lambda: address["url"],
        org,
        catalog,
        lambda: address["login"],
        deprecated_through=config.deprecated_through,
        refuse_compressed_requests=config.refuse_compressed_uploads,
    )
    server = _SandboxHTTPServer(
        (config.host, config.port), app, faults, server_context(server_path), config.verbose
    )
    address.update(_urls(config.host, server.server_address[1], org.my_domain is not None))
    processor.start()
    stop = threading.Event()
    flusher = threading.Thread(target=_maintain_periodically, args=(db, limits, stop), daemon=True)
    flusher.start()

    def _shutdown(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    token, _ = tokens.issue()
    # The listening socket already queues connections, so clients may connect from now on.
    _write_connection_file(data_dir, address, token, app, ca_path)
    log.warning("sandbox listening on %s (data in %s)", address["url"], data_dir)
    started = time.monotonic()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        processor.stop()
        limits.flush()
        server.server_close()
        log.warning("sandbox stopped after %.0f s", time.monotonic() - started)
