#!/usr/bin/env python3
"""keepalive_load.py — what wrk does, small and strict, for tests that restart
or drain a server under load: THREADS keep-alive connections send GETs back to
back until STOP_FILE appears (or SECONDS pass); a response with
`Connection: close` means a new connection, as any client does; anything else
that is not a whole 2xx response (refused, reset, cut, timed out, a 5xx) is a
failure, never retried. Prints one JSON line: ok, failed, reconnects and the
first few failures.

    keepalive_load.py HOST PORT THREADS SECONDS STOP_FILE [PATH] [TLS_CA]
"""
import json
import os
import socket
import ssl
import sys
import threading
import time

host, port, nthreads, seconds, stop_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
path = sys.argv[6] if len(sys.argv) > 6 else "/"
ca = sys.argv[7] if len(sys.argv) > 7 else None
ctx = None
if ca:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
lock = threading.Lock()
totals = {"ok": 0, "failed": 0, "reconnects": 0, "failures": []}
deadline = time.monotonic() + seconds
request = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()


def done():
    return time.monotonic() > deadline or os.path.exists(stop_file)


def read_response(f):
    """One response from the file object: (status, close?) or raises."""
    line = f.readline()
    if not line:
        raise ConnectionError("closed before a response")
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError("not a response: %r" % line[:60])
    status = int(parts[1])
    length, close = 0, False
    while True:
        h = f.readline()
        if not h:
            raise ConnectionError("cut in the head")
        if h in (b"\r\n", b"\n"):
            break
        name, _, value = h.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and b"close" in value.lower():
            close = True
    body = f.read(length)
    if len(body) != length:
        raise ConnectionError("cut in the body")
    return status, close


def worker():
    ok = failed = reconnects = 0
    failures = []
    sock = f = None
    while not done():
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=5)
                if ctx:
                    sock = ctx.wrap_socket(sock, server_hostname="localhost")
                f = sock.makefile("rb")
            sock.sendall(request)
            status, close = read_response(f)
            if 200 <= status < 300:
                ok += 1
            else:
                failed += 1
                failures.append("status %d" % status)
            if close:
                reconnects += 1
                sock.close()
                sock = None
        except (OSError, ConnectionError, ValueError) as e:
            failed += 1
            if len(failures) < 5:
                failures.append(repr(e))
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()
    with lock:
        totals["ok"] += ok
        totals["failed"] += failed
        totals["reconnects"] += reconnects
        totals["failures"] += failures[:5]


threads = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
totals["failures"] = totals["failures"][:10]
print(json.dumps(totals))
