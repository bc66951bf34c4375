"""schemathesis against the OpenAPI document a real ``vspan up`` serves: for each role, every
operation with generated (valid and invalid) input; no 5xx, only documented status codes,
answers that match their schemas, invalid input rejected, authentication not ignored.

As admin, ``POST /captures`` is left out: an admin may have the switch write any absolute
path, and generated paths would scatter files over the test machine (the mirror-admin run
covers that operation, confined to the capture directory). ``GET /observe`` streams until
the client leaves, and "invalid" generated input may still be a valid query: it is run only
for the roles it refuses; tests/system/test_observe_system.py sends it bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers.netns import is_root
from tests.system.apiswitch import ApiSwitch, api_switch
from vspan.api.access import ACCESS

pytestmark = pytest.mark.system

ROLES = ("viewer", "operator", "mirror-admin", "admin")
YAML = "ports: {a: {type: memory}, b: {type: memory}, c: {type: memory}}\n"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth]
EXAMPLES = 12  # per operation, role and mode (valid / invalid input)


@pytest.fixture(scope="module")
def switch() -> Iterator[tuple[ApiSwitch, dict[str, str]]]:
    if not is_root():
        pytest.skip("needs root to run a switch")
    with api_switch("au-schema-", YAML) as sw:
        yield sw, {role: sw.token(f"st-{role}", role) for role in ROLES}


@pytest.fixture(scope="module")
def api_schema(switch: tuple[ApiSwitch, dict[str, str]]) -> Any:
    """The document as the running switch serves it. The test sends each role's token
    itself, so schemathesis is told not to generate the Authorization header: a generated
    one (or a negative case that leaves it out) would be replaced by the real token and the
    case would reach the switch as valid input, wrongly reported as accepted. Auth is still
    checked: ignored_auth repeats requests without and with a wrong token."""
    sw, _ = switch
    schema = schemathesis.openapi.from_url(f"{sw.url}/openapi.json")
    schema.config.generation.update(with_security_parameters=False)
    return schema


# the API's operations: the access table without FastAPI's own pages and the console's files
# (not in the document), and without GET /events, a stream that ends only when asked to
# (tests/unit/test_console_api.py covers its input, answers and refusals)
OPERATIONS = [(m, p) for (m, p), r in ACCESS.items() if not r.only_in
              and p not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/",
                            "/console", "/console/{asset}", "/events")]
CASES = [(role, m, p) for role in ROLES for (m, p) in OPERATIONS
         if not (role == "admin" and (m, p) == ("POST", "/captures"))
         and not (role in ("mirror-admin", "admin") and (m, p) == ("GET", "/observe"))]


@pytest.mark.parametrize(("role", "method", "path"), CASES,
                         ids=[f"{r} {m} {p}" for r, m, p in CASES])
def test_api_conforms_to_its_document(switch: tuple[ApiSwitch, dict[str, str]],
                                      api_schema: Any, role: str, method: str,
                                      path: str) -> None:
    sw, tokens = switch
    auth = {"Authorization": f"Bearer {tokens[role]}"}
    operation = api_schema[path][method]
    # invalid input needs input: an operation without parameters and body has none to spoil
    has_input = any(True for _ in operation.iter_parameters()) or bool(operation.body)
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if has_input else [])
    for mode in modes:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS, timeout=30)

        logged = sw.log.stat().st_size
        try:
            run()
        except Exception as err:  # show what the switch logged (a 500's traceback)
            text = sw.log.read_bytes()[logged:].decode(errors="replace").strip()
            if text:
                err.add_note(f"the switch logged meanwhile:\n{text[-20000:]}")
            raise
