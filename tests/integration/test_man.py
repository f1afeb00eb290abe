#!/usr/bin/python3
"""The man pages say what the programs do: every option that `gencache --help`, each
`gencache VERB --help` and `gencached --help` print, and every verb, appears in gencache(1) and
gencached(8); every key of the reference table in docs/config.md appears in gencache.yaml(5).
Checked in the scdoc sources (docs/man/*.scd), and in the pages as man renders them when the
build made them (scdoc installed)."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, GENCACHED, Runner, check  # noqa: E402

SRC = os.environ.get("GENCACHE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
BUILD = os.environ.get("GENCACHE_BUILD_DIR") or os.path.join(SRC, "build")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b")


def texts(page):
    """(what, text) of the page: its source, and its rendering when it was built."""
    with open(os.path.join(SRC, "docs", "man", page + ".scd"), encoding="utf-8") as f:
        # scdoc markup (*bold*, _underline_, escapes) is not part of the words.
        text = re.sub(r"[*\\]", "", f.read())
        out = [("docs/man/%s.scd" % page,
                re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", "", text))]
    built = os.path.join(BUILD, "man", page)
    if os.path.exists(built) and shutil.which("man"):
        # man and troff are system programs: a sanitizer runtime preloaded for our library
        # (the sanitizer builds do that for Python) must not reach them.
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
        r = subprocess.run(["man", "-P", "cat", "-l", built], capture_output=True, timeout=30,
                           env=dict(env, MANWIDTH="1000", LANG="C.UTF-8"))
        check(r.returncode == 0 and len(r.stdout) > 1000, "man -l %s: %r" % (built, r.stderr))
        out.append(("man -l " + built, r.stdout.decode()))
    elif not os.path.exists(built):
        print("%s not built (no scdoc): the source alone is checked" % built)
    return out


def help_of(*cmd):
    r = subprocess.run(list(cmd) + ["--help"], capture_output=True, timeout=30)
    check(r.returncode == 0, "%r --help exits 0" % (cmd,))
    return r.stdout.decode()


def require(page, words):
    for what, text in texts(page):
        missing = sorted(w for w in words if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(w),
                                                           text))
        check(not missing, "%s lacks %s" % (what, ", ".join(missing)))


def t_gencache():
    top = help_of(GENCACHE)
    verbs = re.findall(r"^  ([a-z]+) ", top, re.M)
    check(len(verbs) >= 13, "verbs: %r" % verbs)
    words = set(verbs) | set(OPTION.findall(top)) | {"--help", "--version"}
    for v in verbs:
        words |= set(OPTION.findall(help_of(GENCACHE, v)))
    require("gencache.1", words)


def t_gencached():
    opts = set(OPTION.findall(help_of(GENCACHED)))
    check(len(opts) >= 15, "gencached options: %r" % sorted(opts))
    require("gencached.8", opts)


def t_config():
    keys = set()
    with open(os.path.join(SRC, "docs", "config.md"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\| (`[^|]+) \|", line)
            if not m:
                continue
            names = re.findall(r"`([^`]+)`", m.group(1))
            for n in names:
                full = n if "." in n or n == names[0] else names[0].rsplit(".", 1)[0] + "." + n
                keys.add(re.sub(r"<[a-z]+>", "name", full))
    check(len(keys) >= 30, "keys in docs/config.md: %r" % sorted(keys))
    for what, text in texts("gencache.yaml.5"):
        # The page writes layers.<name>.x with the placeholder underlined: layers.name.x.
        text = re.sub(r"layers\.name\.|models\.model\.", lambda m: m.group(0).split(".")[0]
                      + ".name.", text)
        missing = sorted(k for k in keys if k not in text)
        check(not missing, "%s lacks %s" % (what, ", ".join(missing)))


def main():
    runner = Runner()
    for name in ("gencache", "gencached", "config"):
        runner.run(name, globals()["t_" + name])
    runner.finish()


if __name__ == "__main__":
    main()
