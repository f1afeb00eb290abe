#!/usr/bin/python3
"""`gencache export` and `gencache import` against a real gencached: tensor entries go out as one
safetensors file that a reader written from the format's specification accepts (names = keys,
dtype and shape from the entry), come back in byte-exact with their dtype and shape, a file
written here by hand the way Hugging Face's library writes them imports, and hostile files,
misnamed tensors, missing or non-tensor entries and bad usage fail without storing anything."""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gencached_fixture import GENCACHE, Daemon, Runner, check, check_eq  # noqa: E402

DTYPES = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2), "i8": ("I8", 1),
          "u8": ("U8", 1), "i32": ("I32", 4), "i64": ("I64", 8)}


def key(name, layer="image_latent"):
    return "%s/%s" % (layer, hashlib.sha256(name.encode()).hexdigest())


def cli(*args):
    return subprocess.run([GENCACHE, *args], capture_output=True, timeout=30)


def put(d, k, data, dtype=None, shape=None):
    h = {}
    if dtype:
        h = {"X-Gencache-Dtype": dtype, "X-Gencache-Shape": ",".join(map(str, shape))}
    status, _, body = d.request("PUT", "/v1/entries/" + k, body=data, headers=h)
    check(200 <= status < 300, "PUT %s: %d %s" % (k, status, body[:200]))


def get(d, k):
    return d.request("GET", "/v1/entries/" + k)


def read_safetensors(path):
    """A reader written from the specification: returns ({name: (dtype, shape, bytes)}, meta)."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    check((8 + n) % 8 == 0, "data not 8-byte aligned")
    hdr = json.loads(b[8:8 + n].decode("utf-8"))
    data = b[8 + n:]
    meta = hdr.pop("__metadata__", None)
    out, spans = {}, []
    for name, t in hdr.items():
        s, e = t["data_offsets"]
        spans.append((s, e))
        out[name] = (t["dtype"], t["shape"], data[s:e])
    spans.sort()
    pos = 0
    for s, e in spans:
        check_eq(s, pos, "contiguous offsets")
        pos = e
    check_eq(pos, len(data), "data fully covered")
    return out, meta


def write_safetensors(path, tensors, meta=None):
    """Writes tensors {name: (dtype, shape, bytes)} as Hugging Face's writer does: names sorted,
    offsets contiguous, header padded with spaces to a multiple of 8."""
    hdr, blobs, pos = {}, [], 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name in sorted(tensors):
        dt, shape, data = tensors[name]
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def t_export_import_round_trip(d, tmp):
    tensors = {}
    for i, (dt, (st, size)) in enumerate(sorted(DTYPES.items())):
        shape = [1, i + 1, 3] if i % 2 else [i + 2]
        n = 1
        for s in shape:
            n *= s
        data = os.urandom(n * size)
        k = key("rt%d" % i, "image_latent" if i % 2 else "text_embedding")
        put(d, k, data, dt, shape)
        tensors[k] = (dt, st, shape, data)
    out = os.path.join(tmp, "out.safetensors")
    r = cli("export", "--format", "safetensors", "--url", d.url, "-o", out, *tensors)
    check_eq((r.returncode, r.stderr), (0, b""), "export")
    got, _ = read_safetensors(out)
    check_eq(sorted(got), sorted(tensors), "tensor names are the keys")
    for k, (dt, st, shape, data) in tensors.items():
        check_eq(got[k], (st, shape, data), "exported " + k)
    for k in tensors:
        check_eq(d.request("DELETE", "/v1/entries/" + k)[0] // 100, 2, "delete")
    r = cli("import", "--url", d.url, out)
    check_eq(r.returncode, 0, "import: %s" % r.stderr)
    for k, (dt, st, shape, data) in tensors.items():
        status, h, body = get(d, k)
        check_eq(status, 200, "GET " + k)
        check(body == data, "bytes of " + k)
        check_eq(h.get("x-gencache-dtype"), dt, "dtype of " + k)
        check_eq(h.get("x-gencache-shape"), ",".join(map(str, shape)), "shape of " + k)
    # Exporting to standard output gives the same file.
    r = cli("export", "--url", d.url, "-o", "-", *tensors)
    check_eq(r.returncode, 0, "export to stdout")
    with open(out, "rb") as f:
        check(r.stdout == f.read(), "stdout export differs from the file")


def t_import_handmade(d, tmp):
    k1, k2 = key("hand1"), key("hand2", "condition")
    a, b = os.urandom(2 * 4 * 2), os.urandom(3 * 4)
    path = os.path.join(tmp, "hand.safetensors")
    write_safetensors(path, {k1: ("BF16", [2, 4], a), k2: ("F32", [3], b)}, {"format": "pt"})
    r = cli("import", "--url", d.url, path)
    check_eq(r.returncode, 0, "import: %s" % r.stderr)
    check_eq(get(d, k1)[2], a, "k1 bytes")
    check_eq(get(d, k2)[1].get("x-gencache-dtype"), "f32", "k2 dtype")


def t_import_refuses(d, tmp):
    good = key("refused-good")
    cases = {}
    # A name that is not a key: the whole file is refused, the valid tensor included.
    cases["name"] = {good: ("F32", [1], b"\0" * 4), "model.layer.0.weight": ("F32", [1], b"\0" * 4)}
    for what, tensors in cases.items():
        path = os.path.join(tmp, what + ".safetensors")
        write_safetensors(path, tensors)
        r = cli("import", "--url", d.url, path)
        check_eq(r.returncode, 1, what)
        check(b"key" in r.stderr, "%s: message %r" % (what, r.stderr))
    # Hostile files: overlapping offsets, truncated data, a header length past the end, not
    # JSON, an unsupported dtype.
    h = json.dumps({good: {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    key("x"): {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode()
    hostile = {
        "overlap": struct.pack("<Q", len(h)) + h + b"\0" * 6,
        "truncated": None,
        "length": struct.pack("<Q", 1 << 40) + b"{}",
        "notjson": struct.pack("<Q", 5) + b"hello",
        "dtype": None,
    }
    h2 = json.dumps({good: {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    hostile["truncated"] = struct.pack("<Q", len(h2)) + h2 + b"\0" * 15
    h3 = json.dumps({good: {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    hostile["dtype"] = struct.pack("<Q", len(h3)) + h3 + b"\0" * 8
    for what, blob in hostile.items():
        path = os.path.join(tmp, what + ".safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        r = cli("import", "--url", d.url, path)
        check_eq(r.returncode, 1, what)
        check(r.stderr.startswith(b"gencache: "), "%s: %r" % (what, r.stderr))
    check_eq(get(d, good)[0], 404, "nothing stored")
    r = cli("import", "--url", d.url, os.path.join(tmp, "missing.safetensors"))
    check_eq(r.returncode, 1, "missing file")


def t_export_refuses(d, tmp):
    out = os.path.join(tmp, "never.safetensors")
    r = cli("export", "--url", d.url, "-o", out, key("absent"))
    check_eq(r.returncode, 1, "missing key")
    check(b"not found" in r.stderr, r.stderr)
    plain = key("plain", "result")
    put(d, plain, b"video bytes")
    r = cli("export", "--url", d.url, "-o", out, plain)
    check_eq(r.returncode, 1, "not a tensor")
    check(not os.path.exists(out), "no file written on failure")
    for args in (["-o", out], ["--format", "npz", "-o", out, plain], [plain],
                 ["-o", out, "not-a-key"], ["-o", out, plain, plain]):
        r = cli("export", "--url", d.url, *args)
        check_eq(r.returncode, 2, "usage %r" % (args,))
    r = cli("import", "--url", d.url)
    check_eq(r.returncode, 2, "import usage")
    r = cli("import", "--url", d.url, "--codec", "int3", out)
    check_eq(r.returncode, 2, "import codec")
    # An unreachable daemon.
    r = cli("export", "--url", "http://127.0.0.1:9", "-o", out, key("a"))
    check_eq(r.returncode, 1, "unreachable")


def main():
    runner = Runner()
    d = Daemon()
    tmp = tempfile.mkdtemp(prefix="gencache-st-")
    try:
        for name, fn in [("export_import_round_trip", t_export_import_round_trip),
                         ("import_handmade", t_import_handmade),
                         ("import_refuses", t_import_refuses),
                         ("export_refuses", t_export_refuses)]:
            runner.run(name, fn, d, tmp)
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", tmp])
    runner.finish()


if __name__ == "__main__":
    main()
