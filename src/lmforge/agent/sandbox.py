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

OUTPUT_CHARS = 4000  # of stdout (and of stderr on failure) handed back to the model
STATUS = "lmforge-sandbox:"
UNCONFINED = 97  # the launcher's exit status when it would not run the code unconfined  # the launcher's first stderr line: which kernel layers it put in place

# Runs first, in a fresh single-threaded interpreter: limits, then the kernel layers, then exec of the guarded
# interpreter (so none of ctypes or this code is left in the process that runs the model's code).
_LAUNCHER = r"""
import ctypes, json, os, resource, struct, sys
config = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CPU, (config["cpu"], config["cpu"] + 1))
for kind, value in ((resource.RLIMIT_AS, config["memory"]), (resource.RLIMIT_CORE, 0),
                    (resource.RLIMIT_FSIZE, config["file"]), (resource.RLIMIT_NOFILE, config["files"])):
    resource.setrlimit(kind, (value, value))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
status = {"network": 0, "landlock": 0, "seccomp": 0}
linux_x86 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
if sys.platform.startswith("linux"):
    status["network"] = int(libc.unshare(0x40000000) == 0 or libc.unshare(0x10000000 | 0x40000000) == 0)
if linux_x86 and libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS, which both filters below require
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, VERSION)
    if abi >= 1:
        read = (1 << 2) | (1 << 3)  # READ_FILE, READ_DIR
        every = (1 << 13) - 1 | ((1 << 13) if abi >= 2 else 0) | ((1 << 14) if abi >= 3 else 0)
        write = every & ~((1 << 0) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11))  # no exec, devices, sockets, fifos
        fields = [every] + ([0b11] if abi >= 4 else []) + ([0b11] if abi >= 6 else [])  # TCP; unix sockets, signals
        attr = struct.pack(f"{len(fields)}Q", *fields)
        ruleset = libc.syscall(444, attr, len(attr), 0)
        def allow(path, access):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            if not os.path.isdir(path):
                access &= (1 << 0) | (1 << 1) | (1 << 2) | ((1 << 14) if abi >= 3 else 0)  # file rights only
            rule = struct.pack("=Qi", access, fd)
            libc.syscall(445, ruleset, 1, rule, 0)
            os.close(fd)
        allow(os.getcwd(), write)
        for path in config["executable"]:
            allow(path, read | 1)
        for path in config["readable"]:
            if os.path.exists(path):
                allow(path, read)
        allow(config["listable"], 1 << 3)  # the standard library's folder: listed (imports do), not all read
        status["landlock"] = int(ruleset >= 0 and libc.syscall(446, ruleset, 0) == 0) * abi
    # Syscalls refused with EPERM: new processes and threads, sockets, other processes' memory, namespaces, mounts,
    # kernel modules, raising limits, handle-based file access; and every x32 syscall (numbers from 0x40000000).
    deny = [56, 57, 58, 435, 41, 53, 101, 310, 311, 312, 272, 308, 165, 166, 155, 161, 175, 313, 176, 169, 167, 168,
            170, 171, 172, 173, 303, 304, 248, 249, 250, 298, 323, 135, 160, 302, 320, 321, 425, 426, 427]
    n = len(deny)
    program = [(0x20, 0, 0, 4), (0x15, 0, n + 2, 0xC000003E), (0x20, 0, 0, 0), (0x35, n + 1, 0, 0x40000000)]
    program += [(0x15, n - i, 0, nr) for i, nr in enumerate(deny)]
    program += [(0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, 0x00050000 | 1)]  # allow; ERRNO(EPERM)
    code = b"".join(struct.pack("HBBI", *op) for op in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buffer))
    status["seccomp"] = int(libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0)  # PR_SET_SECCOMP, FILTER
sys.stderr.write("lmforge-sandbox: " + json.dumps(status) + "\n")
sys.stderr.flush()
if config["confined_only"] and not (status["landlock"] and status["seccomp"]):
    sys.exit(97)  # the parent explains: no kernel confinement here, and running without it was not allowed
os.execv(config["python"], [config["python"], "-I", "-S", "-B", "-c", config["guard"]])
"""

# Runs in the interpreter that runs the code: an audit hook whose state lives in a closure (no module globals to
# rewrite) and that also refuses the introspection that would reach it (traceback frames, gc, code replacement,
# tracing). It is the layer that gives clear messages; where the kernel layers are in place they are the boundary.
_GUARD = r"""
def _install():
    import _stat, os, sys, types  # noqa: F401 (types reads a traceback frame when imported: import it before)
    # Everything the hook calls is captured here and is C code: no Python function a program could replace runs
    # inside the hook, so no program frame ever sees the hook's frame or closure.
    lstat, stat, readlink, getcwd, fspath = os.lstat, os.stat, os.readlink, os.getcwd, os.fspath
    is_link, is_dir = _stat.S_ISLNK, _stat.S_ISDIR
    encoding = sys.getfilesystemencoding()
    str_, bytes_, int_, any_, denied = str, bytes, int, any, PermissionError
    root = getcwd()
    stdlib = os.path.dirname(os.__file__)
    site = stdlib + "/site-packages"
    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    blocked_imports = frozenset({"ctypes", "_ctypes", "socket", "_socket", "_posixsubprocess", "subprocess",
                                 "multiprocessing", "_multiprocessing", "pty", "resource", "signal", "_signal",
                                 "sqlite3", "_sqlite3", "site"})
    blocked_events = frozenset({"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.link",
                                "os.chroot", "os.setuid", "os.setgid", "sys.remote_exec", "os.posix_spawn",
                                "os.startfile", "pty.spawn", "subprocess.Popen", "os.putenv", "os.unsetenv",
                                "sys._current_frames", "sys.settrace", "sys.setprofile", "os.mkfifo", "os.mknod",
                                "os.setxattr", "os.removexattr", "os.listxattr", "sys.addaudithook"})
    hidden = frozenset({("object.__getattr__", "tb_frame"), ("object.__setattr__", "__code__"),
                        ("object.__setattr__", "__closure__")})
    reading_events = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.walk"})
    writing_events = frozenset({"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown",
                                "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "os.chdir"})

    def text(path):
        path = fspath(path)
        return path.decode(encoding, "surrogateescape") if isinstance(path, bytes_) else path

    def resolve(path):
        # the absolute path with every symlink followed, from C calls only (posixpath.realpath is Python)
        parts = (path if path.startswith("/") else getcwd() + "/" + path).split("/")
        done, hops = [], 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                done = done[:-1]
                continue
            candidate = "/" + "/".join(done + [part])
            try:
                link = is_link(lstat(candidate).st_mode)
            except OSError:
                link = False
            if link and hops < 40:
                hops += 1
                target = readlink(candidate)
                parts = target.split("/") + parts
                done = [] if target.startswith("/") else done
            else:
                done.append(part)
        return "/" + "/".join(done)

    def inside(path, reading):
        real = resolve(text(path))
        if real == root or real.startswith(root + "/"):
            return True
        return reading and real.startswith(stdlib + "/") and not real.startswith(site)

    def guard(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int_):
                return
            writing = any_(c in mode for c in "wax+") if mode else bool((flags or 0) & writing_flags)
            if not inside(path, not writing):
                raise denied("sandbox: " + text(path) + " is outside the working directory")
            if mode is None:
                try:
                    directory = is_dir(stat(path).st_mode)
                except OSError:
                    directory = False
                if directory:
                    raise denied("sandbox: opening a directory is not allowed")  # a dir_fd to escape by
        elif event == "import":
            if args[0].split(".")[0] in blocked_imports:
                raise denied("sandbox: importing " + args[0] + " is not allowed")
        elif event == "object.__getattr__" or event == "object.__setattr__":
            if (event, args[1]) in hidden:
                raise denied("sandbox: " + args[1] + " is hidden")
        elif event in blocked_events or event.startswith(("socket.", "ctypes.", "os.exec", "os.spawn", "gc.")):
            raise denied("sandbox: " + event + " is not allowed")
        elif event in reading_events or event in writing_events:
            for path in (args[:2] if event in ("os.rename", "os.symlink") else args[:1]):
                if path is not None and not isinstance(path, int_) and not inside(path, event in reading_events):
                    raise denied("sandbox: " + text(path) + " is outside the working directory")

    sys.addaudithook(guard)
    with open("main.py", encoding="utf-8") as source:
        return source.read()

_code = _install()
del _install
exec(compile(_code, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
"""


@dataclass
class Limits:
    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_mb: int = 512
    file_mb: int = 8
    open_files: int = 64
    confined_only: bool = True  # refuse to run where Landlock and seccomp cannot confine the code


@dataclass
class Result:
    ok: bool
    stdout: str
    error: str  # the reason it failed, for the model: the exception line or the limit it hit
    isolation: dict  # the kernel layers in place: network namespace, landlock ABI (0: none), seccomp


def run_python(code: str, limits: Limits | None = None) -> Result:
    """Run the code in the sandbox and say what it printed, or why it failed."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="lmforge-py-") as work, tempfile.TemporaryDirectory() as pipes:
        Path(work, "main.py").write_text(code, encoding="utf-8")
        out_path, err_path = Path(pipes, "stdout"), Path(pipes, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen([_python(), "-I", "-S", "-B", "-c", _LAUNCHER, _launch_config(limits)],
                                       cwd=work, env={}, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       start_new_session=True)
            timed_out = _wait(process, limits.wall_seconds)
        stdout = out_path.read_text(encoding="utf-8", errors="replace")
        status, stderr = _split_status(err_path.read_text(encoding="utf-8", errors="replace"))
    if timed_out:
        return Result(False, stdout[:OUTPUT_CHARS], f"killed: over the {limits.wall_seconds:g} s wall-time limit",
                      status)
    if process.returncode == 0:
        return Result(True, stdout[:OUTPUT_CHARS], "", status)
    return Result(False, stdout[:OUTPUT_CHARS], _failure(process.returncode, stderr, limits), status)


def _python() -> str:
    """The interpreter binary itself (not a venv's symlink to it), the one file the sandbox may execute."""
    return os.path.realpath(sys.executable)


def _launch_config(limits: Limits) -> str:
    """What the launcher needs: limits, the paths readable besides the working directory (the standard library
    without its site-packages, and the system's shared libraries that extension modules load), and the only files
    it may execute: the interpreter and the dynamic loader that starts it."""
    import glob
    import json

    stdlib = Path(os.__file__).parent
    readable = [str(p) for p in stdlib.iterdir() if p.name != "site-packages"]
    readable += ["/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache", "/dev/null", "/dev/urandom"]
    readable += [str(p) for p in (Path(_python()).parent.parent / "lib").glob("libpython*")]
    loaders = {os.path.realpath(p) for pattern in ("/lib64/ld-linux*", "/lib/ld-linux*", "/lib/*/ld-linux*",
                                                   "/usr/lib/*/ld-linux*") for p in glob.glob(pattern)}
    return json.dumps({"cpu": limits.cpu_seconds, "memory": limits.memory_mb * 2**20, "file": limits.file_mb * 2**20,
                       "files": limits.open_files, "confined_only": limits.confined_only, "python": _python(), "guard": _GUARD, "readable": readable,
                       "executable": [_python(), *sorted(loaders)],
                       "listable": str(stdlib)})


def _split_status(stderr: str) -> tuple[dict, str]:
    """The launcher's status line (which layers it put in place) and the rest of stderr."""
    import json

    first, _, rest = stderr.partition("\n")
    if first.startswith(STATUS):
        return json.loads(first[len(STATUS):]), rest
    return {}, stderr


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
    if returncode == UNCONFINED:
        return ("refused: this system cannot confine the code (no Landlock or seccomp filter: an old kernel, a "
                "container without them, or not Linux x86-64); --python-unconfined runs it with the audit hook "
                "and limits alone (see docs/agents.md)")
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
