"""Reading cache options from a gencache.yaml-style config (a dict, or a .yaml/.json file):
sizes ("512MiB", 1073741824), durations ("30m", "7d", seconds as a number), tiers, layers and
normalization modes. Only what an in-process cache uses is read; daemon keys (listen, tenants,
upstream) are ignored.
"""
import json
import os
import re

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000 ** 2,
               "mb": 1000 ** 2, "mib": 1024 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
               "gib": 1024 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4, "tib": 1024 ** 4}
_TIME_UNITS = {"": 1, "s": 1, "ms": 0.001, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_size(v, what="size"):
    """Bytes from an int or a string such as "512MiB" or "1.5 GB"."""
    if isinstance(v, bool):
        raise ValueError("%s: expected a size, got %r" % (what, v))
    if isinstance(v, int):
        if v < 0:
            raise ValueError("%s: negative size %r" % (what, v))
        return v
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("%s: expected a size such as 512MiB, got %r" % (what, v))
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_seconds(v, what="duration"):
    """Seconds (float) from a number or a string such as "30m", "7d", "250ms"."""
    if isinstance(v, bool):
        raise ValueError("%s: expected a duration, got %r" % (what, v))
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("%s: negative duration %r" % (what, v))
        return float(v)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(v))
    if not m or m.group(2).lower() not in _TIME_UNITS:
        raise ValueError("%s: expected a duration such as 30m, got %r" % (what, v))
    return float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]


def load(config):
    """A config dict from a dict, or from a path to a YAML or JSON file."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    path = os.fspath(config)
    with open(path, "rb") as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml  # Debian's python3-yaml
        data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("%s: the config must be a mapping" % path)
    return data


def to_options(cfg):
    """Flattens a config dict into Cache keyword options."""
    opts = {}
    if "data_dir" in cfg:
        opts["data_dir"] = cfg["data_dir"]
    tiers = cfg.get("tiers") or {}
    mem = tiers.get("memory") or {}
    if "max_bytes" in mem:
        opts["mem_max_bytes"] = parse_size(mem["max_bytes"], "tiers.memory.max_bytes")
    if "max_entries" in mem:
        opts["mem_max_entries"] = int(mem["max_entries"])
    disk = tiers.get("disk") or {}
    if disk.get("enabled", True) is False:
        opts["data_dir"] = None
    else:
        if "path" in disk:
            opts["data_dir"] = disk["path"]
        if "max_bytes" in disk:
            opts["disk_max_bytes"] = parse_size(disk["max_bytes"], "tiers.disk.max_bytes")
        if "max_entries" in disk:
            opts["disk_max_entries"] = int(disk["max_entries"])
    redis = tiers.get("redis") or {}
    if redis.get("enabled", True) is not False and redis.get("url"):
        opts["redis_url"] = redis["url"]
    layers = {}
    for name, spec in (cfg.get("layers") or {}).items():
        spec = dict(spec or {})
        unknown = set(spec) - {"fields", "scope", "ttl", "sliding_ttl", "write_through"}
        if unknown:
            raise ValueError("layers.%s: %s not supported by the in-process cache (it takes "
                             "fields, scope, ttl, sliding_ttl, write_through)"
                             % (name, ", ".join(sorted(unknown))))
        if "ttl" in spec:
            spec["ttl_s"] = parse_seconds(spec.pop("ttl"), "layers.%s.ttl" % name)
        layers[name] = spec
    if layers:
        opts["layers"] = layers
    modes = {}
    if "prompt_normalization" in cfg:
        modes[None] = cfg["prompt_normalization"]
    models = cfg.get("models") or {}
    if isinstance(models, dict):
        for name, spec in models.items():
            if isinstance(spec, dict) and "prompt_normalization" in spec:
                modes[name] = spec["prompt_normalization"]
    if modes:
        opts["modes"] = modes
    return opts
