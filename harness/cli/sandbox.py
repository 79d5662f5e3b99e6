"""``harness sandbox``: prove that submissions would run sandboxed on this machine.

CI runs it before any submission does (the pull-request workflow): it builds the sandbox a worker
gets, with the same namespaces and the same drop to an unprivileged user, and checks from inside
that the process holds no root and no capability and sees no network but its own loopback. Exit
0 with one line saying what isolates submissions, else 2 with one line saying why not and what
to install; unlike grading, there is no way around it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.errors import SandboxError, clipped
from harness.sandbox import isolation

INSIDE = """\
import os
problems = []
with open("/proc/self/status") as status:
    for line in status:
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid") and "0" in value.split():
            problems.append(key.lower() + " 0")
        if key.startswith("Cap") and int(value, 16):
            problems.append(key + " " + value.strip())
with open("/proc/net/dev") as devices:
    links = [line.split(":")[0].strip() for line in devices if ":" in line]
problems += ["network " + name for name in links if name != "lo"]
print("; ".join(problems) or "isolated")
"""
"""Run in the sandbox: what it finds that a worker must not have."""
TIMEOUT = 60.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser(
        "sandbox", help="prove that submissions run sandboxed here (exit 2 if not)",
        description="Build the sandbox a submission's worker gets and check from inside it: "
                    "no root, no capability, no network.")
    sandbox.set_defaults(run=run)


def run(args: argparse.Namespace, passthrough: list[str]) -> int:
    mode = isolation.detect()
    if mode.bwrap is None:
        raise SandboxError(f"no sandbox: {mode.note}; install {isolation.INSTALL}")
    found = _inside(mode)
    if found != "isolated":
        raise SandboxError(f"the sandbox leaks: {found}")
    print(f"harness: {mode.note}; checked from inside: no root, no capability, no network")
    return 0


def _inside(mode: isolation.Mode) -> str:
    """What :data:`INSIDE` reports from a sandbox built as a worker's is."""
    with tempfile.TemporaryDirectory(prefix="harness-sandbox-") as scratch:
        argv = isolation.sandboxed(mode, [sys.executable, "-I", "-S", "-c", INSIDE],
                                   writable=Path(scratch), environment=None,
                                   uid=isolation.worker_uid(mode))
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                    check=False, preexec_fn=isolation.limiter(
                                        isolation.Limits(), mode.privileged))
        except subprocess.TimeoutExpired:
            raise SandboxError(f"the sandbox did not answer in {TIMEOUT:g} s") from None
    if result.returncode != 0:
        raise SandboxError(f"the sandbox did not start: {clipped(result.stderr)}")
    return clipped(result.stdout)
