"""The python tool's red team: each attempt fails with a clear tool error, and the agent goes on to answer."""

import json
import os

from lmforge.agent.builtins import python_tool
from lmforge.agent.loop import run_agent
from lmforge.agent.sandbox import Limits, run_python

LIMITS = Limits(cpu_seconds=1, wall_seconds=3, memory_mb=256, file_mb=1)
ATTACKS = {
    "read /etc/passwd": ("print(open('/etc/passwd').read())", "/etc/passwd is outside the working directory"),
    "read a file by relative path": ("print(open('../../../../etc/hostname').read())", "outside the working directory"),
    "list the home folder": ("import os; print(os.listdir(os.path.expanduser('~') or '/root'))",
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
}


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
    assert len(replies) == len(ATTACKS) >= 15
    for (name, (_, expected)), reply in zip(ATTACKS.items(), replies):
        assert reply.startswith("error: python: ") and expected in reply, (name, reply)
        assert "hunter2" not in reply
    assert not os.path.exists("/tmp/lmforge-pwned")


def test_ordinary_code_runs_with_the_standard_library_and_its_own_folder():
    result = run_python("import json, math, statistics\nopen('notes.txt', 'w').write('42')\n"
                        "print(json.dumps([math.factorial(5), open('notes.txt').read()]))", LIMITS)
    assert result.ok and result.stdout == '[120, "42"]\n'
