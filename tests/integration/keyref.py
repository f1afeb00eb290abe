"""keyref.py: an independent implementation of gencache's canonical key v1 (DESIGN.md section 2)
in the Python 3 standard library, written from the design text, not from the C code. The golden
vectors in tests/vectors/keys.json are produced by it, and test_key_vectors.py checks both it and
the C library against them. Modes exact, safe, clip and tokens are implemented; aggressive (lossy,
Unicode-version dependent) is not part of the cross-language contract."""

import hashlib
import json
import struct

HEADER = b"gencache-key-v1\n"
MAX_DEPTH = 8
MAX_FIELDS = 1024
MAX_BYTES = 1 << 20

# name -> (recipe fields, scope); fields ending in '!' are required, '*' is every parameter.
DEFAULT_LAYERS = {
    "result": (["*"], "tenant"),
    "image_latent": (["model", "image!", "width", "height", "crop", "rotation"], "global"),
    "text_embedding": (["model", "prompt", "negative_prompt"], "global"),
    "condition": (["model", "prompt", "negative_prompt", "image", "width", "height"], "tenant"),
    "session": (["name"], "session"),
}
LAYER_ORDER = ["result", "image_latent", "text_embedding", "condition", "session"]


class RequestError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Num:
    """A JSON number kept as its literal text."""

    def __init__(self, text):
        self.text = text


def encode_number(lit):
    if all(ch not in lit for ch in ".eE"):
        v = int(lit)
        if v < -(2 ** 63) or v > 2 ** 64 - 1:
            raise RequestError("ELIMIT", f"integer {lit} does not fit in 64 bits")
        return f"i:{v}"
    x = float(lit)
    if x != x or x in (float("inf"), float("-inf")):
        raise RequestError("ELIMIT", f"number {lit} out of range")
    if x.is_integer() and abs(x) <= 2.0 ** 53:
        return f"i:{int(x)}"
    return "f:" + struct.pack(">d", x).hex()


def is_plain_ascii(b):
    return all((0x20 <= c <= 0x7E and c != 0x26) or c in (9, 10, 13) for c in b)


def normalize(mode, text):
    """text: str. Returns the normalized str (exact, safe, clip, tokens)."""
    b = text.encode("utf-8")
    if mode in ("safe", "clip") and is_plain_ascii(b):
        words = [w for w in text.replace("\t", " ").replace("\n", " ").replace("\r", " ").split(" ") if w]
        out = " ".join(words)
        if mode == "clip":
            out = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in out)
        return out
    if mode in ("exact", "safe", "clip", "tokens"):
        return text
    raise ValueError(f"mode {mode} not implemented in the reference")


def enc_str(s):
    b = s.encode("utf-8")
    return b"s:%d:" % len(b) + b


def check_str(s, where):
    if "\x00" in s:
        raise RequestError("EPARSE", f"{where}: NUL in a string")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("EPARSE", f"{where}: lone surrogate")


def name_ok(k):
    return 1 <= len(k) <= 64 and all(0x21 <= ord(c) <= 0x7E and c not in ".=" for c in k)


def encode_value(v, path, depth):
    if depth > MAX_DEPTH:
        raise RequestError("ELIMIT", f"{path}: too deep")
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, Num):
        return encode_number(v.text).encode()
    if v is True:
        return b"b:true"
    if v is False:
        return b"b:false"
    if isinstance(v, list):
        out = b"a:%d:" % len(v)
        for e in v:
            if e is None:
                raise RequestError("EINVAL", f"{path}: null inside an array")
            if isinstance(e, dict):
                raise RequestError("EINVAL", f"{path}: object inside an array")
            out += encode_value(e, path, depth + 1) + b";"
        return out
    raise RequestError("EINVAL", f"{path}: unexpected type")


def walk_strings(v, where):
    if isinstance(v, str):
        check_str(v, where)
    elif isinstance(v, dict):
        for k, m in v.items():
            check_str(k, where)
            walk_strings(m, where)
    elif isinstance(v, list):
        for e in v:
            walk_strings(e, where)


def load(text):
    if len(text) > MAX_BYTES:
        raise RequestError("ELIMIT", "request too large")
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("EPARSE", "invalid UTF-8")

    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise RequestError("EPARSE", f"duplicate name {k}")
            d[k] = v
        return d

    def bad_constant(c):
        raise RequestError("EPARSE", f"{c} is not JSON")

    try:
        root = json.loads(s, object_pairs_hook=pairs, parse_int=Num, parse_float=Num,
                          parse_constant=bad_constant)
    except json.JSONDecodeError as e:
        raise RequestError("EPARSE", str(e))
    except RecursionError:
        raise RequestError("ELIMIT", "too deep")
    walk_strings(root, "request")
    if not isinstance(root, dict):
        raise RequestError("EPARSE", "not an object")
    return root


def integer_encoding(v, name, non_negative):
    if not isinstance(v, Num):
        raise RequestError("EINVAL", f"{name}: expected an integer")
    e = encode_number(v.text)
    if not e.startswith("i:") or (non_negative and e.startswith("i:-")):
        raise RequestError("EINVAL", f"{name}: expected an integer")
    return e


KINDS = {"model": "string", "scheduler": "string", "tokenizer": "string", "session": "string",
         "name": "string", "seed": "int", "steps": "uint", "frames": "uint", "width": "uint",
         "height": "uint", "guidance": "number", "fps": "number", "rotation": "number",
         "params": "object", "prompt_tokens": "tokens", "negative_prompt_tokens": "tokens"}
NOT_PARAMS = {"session", "name"}


class Request:
    def __init__(self, text, mode="safe", trust_tenant=True, tenant=None, modes=None):
        root = load(text)
        model = root.get("model")
        self.mode = (modes or {}).get(model, mode) if isinstance(model, str) else mode
        self.fields = {}  # name -> (encoding bytes, is_param, hidden)
        self.tenant = None
        self.has_seed = False
        self.allow_random = False
        self.prompt = None
        for k, v in root.items():
            if not name_ok(k):
                raise RequestError("EINVAL", f"bad field name {k!r}")
            self.add_top(k, v, trust_tenant)
        if self.mode == "tokens":
            f = self.fields
            if "prompt" in f and "prompt_tokens" not in f:
                raise RequestError("EINVAL", "prompt needs prompt_tokens")
            if "negative_prompt" in f and "negative_prompt_tokens" not in f:
                raise RequestError("EINVAL", "negative_prompt needs negative_prompt_tokens")
            if ("prompt_tokens" in f or "negative_prompt_tokens" in f) and "tokenizer" not in f:
                raise RequestError("EINVAL", "tokens need tokenizer")
        if len(self.fields) > MAX_FIELDS:
            raise RequestError("ELIMIT", "too many fields")
        if tenant is not None:
            self.tenant = tenant

    def add(self, name, enc, param=True, hidden=False):
        self.fields[name] = (enc, param, hidden)

    def add_flat(self, path, v, depth, param):
        if v is None:
            return
        if depth > MAX_DEPTH:
            raise RequestError("ELIMIT", f"{path}: too deep")
        if isinstance(v, dict):
            for k, m in v.items():
                if not name_ok(k):
                    raise RequestError("EINVAL", f"{path}: bad member name {k!r}")
                self.add_flat(path + "." + k, m, depth + 1, param)
            return
        self.add(path, encode_value(v, path, depth), param)

    def add_top(self, k, v, trust_tenant):
        if v is None:
            return
        if k == "cache":
            if v == "allow_random":
                self.allow_random = True
            elif v != "default":
                raise RequestError("EINVAL", "cache: bad value")
            return
        if k == "tenant":
            if not trust_tenant:
                return
            if not isinstance(v, str) or not 1 <= len(v.encode()) <= 256:
                raise RequestError("EINVAL", "tenant: expected a string")
            self.tenant = v
            return
        if k == "image":
            if not isinstance(v, dict) or len(v) != 1:
                raise RequestError("EINVAL", "image: expected path or digest")
            d = v.get("digest")
            if d is None or not isinstance(d, str) or not (
                    len(d) == 71 and d.startswith("sha256:") and all(c in "0123456789abcdef" for c in d[7:])):
                raise RequestError("EINVAL", "image: expected a digest (paths are not in the vectors)")
            self.add("image", b"d:" + d.encode())
            return
        if k in ("prompt", "negative_prompt"):
            if not isinstance(v, str):
                raise RequestError("EINVAL", f"{k}: expected a string")
            n = normalize(self.mode, v)
            if k == "prompt":
                self.prompt = n
            hidden = self.mode == "tokens"
            self.add(k, enc_str(n), param=not hidden, hidden=hidden)
            return
        kind = KINDS.get(k, "any")
        if kind == "string" and not isinstance(v, str):
            raise RequestError("EINVAL", f"{k}: expected a string")
        if kind in ("int", "uint"):
            integer_encoding(v, k, kind == "uint")
        if kind == "number" and not isinstance(v, Num):
            raise RequestError("EINVAL", f"{k}: expected a number")
        if kind == "tokens":
            if not isinstance(v, list):
                raise RequestError("EINVAL", f"{k}: expected an array of integers")
            for e in v:
                integer_encoding(e, k, False)
        if kind == "object" and not isinstance(v, dict):
            raise RequestError("EINVAL", f"{k}: expected an object")
        if k == "seed":
            self.has_seed = True
        self.add_flat(k, v, 1, k not in NOT_PARAMS)

    # ---- keys ---------------------------------------------------------------------------------

    def selected(self, recipe, scope, name, param, hidden):
        if hidden:
            return False
        under = lambda want: name == want or name.startswith(want + ".")
        for r in recipe:
            r = r.rstrip("!")
            if r == "*":
                if param:
                    return True
            elif self.mode == "tokens" and r == "prompt":
                if under("prompt_tokens") or under("tokenizer"):
                    return True
            elif self.mode == "tokens" and r == "negative_prompt":
                if under("negative_prompt_tokens") or under("tokenizer"):
                    return True
            elif under(r):
                return True
        return scope == "session" and under("session")

    def present(self, want):
        return any((n == want or n.startswith(want + ".")) and not h
                   for n, (_, _, h) in self.fields.items())

    def canonical(self, layer, layers=DEFAULT_LAYERS):
        """The canonical document (bytes), or None when the request has no key in the layer."""
        recipe, scope = layers[layer]
        seeded = any(r in ("*", "seed", "seed!") for r in recipe)
        if seeded and not self.has_seed and not self.allow_random:
            return None
        if scope == "session" and not self.present("session"):
            return None
        for r in recipe:
            if r.endswith("!"):
                want = r[:-1]
                if self.mode == "tokens" and want in ("prompt", "negative_prompt"):
                    want += "_tokens"
                if not self.present(want):
                    return None
        lines = []
        for name, (enc, param, hidden) in self.fields.items():
            if self.selected(recipe, scope, name, param, hidden):
                lines.append((name.encode(), enc))
        if scope == "tenant" and self.tenant is not None:
            lines.append((b"tenant", enc_str(self.tenant)))
        lines.sort(key=lambda t: t[0])
        doc = HEADER + layer.encode() + b"\n"
        for n, e in lines:
            doc += n + b"=" + e + b"\n"
        return doc

    def key(self, layer, layers=DEFAULT_LAYERS):
        doc = self.canonical(layer, layers)
        if doc is None:
            return None
        return layer + "/" + hashlib.sha256(doc).hexdigest()
