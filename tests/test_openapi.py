"""GET /openapi.json describes every API route of server/app.py, with its methods, as valid OpenAPI 3."""

from types import SimpleNamespace

import pytest
import schemathesis
from starlette.routing import Route
from starlette.testclient import TestClient

from earshot.agents.roles import DIFFICULTIES, ROLES
from earshot.server.app import create_app
from earshot.server.modes import MODE_KINDS
from earshot.server.openapi import openapi_document
from earshot.server.settings import Settings


@pytest.fixture(scope="module")
def app():
    # The routes and the middleware only: no request here reaches the rest of the state, and no lifespan runs.
    return create_app(SimpleNamespace(settings=Settings(), auth=None))


@pytest.fixture(scope="module")
def document(app):
    response = TestClient(app, base_url="http://127.0.0.1").get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    return response.json()


def test_every_api_route_and_method_is_documented(app, document):
    api_routes = [r for r in app.routes if isinstance(r, Route) and r.name != "client"]
    assert len(api_routes) >= 11
    for route in api_routes:
        for method in route.methods - {"HEAD"}:
            assert method.lower() in document["paths"].get(route.path, {}), f"{method} {route.path} is not documented"
    documented = {(path, method) for path, methods in document["paths"].items() for method in methods}
    routed = {(r.path, m.lower()) for r in api_routes for m in r.methods - {"HEAD"}}
    assert documented == routed
    assert "/{path}" not in document["paths"]  # the client's files are not the API


def test_the_document_is_valid_openapi_3(document):
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.0 meta-schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(methods) for methods in document["paths"].values())


def test_enums_and_formats_come_from_the_code(document):
    new_session = document["components"]["schemas"]["NewSession"]["properties"]
    assert new_session["mode"]["enum"] == list(MODE_KINDS)
    assert new_session["role"]["enum"] == [*ROLES, ""]  # "": an assist session has no role
    assert new_session["difficulty"]["enum"] == list(DIFFICULTIES)
    session_id = document["paths"]["/api/sessions/{session_id}"]["get"]["parameters"][0]
    assert session_id["in"] == "path" and session_id["schema"]["pattern"] == "^[0-9a-f]{16}$"
    assert document["paths"]["/api/sessions/{session_id}/offer"]["post"]["security"] == [{"bearer": []}]
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_a_route_without_an_entry_is_refused():
    async def undocumented(request):
        raise AssertionError

    with pytest.raises(LookupError, match="undocumented"):
        openapi_document([Route("/api/new", undocumented, methods=["POST"])])
