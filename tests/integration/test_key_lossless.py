#!/usr/bin/python3
"""test_key_lossless.py: the lossless claim of the `safe` and `clip` prompt normalizations. Every
pair of prompts that `safe` merges must be identical after the text encoders' own cleaning (CLIP's
simple_tokenizer and Hugging Face's CLIPTokenizer: ftfy.fix_text, html.unescape twice, strip,
collapse \\s+, strip, lower(); umT5: the same without lower()), and every pair `clip` merges must
be identical after CLIP's cleaning. The cleaning is reimplemented here without ftfy, which is exact
on the prompts these modes rewrite: printable ASCII without '&' plus TAB/LF/CR, where ftfy has
nothing to repair (no mojibake without non-ASCII bytes, no entities without '&', no terminal
escapes or control characters; its line-break fix only turns CR into LF, which the white-space
step collapses anyway); the test asserts that every merged prompt is such a prompt. Checked on
the 48,967 real prompts of the sd-discord-dream-2 trace and on adversarial strings (entities,
control characters, NBSP, full-width forms, combining marks, mojibake), which the lossless modes
must leave exactly as given and never merge with anything else. Normalization runs in the C tool,
in batch (`gencache normalize --jsonl`)."""

import html
import json
import os
import re
import subprocess
import sys

BIN = os.environ.get("GENCACHE_BIN_DIR")
SHARED = os.environ.get("GENCACHE_SHARED_DIR", "/work/shared")
TRACE = os.path.join(SHARED, "traces", "sd-discord-dream-2.tsv")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def basic_clean_without_ftfy(text):
    return html.unescape(html.unescape(text)).strip()


def whitespace_clean(text):
    return re.sub(r"\s+", " ", text).strip()


def clip_clean(text):
    return whitespace_clean(basic_clean_without_ftfy(text)).lower()


def umt5_clean(text):
    return whitespace_clean(basic_clean_without_ftfy(text))


def ftfy_inert(text):
    return all((" " <= c <= "~" and c != "&") or c in "\t\n\r" for c in text)


def normalize(mode, texts):
    data = "".join(json.dumps(t) + "\n" for t in texts).encode()
    p = subprocess.run([os.path.join(BIN, "gencache"), "normalize", "--mode", mode, "--jsonl", "-"],
                       input=data, capture_output=True, timeout=120)
    if p.returncode != 0:
        fail(f"gencache normalize --mode {mode} failed: {p.stderr.decode()}")
    out = [json.loads(line) for line in p.stdout.decode().split("\n")[:-1]]
    if len(out) != len(texts):
        fail(f"{len(out)} outputs for {len(texts)} inputs")
    return out


def adversarial():
    cores = [
        "salt &amp; pepper", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s", "a&nbsp;b", "&amp;amp;",
        "AT&T", "fish & chips", "&", "&#x41;", "\x01 ctrl", "back\x08space", "v\x0btab",
        "form\x0cfeed", "\x1b[31mred\x1b[0m", "del\x7f", "nel\x85line", "c1\x9f", "fs\x1csep",
        "a\u00a0b", "a \u00a0 b", "\u00a0lead", "\uff21\uff22\uff23", "\uff43\uff41\uff54",
        "cafe\u0301", "caf\u00e9", "Z\u0351\u036b\u0343a", "n\u0303", "caf\u00c3\u00a9",
        "\u00e2\u20ac\u0153quote\u00e2\u20ac\x9d", "\u00c3\u00bcber", "don\u00e2\u20ac\u2122t",
        "zero\u200bwidth", "\ufeffbom", "soft\u00adhyphen", "\ufb01ne", "\u0131stanbul",
        "stra\u00dfe", "\u03a3\u03b9\u03c3", "\u200fRTL", "\u05e9\u05dc\u05d5\u05dd", "line\u2028sep",
        "para\u2029sep", "ideo\u3000space", "en\u2002space", "\u2764\ufe0f heart", "\U0001f436 dog",
        "\u201csmart\u201d", "\u2014dash", "\u00bd half", "\u2460 circled", "\u212b angstrom",
    ]
    out = []
    for c in cores:
        out += [c, "  " + c + "  Red   Fox ", "A  " + c + "\t\tB", c.upper(), c + "\n\nX"]
    return out


def check_merges(mode, raws, norms, cleaners):
    groups = {}
    for r, n in zip(raws, norms):
        groups.setdefault(n, set()).add(r)
    merged_groups = merged = 0
    for n, members in groups.items():
        if len(members) < 2:
            continue
        merged_groups += 1
        merged += len(members) - 1
        for r in members:
            if not ftfy_inert(r):
                fail(f"{mode} merged a prompt outside the ASCII subset: {r!r} -> {n!r}")
        for name, clean in cleaners:
            cleaned = {clean(r) for r in members}
            if len(cleaned) != 1:
                fail(f"{mode} merged prompts that {name} tells apart: {sorted(members)!r}")
    return merged_groups, merged


def main():
    if not BIN:
        fail("GENCACHE_BIN_DIR is not set")
    if os.path.exists(TRACE):
        with open(TRACE, encoding="utf-8") as f:
            next(f)
            prompts = [line.rstrip("\n").split("\t")[2] for line in f]
        if len(prompts) != 48967:
            fail(f"trace has {len(prompts)} prompts, expected 48967")
    else:
        print(f"note: {TRACE} is missing; checking the built-in prompts only")
        prompts = []
    # ASCII prompts that differ only in white space and case: merges the modes must make.
    prompts += ["a red fox", "a  red fox", " a red\tfox\n", "A Red Fox", "A  RED\r\nfox ",
                "portrait, oil painting", "portrait,  oil painting", "Portrait, Oil Painting"]
    adv = adversarial()
    raws = prompts + adv
    for mode, cleaners in (("safe", [("CLIP", clip_clean), ("umT5", umt5_clean)]),
                           ("clip", [("CLIP", clip_clean)])):
        norms = normalize(mode, raws)
        # Prompts outside the ASCII subset come back byte for byte.
        for r, n in zip(raws, norms):
            if not ftfy_inert(r) and n != r:
                fail(f"{mode} rewrote a prompt it must leave alone: {r!r} -> {n!r}")
            if ftfy_inert(r) and n != (clip_clean(r) if mode == "clip" else umt5_clean(r)):
                fail(f"{mode} of {r!r} is {n!r}, not the encoder's cleaning")
        # Adversarial strings are left as given and merge with nothing else.
        index = {}
        for r, n in zip(raws, norms):
            index.setdefault(n, set()).add(r)
        for r, n in zip(adv, norms[len(prompts):]):
            if ftfy_inert(r):
                continue
            if n != r:
                fail(f"{mode} changed adversarial {r!r} into {n!r}")
            if index[n] != {r}:
                fail(f"{mode} merged adversarial {r!r} with {sorted(index[n] - {r})!r}")
        groups, merged = check_merges(mode, raws, norms, cleaners)
        if groups == 0:
            fail(f"{mode} merged nothing on the trace: the test would not notice a regression")
        print(f"{mode}: {merged} prompts merged into {groups} groups; every merge is identical "
              f"after the encoders' cleaning")
    # Exact merges nothing that differs.
    norms = normalize("exact", raws)
    if norms != raws:
        fail("exact changed a prompt")
    print("ok")


if __name__ == "__main__":
    main()
