#!/usr/bin/python3
"""An example upstream generator for gencached's proxy (POST /v1/generate).

It imitates a slow generator: it reads the request JSON, sleeps, and answers bytes derived from
the request, so the same request always gives the same bytes and different requests different
ones (a SHA-256 stream over the request's canonical JSON). Standard library only.

  POST /generate   (any path but /reset) the request JSON -> application/octet-stream bytes
      params.sleep_ms  how long to "generate" (default: --sleep-ms)
      params.size_kb   how many KiB to answer (default: --size-kb)
      params.fail      answer this HTTP status instead (e.g. 500)
      params.hang      answer only after an hour (the client gives up first)
  GET /calls       how many POSTs arrived, and the most answered at once:
                   {"calls": N, "max_active": M}
  POST /reset      sets the counts back to 0

usage: upstream.py [--port N] [--sleep-ms MS] [--size-kb KB]
Prints "listening on PORT" once it accepts connections (port 0 picks a free one).
"""
import argparse
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 << 20


class State:
    def __init__(self, sleep_ms, size_kb):
        self.lock = threading.Lock()
        self.calls = 0
        self.active = 0      # calls being answered now
        self.max_active = 0  # the most at once, to check a client's concurrency limit
        self.sleep_ms = sleep_ms
        self.size_kb = size_kb


def derive(doc, size):
    """size bytes of SHA-256(canonical JSON || counter) blocks."""
    seed = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: tests read stdout
        pass

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/calls":
            st = self.server.state
            with st.lock:
                doc = {"calls": st.calls, "max_active": st.max_active}
            self.reply(200, json.dumps(doc).encode())
        else:
            self.reply(404, b'{"error": "not found"}')

    def do_POST(self):
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.reply(413, b'{"error": "body too large"}')
            return
        body = self.rfile.read(length)
        if self.path == "/reset":
            with st.lock:
                st.calls = st.max_active = 0
            self.reply(200, b'{"calls": 0}')
            return
        with st.lock:
            st.calls += 1
            st.active += 1
            st.max_active = max(st.max_active, st.active)
        try:
            status, data, ctype = self.generate(st, body)
        finally:
            # Before the answer leaves: once the client has it, it may call again at once.
            with st.lock:
                st.active -= 1
        self.reply(status, data, ctype)

    def generate(self, st, body):
        """The answer to one request: (status, bytes, content type)."""
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return 400, json.dumps({"error": str(e)}).encode(), "application/json"
        params = doc.get("params") if isinstance(doc.get("params"), dict) else {}
        if params.get("hang"):
            time.sleep(3600)
        time.sleep(float(params.get("sleep_ms", st.sleep_ms)) / 1000.0)
        fail = params.get("fail")
        if isinstance(fail, int) and 100 <= fail <= 599:
            return fail, json.dumps({"error": "told to fail"}).encode(), "application/json"
        size = int(float(params.get("size_kb", st.size_kb)) * 1024)
        return 200, derive(doc, max(size, 0)), "application/octet-stream"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--sleep-ms", type=float, default=200.0)
    ap.add_argument("--size-kb", type=float, default=64.0)
    args = ap.parse_args()
    ThreadingHTTPServer.request_queue_size = 128  # bursts of concurrent proxy calls
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.daemon_threads = True
    srv.state = State(args.sleep_ms, args.size_kb)
    print("listening on %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
