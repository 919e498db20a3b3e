"""Schemathesis against the service's OpenAPI document, on a real ``xmargin serve`` process.

Every operation (the event stream aside: its body never ends; ``test_service_api`` covers
it) gets a bounded number of generated requests, schema-valid ("positive") and schema-invalid
("negative"), sent with an admin key, then a member key.  Checks: no server error (5xx), every
status code and content type documented, every response body valid against its schema, and
authentication not ignored.  The examples in the schema (valid instruments on the demo's
date) reach the engine; the generated bodies mostly reach the validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from xmargin.service.testing import ServerProcess

try:  # a test dependency: missing, the module fails (never skips)
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis import checks as st_checks
except ImportError:  # pragma: no cover
    pytest.fail("schemathesis is not installed: pip install -e '.[test]' (or pip install schemathesis)",
                pytrace=False)

EXAMPLES = 25  # per operation, mode and key: about 1,000 requests in all
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "ignored_auth"]


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-schemathesis"), data_dir=data_dir, members=2, customers=20)
    with srv:
        yield srv


def _operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(server.api + "/openapi.json")
    schema = schema.exclude(path="/api/v1/stream")
    return [r.ok() for r in schema.get_all_operations()]


def _exercise(op: Any, mode: Any, server: ServerProcess, who: str, checks: list[Any], seen: dict[int, int],
              failures: list[str]) -> None:
    """Up to ``EXAMPLES`` generated requests to one operation, every check on each answer."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=server.base_url, headers=server.headers(who), timeout=60)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks, headers=server.headers(who))
        except BaseException as exc:  # noqa: BLE001 - collected, reported together by the caller
            failures.append(f"{op.label} [{mode.value}] -> {response.status_code}: {str(exc)[:600]}")

    run()


@pytest.mark.parametrize("who", ["admin", "CM01"])
def test_no_server_errors_and_responses_match_the_schema(server: ServerProcess, who: str) -> None:
    operations = _operations(server)
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /api/v1/what-if/portfolio", "POST /api/v1/what-if/trade", "POST /api/v1/trades",
        "GET /api/v1/accounts/{account}", "GET /api/v1/members/{member}", "GET /api/v1/market"}
    checks = [getattr(st_checks, name) for name in CHECKS]
    failures: list[str] = []
    statuses: dict[str, dict[int, int]] = {}
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            seen = statuses.setdefault(f"{op.label} {mode.value}", {})
            try:
                _exercise(op, mode, server, who, checks, seen, failures)
            except Unsatisfiable:  # no parameters to break: nothing negative to send
                assert mode is GenerationMode.NEGATIVE
    assert failures == [], "\n\n".join(failures[:10])
    flat = [code for counts in statuses.values() for code in counts]
    assert all(code < 500 for code in flat)
    # the run reached past validation: successful answers from the engine-backed operations
    for label in ("POST /api/v1/what-if/portfolio positive", "POST /api/v1/what-if/trade positive",
                  "GET /api/v1/accounts/{account} positive"):
        assert statuses[label].get(200, 0) > 0, (label, statuses[label])
    assert sum(sum(c.values()) for c in statuses.values()) > 10 * len(operations)
