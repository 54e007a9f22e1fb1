"""The `python` tool's sandbox: model-written code runs in a separate, limited interpreter.

Hand-written because no maintained library sandboxes CPython in-process (RestrictedPython rewrites the AST but
leaves the runtime open), and a container runtime is not something a laptop user has by default. What it does,
layer by layer (docs/agents.md says the same to users):

1. **A fresh interpreter** (`python -I -S`): no site-packages, no user site, `PYTHON*` variables ignored, an
   **empty environment** (no API keys, no HOME, no PATH), a **temporary working directory** deleted afterwards.
2. **Resource limits** (`setrlimit`, before the code starts): CPU seconds, address space (memory), the size of
   any file it writes (stdout and stderr included), open files; and a **wall-clock timeout** after which the
   whole process group is killed.
3. **A network namespace** of its own (Linux `unshare`, where the kernel allows it): no interface but loopback,
   so no packet leaves even if the layer below is bypassed.
4. **A CPython audit hook** installed before the code runs, which cannot be removed from Python: opening, listing
   or changing any path outside the working directory (reading the standard library is allowed, for imports),
   hard links, sockets, subprocesses, `os.system`, `fork`, `exec`, signals to other processes and importing
   `ctypes` all raise `PermissionError`.

What it does not do: it is not a boundary against a hostile native extension or an interpreter bug (the audit
hook lives in the same process as the code), it does not hide the machine's CPU count or kernel version, and on
systems without unprivileged namespaces (macOS, some containers) layer 3 is missing and the network is blocked by
the audit hook alone. For untrusted users, run lmforge itself in a container or VM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
OUTPUT_CHARS = 4000  # of stdout (and of stderr on failure) handed back to the model

_GUARD = r'''
import os, sys
ROOT = os.path.realpath(os.getcwd())
STDLIB = os.path.dirname(os.__file__)
CODE = open("main.py", encoding="utf-8").read()
BLOCKED_IMPORTS = {"ctypes", "_ctypes", "socket", "_socket", "_posixsubprocess", "subprocess", "multiprocessing",
                   "_multiprocessing", "pty", "resource", "signal", "_signal"}
BLOCKED_EVENTS = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.link", "os.chroot",
                  "os.setuid", "os.setgid", "sys.remote_exec", "os.posix_spawn", "os.exec", "os.spawn",
                  "os.startfile", "pty.spawn", "subprocess.Popen", "os.putenv", "os.unsetenv"}
PATH_EVENTS = {"os.listdir": 1, "os.scandir": 1, "os.remove": 2, "os.rmdir": 2, "os.rename": 2, "os.mkdir": 2,
               "os.chmod": 2, "os.chown": 2, "os.symlink": 2, "os.truncate": 2, "os.utime": 2, "shutil.rmtree": 2,
               "os.chdir": 2, "glob.glob": 1, "os.walk": 1}

def inside(path, reading):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(path))
    if real == ROOT or real.startswith(ROOT + os.sep):
        return True
    return reading and (real == STDLIB or real.startswith(STDLIB + os.sep))

def writes(mode, flags):
    if mode:
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))

def guard(event, args):
    if event == "open":
        path, mode, flags = args
        if path is not None and not inside(path, not writes(mode, flags or 0)):
            raise PermissionError(f"sandbox: {os.fsdecode(path)} is outside the working directory")
    elif event == "import":
        if args[0].split(".")[0] in BLOCKED_IMPORTS:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
    elif event in BLOCKED_EVENTS or event.startswith(("socket.", "ctypes.", "os.exec", "os.spawn")):
        raise PermissionError(f"sandbox: {event} is not allowed")
    elif event in PATH_EVENTS:
        paths = args[:1] if event != "os.rename" and event != "os.symlink" else args[:2]
        for path in paths:
            if path is not None and not inside(path, PATH_EVENTS[event] == 1):
                raise PermissionError(f"sandbox: {os.fsdecode(path)} is outside the working directory")

sys.addaudithook(guard)
del guard
exec(compile(CODE, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass
class Limits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_mb: int = 512
    file_mb: int = 8
    open_files: int = 64


@dataclass
class Result:
    ok: bool
    stdout: str
    error: str  # the reason it failed, for the model: the exception line or the limit it hit
    isolated_network: bool


def run_python(code: str, limits: Limits | None = None) -> Result:
    """Run the code in the sandbox and say what it printed, or why it failed."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="lmforge-py-") as work, tempfile.TemporaryDirectory() as pipes:
        Path(work, "main.py").write_text(code, encoding="utf-8")
        out_path, err_path, net_path = (Path(pipes, name) for name in ("stdout", "stderr", "network"))
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen([sys.executable, "-I", "-S", "-B", "-c", _GUARD], cwd=work, env={},
                                       stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, start_new_session=True,
                                       preexec_fn=lambda: _confine(limits, net_path))
            timed_out = _wait(process, limits.wall_seconds)
        stdout = out_path.read_text(encoding="utf-8", errors="replace")
        stderr = err_path.read_text(encoding="utf-8", errors="replace")
        isolated = net_path.exists()
    if timed_out:
        return Result(False, stdout[:OUTPUT_CHARS], f"killed: over the {limits.wall_seconds:g} s wall-time limit",
                      isolated)
    if process.returncode == 0:
        return Result(True, stdout[:OUTPUT_CHARS], "", isolated)
    return Result(False, stdout[:OUTPUT_CHARS], _failure(process.returncode, stderr, limits), isolated)


def _wait(process: subprocess.Popen, seconds: float) -> bool:
    """Wait for the process; past the deadline kill its whole group (children included). True if it was killed."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def _failure(returncode: int, stderr: str, limits: Limits) -> str:
    if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL:
        return f"killed: over the {limits.cpu_seconds} s CPU-time limit"
    if returncode == -signal.SIGXFSZ:
        return f"killed: wrote more than the {limits.file_mb} MB file-size limit"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return f"exited with status {returncode}"
    if lines[-1].startswith("MemoryError"):
        return f"MemoryError: over the {limits.memory_mb} MB memory limit"
    where = [line.strip() for line in lines if line.strip().startswith('File "main.py"')]
    return (f"{where[-1]}: " if where else "") + lines[-1][-OUTPUT_CHARS:]  # the code's line, then the exception


def _confine(limits: Limits, network_marker: Path) -> None:
    """In the child, before Python starts: its own network namespace if the kernel allows, then the limits."""
    import resource

    if _unshare(CLONE_NEWNET) or _unshare(CLONE_NEWUSER | CLONE_NEWNET):
        network_marker.touch()
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    for kind, value in ((resource.RLIMIT_AS, limits.memory_mb * 2**20), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_FSIZE, limits.file_mb * 2**20), (resource.RLIMIT_NOFILE, limits.open_files)):
        resource.setrlimit(kind, (value, value))


def _unshare(flags: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(flags) == 0
