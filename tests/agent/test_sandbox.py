"""The python tool's red team: each attempt fails with a clear tool error, and the agent goes on to answer."""

import json
import os

import pytest

from lmforge.agent.builtins import python_tool
from lmforge.agent.loop import run_agent
from lmforge.agent.sandbox import Limits, run_python

LIMITS = Limits(cpu_seconds=1, wall_seconds=3, memory_mb=256, file_mb=1, disk_mb=32)
CONFINED = run_python("pass", LIMITS).ok  # Landlock and seccomp here; else exercise the audit hook alone
if not CONFINED:
    LIMITS.confined_only = False
ATTACKS = {
    "read /etc/passwd": ("print(open('/etc/passwd').read())", "/etc/passwd is outside the working directory"),
    "read a file by relative path": ("print(open('../../../../etc/hostname').read())", "outside the working directory"),
    "list the home folder": ("import os; print(os.listdir('/root'))",
                             "outside the working directory"),
    "environment secrets": ("import os; print(os.environ['LMFORGE_TEST_SECRET'])", "KeyError"),
    "secrets of the parent process": ("print(open('/proc/1/environ').read())", "outside the working directory"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "os.fork is not allowed"),
    "memory blow-up": ("x = bytearray(4 * 1024 ** 3)", "over the 256 MB memory limit"),
    "infinite loop": ("while True:\n    pass", "over the 1 s CPU-time limit"),
    "sleeping forever": ("import time; time.sleep(60)", "over the 3 s wall-time limit"),
    "ctypes": ("import ctypes; ctypes.CDLL(None).system(b'id')", "importing ctypes is not allowed"),
    "__subclasses__ escape to os.system": (
        "w = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
        "w.__init__.__globals__['system']('id')", "os.system is not allowed"),
    "posix_spawn through the posix module": ("import posix; posix.posix_spawn('/bin/id', ['id'], {})",
                                             "os.posix_spawn is not allowed"),
    "import socket": ("import socket; socket.create_connection(('93.184.216.34', 80), timeout=2)",
                      "importing socket is not allowed"),
    "import _socket directly": ("import _socket", "importing _socket is not allowed"),
    "write outside the temporary directory": ("open('/tmp/lmforge-pwned', 'w').write('x')",
                                              "/tmp/lmforge-pwned is outside the working directory"),
    "symlink out, then read": ("import os; os.symlink('/etc/passwd', 'p'); print(open('p').read())",
                               "/etc/passwd is outside the working directory"),
    "hard link out": ("import os; os.link('/etc/passwd', 'p')", "os.link is not allowed"),
    "subprocess": ("import subprocess; subprocess.run(['id'])", "importing subprocess is not allowed"),
    "flooding stdout": ("print('x' * (8 * 1024 * 1024))", "File too large"),
    "exec a shell": ("import os; os.execv('/bin/sh', ['sh'])", "os.exec is not allowed"),
    "rewrite the guard's globals": ("import sys; vars(sys.modules['__main__']).clear(); open('/etc/passwd')",
                                    "/etc/passwd is outside the working directory"),
    "dir_fd from an inner folder": ("import os\nroot = os.open('.', os.O_RDONLY)\n"
                                    "os.open('../../../../etc/passwd', os.O_RDONLY, dir_fd=root)",
                                    "opening a directory is not allowed"),
    "replace realpath, then read": ("import posixpath, os\nposixpath.realpath = lambda p, *a, **k: os.getcwd()\n"
                                    "open('/etc/passwd')", "/etc/passwd is outside the working directory"),
    "reach the hook's closure from a traceback": (
        "try:\n    open('/etc/passwd')\nexcept PermissionError as e:\n    e.__traceback__.tb_next.tb_frame",
        "tb_frame is hidden"),
    "reach the hook's frame from a replaced helper": (
        "import posixpath, sys\nposixpath._joinrealpath = lambda *a: sys._getframe(1).f_locals.clear()\n"
        "open('/etc/passwd')", "/etc/passwd is outside the working directory"),
    "sqlite file outside": ("import sqlite3; sqlite3.connect('/tmp/lmforge-pwned.db')",
                            "importing sqlite3 is not allowed"),
    "site-packages on sys.path": ("import sys, os\nsys.path.append(os.path.dirname(os.__file__) + '/site-packages')\n"
                                  "import numpy", "No module named 'numpy'"),
    "the parent's environment": ("import os; open(f'/proc/{os.getppid()}/environ').read()",
                                 "outside the working directory"),
    "gc to find the hook": ("import gc; gc.get_objects()", "gc.get_objects is not allowed"),
    "a subinterpreter without the hook": ("import _xxsubinterpreters", "importing _xxsubinterpreters is not allowed"),
    "a path whose startswith lies": ("class P(str):\n    def startswith(self, *a):\n        return True\n"
                                     "    def split(self, *a):\n        return ['', 'tmp']\n"
                                     "open(P('/etc/passwd')).read()", "/etc/passwd is outside the working directory"),
    "run a program through the loader": ("import os; os.execv('/lib64/ld-linux-x86-64.so.2', ['ld', '/bin/true'])",
                                         "os.exec is not allowed"),
}


KERNEL_ATTACKS = {  # refused by the kernel layers alone: only where they are in place
    "watch a library folder by dnotify": ("import fcntl, os; fcntl.fcntl(os.open(os.__file__, os.O_RDONLY), 1026, 1)",
                                          "Operation not permitted"),
    "lock a library file": ("import fcntl, os; fcntl.flock(os.open(os.__file__, os.O_RDONLY), fcntl.LOCK_EX)",
                            "Operation not permitted"),
    "a fifo outside": ("import os; os.mkfifo('/tmp/lmforge-fifo')", "No such file or directory"),  # no /tmp here
    "a program from memory": ("import os; os.memfd_create('x')", "Operation not permitted"),
    "signal pid 1 by pidfd": ("import os; os.pidfd_open(1)", "Operation not permitted"),
    "renice pid 1": ("import os; os.setpriority(os.PRIO_PROCESS, 1, 19)", "Operation not permitted"),
    "fill the disk": ("import os\nfor i in range(60):\n    fd = os.open(f'f{i}', os.O_CREAT | os.O_WRONLY)\n"
                      "    os.posix_fallocate(fd, 0, 1000 * 1024)", "No space left on device"),
}
if CONFINED:
    ATTACKS.update(KERNEL_ATTACKS)


class Attacker:
    """Sends every attack as a python call, one per step, then answers."""

    name = "attacker"

    def __init__(self):
        self.codes = [code for code, _ in ATTACKS.values()]

    def respond(self, conversations, tools, decoding):
        if not self.codes:
            return [{"role": "assistant", "content": "done"}]
        call = {"id": f"call_{len(self.codes)}", "type": "function",
                "function": {"name": "python", "arguments": json.dumps({"code": self.codes.pop(0)})}}
        return [{"role": "assistant", "content": None, "tool_calls": [call]}]


def test_every_attack_fails_with_a_clear_error_and_the_agent_keeps_running(monkeypatch, tmp_path):
    monkeypatch.setenv("LMFORGE_TEST_SECRET", "hunter2")
    from lmforge.agent.loop import Guards

    result = run_agent(Attacker(), [python_tool(LIMITS)], "try everything", Guards(max_steps=len(ATTACKS) + 1),
                       trace_path=tmp_path / "trace.jsonl")
    assert result.reason == "answer" and result.answer == "done"
    replies = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert len(replies) == len(ATTACKS) >= (39 if CONFINED else 32)
    for (name, (_, expected)), reply in zip(ATTACKS.items(), replies):
        assert reply.startswith("error: python: ") and expected in reply, (name, reply)
        assert "hunter2" not in reply
    assert not any(os.path.exists(f"/tmp/lmforge-{name}") for name in ("pwned", "pwned.db", "fifo"))


def test_calls_the_audit_hook_never_sees_are_stopped_by_the_kernel():
    if not CONFINED:
        pytest.skip("no Landlock and seccomp on this system")
    isolation = run_python("pass", LIMITS).isolation  # on this machine: every layer in place
    assert isolation["landlock"] >= 1 and isolation["seccomp"] == isolation["user"] == isolation["disk"] == 1
    fifo = run_python("import os; os.mkfifo('inside-fifo')", LIMITS)  # no audit event: Landlock refuses it
    assert "[Errno 13] Permission denied" in fifo.error
    thread = run_python("import threading; threading.Thread(target=print).start()", LIMITS)  # seccomp: no clone
    assert "can't start new thread" in thread.error
    seen = run_python("import os; print([os.path.exists(p) for p in ('/etc/passwd', '/proc/1', '/tmp', os.__file__)])",
                      LIMITS)
    assert seen.stdout == "[False, False, False, True]\n"  # its own root: the host's tree is not there at all
    owner = run_python("import os; os.fchmod(os.open(os.__file__, os.O_RDONLY), 0o4777)", LIMITS)
    assert "Operation not permitted" in owner.error  # read-only bind, and seccomp refuses mode changes anyway


def test_ordinary_code_runs_with_the_standard_library_and_its_own_folder():
    result = run_python("import json, math, statistics, logging, warnings\nopen('notes.txt', 'w').write('42')\n"
                        "print(json.dumps([math.factorial(5), open('notes.txt').read()]))", LIMITS)
    assert result.ok and result.stdout == '[120, "42"]\n'
