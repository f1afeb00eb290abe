#!/usr/bin/python3
"""The flags for the limits of slow clients and memory do what the config keys do, and override
them: --header-timeout closes a connection whose head is overdue, --max-connections-per-client
caps one address, --max-inflight-bytes refuses a body beyond the budget with 503 busy before it
is read, --prewarm-max-bytes refuses a larger prewarm job with 413; bad values exit 2 with a
message naming the flag."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHED, Daemon, Runner, check, check_eq  # noqa: E402

TMP = tempfile.mkdtemp(prefix="gencache-limit-flags-")


def closed_within(d, seconds):
    """Opens a connection, sends half a request line and returns how long until the daemon
    closes it (None when it is still open after `seconds`)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=seconds)
    try:
        s.sendall(b"GET /healthz HT")
        t0 = time.monotonic()
        try:
            data = s.recv(4096)
        except socket.timeout:
            return None
        check(data == b"" or b"HTTP/1.1" in data, "closed or answered: %r" % data[:80])
        return time.monotonic() - t0
    finally:
        s.close()


def t_header_timeout():
    conf = os.path.join(TMP, "slow.yaml")
    with open(conf, "w") as f:
        f.write("limits:\n  header_timeout: 1h\n")
    d = Daemon("--config", conf, "--header-timeout", "300ms")
    try:
        took = closed_within(d, 4)
        check(took is not None and took < 3.5, "head deadline of 300ms (swept each second): %r"
              % took)
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_per_client():
    d = Daemon("--max-connections-per-client", "2")
    socks = []
    try:
        # From an address of their own, so the fixture's connections never count.
        for _ in range(5):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", d.port))
            socks.append(s)
        time.sleep(0.3)
        refused = 0
        for s in socks:
            s.settimeout(0.3)
            try:
                refused += s.recv(4096) == b""
            except ConnectionResetError:
                refused += 1
            except socket.timeout:
                pass
        check_eq(refused, 3, "connections beyond --max-connections-per-client 2 closed at once")
        check_eq(d.request("GET", "/healthz")[0], 200, "another address is served")
    finally:
        for s in socks:
            s.close()
        check_eq(d.stop(), 0, "exit status")


def t_inflight():
    d = Daemon("--max-body", "1M", "--max-inflight-bytes", "1M")
    try:
        # One body of max_body always fits; two held at once do not.
        hold = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        key = "result/" + "c" * 64
        hold.sendall(b"PUT /v1/entries/" + key.encode() +
                     b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.3)
        st, _, body = d.request("PUT", "/v1/entries/result/" + "d" * 64, body=b"y" * 100000)
        check_eq((st, json.loads(body)["error"]["code"]), (503, "busy"), "over the budget")
        hold.close()
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_prewarm_max():
    d = Daemon("--prewarm-max-bytes", "1K")
    try:
        lines = "".join(json.dumps({"model": "m", "prompt": "p%d" % i, "seed": i}) + "\n"
                        for i in range(100))
        st, _, body = d.request("POST", "/v1/prewarm", body=lines.encode())
        check_eq(st, 413, "a job beyond --prewarm-max-bytes: %r" % body[:200])
    finally:
        check_eq(d.stop(), 0, "exit status")


def t_bad_values():
    for flag, value in (("--header-timeout", "50ms"), ("--header-timeout", "2h"),
                        ("--max-connections-per-client", "-1"),
                        ("--max-inflight-bytes", "0"), ("--prewarm-max-bytes", "lots")):
        p = subprocess.run([GENCACHED, flag, value], capture_output=True, text=True, timeout=10)
        check_eq(p.returncode, 2, "%s %s exit status" % (flag, value))
        check(flag in p.stderr, "%s named in %r" % (flag, p.stderr))


def main():
    r = Runner()
    r.run("header_timeout", t_header_timeout)
    r.run("per_client", t_per_client)
    r.run("inflight", t_inflight)
    r.run("prewarm_max", t_prewarm_max)
    r.run("bad_values", t_bad_values)
    r.finish()


if __name__ == "__main__":
    main()
