"""schemathesis fuzzes the server through its own OpenAPI spec, valid and invalid bodies alike: no 5xx, ever."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

EXAMPLES = 60  # per endpoint and generation mode


@pytest.fixture(scope="module")
def fuzz_url(nano_model_dir):
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    with running_server(ServeConfig(model=str(nano_model_dir), name="nano", port=0, max_model_len=1024,
                                    max_body_bytes=256 * 1024)) as url:
        yield url


def aimed(case) -> None:
    """Name the served model where the fuzzer wrote some string (else nearly every case stops at the 404), and
    keep replies short (else it asks for the whole context, every time)."""
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "nano"
    if isinstance(case.body, dict) and isinstance(case.body.get("max_tokens"), int) and case.body["max_tokens"] > 8:
        case.body["max_tokens"] = 8


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzz_url, mode):
    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {"/v1/chat/completions", "/v1/completions",
                                                            "/v1/embeddings", "/v1/models", "/health"}
    statuses = []
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not len(operation.body):
            continue  # nothing to get wrong in a bare GET
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            aimed(case)
            response = case.call(base_url=fuzz_url, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                assert "error" in response.json(), response.text
            statuses.append(response.status_code)

        fuzz()
    assert 200 in statuses if mode is GenerationMode.POSITIVE else statuses
