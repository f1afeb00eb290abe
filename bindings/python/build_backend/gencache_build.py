"""A PEP 517 build backend for the gencache Python package, standard library only, so that
`pip install bindings/python` needs no network and no compiler: the package is pure Python over
ctypes. The wheel bundles the built shared library when one is found ($GENCACHE_LIB, else a
build tree of this checkout), and is then tagged for this platform; without one it is a pure
wheel that finds libgencache at import time.
"""
import base64
import glob
import hashlib
import io
import os
import sysconfig
import tarfile
import zipfile

NAME = "gencache"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bindings/python
SUMMARY = "A cache for generative-video inference (Python binding of libgencache)"


def _metadata():
    readme = ""
    path = os.path.join(HERE, "README.md")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            readme = f.read()
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n"
            "Requires-Python: >=3.9\nProvides-Extra: numpy\nRequires-Dist: numpy; extra == "
            "\"numpy\"\nProvides-Extra: torch\nRequires-Dist: torch; extra == \"torch\"\n"
            "Description-Content-Type: text/markdown\n\n%s" % (NAME, VERSION, SUMMARY, readme))


def _find_library():
    env = os.environ.get("GENCACHE_LIB")
    if env:
        if not os.path.exists(env):
            raise FileNotFoundError("$GENCACHE_LIB names %s, which does not exist" % env)
        return env
    root = os.path.normpath(os.path.join(HERE, "..", ".."))
    preferred = os.path.join(root, "build", "src", "libgencache.so")
    trees = [preferred] + sorted(glob.glob(os.path.join(root, "build*", "src",
                                                        "libgencache.so")))
    for t in trees:
        if os.path.exists(t) and "san" not in os.path.basename(os.path.dirname(
                os.path.dirname(t))):
            return t
    return None


def _files():
    pkg = os.path.join(HERE, NAME)
    for path in sorted(glob.glob(os.path.join(pkg, "*.py"))):
        with open(path, "rb") as f:
            yield "%s/%s" % (NAME, os.path.basename(path)), f.read()


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def _tag(bundled):
    if not bundled:
        return "py3-none-any"
    return "py3-none-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    os.makedirs(os.path.join(metadata_directory, dist_info), exist_ok=True)
    with open(os.path.join(metadata_directory, dist_info, "METADATA"), "w",
              encoding="utf-8") as f:
        f.write(_metadata())
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = list(_files())
    libpath = _find_library()
    if libpath:
        with open(os.path.realpath(libpath), "rb") as f:
            files.append(("%s/libgencache.so" % NAME, f.read()))
    tag = _tag(libpath is not None)
    dist_info = "%s-%s.dist-info" % (NAME, VERSION)
    files.append(("%s/METADATA" % dist_info, _metadata().encode("utf-8")))
    files.append(("%s/WHEEL" % dist_info,
                  ("Wheel-Version: 1.0\nGenerator: gencache_build\nRoot-Is-Purelib: %s\n"
                   "Tag: %s\n" % ("false" if libpath else "true", tag)).encode()))
    files.append(("%s/top_level.txt" % dist_info, (NAME + "\n").encode()))
    record = [_record_line(n, d) for n, d in files]
    record.append("%s/RECORD,," % dist_info)
    files.append(("%s/RECORD" % dist_info, ("\n".join(record) + "\n").encode()))
    wheel_name = "%s-%s-%s.whl" % (NAME, VERSION, tag)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, VERSION)
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        def add(arcname, data):
            info = tarfile.TarInfo("%s/%s" % (base, arcname))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for arcname, data in _files():
            add(arcname, data)
        for extra in ("pyproject.toml", "README.md", "build_backend/gencache_build.py"):
            with open(os.path.join(HERE, extra), "rb") as f:
                add(extra, f.read())
        add("PKG-INFO", _metadata().encode("utf-8"))
    return name
