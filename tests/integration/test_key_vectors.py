#!/usr/bin/python3
"""test_key_vectors.py: the golden key vectors (tests/vectors/keys.json) against an independent
Python implementation (keyref.py) and against the C command-line tool. For every vector the
canonical document and key of every default layer are recomputed from the request text alone and
compared with the file, then `gencache key --json` is run on the request and compared too. Invalid
requests must be refused by both with the expected error. `--generate` rewrites the file from the
SPECS below (review the diff: a changed key is a wire-format change)."""

import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keyref  # noqa: E402

SRC = os.environ.get("GENCACHE_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VECTORS = os.path.join(SRC, "tests", "vectors", "keys.json")
D1 = "sha256:" + "0123456789abcdef" * 4
D2 = "sha256:" + "fedcba9876543210" * 4

BASE = ('"model": "wan2.2-t2v-5b", "seed": 42, "steps": 50, "guidance": 7.5, "frames": 16, '
        '"fps": 8, "width": 832, "height": 480, "scheduler": "unipc"')


def req(extra, base=True):
    if not base:
        return "{" + extra + "}"
    return "{" + BASE + (", " + extra if extra else "") + "}"


# (name, request text, options). Options: mode (default safe), tenant (set after parsing).
SPECS = [
    ("typical", req('"prompt": "a red fox running through snow", "negative_prompt": "blurry"'), {}),
    ("typical_image", req(f'"prompt": "a red fox", "image": {{"digest": "{D1}"}}'), {}),
    ("other_image", req(f'"prompt": "a red fox", "image": {{"digest": "{D2}"}}'), {}),
    ("minimal_prompt_only", '{"prompt": "a cat"}', {}),
    ("empty_object", "{}", {}),
    ("model_only", '{"model": "svd-xt"}', {}),
    ("allow_random_no_seed", '{"model": "m", "prompt": "a cat", "cache": "allow_random"}', {}),
    ("cache_default_no_seed", '{"model": "m", "prompt": "a cat", "cache": "default"}', {}),
    ("seed_zero", '{"model": "m", "prompt": "a cat", "seed": 0}', {}),
    ("seed_negative", '{"model": "m", "prompt": "a cat", "seed": -1}', {}),
    # White space kinds and letter case.
    ("ws_runs", req('"prompt": "  a   red\\tfox \\n\\r running  "'), {}),
    ("ws_single", req('"prompt": "a red fox running"'), {}),
    ("ws_only", req('"prompt": " \\t\\n "'), {}),
    ("empty_prompt", req('"prompt": ""'), {}),
    ("ws_exact_mode", req('"prompt": "  a   red\\tfox \\n\\r running  "'), {"mode": "exact"}),
    ("case_safe", req('"prompt": "A Red FOX  Running"'), {}),
    ("case_clip", req('"prompt": "A Red FOX  Running"'), {"mode": "clip"}),
    ("nbsp_untouched", req('"prompt": "a\\u00a0red  fox"'), {}),
    ("nbsp_clip_untouched", req('"prompt": "A\\u00a0Red  Fox"'), {"mode": "clip"}),
    ("vertical_tab_untouched", req('"prompt": "a\\u000bred  fox"'), {}),
    ("form_feed_untouched", req('"prompt": "a\\u000cred  fox"'), {}),
    ("ideographic_space_untouched", req('"prompt": "a\\u3000red  fox"'), {}),
    ("control_char_untouched", req('"prompt": "a\\u0001 red  fox"'), {}),
    ("del_char_untouched", req('"prompt": "a\\u007f red  fox"'), {}),
    # HTML entities: '&' keeps a prompt away from the lossless rewrites.
    ("entity_amp", req('"prompt": "salt &amp; pepper"'), {}),
    ("entity_plain_amp", req('"prompt": "salt & pepper"'), {}),
    ("entity_double", req('"prompt": "salt &amp;amp; pepper"'), {}),
    ("entity_numeric", req('"prompt": "caf&#233;  au lait"'), {}),
    ("entity_lt", req('"prompt": "a &lt;b&gt; tag"'), {"mode": "clip"}),
    # Unicode: combining marks, NFC vs NFD, full-width, emoji, RTL, CJK.
    ("nfc_cafe", req('"prompt": "caf\\u00e9"'), {}),
    ("nfd_cafe", req('"prompt": "cafe\\u0301"'), {}),
    ("combining_stack", req('"prompt": "Z\\u0351\\u036b\\u0343a\\u0300lgo"'), {}),
    ("fullwidth", req('"prompt": "\\uff21\\uff22\\uff23  cat"'), {}),
    ("fullwidth_clip", req('"prompt": "\\uff21\\uff22\\uff23  Cat"'), {"mode": "clip"}),
    ("emoji", req('"prompt": "a dog \\ud83d\\udc36  with a hat \\ud83c\\udfa9"'), {}),
    ("emoji_zwj", req('"prompt": "\\ud83d\\udc68\\u200d\\ud83d\\udc69\\u200d\\ud83d\\udc67 family"'), {}),
    ("emoji_raw_utf8", req('"prompt": "ü🙂 ü"'), {}),
    ("rtl_arabic", req('"prompt": "\\u0642\\u0637\\u0629 \\u0639\\u0644\\u0649 \\u0633\\u0637\\u062d"'), {}),
    ("rtl_hebrew_mark", req('"prompt": "\\u200f\\u05d7\\u05ea\\u05d5\\u05dc  cat"'), {}),
    ("cjk", req('"prompt": "\\u732b\\u5728\\u5c4b\\u9876\\u4e0a"'), {}),
    ("mojibake", req('"prompt": "cafÃ© crÃ¨me"'), {}),
    ("smart_quotes", req('"prompt": "\\u201cquoted\\u201d  text"'), {}),
    ("newline_inside_prompt_exact", req('"prompt": "line one\\nline two"'), {"mode": "exact"}),
    ("negative_prompt_normalized", req('"prompt": "fox", "negative_prompt": "  Blurry,  LOW quality "'), {"mode": "clip"}),
    # Numbers.
    ("num_seven_int", req('"params": {"x": 7}'), {}),
    ("num_seven_real", req('"params": {"x": 7.0}'), {}),
    ("num_seven_exp", req('"params": {"x": 7e0}'), {}),
    ("num_neg_zero_int", req('"params": {"x": -0}'), {}),
    ("num_neg_zero_real", req('"params": {"x": -0.0}'), {}),
    ("num_1e21", req('"params": {"x": 1e21}'), {}),
    ("num_0_1", req('"params": {"x": 0.1}'), {}),
    ("num_big_uint64", req('"params": {"x": 18446744073709551615}'), {}),
    ("num_min_int64", req('"params": {"x": -9223372036854775808}'), {}),
    ("num_2p53", req('"params": {"x": 9007199254740992}'), {}),
    ("num_2p53_plus1_int", req('"params": {"x": 9007199254740993}'), {}),
    ("num_2p53_real", req('"params": {"x": 9007199254740992.0}'), {}),
    ("num_2p53_plus1_real", req('"params": {"x": 9007199254740993.0}'), {}),
    ("num_2p53_plus2_real", req('"params": {"x": 9007199254740994.0}'), {}),
    ("num_tiny", req('"params": {"x": 5e-324}'), {}),
    ("num_underflow", req('"params": {"x": 1e-400}'), {}),
    ("num_negative_real", req('"params": {"x": -2.5}'), {}),
    ("guidance_int_vs_real", req('"prompt": "fox"').replace('"guidance": 7.5', '"guidance": 7'), {}),
    ("guidance_real_seven", req('"prompt": "fox"').replace('"guidance": 7.5', '"guidance": 7.0'), {}),
    ("steps_real_integral", req('"prompt": "fox"').replace('"steps": 50', '"steps": 50.0'), {}),
    # Nested params, arrays, booleans, null, unknown fields.
    ("params_nested", req('"prompt": "fox", "params": {"lora": {"name": "pixel", "scale": 0.8}, "hires": true, "tile": false}'), {}),
    ("params_order_swapped", req('"params": {"tile": false, "hires": true, "lora": {"scale": 0.8, "name": "pixel"}}, "prompt": "fox"'), {}),
    ("params_empty", req('"prompt": "fox", "params": {}'), {}),
    ("params_null_member", req('"prompt": "fox", "params": {"a": null, "b": 1}'), {}),
    ("params_array", req('"prompt": "fox", "params": {"ids": [1, 2.5, "x", true, [3, [4]], []]}'), {}),
    ("null_fields", '{"model": "m", "seed": 3, "prompt": "fox", "negative_prompt": null, "image": null, "scheduler": null}', {}),
    ("null_fields_absent", '{"model": "m", "seed": 3, "prompt": "fox"}', {}),
    ("unknown_top_level", req('"prompt": "fox", "motion_bucket_id": 127, "extra": {"k": "v"}, "Upper-Case": 1'), {}),
    ("crop_rotation", req(f'"prompt": "fox", "image": {{"digest": "{D1}"}}, "crop": [0, 0, 512, 512], "rotation": 90'), {}),
    ("crop_other", req(f'"prompt": "fox", "image": {{"digest": "{D1}"}}, "crop": [0, 0, 256, 256], "rotation": 90'), {}),
    ("rotation_other", req(f'"prompt": "fox", "image": {{"digest": "{D1}"}}, "crop": [0, 0, 512, 512], "rotation": 180'), {}),
    ("width_other", req(f'"prompt": "fox", "image": {{"digest": "{D1}"}}').replace('"width": 832', '"width": 1280'), {}),
    # Tokens mode.
    ("tokens_a", req('"prompt": "A photo of a cat", "prompt_tokens": [49406, 320, 1125, 539, 320, 2368, 49407], "tokenizer": "openai/clip-vit-large-patch14@1"'), {"mode": "tokens"}),
    ("tokens_b_same_ids", req('"prompt": "a  PHOTO of a cat!", "prompt_tokens": [49406, 320, 1125, 539, 320, 2368, 49407], "tokenizer": "openai/clip-vit-large-patch14@1"'), {"mode": "tokens"}),
    ("tokens_negative", req('"prompt": "cat", "prompt_tokens": [49406, 2368, 49407], "negative_prompt": "dog", "negative_prompt_tokens": [49406, 1929, 49407], "tokenizer": "clip@1"'), {"mode": "tokens"}),
    ("tokens_other_tokenizer", req('"prompt": "cat", "prompt_tokens": [49406, 2368, 49407], "tokenizer": "clip@2"'), {"mode": "tokens"}),
    ("tokens_without_prompt_text", req('"prompt_tokens": [1, 2, 3], "tokenizer": "umt5-xxl@1"'), {"mode": "tokens"}),
    ("tokens_fields_in_safe_mode", req('"prompt": "cat", "prompt_tokens": [49406, 2368, 49407], "tokenizer": "clip@1"'), {}),
    # Tenants and sessions.
    ("tenant_acme", req('"prompt": "fox", "tenant": "acme"'), {}),
    ("tenant_globex", req('"prompt": "fox", "tenant": "globex"'), {}),
    ("tenant_unicode", req('"prompt": "fox", "tenant": "\\u00e9quipe-1"'), {}),
    ("tenant_set_by_caller", req('"prompt": "fox"'), {"tenant": "acme"}),
    ("tenant_caller_overrides_body", req('"prompt": "fox", "tenant": "mallory"'), {"tenant": "acme"}),
    ("session_step", '{"session": "gen-7f3a", "name": "step12.kv", "model": "wan"}', {}),
    ("session_other_name", '{"session": "gen-7f3a", "name": "step13.kv", "model": "wan"}', {}),
    ("session_with_generation", req('"prompt": "fox", "session": "gen-1", "name": "latents"'), {}),
    # Per-model modes.
    ("model_mode_clip", '{"model": "sd15", "prompt": "A  Cat", "seed": 1}', {"modes": {"sd15": "clip"}}),
    ("model_mode_other_model", '{"model": "wan", "prompt": "A  Cat", "seed": 1}', {"modes": {"sd15": "clip"}}),
    ("whitespace_in_json", '  {\n\t"prompt" : "fox" ,\r\n "seed":1 }  ', {}),
]

INVALID = [
    ("not_json", "{", "EPARSE", {}),
    ("array_root", "[1, 2]", "EPARSE", {}),
    ("string_root", '"prompt"', "EPARSE", {}),
    ("trailing_garbage", '{"seed": 1} x', "EPARSE", {}),
    ("duplicate_name", '{"seed": 1, "seed": 2}', "EPARSE", {}),
    ("nan_literal", '{"guidance": NaN}', "EPARSE", {}),
    ("lone_surrogate", '{"prompt": "\\ud800"}', "EPARSE", {}),
    ("nul_escape", '{"prompt": "a\\u0000b"}', "EPARSE", {}),
    ("number_overflow", '{"guidance": 1e400}', "ELIMIT", {}),
    ("integer_beyond_uint64", '{"params": {"x": 18446744073709551616}}', "ELIMIT", {}),
    ("integer_below_int64", '{"params": {"x": -9223372036854775809}}', "ELIMIT", {}),
    ("prompt_not_string", '{"prompt": 5}', "EINVAL", {}),
    ("model_not_string", '{"model": ["a"]}', "EINVAL", {}),
    ("seed_fraction", '{"seed": 1.5}', "EINVAL", {}),
    ("seed_string", '{"seed": "42"}', "EINVAL", {}),
    ("seed_huge_real", '{"seed": 1e21}', "EINVAL", {}),
    ("steps_negative", '{"steps": -1}', "EINVAL", {}),
    ("width_bool", '{"width": true}', "EINVAL", {}),
    ("guidance_string", '{"guidance": "7.5"}', "EINVAL", {}),
    ("params_not_object", '{"params": [1]}', "EINVAL", {}),
    ("object_in_array", '{"params": {"a": [{"b": 1}]}}', "EINVAL", {}),
    ("null_in_array", '{"params": {"a": [1, null]}}', "EINVAL", {}),
    ("dotted_name", '{"params.x": 1}', "EINVAL", {}),
    ("dotted_member", '{"params": {"a.b": 1}}', "EINVAL", {}),
    ("equals_in_name", '{"a=b": 1}', "EINVAL", {}),
    ("space_in_name", '{"a b": 1}', "EINVAL", {}),
    ("empty_name", '{"": 1}', "EINVAL", {}),
    ("image_bad_digest", '{"image": {"digest": "sha256:ABC"}}', "EINVAL", {}),
    ("image_uppercase_digest", '{"image": {"digest": "sha256:' + "A" * 64 + '"}}', "EINVAL", {}),
    ("image_two_members", '{"image": {"digest": "' + D1 + '", "path": "x.png"}}', "EINVAL", {}),
    ("image_string", '{"image": "x.png"}', "EINVAL", {}),
    ("cache_bad", '{"cache": "yes"}', "EINVAL", {}),
    ("tenant_empty", '{"tenant": ""}', "EINVAL", {}),
    ("tokens_missing", '{"prompt": "cat", "seed": 1}', "EINVAL", {"mode": "tokens"}),
    ("tokens_no_tokenizer", '{"prompt": "cat", "prompt_tokens": [1], "seed": 1}', "EINVAL", {"mode": "tokens"}),
    ("tokens_not_integers", '{"prompt_tokens": [1, 2.5], "tokenizer": "t"}', "EINVAL", {"mode": "tokens"}),
    ("too_deep", '{"params": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}', "ELIMIT", {}),
    ("invalid_utf8", b'{"prompt": "\xff"}', "EPARSE", {}),
    ("overlong_utf8", b'{"prompt": "\xc0\xaf"}', "EPARSE", {}),
    ("encoded_surrogate", b'{"prompt": "\xed\xa0\x80"}', "EPARSE", {}),
]


def as_bytes(t):
    return t if isinstance(t, bytes) else t.encode("utf-8")


def reference(text, opts):
    r = keyref.Request(as_bytes(text), mode=opts.get("mode", "safe"), tenant=opts.get("tenant"),
                       modes=opts.get("modes"))
    layers = {}
    for layer in keyref.LAYER_ORDER:
        doc = r.canonical(layer)
        if doc is None:
            layers[layer] = {"uncacheable": True}
        else:
            layers[layer] = {"canonical": doc.decode("utf-8"), "key": r.key(layer)}
    return {"prompt": r.prompt, "layers": layers}


def generate():
    vectors = []
    for name, text, opts in SPECS:
        v = {"name": name, "request": as_bytes(text).decode("utf-8")}
        v.update(opts)
        v.update(reference(text, opts))
        vectors.append(v)
    invalid = []
    for name, text, code, opts in INVALID:
        try:
            reference(text, opts)
        except keyref.RequestError as e:
            if e.code != code:
                raise SystemExit(f"{name}: reference says {e.code}, spec says {code}")
        else:
            raise SystemExit(f"{name}: reference accepted an invalid request")
        entry = {"name": name, "error": code}
        if isinstance(text, bytes):
            entry["request_hex"] = text.hex()
        else:
            entry["request"] = text
        entry.update(opts)
        invalid.append(entry)
    doc = {
        "format": "gencache-key-vectors-v1",
        "about": "Canonical key v1 (DESIGN.md section 2). Each vector: the request text, the mode "
                 "set as the default (and per-model modes), an optional tenant set by the caller "
                 "after parsing (the body's tenant is trusted), and for each default layer the "
                 "canonical document and key, or uncacheable. Produced by "
                 "tests/integration/keyref.py.",
        "vectors": vectors,
        "invalid": invalid,
    }
    with open(VECTORS, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors and {len(invalid)} invalid requests to {VECTORS}")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def invalid_text(v):
    return bytes.fromhex(v["request_hex"]) if "request_hex" in v else v["request"].encode("utf-8")


def check_reference(doc):
    for v in doc["vectors"]:
        got = reference(v["request"], v)
        if got["layers"] != v["layers"]:
            fail(f"{v['name']}: the reference disagrees with the file:\n{got}\n{v['layers']}")
        if got["prompt"] != v["prompt"]:
            fail(f"{v['name']}: prompt {got['prompt']!r} != {v['prompt']!r}")
    for v in doc["invalid"]:
        try:
            reference(invalid_text(v), v)
        except keyref.RequestError as e:
            if e.code != v["error"]:
                fail(f"{v['name']}: reference says {e.code}, file says {v['error']}")
        else:
            fail(f"{v['name']}: reference accepted an invalid request")


def check_coverage(doc):
    vs = doc["vectors"]
    if len(vs) < 60:
        fail(f"only {len(vs)} vectors")
    modes = {v.get("mode", "safe") for v in vs}
    if not {"exact", "safe", "clip", "tokens"} <= modes:
        fail(f"modes covered: {modes}")
    for layer in keyref.LAYER_ORDER:
        if not any("key" in v["layers"][layer] for v in vs):
            fail(f"no vector has a key in layer {layer}")
        if layer in ("result", "image_latent", "session") and not any(
                v["layers"][layer].get("uncacheable") for v in vs):
            fail(f"no vector is uncacheable in layer {layer}")
    # Requests that must share a result key (normalization, number forms, member order, null,
    # caller-set tenant); every other pair of vectors must not.
    groups = [{"ws_runs", "ws_single", "case_clip"}, {"ws_only", "empty_prompt"},
              {"num_seven_int", "num_seven_real", "num_seven_exp"},
              {"num_neg_zero_int", "num_neg_zero_real", "num_underflow"},
              {"num_2p53", "num_2p53_real", "num_2p53_plus1_real"},
              {"guidance_int_vs_real", "guidance_real_seven"},
              {"steps_real_integral", "params_empty", "session_with_generation"},
              {"params_nested", "params_order_swapped"}, {"null_fields", "null_fields_absent"},
              {"tokens_a", "tokens_b_same_ids"},
              {"tenant_acme", "tenant_set_by_caller", "tenant_caller_overrides_body"}]
    agree = {(a, b) for g in groups for a in g for b in g}
    by_name = {v["name"]: v for v in vs}
    by_key = {}
    for v in vs:
        k = v["layers"]["result"].get("key")
        if k:
            by_key.setdefault(k, []).append(v["name"])
    for g in groups:
        if len({by_name[n]["layers"]["result"].get("key") for n in g}) != 1:
            fail(f"vectors {sorted(g)} should share one result key")
    for k, names in by_key.items():
        for a in names:
            for b in names:
                if a < b and (a, b) not in agree:
                    fail(f"vectors {a} and {b} share a result key")


def run_cli(gencache, text, opts):
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        cmd = [gencache, "key", "--json", path]
        if "mode" in opts:
            cmd[2:2] = ["--mode", opts["mode"]]
        if "tenant" in opts:
            cmd[2:2] = ["--tenant", opts["tenant"]]
        return subprocess.run(cmd, capture_output=True, timeout=30)
    finally:
        os.unlink(path)


def check_cli(doc, gencache):
    n = 0
    for v in doc["vectors"]:
        if "modes" in v:
            continue  # per-model modes are configuration, checked by the C unit test
        p = run_cli(gencache, v["request"].encode("utf-8"), v)
        if p.returncode != 0:
            fail(f"{v['name']}: gencache key failed: {p.stderr.decode()}")
        out = json.loads(p.stdout)
        for layer, want in v["layers"].items():
            if want.get("uncacheable"):
                if layer in out["keys"] or layer not in out["uncacheable"]:
                    fail(f"{v['name']}/{layer}: C gives a key for an uncacheable layer")
                continue
            if out["keys"].get(layer) != want["key"]:
                fail(f"{v['name']}/{layer}: C key {out['keys'].get(layer)} != {want['key']}\n"
                     f"C canonical:\n{out['canonical'].get(layer)}\nexpected:\n{want['canonical']}")
            if out["canonical"][layer] != want["canonical"]:
                fail(f"{v['name']}/{layer}: canonical documents differ")
        if out["prompt"] != v["prompt"]:
            fail(f"{v['name']}: C prompt {out['prompt']!r} != {v['prompt']!r}")
        n += 1
    for v in doc["invalid"]:
        p = run_cli(gencache, invalid_text(v), v)
        if p.returncode != 1 or f"({v['error']})".encode() not in p.stderr:
            fail(f"{v['name']}: gencache key should fail with {v['error']}: rc={p.returncode} "
                 f"stderr={p.stderr.decode(errors='replace')}")
        n += 1
    # The plain output: one <layer>/<hex> line per cacheable layer, notes on stderr.
    v = doc["vectors"][0]
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(v["request"].encode())
        path = f.name
    p = subprocess.run([gencache, "key", path], capture_output=True, timeout=30)
    p2 = subprocess.run([gencache, "key", "--layer", "image_latent", path], capture_output=True,
                        timeout=30)
    p3 = subprocess.run([gencache, "key", "--layer", "nope", path], capture_output=True, timeout=30)
    os.unlink(path)
    want = [v["layers"][l]["key"] for l in keyref.LAYER_ORDER if "key" in v["layers"][l]]
    if p.returncode != 0 or p.stdout.decode().split() != want:
        fail(f"plain output {p.stdout!r} != {want}")
    if b"not cacheable" not in p.stderr:
        fail("no note on stderr for an uncacheable layer")
    if p2.returncode != 1 or p2.stdout or b"not cacheable" not in p2.stderr:
        fail("an explicitly named uncacheable layer must fail with a note")
    if p3.returncode != 1 or b"unknown layer" not in p3.stderr:
        fail("an unknown layer must fail")
    return n


def check_image_paths(gencache):
    """{"path": FILE} is keyed by the image's pixel digest (DESIGN.md section 3): the same pixels
    saved two ways give one key, equal to the {"digest": ...} form; one changed pixel gives
    another; a missing file is an error."""
    try:
        from PIL import Image
    except ImportError:
        print("PIL missing: image path checks skipped")
        return
    with tempfile.TemporaryDirectory() as d:
        im = Image.new("RGB", (5, 3), (10, 20, 30))
        im.save(os.path.join(d, "a.png"))
        im.save(os.path.join(d, "b.png"), compress_level=0, pnginfo=None)
        im.putpixel((4, 2), (10, 20, 31))
        im.save(os.path.join(d, "c.png"))
        digest = "sha256:" + hashlib.sha256(
            b"gencache-img-v1 5 3 3 8\n" + Image.open(os.path.join(d, "a.png")).tobytes()).hexdigest()
        keys = {}
        for name, image in (("a", {"path": os.path.join(d, "a.png")}),
                            ("b", {"path": os.path.join(d, "b.png")}),
                            ("c", {"path": os.path.join(d, "c.png")}),
                            ("digest", {"digest": digest})):
            text = json.dumps({"model": "m", "seed": 1, "image": image}).encode()
            p = run_cli(gencache, text, {})
            if p.returncode != 0:
                fail(f"image {name}: {p.stderr.decode()}")
            keys[name] = json.loads(p.stdout)["keys"]["image_latent"]
        ref = keyref.Request(json.dumps({"model": "m", "seed": 1, "image": {"digest": digest}}).encode())
        if not keys["a"] == keys["b"] == keys["digest"] == ref.key("image_latent"):
            fail(f"the same pixels give different keys: {keys}")
        if keys["c"] == keys["a"]:
            fail("a changed pixel kept the image_latent key")
        p = run_cli(gencache, json.dumps({"image": {"path": os.path.join(d, "none.png")}}).encode(), {})
        if p.returncode != 1 or b"image.path" not in p.stderr:
            fail(f"a missing image file must be refused: {p.stderr!r}")


def main():
    if "--generate" in sys.argv:
        generate()
        return
    with open(VECTORS, encoding="utf-8") as f:
        doc = json.load(f)
    check_reference(doc)
    check_coverage(doc)
    bindir = os.environ.get("GENCACHE_BIN_DIR")
    if not bindir:
        fail("GENCACHE_BIN_DIR is not set")
    n = check_cli(doc, os.path.join(bindir, "gencache"))
    check_image_paths(os.path.join(bindir, "gencache"))
    print(f"ok: {len(doc['vectors'])} vectors and {len(doc['invalid'])} invalid requests agree "
          f"with the reference; {n} checked against the C tool")


if __name__ == "__main__":
    main()
