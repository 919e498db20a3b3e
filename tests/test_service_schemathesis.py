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


#: Issue 15's attack classes, as field overrides on otherwise schema-valid bodies: each must be
#: refused with a 4xx naming the problem (never a 5xx, never recorded).
ATTACKS: list[dict[str, Any]] = [
    {"time": "9999-12-31T23:59:59Z"}, {"time": "9999-12-31T23:59:59-14:00"}, {"time": "0001-01-01T00:00:00+14:00"},
    {"time": "2001-01-01T00:00:00Z"},
    {"instrument": "UST:5:9999-12-31"}, {"instrument": "UST:25:2030-01-01"}, {"instrument": "UST:4:0001-01-01"},
    {"quantity": True}, {"quantity": "5"}, {"quantity": 1e308}, {"quantity": -1e14},
    {"cross_margin": 1}, {"cross_margin": "yes"},
]


@pytest.mark.parametrize("path", ["/api/v1/trades", "/api/v1/what-if/trade"])
def test_attack_classes_are_refused_without_server_errors(server: ServerProcess, path: str) -> None:
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(server.api + "/openapi.json")
    op = next(r.ok() for r in schema.get_all_operations() if r.ok().path == path.removeprefix("/api/v1")
              or r.ok().path == path)
    head = server.ledger_head()
    seen: list[int] = []
    failures: list[str] = []

    @settings(max_examples=len(ATTACKS) * 2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE), attack=st.sampled_from(ATTACKS))
    def run(case: Any, attack: dict[str, Any]) -> None:
        body = case.body if isinstance(case.body, dict) else {}
        kept = {k: v for k, v in body.items() if k in ("account_type", "cross_margin", "archetype", "source")}
        case.body = {**kept, "account": "CM01-HOUSE", "instrument": "ZNU24", "quantity": 1, **attack}
        if path.endswith("/trades"):
            case.body["trade_id"] = "attack-case"
        response = case.call(base_url=server.base_url, headers=server.headers("CM01"), timeout=60)
        seen.append(response.status_code)
        if not 400 <= response.status_code < 500:
            failures.append(f"{attack} -> {response.status_code}: {response.text[:300]}")

    run()
    assert failures == [], "\n".join(failures)
    assert len(seen) >= len(ATTACKS)
    assert server.ledger_head() == head  # nothing recorded
