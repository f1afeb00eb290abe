"""Starts a real gencached for the integration tests and stops it again.

The daemon listens on 127.0.0.1 port 0 (the kernel picks a free port; the daemon logs the one it
got), keeps its data in a fresh temporary directory, and writes its log to a file there, so a
chatty daemon can never block on a full pipe. Daemon.stop() always leaves no process behind.
"""
import ctypes
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BIN_DIR = os.environ.get("GENCACHE_BIN_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin")
GENCACHED = os.path.join(BIN_DIR, "gencached")
GENCACHE = os.path.join(BIN_DIR, "gencache")


def _die_with_parent():
    """Runs in the child before exec: the daemon gets SIGKILL if the test process dies, so an
    interrupted test never leaves a daemon behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _exit_on_sigterm(signum, frame):
    # A test runner stopping the test with SIGTERM still runs the finally blocks (daemon
    # stopped, temporary directory removed).
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)


class Daemon:
    def __init__(self, *flags, threads=2, data_dir=None, env=None):
        """data_dir: a directory the caller owns and keeps across daemons (restart tests);
        default: a fresh one, removed by stop(). env: variables added to the daemon's
        environment."""
        self.dir = tempfile.mkdtemp(prefix="gencached-test-")
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "gencached.log")
        self.port = None
        self.proc = None
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [GENCACHED, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                 "--threads", str(threads), *flags],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, **env) if env else None, preexec_fn=_die_with_parent)
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gencached exited with %d:\n%s" % (self.proc.returncode,
                                                                    self.log()))
            m = re.search(r"\(port (\d+)\)", self.log())
            if m:
                self.port = int(m.group(1))
                try:
                    status, _, body = self.request("GET", "/healthz")
                    if status == 200 and body == b"ok":
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("gencached did not become ready:\n" + self.log())

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def connect(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """One request; returns (status, headers as a dict with lowercase names, body)."""
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            if own:
                c.close()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signals the daemon and waits; returns its exit status (killed if it hangs)."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    rc = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    rc = "hung"
            else:
                rc = self.proc.returncode
            if rc != 0 and os.path.exists(self.log_path):
                # Whatever went wrong (a sanitizer report, a crash) is in the log.
                print("gencached exited with %s; the end of its log:\n%s" % (rc, self.log()[-6000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


class Runner:
    """Runs test functions in order, reports each, and exits 1 if any failed."""

    def __init__(self):
        self.failed = []

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            fn(*args)
        except Exception as e:  # a failed check or an unexpected error: both fail the case
            self.failed.append(name)
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            import traceback
            traceback.print_exc(file=sys.stdout)
        else:
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)

    def finish(self):
        if self.failed:
            print("%d failed: %s" % (len(self.failed), ", ".join(self.failed)))
            sys.exit(1)
        print("all passed")


def check_eq(actual, expected, what=""):
    if actual != expected:
        a, e = repr(actual), repr(expected)
        raise AssertionError("%s: got %s, expected %s" % (what, a[:300], e[:300]))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Upstream:
    """examples/upstream.py on a free loopback port: the generator behind POST /v1/generate."""

    def __init__(self, *flags):
        src = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(src, "examples", "upstream.py"), "--port", "0",
             *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline().decode()
        m = re.match(r"listening on (\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("upstream.py did not start: %r" % line)
        self.port = int(m.group(1))

    @property
    def url(self):
        return "http://127.0.0.1:%d/generate" % self.port

    def counts(self):
        """{"calls": POSTs so far, "max_active": the most answered at once}."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/calls")
            import json
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def calls(self):
        return self.counts()["calls"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def tenants_config(tokens, admins=()):
    """The `tenants:` lines of a config file for {name: token}; the names in admins get
    admin: true."""
    lines = ["tenants:"]
    for name, tok in tokens.items():
        lines += ["  - name: %s" % name, "    token: %s" % tok]
        if name in admins:
            lines.append("    admin: true")
    return lines
