"""The REST server's connection handling, over real sockets: bounded work per connection, and no
unread body ever taken for the next request."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmtune.serving import rest_api
from fmtune.serving.models import ModelManager
from fmtune.serving.runner import Runner
from fmtune.wire.contract import MAX_MESSAGE_BYTES

WORKERS = 4
IDLE, READ = 0.5, 1.0


class Server:
    def __init__(self, manager: ModelManager):
        self.runner = Runner()
        self.http = rest_api.start(
            manager, self.runner, "127.0.0.1", 0, workers=WORKERS, idle_seconds=IDLE, read_seconds=READ
        )
        self.port = self.http.server_address[1]

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.runner.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(ModelManager(tmp_path, "fmtune"))
    yield running
    running.close()


def read_until_closed(sock: socket.socket, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not close in time."""
    deadline = time.monotonic() + within
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open for {within}s; it sent {data[:300]!r}")


def responses(data: bytes) -> list[tuple[int, dict[str, str]]]:
    """(status, JSON body) of each HTTP response in ``data``."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        found.append((int(lines[0].split()[1]), json.loads(rest[:length])))
        data = rest[length:]
    return found


def post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


PREDICT = "/v1/models/fmtune:predict"


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ("Content-Length: -1\r\n", 400, "non-negative integer"),
        ("Content-Length: 12abc\r\n", 400, "non-negative integer"),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400, "one non-negative integer"),
        ("Content-Length: +20\r\n", 400, "non-negative integer"),
        ("Content-Length: 0x14\r\n", 400, "non-negative integer"),
        ("Content-Length: 2e1\r\n", 400, "non-negative integer"),
        ("Content-Length: 20, 20\r\n", 400, "non-negative integer"),
        ("Content-Length: \r\n", 400, "non-negative integer"),
        ("", 411, "needs a Content-Length"),
        ("Transfer-Encoding: chunked\r\n", 411, "Transfer-Encoding"),
        (f"Content-Length: {MAX_MESSAGE_BYTES + 1}\r\n", 413, "over the"),
    ],
)
def test_a_body_whose_length_is_not_known_and_allowed_is_refused_and_the_connection_closed(
    server: Server, headers: str, status: int, words: str
) -> None:
    with server.connect() as sock:
        sock.sendall(post(PREDICT, headers, b'{"instances": [[1]]}'))  # and the connection stays open
        (answer,) = responses(read_until_closed(sock))
    assert answer[0] == status and words in answer[1]["error"]


def test_a_length_of_digits_that_are_not_ascii_is_refused(server: Server) -> None:
    """Header bytes are read as Latin-1, where byte 0xB2 is "²": a digit to str.isdigit, not to int."""
    with server.connect() as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: ".encode() + b"\xb2\r\n\r\n{}")
        (answer,) = responses(read_until_closed(sock))
    assert answer == (400, {"error": "Content-Length must be one non-negative integer"})


@pytest.mark.parametrize("path", ["/nowhere", "/v1/bogus", "/v1/models/fmtune:classify", PREDICT])
def test_an_unanswerable_request_still_consumes_its_body(server: Server, path: str) -> None:
    """A body that holds a request of its own is never answered as one (request smuggling)."""
    inner = b"GET /v1/models/fmtune HTTP/1.1\r\nHost: x\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(post(path, f"Content-Length: {len(inner)}\r\n", inner))
        sock.sendall(b"GET /v1/models/other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = responses(read_until_closed(sock))
    assert len(answers) == 2, answers
    assert answers[0][0] in (400, 404) and answers[1] == (404, {"error": "Could not find any versions of model other"})


def test_an_unsupported_method_with_a_body_closes_the_connection(server: Server) -> None:
    inner = b"GET /v1/models/fmtune HTTP/1.1\r\nHost: x\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(f"PUT {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(inner)}\r\n\r\n".encode() + inner)
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 501 ") and data.count(b"HTTP/1.1 ") == 1


def threads_of(server: Server) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(f"rest:{server.port}_"))


def status_of_a_fresh_connection(server: Server) -> int:
    with server.connect() as sock:
        sock.sendall(b"GET /v1/models/fmtune HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return responses(read_until_closed(sock))[0][0]


def test_idle_connections_hold_a_bounded_number_of_threads_and_time_out(server: Server) -> None:
    idle = [server.connect() for _ in range(WORKERS)]
    deadline = time.monotonic() + 5
    while threads_of(server) < WORKERS:
        assert time.monotonic() < deadline, f"{threads_of(server)} of {WORKERS} workers started"
        time.sleep(0.01)
    extra = [server.connect() for _ in range(20)]
    for sock in extra:  # every slot is taken: refused at once, not queued
        (answer,) = responses(read_until_closed(sock))
        assert answer == (503, {"error": "every connection slot is busy"})
    assert threads_of(server) == WORKERS
    for sock in idle:  # each idle connection is closed once its idle time is up
        assert read_until_closed(sock, within=IDLE + 3) == b""
    assert status_of_a_fresh_connection(server) == 404  # and its slot is free again
    assert threads_of(server) == WORKERS
    for sock in idle + extra:
        sock.close()


def test_a_stalled_body_times_out_and_frees_its_slot(server: Server) -> None:
    stalled = [server.connect() for _ in range(WORKERS)]
    for sock in stalled:
        sock.sendall(post(PREDICT, "Content-Length: 100\r\n", b"{" * 10))
    started = time.monotonic()
    for sock in stalled:
        assert read_until_closed(sock, within=READ + 3) == b""
    assert time.monotonic() - started >= READ * 0.9
    assert status_of_a_fresh_connection(server) == 404
    for sock in stalled:
        sock.close()


class Broken(ModelManager):
    def statuses(self, name: str, version: int | None) -> list:  # type: ignore[type-arg]
        raise RuntimeError("cannot read /srv/secret/models/fmtune/7/saved_model.pb")


def test_an_internal_failure_is_a_generic_500_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    running = Server(Broken(tmp_path, "fmtune"))
    try:
        with running.connect() as sock:
            sock.sendall(b"GET /v1/models/fmtune HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ((status, body),) = responses(read_until_closed(sock))
    finally:
        running.close()
    assert status == 500 and body == {"error": "internal error (details in the server log)"}
    assert "/srv/secret" in caplog.text


def trickle(sock: socket.socket, data: bytes, every: float, cut: dict[int, float]) -> None:
    """Send ``data`` a byte every ``every`` seconds until the server closes; record when it did."""
    started = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            sock.settimeout(every)
            if sock.recv(65536) == b"":  # closed by the server (a reply would also end the trickle)
                break
        except TimeoutError:
            continue  # still open: the next byte
        except OSError:  # reset by the server
            break
    cut[sock.fileno()] = time.monotonic() - started


def test_a_request_trickled_a_byte_at_a_time_is_cut_off_at_its_deadline(server: Server) -> None:
    """Each byte comes well within the time allowed for one read; the request as a whole does not."""
    request = post(PREDICT, "X-Padding: " + "a" * 200 + "\r\nContent-Length: 2\r\n", b"{}")
    every = READ / 5
    assert len(request) * every > 10 * READ  # sent in full, it would hold a slot ten deadlines long
    socks = [server.connect() for _ in range(WORKERS)]  # every slot taken
    cut: dict[int, float] = {}
    threads = [threading.Thread(target=trickle, args=(sock, request, every, cut)) for sock in socks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10 * READ)
    assert not any(thread.is_alive() for thread in threads), "a trickling client still holds its slot"
    assert len(cut) == WORKERS and all(READ * 0.9 <= seconds <= READ + 1.0 for seconds in cut.values()), cut
    assert status_of_a_fresh_connection(server) == 404  # the slots are free again for other clients
    for sock in socks:
        sock.close()


def test_a_slow_client_is_served_while_its_request_arrives_by_its_deadline(server: Server) -> None:
    """The deadline is for the whole request: one that trickles in within it is answered."""
    request = b"GET /v1/models/fmtune HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with server.connect() as sock:
        for start in range(0, len(request), 16):
            sock.sendall(request[start : start + 16])
            time.sleep(READ / 2 / (len(request) / 16))
        ((status, _),) = responses(read_until_closed(sock))
    assert status == 404


def answer_to(server: Server, headers: str, body: bytes) -> tuple[int, dict[str, str]]:
    with server.connect() as sock:
        sock.sendall(post(PREDICT, f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n", body))
        (answer,) = responses(read_until_closed(sock))
    return answer


def test_a_gzip_body_is_read_as_the_json_it_holds(server: Server) -> None:
    """As TF Serving reads it: past the JSON, to the data plane (which serves no model here)."""
    body = gzip.compress(b'{"instances": [[1, 2, 3]]}')
    assert answer_to(server, "Content-Encoding: gzip\r\n", body) == (
        404,
        {"error": "Servable not found for request: Latest(fmtune)"},
    )
    assert answer_to(server, "", body)[0] == 400  # the same bytes, not said to be gzip: not JSON


@pytest.mark.parametrize(
    ("encoding", "body", "status", "words"),
    [
        ("gzip", gzip.compress(b" " * (MAX_MESSAGE_BYTES + 1), 9, mtime=0), 413, "decompresses to over the"),
        ("gzip", b"not gzip at all", 400, "does not decompress"),
        ("gzip", gzip.compress(b"{}", mtime=0)[:-6], 400, "truncated"),
        ("gzip", gzip.compress(b"{}", mtime=0) * 2, 400, "data after its end"),
        ("br", b"{}", 415, "Content-Encoding 'br' is not supported"),
        ("gzip, gzip", gzip.compress(gzip.compress(b"{}", mtime=0), mtime=0), 415, "not supported"),
    ],
    ids=["a bomb", "not gzip", "truncated", "two members", "brotli", "gzip twice"],
)
def test_a_compressed_body_decompresses_only_within_the_message_limit(
    server: Server, encoding: str, body: bytes, status: int, words: str
) -> None:
    assert len(body) < 100_000  # a small request, whatever it inflates to
    got, payload = answer_to(server, f"Content-Encoding: {encoding}\r\n", body)
    assert got == status and words in payload["error"], (got, payload)
