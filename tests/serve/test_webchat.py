from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SYSTEM = "Answer briefly."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"the browser test needs Chromium at {CHROMIUM} "
                       "(apt-get install chromium; playwright cannot download its own here)"),
]

COUNT_REPLY_CHANGES = """() => {
  window.replyChanges = 0;
  new MutationObserver((records) => {
    window.replyChanges += records.filter((r) => r.target.classList?.contains("assistant")).length;
  }).observe(document.getElementById("messages"), {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def server(nano_model_dir, lora_dir):
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    with running_server(ServeConfig(model=str(nano_model_dir), adapter=[f"tiny-lora={lora_dir}"], port=0)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    page.fill("#system", SYSTEM)
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "8")
    yield page
    page.close()


def chat_requests(page) -> list[dict]:
    """The JSON bodies the page posts to /v1/chat/completions, as it posts them."""
    bodies = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)
    return bodies


def send(page, text: str) -> str:
    """Type `text`, press Enter and wait for the reply to finish streaming; its text."""
    before = page.locator(".message.assistant").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    reply = page.locator(".message.assistant").nth(before)
    page.wait_for_function("(el) => !el.classList.contains('streaming')", arg=reply.element_handle(), timeout=60_000)
    return reply.text_content()


def whole_reply(url: str, body: dict) -> str:
    response = httpx.post(f"{url}/v1/chat/completions", json=body | {"stream": False}, timeout=60)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def test_the_model_picker_offers_every_served_model(page, server):
    served = [model["id"] for model in httpx.get(f"{server}/v1/models").json()["data"]]
    assert len(served) == 2 and "tiny-lora" in served
    assert page.eval_on_selector_all("#model option", "options => options.map(o => o.value)") == served


def test_a_reply_streams_in_and_equals_the_whole_reply(page, server):
    page.evaluate(COUNT_REPLY_CHANGES)
    bodies = chat_requests(page)
    streamed = send(page, "Where was Alda Vorn born?")

    assert streamed
    assert page.evaluate("window.replyChanges") > 1
    (body,) = bodies
    assert body["stream"] is True and body["model"] == page.input_value("#model")
    assert body["messages"] == [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": "Where was Alda Vorn born?"}]
    assert streamed == whole_reply(server, body)


def test_each_turn_carries_the_history_until_reset(page, server):
    page.select_option("#model", "tiny-lora")
    bodies = chat_requests(page)
    first = send(page, "Who founded Brisco Works?")
    send(page, "What is 12 + 30?")
    page.click("#reset")
    assert page.locator("#messages .message").count() == 0
    send(page, "Hi")

    system = {"role": "system", "content": SYSTEM}
    assert [body["model"] for body in bodies] == ["tiny-lora"] * 3
    assert bodies[1]["messages"] == [system, {"role": "user", "content": "Who founded Brisco Works?"},
                                     {"role": "assistant", "content": first},
                                     {"role": "user", "content": "What is 12 + 30?"}]
    assert bodies[2]["messages"] == [system, {"role": "user", "content": "Hi"}]
    assert page.locator("#messages .message").count() == 2


def test_a_server_error_shows_its_message_in_the_page(page, server):
    page.evaluate("""() => document.getElementById("model").append(new Option("no-such-model", "no-such-model"))""")
    page.select_option("#model", "no-such-model")
    page.fill("#input", "Hi")
    page.click("#send")

    error = page.locator(".message.error")
    error.wait_for(timeout=60_000)
    expected = httpx.post(f"{server}/v1/chat/completions",
                          json={"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]})
    assert error.text_content() == expected.json()["error"]["message"]
    assert page.locator(".message.assistant").count() == 0
