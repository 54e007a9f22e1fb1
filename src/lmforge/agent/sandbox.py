"""The `python` tool's sandbox: model-written code runs in a separate, confined interpreter.

Hand-written because no maintained library sandboxes CPython (RestrictedPython rewrites the AST but leaves the
runtime open), and a container runtime is not something a laptop user has by default. A launcher interpreter puts
the layers in place, then runs the guard and the code in the same process (docs/agents.md says the same to users):

1. A fresh interpreter (`python -I -S -B`), an empty environment, a temporary working directory.
2. Limits: CPU time, memory, file size, open files; a wall-clock timeout that kills the process group.
3. Namespaces: a user namespace (root outside holds no capabilities over the host inside), network and IPC
   namespaces, and a mount namespace with a root of its own (pivot_root): a size-limited tmpfs holding /work and
   read-only binds of the standard library, the system's libraries and two devices; the host's tree is detached.
4. Landlock: read and write only the working directory; read the standard library (not site-packages) and the
   system's shared libraries; no TCP; no signals or abstract unix sockets outside (ABI 6+).
5. seccomp: no fork, clone, exec, sockets, signals, ptrace, namespaces, mounts, modules, clock, kernel log,
   scheduling, raised limits, mode/owner/time/xattr changes, inotify, SysV IPC, signal-routing fcntl/ioctl;
   other architectures' system calls kill the process.
6. A CPython audit hook, for clear messages (it is not the boundary; layers 3-5 are).

Where layers 3-5 cannot be put in place, the code is not run unless `confined_only=False`, which means no sandbox.
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
REFUSED = ("refused: this system cannot confine the code (no user namespace, Landlock or seccomp: an old kernel, a "
           "container without them, or not Linux x86-64); --python-unconfined runs it with NO sandbox, only limits "
           "and an audit hook that determined code gets around (docs/agents.md)")
# Runs first, in a fresh single-threaded interpreter: limits, then the kernel layers, then the guard and the code
# in the same process (execve is among the refused system calls). Which layers were put in place goes to the parent
# on a pipe that is closed before the code runs, so the code can neither spoof nor hide it.
_LAUNCHER = r"""
import ctypes, json, os, resource, struct, sys
config = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CPU, (config["cpu"], config["cpu"] + 1))
for kind, value in ((resource.RLIMIT_AS, config["memory"]), (resource.RLIMIT_CORE, 0),
                    (resource.RLIMIT_FSIZE, config["file"]), (resource.RLIMIT_NOFILE, config["files"])):
    resource.setrlimit(kind, (value, value))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
status = {"user": 0, "network": 0, "disk": 0, "landlock": 0, "seccomp": 0}
linux_x86 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"
work = os.getcwd()
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18

def new_root(work, code, config):
    # A root of its own: a size-limited tmpfs holding /work (the code's folder) and read-only, nosuid binds of the
    # standard library, the system's libraries and two devices; the host's tree is then detached, so nothing else
    # of it can be seen, listed, watched or changed, whatever the code calls.
    mounted = lambda source, target, kind, flags, data: libc.mount(  # noqa: E731
        source and source.encode(), target.encode(), kind and kind.encode(), flags, data and data.encode()) == 0
    if not (mounted(None, "/", None, MS_REC | MS_PRIVATE, None) and mounted(
            "tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['disk']},mode=0755")):
        return False
    for source in config["bound"]:
        if not os.path.exists(source):
            continue
        target = work + source
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        if not (mounted(source, target, None, MS_BIND | MS_REC, None) and mounted(
                None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)):
            return False
    os.makedirs(work + "/work")
    os.makedirs(work + "/.old")
    if libc.syscall(155, work.encode(), (work + "/.old").encode()) != 0:  # pivot_root
        return False
    os.chdir("/")
    if libc.umount2(b"/.old", 2) != 0:  # MNT_DETACH
        return False
    os.rmdir("/.old")
    os.chdir("/work")
    with open("main.py", "w", encoding="utf-8") as file:
        file.write(code)
    return True

if sys.platform.startswith("linux"):
    uid, gid = os.getuid(), os.getgid()
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG: SIGKILL when the parent dies
    if libc.unshare(0x10000000 | 0x20000 | 0x40000000 | 0x08000000) == 0:  # user, mount, network, IPC namespaces
        status["user"] = status["network"] = 1
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
        code = open("main.py", encoding="utf-8").read()
        status["disk"] = int(new_root(work, code, config))
        work = "/work"
    else:
        status["network"] = int(libc.unshare(0x40000000) == 0)
if linux_x86 and libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS, which both filters below require
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, VERSION)
    if abi >= 1:
        read = (1 << 2) | (1 << 3)  # READ_FILE, READ_DIR
        every = (1 << 13) - 1 | ((1 << 13) if abi >= 2 else 0) | ((1 << 14) if abi >= 3 else 0) | (
            (1 << 15) if abi >= 5 else 0)
        write = every & ~((1 << 0) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 15))
        fields = [every] + ([0b11] if abi >= 4 else []) + ([0b11] if abi >= 6 else [])  # TCP; unix sockets, signals
        attr = struct.pack(f"{len(fields)}Q", *fields)
        ruleset = libc.syscall(444, attr, len(attr), 0)
        added = []
        def allow(path, access):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            if not os.path.isdir(path):
                access &= (1 << 1) | (1 << 2) | ((1 << 14) if abi >= 3 else 0)  # file rights only
            added.append(libc.syscall(445, ruleset, 1, struct.pack("=Qi", access, fd), 0) == 0)
            os.close(fd)
        allow(work, write)
        for path in config["readable"]:
            if os.path.exists(path):
                allow(path, read)
        allow(config["listable"], 1 << 3)  # the standard library's folder: listed (imports do), not all read
        if ruleset >= 0 and all(added) and libc.syscall(446, ruleset, 0) == 0:
            status["landlock"] = abi
        if ruleset >= 0:
            os.close(ruleset)
    # Refused with EPERM: new processes and threads; running programs; sockets; signals, ptrace and other
    # processes' memory; namespaces, mounts, kernel modules and keys; raising limits; the clock, the kernel log,
    # scheduling; handle-based file access; changing modes, owners, times and extended attributes; inotify; SysV
    # IPC and POSIX queues; the mount table and mount copies (open_tree_attr); sync, flock, memfd_secret, cachestat;
    # every call newer than the newest reviewed. Argument checks refuse prctl(PR_SET_PDEATHSIG), fcntl calls that
    # route signals, take leases or locks or watch folders, and ioctls that route signals or set inode flags or
    # versions. Another architecture's calls (i386 through int 0x80) kill the process.
    deny = [56, 57, 58, 435, 59, 322, 319, 41, 53, 62, 200, 234, 129, 297, 424, 434, 438, 101, 310, 311, 312, 440,
            272, 308, 165, 166, 155, 161, 428, 429, 430, 431, 432, 433, 442, 175, 313, 176, 246, 320, 169, 167, 168,
            170, 171, 172, 173, 303, 304, 248, 249, 250, 298, 323, 135, 160, 302, 321, 425, 426, 427, 103, 141, 140,
            142, 144, 203, 314, 251, 164, 227, 305, 159, 163, 300, 126, 179, 153,
            90, 91, 268, 452, 92, 93, 94, 260, 188, 189, 190, 197, 198, 199, 463, 466, 132, 235, 261, 280, 469,
            253, 254, 294, 29, 30, 31, 64, 65, 66, 68, 69, 70, 71, 220, 240, 241, 242, 243, 244, 245, 457, 458,
            467, 443, 447, 451, 162, 306, 73]
    newest = 469  # every call above the newest one reviewed is refused: a new kernel's calls start denied
    argument_checks = {  # args[0] of prctl, args[1] of fcntl and ioctl
        157: (16, [1]),  # prctl PR_SET_PDEATHSIG: the code may not outlive its parent
        72: (24, [8, 10, 15, 1024, 1026, 6, 7, 37, 38]),  # F_SETOWN(_EX), F_SETSIG, leases, dnotify, locks
        16: (24, [0x8901, 0x8902, 0x40086602, 0x401C5820, 0x40087602])}  # signal routing, inode flags, version
    allow, refuse, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000  # SECCOMP_RET_ALLOW, ERRNO(EPERM), KILL_PROCESS
    # (code, jump if true, jump if false, k), jumps by label; a string is a label for the next instruction
    items = [(0x20, None, None, 4), (0x15, None, "kill", 0xC000003E), (0x20, None, None, 0),
             (0x35, "deny", None, newest + 1)]  # also every x32 call (numbers from 0x40000000)
    items += [(0x15, f"check{nr}", None, nr) for nr in argument_checks]
    items += [(0x15, "deny", None, nr) for nr in deny] + [(0x06, None, None, allow)]
    for nr, (offset, values) in argument_checks.items():
        items += [f"check{nr}", (0x20, None, None, offset)] + [(0x15, "deny", None, v) for v in values]
        items += [(0x06, None, None, allow)]
    items += ["deny", (0x06, None, None, refuse), "kill", (0x06, None, None, kill)]
    labels, program = {}, []
    for item in items:
        if isinstance(item, str):
            labels[item] = len(program)
        else:
            program.append(item)
    program = [(code, labels[true] - i - 1 if true else 0, labels[false] - i - 1 if false else 0, k)
               for i, (code, true, false, k) in enumerate(program)]
    assert all(0 <= jt < 256 and 0 <= jf < 256 for _, jt, jf, _ in program)
    code = b"".join(struct.pack("HBBI", *op) for op in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buffer))
    status["seccomp"] = int(libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0)  # PR_SET_SECCOMP, FILTER
confined = bool(status["landlock"] and status["seccomp"] and status["user"] and status["disk"])
status["refused"] = config["confined_only"] and not confined
os.write(config["status_fd"], json.dumps(status).encode())
os.close(config["status_fd"])
if status["refused"]:
    sys.exit(1)
for name in [name for name in sys.modules if "ctypes" in name]:
    del sys.modules[name]
del libc, buffer, ctypes
exec(compile(config["guard"], "<guard>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
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
    bytes_, int_, any_, denied, join = bytes, int, any, PermissionError, str.join
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
    blocked_prefixes = ("socket.", "ctypes.", "os.exec", "os.spawn", "gc.", "signal.")
    hidden = frozenset({("object.__getattr__", "tb_frame"), ("object.__setattr__", "__code__"),
                        ("object.__setattr__", "__closure__")})
    reading_events = frozenset({"os.listdir", "os.scandir", "glob.glob", "os.walk"})
    writing_events = frozenset({"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown",
                                "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "os.chdir"})

    def text(path):
        # a plain str whatever comes in: a str or bytes subclass could override startswith, split or decode
        path = fspath(path)
        return bytes_.decode(path, encoding, "surrogateescape") if isinstance(path, bytes_) else join("", (path,))

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
            top = args[0].split(".")[0]
            if top in blocked_imports or top.startswith(("_xx", "_test")):  # subinterpreters run without the hook
                raise denied("sandbox: importing " + args[0] + " is not allowed")
        elif event == "object.__getattr__" or event == "object.__setattr__":
            if (event, args[1]) in hidden:
                raise denied("sandbox: " + args[1] + " is hidden")
        elif event in blocked_events or event.startswith(blocked_prefixes):
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
    disk_mb: int = 64  # all files together (a tmpfs of this size is the working directory)
    open_files: int = 64
    confined_only: bool = True  # refuse to run where Landlock and seccomp cannot confine the code


@dataclass
class Result:
    ok: bool
    stdout: str
    error: str  # the reason it failed, for the model: the exception line or the limit it hit
    isolation: dict  # the layers in place: user, network and disk (tmpfs) namespaces, landlock ABI (0: none), seccomp


def run_python(code: str, limits: Limits | None = None) -> Result:
    """Run the code in the sandbox and say what it printed, or why it failed."""
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="lmforge-py-", ignore_cleanup_errors=True) as work, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        Path(work, "main.py").write_text(code, encoding="utf-8")
        status_read, status_write = os.pipe()
        try:
            command = [_python(), "-I", "-S", "-B", "-c", _LAUNCHER, _launch_config(limits, status_write)]
            process = subprocess.Popen(command, cwd=work, env={}, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       start_new_session=True, pass_fds=(status_write,))
        finally:
            os.close(status_write)
        timed_out = _wait(process, limits.wall_seconds)
        status = _read_status(status_read)
        stdout, stderr = (_read(handle) for handle in (out, err))  # our own descriptors: whatever the code did
    if status.get("refused"):
        return Result(False, "", REFUSED, status)
    if timed_out:
        return Result(False, stdout[:OUTPUT_CHARS], f"killed: over the {limits.wall_seconds:g} s wall-time limit",
                      status)
    if process.returncode == 0:
        return Result(True, stdout[:OUTPUT_CHARS], "", status)
    return Result(False, stdout[:OUTPUT_CHARS], _failure(process.returncode, stderr, limits), status)


def _read(handle) -> str:
    handle.seek(0)
    return handle.read(OUTPUT_CHARS * 8).decode("utf-8", errors="replace")


def _read_status(fd: int) -> dict:
    """What the launcher reported before the code ran ({} if it died first)."""
    import json

    with os.fdopen(fd, "rb") as pipe:
        data = pipe.read()
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def _python() -> str:
    """The interpreter binary itself (not a venv's symlink to it)."""
    return os.path.realpath(sys.executable)


def _launch_config(limits: Limits, status_fd: int) -> str:
    """What the launcher needs: limits, where to report, what to bind read-only into the code's own root (the
    standard library, the system's shared libraries that extension modules load, two devices), and of that what
    may be read (the standard library without its site-packages)."""
    import json

    stdlib = Path(os.__file__).parent
    system = ["/usr/lib", "/lib", "/lib64", "/usr/lib64", "/etc/ld.so.cache", "/dev/null", "/dev/urandom"]
    libpython = [str(p) for p in (Path(_python()).parent.parent / "lib").glob("libpython*")]
    readable = [str(p) for p in stdlib.iterdir() if p.name != "site-packages"] + system + libpython
    return json.dumps({"cpu": limits.cpu_seconds, "memory": limits.memory_mb * 2**20, "file": limits.file_mb * 2**20,
                       "disk": limits.disk_mb * 2**20, "files": limits.open_files,
                       "confined_only": limits.confined_only, "status_fd": status_fd, "guard": _GUARD,
                       "bound": [str(stdlib), *system, *libpython], "readable": readable, "listable": str(stdlib)})


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
