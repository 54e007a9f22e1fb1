import io
import socket
import subprocess
import sys

import httpx
import pytest

from lmforge.config import ConfigError, build
from lmforge.serve.chat import ChatConfig, run_chat

SYSTEM = "Answer briefly."


class RecordingOutput(io.StringIO):
    """stdout that also keeps each write, to tell a streamed reply from one written whole."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)


def scripted(*lines):
    """An input() that types `lines`, then hits end of input."""
    feed = iter(lines)

    def input_fn(prompt):
        line = next(feed, None)
        if line is None:
            raise EOFError
        return line

    return input_fn


@pytest.fixture(scope="module")
def server(nano_model_dir):
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    with running_server(ServeConfig(model=str(nano_model_dir), port=0)) as url:
        yield url


@pytest.fixture()
def sent_bodies(monkeypatch):
    """The JSON body of every streamed request the chat makes."""
    bodies = []
    real_stream = httpx.Client.stream

    def recording_stream(self, method, url, **kwargs):
        bodies.append(kwargs["json"])
        return real_stream(self, method, url, **kwargs)

    monkeypatch.setattr(httpx.Client, "stream", recording_stream)
    return bodies


def whole_reply(url, body) -> str:
    response = httpx.post(f"{url}/v1/chat/completions", json=body | {"stream": False}, timeout=60)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def test_chat_streams_replies_and_sends_the_history_until_reset(server, sent_bodies):
    cfg = ChatConfig(url=server, system=SYSTEM, temperature=0, max_tokens=8)
    output = RecordingOutput()
    run_chat(cfg, scripted("Where was Alda Vorn born?", "Who founded Brisco Works?", "/reset", "What is 12 + 30?",
                           "/exit", "never read"), output)

    first, second, after_reset = sent_bodies
    system = {"role": "system", "content": SYSTEM}
    reply_1, reply_2, reply_3 = (whole_reply(server, body) for body in sent_bodies)
    assert first["messages"] == [system, {"role": "user", "content": "Where was Alda Vorn born?"}]
    assert second["messages"] == [*first["messages"], {"role": "assistant", "content": reply_1},
                                  {"role": "user", "content": "Who founded Brisco Works?"}]
    assert after_reset["messages"] == [system, {"role": "user", "content": "What is 12 + 30?"}]
    assert all(body["stream"] and body["max_tokens"] == 8 for body in sent_bodies)
    assert reply_1 and reply_2 and reply_3

    model_id = httpx.get(f"{server}/v1/models").json()["data"][0]["id"]
    header = f"chatting with {model_id} at {server} (/reset clears the history, /exit leaves)\n"
    transcript = f"{header}{reply_1}\n{reply_2}\n(history cleared)\n{reply_3}\n\n"
    assert output.getvalue() == transcript
    whole_writes = 1 + 3 * 2 + 1 + 1  # header, each reply and its newline, "(history cleared)", the goodbye newline
    assert len(output.writes) > whole_writes


def test_a_failed_turn_shows_the_server_error_and_stays_out_of_the_history(server, sent_bodies):
    output = RecordingOutput()
    run_chat(ChatConfig(url=server, model_id="no-such-model", max_tokens=4), scripted("Hi", "Hello"), output)

    assert output.getvalue().count("error: ") == 2
    assert "no-such-model" in output.getvalue()
    assert [body["messages"] for body in sent_bodies] == [[{"role": "user", "content": "Hi"}],
                                                          [{"role": "user", "content": "Hello"}]]


def test_model_serves_a_local_folder_for_the_session(nano_model_dir):
    output = RecordingOutput()
    run_chat(ChatConfig(model=str(nano_model_dir), temperature=0, max_tokens=4), scripted("Hi"), output)

    header, *reply, newline, goodbye = output.writes
    assert header.startswith(f"chatting with {nano_model_dir.name} at http://127.0.0.1:")
    assert len(reply) > 1 and all(reply)  # streamed in pieces, not written whole
    assert (newline, goodbye) == ("\n", "\n")


def test_an_unreachable_server_is_a_clear_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"cannot reach the server at http://127.0.0.1:{port}"):
        run_chat(ChatConfig(url=f"http://127.0.0.1:{port}"), scripted("Hi"), io.StringIO())


@pytest.mark.parametrize("data, problem", [
    ({}, "exactly one of model"),
    ({"model": "runs/sft", "url": "http://127.0.0.1:8000"}, "exactly one of model"),
    ({"url": "http://127.0.0.1:8000", "adapter": ["a=runs/a"]}, "adapter needs model"),
])
def test_config_needs_exactly_one_server(data, problem):
    with pytest.raises(ConfigError, match=problem):
        build(ChatConfig, data, "command line")


def test_importing_the_chat_client_loads_no_heavy_library():
    code = "import sys, lmforge.serve.chat; print(sorted({'torch', 'transformers', 'httpx'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
