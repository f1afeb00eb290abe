"""Build script of the gencache Python package (setuptools, configured in pyproject.toml).

What pyproject.toml cannot say statically lives here: the version, read from the C library's
header (include/gencache.h, GENCACHE_VERSION_STRING) so it is written in one place; the
optional C extension gencache._fast, compiled against that header, numpy's and dlpack.h (it
links no library: the package hands it the functions of the libgencache it loads); and the
built libgencache.so bundled into the wheel when one is found.
"""
import glob
import os
import re
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
INCLUDE = os.environ.get("GENCACHE_INCLUDE_DIR") or os.path.join(ROOT, "include")


def library_version():
    header = os.path.join(INCLUDE, "gencache.h")
    with open(header, encoding="utf-8") as f:
        m = re.search(r'^#define GENCACHE_VERSION_STRING "([^"]+)"', f.read(), re.M)
    if m is None:
        raise RuntimeError("%s has no GENCACHE_VERSION_STRING" % header)
    return m.group(1)


def built_library():
    """$GENCACHE_LIB, else the checkout's build tree (sanitizer builds skipped), else None."""
    env = os.environ.get("GENCACHE_LIB")
    if env:
        if not os.path.exists(env):
            raise FileNotFoundError("$GENCACHE_LIB names %s, which does not exist" % env)
        return env
    trees = [os.path.join(ROOT, "build")] + sorted(glob.glob(os.path.join(ROOT, "build*")))
    for tree in trees:
        lib = os.path.join(tree, "src", "libgencache.so")
        if os.path.exists(lib) and "san" not in os.path.basename(tree):
            return lib
    return None


class BuildPyWithLibrary(build_py):
    """Copies the built libgencache.so into the package, where the package looks first."""

    def run(self):
        super().run()
        lib = built_library()
        if lib is not None and not self.dry_run:
            dest = os.path.join(self.build_lib, "gencache", "libgencache.so")
            shutil.copyfile(os.path.realpath(lib), dest)
            os.chmod(dest, 0o755)


def extensions():
    try:
        import numpy
    except ImportError:
        return []
    return [Extension("gencache._fast", ["gencache/_fast.c"],
                      include_dirs=[INCLUDE, numpy.get_include()], optional=True)]


setup(version=library_version(), ext_modules=extensions(),
      cmdclass={"build_py": BuildPyWithLibrary})
