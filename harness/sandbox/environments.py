"""Python environments that submissions run in: declared, checked, built once, cached.

Real contest entries were written for Keras 2 and import packages the grader does not have. A
submission says what its code needs (see :mod:`harness.definitions.submissions`): an environment
that the organizers ship with the benchmark (``environments/<name>.txt`` in the benchmark
folder, a pinned requirements file), its own ``requirements.txt``, both (its requirements on top
of the named environment, whose pins then constrain them), or neither (the grader's own
environment).

Installing happens here, on the organizers' machine, outside the sandbox, and must never run
submission code: every requirement line must be a package name from the index with optional
extras, version specifiers and an environment marker; URLs, paths, ``-e`` and installer options
are refused by line, and the installer (uv) takes wheels only, so no ``setup.py`` ever runs. The
new environment's interpreter never runs outside the sandbox either, since starting it executes
the ``.pth`` files its wheels ship: uv does not byte-compile (that would start it), the
bytecode is compiled by that interpreter inside a sandbox (:func:`_compile`), and the installed
packages are listed from their metadata files. The benchmark's ``environments/constraints.txt``,
when present, constrains every build.

An environment is a virtual environment on the grader's own interpreter, in a content-addressed
cache (its key is a digest of the interpreter, the platform, the requirement text and the
constraints): built once per machine, under a lock, in a temporary folder renamed into place when
complete, so a reader sees a whole environment or none. The sandbox mounts it read-only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from harness.definitions.layout import CONSTRAINTS, ENVIRONMENTS_DIR
from harness.errors import SubmissionError, TransientSubmissionError
from harness.sandbox import isolation

GRADER = "grader"
"""The name of the grader's own environment, for a track that overrides a top-level choice."""
CACHE_VARIABLE = "HARNESS_ENV_CACHE"
BUILD_TIMEOUT = 1800.0
"""Seconds one build may take: a cold Keras 2 environment installs gigabytes
(docs/organizers.md)."""


def default_cache() -> Path:
    """``$HARNESS_ENV_CACHE``, else the user's cache folder: environments outlive a checkout."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "backdoor-grader" / "environments"


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an environment is built from; equal specs share one built environment."""

    name: str
    """As declared: ``keras2``, ``requirements.txt`` or ``keras2 + requirements.txt``."""
    requirements: str
    """The requirement lines, checked and normalised, one per line."""
    constraints: str
    """The constraint lines (the named environment's pins and the benchmark's constraints)."""

    @property
    def key(self) -> str:
        payload = {"python": sys.version, "implementation": sys.implementation.name,
                   "interpreter": os.path.realpath(_base_python()),
                   "platform": sysconfig.get_platform(), "libc": platform.libc_ver(),
                   "requirements": self.requirements, "constraints": self.constraints}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_requirements(text: str, where: str) -> list[str]:
    """The requirement lines of ``text``, normalised; a line that is not a plain package
    requirement is refused with a one-line :class:`SubmissionError` naming it."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        refused = f"{where} line {number}: '{line[:80]}' refused:"
        if line.startswith("-"):
            raise SubmissionError(f"{refused} installer options (-e, -r, --index-url, ...) are "
                                  "not allowed; name packages from the index only")
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            raise SubmissionError(f"{refused} not a package requirement (a URL or a path?); "
                                  "name packages from the index only") from None
        if requirement.url:
            raise SubmissionError(f"{refused} direct references (name @ URL) are not allowed; "
                                  "name packages from the index only")
        lines.append(str(requirement))
    return lines


def named_environments(benchmark_root: Path) -> dict[str, Path]:
    """The environments a benchmark provides: ``environments/<name>.txt`` by name."""
    folder = benchmark_root / ENVIRONMENTS_DIR
    return {path.stem: path for path in sorted(folder.glob("*.txt")) if path.name != CONSTRAINTS}


def resolve(environment: str | None, requirements: Path | None, benchmark_root: Path,
            submission_root: Path) -> EnvironmentSpec | None:
    """The spec of an entry's environment (None: the grader's own), or a one-line
    :class:`SubmissionError` naming what is wrong with the declaration."""
    named = None if environment in (None, GRADER) else environment
    if named is None and requirements is None:
        return None
    lines: list[str] = []
    constraints: list[str] = []
    names = []
    if named is not None:
        provided = named_environments(benchmark_root)
        if named not in provided:
            offered = ", ".join([*provided, GRADER])
            raise SubmissionError(f"environment '{named}' is not provided by this benchmark "
                                  f"(it provides: {offered})")
        pinned = check_requirements(provided[named].read_text(encoding="utf-8"),
                                    f"environment '{named}'")
        lines += pinned
        constraints += pinned
        names.append(named)
    if requirements is not None:
        relative = requirements.relative_to(submission_root.resolve()).as_posix()
        lines += check_requirements(requirements.read_text(encoding="utf-8", errors="replace"),
                                    relative)
        names.append(relative)
    organizers = benchmark_root / ENVIRONMENTS_DIR / CONSTRAINTS
    if organizers.is_file():
        constraints += check_requirements(organizers.read_text(encoding="utf-8"),
                                          str(organizers))
    return EnvironmentSpec(" + ".join(names), "\n".join(dict.fromkeys(lines)),
                           "\n".join(dict.fromkeys(constraints)))


@dataclass(frozen=True)
class Built:
    """A built environment: its folder, interpreter and what it holds."""

    folder: Path
    packages: dict[str, str]
    seconds: float
    """How long building it took (0 when it was built before)."""

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def how(self) -> str:
        """What ensuring it took, as every report says it."""
        return f"built in {self.seconds:.1f} s" if self.seconds else "already built"


class EnvironmentStore:
    """The folder of built environments, ``<cache>/<key>/``, shared by every grading run."""

    def __init__(self, folder: str | Path | None = None) -> None:
        """``folder`` as a command line gives it: None or empty for the default cache."""
        self.folder = (Path(folder) if folder else default_cache()).absolute()
        self.failed: dict[str, str] = {}
        """Builds that failed in this process, by key: every entry that needs one gets its
        error row at once instead of trying again."""

    def get(self, spec: EnvironmentSpec) -> Built | None:
        """The built environment for ``spec``, or None when it has not been built here."""
        folder = self.folder / spec.key
        try:
            info = json.loads(self._info(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Built(folder, dict(info.get("packages", {})), 0.0) if folder.is_dir() else None

    def _info(self, spec: EnvironmentSpec) -> Path:
        """What an environment was built from and holds: beside it, not in it, so the sandbox
        mounts nothing but the environment itself."""
        return self.folder / f"{spec.key}.json"

    def ensure(self, spec: EnvironmentSpec, *, build: bool = True) -> Built:
        """The built environment, building it first if allowed; one-line errors otherwise."""
        built = self.get(spec)
        if built is not None:
            return built
        if not build:
            raise TransientSubmissionError(
                f"environment '{spec.name}' not built (grading without building); build it "
                "with: python -m harness env build")
        if spec.key in self.failed:
            raise TransientSubmissionError(self.failed[spec.key])
        try:
            return self.build(spec)
        except TransientSubmissionError as exc:
            self.failed[spec.key] = str(exc)
            raise

    def build(self, spec: EnvironmentSpec) -> Built:
        """Build ``spec`` unless another process has (under a lock), atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".{spec.key}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            built = self.get(spec)
            if built is not None:
                return built
            started = time.monotonic()
            temporary = self.folder / f".{spec.key}.{secrets.token_hex(6)}.tmp"
            try:
                packages = _install(spec, temporary)
                _readable(temporary / "venv")
                info = temporary / "info.json"
                info.write_text(json.dumps(
                    {"name": spec.name, "requirements": spec.requirements,
                     "constraints": spec.constraints, "packages": packages}, indent=1,
                    sort_keys=True), encoding="utf-8")
                shutil.rmtree(self.folder / spec.key, ignore_errors=True)  # a leftover, if any
                os.replace(info, self._info(spec))  # first the description, then the folder:
                os.replace(temporary / "venv", self.folder / spec.key)  # a reader needs both
            finally:
                shutil.rmtree(temporary, ignore_errors=True)
        return Built(self.folder / spec.key, packages, time.monotonic() - started)


def uv() -> str:
    """The uv installer that comes with the grader (a dependency), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise TransientSubmissionError("cannot build environments: uv is not installed "
                                           "(pip install uv)") from None
        return found


def _base_python() -> str:
    """The interpreter the grader runs on, outside any virtual environment: environments are
    made from it, so the sandbox needs no other Python installation."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix) / "bin" / name
    return str(candidate if candidate.exists() else Path(sys.executable).resolve())


def _install(spec: EnvironmentSpec, work: Path) -> dict[str, str]:
    """Make a virtual environment in ``work/venv`` and install ``spec`` into it, wheels only.

    uv runs with ``--no-config`` in the cache folder, so no configuration file of a submission
    (or of anyone's working directory) can change where packages come from; the index is the
    installer's default or the organizers' ``UV_INDEX_URL``.
    """
    environment = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    work.mkdir()
    target = work / "venv"
    requirements, constraints = work / "requirements.in", work / "constraints.in"
    requirements.write_text(spec.requirements + "\n", encoding="utf-8")
    constraints.write_text(spec.constraints + "\n", encoding="utf-8")
    python = target / "bin" / "python"
    steps = [
        [uv(), "venv", "--no-config", "--quiet", "--relocatable", "--python", _base_python(),
         str(target)],
        [uv(), "pip", "install", "--no-config", "--quiet", "--python", str(python),
         "--only-binary", ":all:", "-r", str(requirements),
         "-c", str(constraints)],
    ]
    for step in steps:
        try:
            result = subprocess.run(step, capture_output=True, text=True, cwd=work,
                                    env=environment, timeout=BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise TransientSubmissionError(f"environment '{spec.name}': building took over "
                                           f"{BUILD_TIMEOUT:.0f} s") from None
        if result.returncode != 0:
            raise TransientSubmissionError(f"environment '{spec.name}' does not build: "
                                           f"{_cause(result.stderr)}")
    _compile(target)
    return installed(target)


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"


def installed(venv: Path) -> dict[str, str]:
    """The packages of ``venv`` by name, read from their metadata files (nothing runs)."""
    found = metadata.distributions(path=[str(_site_packages(venv))])
    return dict(sorted((canonicalize_name(dist.metadata["Name"]), dist.version)
                       for dist in found))


def _compile(venv: Path) -> None:
    """Byte-compile ``venv``'s packages with its own interpreter inside a sandbox, started
    without ``site`` (``-S``), so no ``.pth`` file runs even there, as the unprivileged user a
    worker is; without a sandbox, not at all (workers then compile in memory as they import).
    Compiling only saves workers' start-up time, so a failure here is no build failure."""
    mode = isolation.detect()
    if mode.bwrap is None:
        return
    uid = isolation.worker_uid(mode)
    isolation.give(venv, uid)
    try:
        argv = [str(venv / "bin" / "python"), "-I", "-S", "-m", "compileall", "-q", "-j", "0",
                str(_site_packages(venv))]
        subprocess.run(isolation.sandboxed(mode, argv, writable=venv, environment=venv, uid=uid),
                       capture_output=True, timeout=BUILD_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pass
    finally:
        isolation.give(venv, os.getuid() if uid is not None else None)


def _cause(stderr: str) -> str:
    """uv's error as one line: its tree drawing and hints dropped, cut to 300 characters."""
    lines = []
    for line in stderr.splitlines():
        text = re.sub(r"^[\s×╰─▶│├┬┴┼┤]+", "", line).strip()
        if text and not text.startswith(("hint:", "help:")):
            lines.append(text)
    text = " ".join(lines) or "the installer failed without saying why"
    return text if len(text) <= 300 else text[:297] + "..."


def _readable(folder: Path) -> None:
    """Let the sandboxed worker, which runs as another user, read everything."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))
