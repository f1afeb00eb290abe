#!/usr/bin/python3
"""POST /v1/prewarm and GET /v1/jobs/{id} against the real daemon and examples/upstream.py: a job
runs its requests through the proxy in the background within its concurrency limit, reports
progress until it is done, and leaves hits behind; the CLI `gencache prewarm` posts a JSON-lines
file, shows progress, prints a summary and exits 1 when a request failed; malformed jobs are
refused."""
import json
import os
import pty
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, Upstream, check, check_eq  # noqa: E402

SLEEP_MS = 150


def req(i, **extra):
    doc = {"model": "sdxl", "prompt": "prewarm subject %d" % i, "seed": i}
    doc.update(extra)
    return doc


def post_job(d, body):
    st, h, data = d.request("POST", "/v1/prewarm", body=body,
                            headers={"Content-Type": "application/json"})
    return st, h, json.loads(data) if data else None


def job(d, jid):
    st, _, data = d.request("GET", "/v1/jobs/" + jid)
    check_eq(st, 200, "job status")
    return json.loads(data)


def wait_done(d, jid, timeout=20):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        j = job(d, jid)
        seen.append(j["done"])
        if j["state"] == "done":
            return j, seen
        time.sleep(0.05)
    raise AssertionError("job %s not done after %ds: %r" % (jid, timeout, j))


def gen(d, doc):
    return d.request("POST", "/v1/generate", body=json.dumps(doc).encode())


def t_job_progress_then_hits(d, up):
    n = 12
    docs = [req(i) for i in range(n)]
    before = up.calls()
    t0 = time.monotonic()
    st, h, doc = post_job(d, json.dumps({"requests": docs}).encode())
    check_eq(st, 202, "prewarm status")
    check_eq(doc["total"], n, "total")
    jid = doc["job"]
    check_eq(h.get("location"), "/v1/jobs/" + jid, "Location")
    first = job(d, jid)
    check_eq(first["state"], "running", "state right after the 202")
    check(first["done"] < n, "not all done at once")
    for f in ("id", "total", "done", "hits", "misses", "errors", "bypassed"):
        check(f in first, "field %s in %r" % (f, first))
    final, seen = wait_done(d, jid)
    elapsed = time.monotonic() - t0
    check(seen == sorted(seen), "progress only goes forward: %r" % seen)
    check(len(set(seen)) >= 2, "progress seen in steps: %r" % seen)
    check_eq((final["done"], final["misses"], final["hits"], final["errors"], final["bypassed"]),
             (n, n, 0, 0, 0), "final counters")
    counts = up.counts()
    check_eq(counts["calls"] - before, n, "upstream calls")
    check(counts["max_active"] <= 4, "concurrency limit 4, upstream saw %d" % counts["max_active"])
    check(elapsed >= (n / 4) * SLEEP_MS / 1000 * 0.9, "too fast for 4 at a time: %.2fs" % elapsed)
    for i, dd in enumerate(docs):
        st, hh, _ = gen(d, dd)
        check_eq((st, hh.get("x-gencache")), (200, "hit"), "request %d after prewarm" % i)
    check_eq(up.calls() - before, n, "hits call nobody")

    # The same job again: all hits, nothing forwarded.
    st, _, doc = post_job(d, json.dumps({"requests": docs}).encode())
    check_eq(st, 202, "second job")
    final, _ = wait_done(d, doc["job"])
    check_eq((final["hits"], final["misses"]), (n, 0), "second job counters")
    check_eq(up.calls() - before, n, "upstream calls after the second job")


def t_mixed_jsonl(d, up):
    lines = [json.dumps(req(100)), "", json.dumps(req(0)),  # a miss and an earlier hit
             json.dumps({"model": "sdxl", "prompt": "no seed"}),  # bypass
             json.dumps(req(101, params={"fail": 500})),  # upstream error
             '{"prompt": "x", "seed": "bad"}']  # a bad request
    st, _, doc = post_job(d, "\n".join(lines).encode())
    check_eq(st, 202, "jsonl status")
    check_eq(doc["total"], 5, "blank lines are skipped")
    final, _ = wait_done(d, doc["job"])
    check_eq((final["misses"], final["hits"], final["bypassed"], final["errors"]),
             (1, 1, 1, 2), "mixed counters %r" % final)
    check("first_error" in final, "first error reported")


def t_bad_jobs(d, up):
    for body, what in ((b"", "empty"), (b'{"requests": 5}', "requests not a list"),
                       (b'{"requests": [1]}', "a request that is not an object"),
                       (b'{"requests": []}', "no requests"), (b"[1,2]", "an array"),
                       (b"garbage\n", "a line that is not an object"),
                       (b'{"model": "m", "seed": 1}\n{not json\n',
                        "a line that starts like an object but is not JSON"),
                       (b'{"model": "m"} trailing\n', "an object followed by more on its line"),
                       (b'{"model": "m", "seed": 1}\n{"a": 1}{"b": 2}\n',
                        "two objects on one line")):
        st, h, doc = post_job(d, body)
        check_eq(st, 400, what)
        check_eq(doc["error"]["code"], "bad_request", what + " code")
    st, _, data = d.request("GET", "/v1/jobs/no-such-job")
    check_eq(st, 404, "unknown job")
    check_eq(json.loads(data)["error"]["code"], "unknown_job", "unknown job code")
    st, _, _ = d.request("GET", "/v1/prewarm")
    check_eq(st, 405, "GET /v1/prewarm")
    st, _, _ = d.request("POST", "/v1/jobs/x", body=b"{}")
    check_eq(st, 405, "POST /v1/jobs/x")


def run_cli(d, lines, tmp):
    path = os.path.join(tmp, "requests.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return subprocess.run([GENCACHE, "prewarm", "--url", d.url, path], capture_output=True,
                          timeout=60, text=True)


def t_cli(d, up):
    with tempfile.TemporaryDirectory() as tmp:
        lines = [json.dumps(req(200 + i)) for i in range(6)]
        p = run_cli(d, lines, tmp)
        check_eq(p.returncode, 0, "cli exit status; stderr %r" % p.stderr)
        check("6 requests" in p.stdout and "6 misses" in p.stdout and "0 errors" in p.stdout,
              "summary %r" % p.stdout)
        check("prewarm: 6/6 done" in p.stderr, "progress line when not a terminal: %r" % p.stderr)
        p = run_cli(d, lines + [json.dumps(req(300, params={"fail": 503}))], tmp)
        check_eq(p.returncode, 1, "cli exit status with a failed request")
        check("6 hits" in p.stdout and "1 errors" in p.stdout, "summary %r" % p.stdout)
        check("502" in p.stderr, "first error shown: %r" % p.stderr)
        # On a terminal: a progress bar redrawn in place.
        master, slave = pty.openpty()
        try:
            path = os.path.join(tmp, "requests.jsonl")
            p = subprocess.run([GENCACHE, "prewarm", "--url", d.url, path], stdout=subprocess.PIPE,
                               stderr=slave, timeout=60, text=True)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        check_eq(p.returncode, 1, "cli on a terminal (the failing request is still in the file)")
        check(re.search(rb"\r\[#{30}\] 100% 7/7", out), "progress bar on a terminal: %r" % out[-300:])
        p = run_cli(d, ["not a request"], tmp)
        check_eq(p.returncode, 1, "cli exit status for a refused job")
        check("400" in p.stderr, "refusal shown: %r" % p.stderr)
        p = subprocess.run([GENCACHE, "prewarm", "--url", d.url, os.path.join(tmp, "missing")],
                           capture_output=True, timeout=30, text=True)
        check_eq(p.returncode, 1, "missing file")
        p = subprocess.run([GENCACHE, "prewarm", "--url", d.url], capture_output=True,
                           timeout=30, text=True)
        check_eq(p.returncode, 2, "no file: usage")


FAIR_CONFIG = """
tenants:
  - name: alice
    token: "tok-alice-0123456789"
  - name: bob
    token: "tok-bob-0123456789"
"""


def t_tenant_fairness(up):
    """One tenant's prewarm backlog neither takes every job slot nor every upstream worker:
    another tenant can still submit jobs, and an interactive generate is served by a worker kept
    for interactive requests while the backlog waits."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gencache.yaml")
        with open(path, "w") as f:
            f.write(FAIR_CONFIG)
        d = Daemon("--config", path, "--upstream", up.url, "--upstream-timeout", "20",
                   "--upstream-concurrency", "2")
        alice = {"Authorization": "Bearer tok-alice-0123456789",
                 "Content-Type": "application/json"}
        bob = {"Authorization": "Bearer tok-bob-0123456789", "Content-Type": "application/json"}
        try:
            slow = [req(300 + i, params={"sleep_ms": 1500}) for i in range(8)]
            for doc in slow:
                st, _, _ = d.request("POST", "/v1/prewarm", body=json.dumps(doc).encode(),
                                     headers=alice)
                check_eq(st, 202, "alice's job")
            st, _, body = d.request("POST", "/v1/prewarm", body=json.dumps(req(399)).encode(),
                                    headers=alice)
            check_eq((st, json.loads(body)["error"]["code"]), (429, "too_many_jobs"),
                     "alice's ninth running job")
            st, _, _ = d.request("POST", "/v1/prewarm", body=json.dumps(req(400)).encode(),
                                 headers=bob)
            check_eq(st, 202, "bob can still submit a job")
            time.sleep(0.2)  # the backlog reaches the upstream queue
            t0 = time.monotonic()
            st, h, _ = d.request("POST", "/v1/generate",
                                 body=json.dumps(req(401, params={"sleep_ms": 100})).encode(),
                                 headers=bob)
            took = time.monotonic() - t0
            check_eq((st, h.get("x-gencache")), (200, "miss"), "bob's interactive generate")
            # The backlog alone is 8 x 1.5 s on the one worker background work may use.
            check(took < 1.4, "bob's generate waited %.2f s behind alice's backlog" % took)
        finally:
            d.stop()


def main():
    r = Runner()
    up = Upstream("--sleep-ms", str(SLEEP_MS), "--size-kb", "16")
    try:
        d = Daemon("--upstream", up.url, "--upstream-timeout", "5")
        try:
            r.run("job_progress_then_hits", t_job_progress_then_hits, d, up)
            r.run("mixed_jsonl", t_mixed_jsonl, d, up)
            r.run("bad_jobs", t_bad_jobs, d, up)
            r.run("cli", t_cli, d, up)
        finally:
            rc = d.stop()
        r.run("clean_exit", lambda: check_eq(rc, 0, "exit status"))
        r.run("tenant_fairness", t_tenant_fairness, up)
    finally:
        up.stop()
    r.finish()


if __name__ == "__main__":
    main()
