"""Every bad value on every API answers 400 with JSON naming the field, every API error is JSON,
and no odd value gives a 500 (on PostgreSQL too, which refuses NUL bytes SQLite stores)."""

import json

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import reverse

from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import tasks_open
from datasets.api import MAX_JSON_DEPTH
from datasets.ingest.services.uploads import caption_create
from datasets.models import Project
from datasets.pagination import INVALID_CURSOR
from tests import factories

pytestmark = pytest.mark.django_db


def _deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


# Values a client may send where a scalar belongs: NUL bytes, huge strings, wrong types,
# negative, zero and out-of-range numbers, spellings of infinity, lists and objects, deep JSON.
ODD_VALUES = [
    "\x00",
    "caption with a \x00 inside",
    "x" * 100_000,
    "é" * 5_000,
    "",
    " ",
    -1,
    0,
    65,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    -1.5,
    "NaN",
    "Infinity",
    "-inf",
    "1e999",
    True,
    None,
    [],
    [1, 2],
    ["\x00"],
    {"a": 1},
    {"\x00": "\x00"},
    _deep(MAX_JSON_DEPTH - 2),
    # Lone surrogates: valid JSON escapes, but no UTF-8 encodes them (nor can any database).
    "\ud800",
    "a caption \udfff inside",
    ["\ud800"],
    {"\udc00": 1},
    # Past a 64-bit integer, each way: SQLite raises OverflowError, PostgreSQL refuses it.
    2**64,
    -(2**63) - 1,
    [2**64],
    {"a": 10**30},
    # The same as text, as a form would send it (DRF's IntegerField takes either).
    str(2**64),
    str(-(10**30)),
    [str(2**64)],
]
# Whole bodies that are not the object an endpoint takes.
ODD_BODIES = [
    b"[]",
    b'"text"',
    b"5",
    b"null",
    b"{",
    b'{"a": NaN}',
    b"\xff\xfe",
    b"{}",
    b'{"\\ud800": 1}',
    b'"\\ud800"',
    b"[18446744073709551616]",
]


@pytest.fixture
def api(project, manager, annotator):
    """A project with an image, a caption, the annotator's lease, and a manager's client."""
    image = factories.image(project=project)
    caption_create(image=image, text="A red circle above a blue square", source="api")
    tasks_open(project=project, seed=3)
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    clients = {}
    for name, user in (("manager", manager), ("annotator", annotator)):
        clients[name] = Client(raise_request_exception=False)
        clients[name].force_login(user)
    return {"project": project, "image": image, "lease": lease, "clients": clients}


def _has_detail(response) -> bool:
    """The one shape of every API error (QA finding 16): an object with a ``detail`` string."""
    body = response.json()
    return isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"]


def _write_operations(api) -> list[tuple[str, str, list[str], str]]:
    """(method, concrete path, body field names, who) for every write operation of the schema."""
    schema = json.loads(
        api["clients"]["manager"].get("/api/v1/schema/", {"format": "json"}).content
    )
    components = schema["components"]["schemas"]
    values = {
        "slug": api["project"].slug,
        "image_id": api["image"].pk,
        "lease_id": api["lease"].pk,
        "version": 1,
        "token_id": "00000000-0000-0000-0000-000000000000",
        "name": "pairs.jsonl",
    }
    operations = []
    for path, methods in schema["paths"].items():
        concrete = path
        for key, value in values.items():
            concrete = concrete.replace("{" + key + "}", str(value))
        for method, operation in methods.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            fields = []
            content = (operation.get("requestBody") or {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref", "")
                component = components.get(ref.rsplit("/", 1)[-1], {})
                fields = sorted(component.get("properties", {}))
                break
            who = "annotator" if "/leases/" in path or "/tasks/" in path else "manager"
            operations.append((method.upper(), concrete, fields, who))
    return operations


def _valid_bodies(api) -> dict[str, dict]:
    """A body each write operation accepts, by path ending: one odd value replaces one field."""
    return {
        "/projects/": {"name": "Odd values"},
        f"/projects/{api['project'].slug}/": {"name": "Renamed"},
        "/captions/": {"image": api["image"].pk, "text": "A green triangle beside a circle"},
        "/releases/": {"formats": ["jsonl"]},
        "/submit/": {"answer": "match"},
        "/auth/token/": {"username": "manager", "password": factories.PASSWORD, "name": "odd"},
    }


def _base(path: str, bases: dict) -> dict:
    for ending, body in bases.items():
        if path.endswith(ending):
            return body
    return {}


def test_odd_values_never_give_a_500_and_bad_values_name_their_field(api, capsys):
    """Every write operation of the schema, each body field given each odd value (the rest of
    the body valid), and odd whole bodies: never a 500, errors are JSON, and a 400 for a field
    names that field. Each request is rolled back, so all meet the same data."""
    operations = _write_operations(api)
    assert len(operations) >= 12, operations
    bases = _valid_bodies(api)
    failures, sent = [], 0
    for method, path, fields, who in operations:
        client = api["clients"][who]
        base = _base(path, bases)
        cases = [(field, {**base, field: value}) for field in fields for value in ODD_VALUES]
        cases += [(None, body) for body in ODD_BODIES]
        for field, body in cases:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            cache.clear()  # throttles: every request its own first attempt
            with transaction.atomic():
                response = client.generic(method, path, data=data, content_type="application/json")
                transaction.set_rollback(True)
            sent += 1
            label = f"{method} {path} {data[:60]!r}"
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code}")
                continue
            if response.status_code >= 400 and not response["Content-Type"].startswith(
                "application/json"
            ):
                failures.append(f"{label}: {response.status_code} is not JSON")
            elif response.status_code >= 400 and not _has_detail(response):
                failures.append(f"{label}: {response.status_code} has no detail")
            if response.status_code == 400 and field is not None:
                errors = response.json()
                # A wrong password is not a bad value: the token endpoint does not say which.
                wrong_credentials = path.endswith("/auth/token/") and "non_field_errors" in errors
                if field not in errors and not wrong_credentials:
                    failures.append(f"{label}: 400 does not name {field}: {errors}")
    with capsys.disabled():
        print(f"\nodd-value corpus: {sent} requests to {len(operations)} write operations")
    assert not failures, failures[:20]


def _b64(text: bytes) -> str:
    import base64

    return base64.b64encode(text).decode("ascii")


# Query values a client may send: NUL bytes, numbers past 64 bits, digits int() refuses
# ("²" is a digit to str.isdigit), long strings, and cursors a client forged or garbled (DRF's
# cursor is base64 of "o=offset&r=reverse&p=position"). The path's integers get huge values.
ODD_QUERY_VALUES = [
    "\x00",
    "-1",
    "0",
    str(2**63),
    str(10**30),
    "-" + str(10**30),
    "NaN",
    "²",
    "1²",
    "x" * 5_000,
    "!!!",
    "é",
    _b64(b"p=abc"),
    _b64(b"p=" + str(10**30).encode()),
    _b64(b"p=-" + str(10**30).encode()),
    _b64(b"p=%00"),
    _b64(b"p=1.5"),
    _b64(b"p=%C2%B2"),
    _b64(b"o=" + str(10**30).encode()),
    _b64(b"o=-1&p=1"),
    _b64(b"r=2&p=1"),
    _b64(b"r=x&p=1"),
    _b64(b"\xff\xfe"),
    _b64(b"p=1&p=2&o=3"),
]
ODD_PATH_INTEGERS = [str(2**63 - 1), str(2**63), str(10**30)]


def _query_parameters_read() -> set[str]:
    """Every query parameter an API module reads (``query_params.get("…")`` and the like,
    ``datasets.api.query_id``)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    names = set()
    for module in [*root.glob("*/**/apis.py"), *root.glob("*/**/api.py")]:
        text = module.read_text()
        names |= set(re.findall(r"query_params(?:\.get|\.getlist|\[)\(?[\"'](\w+)[\"']", text))
        names |= set(re.findall(r"query_id\(request, [\"'](\w+)[\"']", text))
    assert "image" in names, names
    return names


def _operations(api, methods) -> list[tuple[str, str, str, list[str]]]:
    """(method, schema path, concrete path, query parameter names) for the schema's operations."""
    schema = json.loads(
        api["clients"]["manager"].get("/api/v1/schema/", {"format": "json"}).content
    )
    values = {
        "slug": api["project"].slug,
        "image_id": api["image"].pk,
        "lease_id": api["lease"].pk,
        "job_id": 1,
        "version": 1,
        "token_id": "00000000-0000-0000-0000-000000000000",
        "name": "pairs.jsonl",
    }
    operations = []
    for path, item in schema["paths"].items():
        concrete = path
        for key, value in values.items():
            concrete = concrete.replace("{" + key + "}", str(value))
        for method, operation in item.items():
            if method not in methods:
                continue
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            operations.append((method.upper(), path, concrete, names))
    return operations


def test_odd_query_values_forged_cursors_and_huge_ids_never_give_a_500(api, capsys):
    """Every read operation of the schema, each of its query parameters and the paginators'
    ``cursor`` and ``page_size`` given each odd value; every operation with an integer in its
    path given integers past 64 bits. Never a 500; errors are JSON and a 400 names the
    parameter (a forged cursor is 400 ``cursor``, as on every list)."""
    reads = _operations(api, ("get",))
    assert len(reads) >= 10, reads
    failures, sent = [], 0

    def check(method, url, data, who, field=None):
        nonlocal sent
        client = api["clients"][who]
        cache.clear()
        with transaction.atomic():
            response = client.generic(method, url, data=data, content_type="application/json")
            transaction.set_rollback(True)
        sent += 1
        label = f"{method} {url[:120]!r}"
        if response.status_code >= 500:
            failures.append(f"{label}: {response.status_code}")
        elif response.status_code >= 400:
            if not response["Content-Type"].startswith("application/json"):
                failures.append(f"{label}: {response.status_code} is not JSON")
            elif not _has_detail(response):
                failures.append(f"{label}: {response.status_code} has no detail")
            elif response.status_code == 400 and field and field not in response.json():
                failures.append(f"{label}: 400 does not name {field}: {response.json()}")
        return response

    from urllib.parse import urlencode

    read_in_code = _query_parameters_read()
    for method, path, concrete, names in reads:
        who = "annotator" if "/leases/" in path or "/tasks/" in path else "manager"
        # Those the schema declares, those any API module reads (declared or not), the pager's.
        for name in sorted({*names, *read_in_code, "cursor", "page_size"}):
            for value in ODD_QUERY_VALUES:
                check(method, f"{concrete}?{urlencode({name: value})}", b"", who, field=name)
    # Every operation (reads and writes) with an integer in its path, given huge integers.
    for method, path, _concrete, _names in _operations(
        api, ("get", "post", "put", "patch", "delete")
    ):
        integers = [key for key in ("image_id", "lease_id", "job_id", "version") if key in path]
        who = "annotator" if "/leases/" in path or "/tasks/" in path else "manager"
        for key in integers:
            for value in ODD_PATH_INTEGERS:
                url = path.replace("{" + key + "}", value)
                for other, known in (
                    ("slug", api["project"].slug),
                    ("image_id", api["image"].pk),
                    ("lease_id", api["lease"].pk),
                    ("job_id", 1),
                    ("version", 1),
                    ("name", "pairs.jsonl"),
                ):
                    url = url.replace("{" + other + "}", str(known))
                check(method, url, b"{}" if method != "GET" else b"", who)
    with capsys.disabled():
        print(f"\nodd query values: {sent} requests to {len(reads)} read operations")
    assert not failures, failures[:20]


def test_a_forged_cursor_is_a_400_naming_the_cursor(client, project, manager):
    client.force_login(manager)
    for cursor in (_b64(b"p=abc"), _b64(b"p=" + str(10**30).encode()), "!!!", _b64(b"p=%00")):
        response = client.get(reverse("api-projects"), {"cursor": cursor})
        assert response.status_code == 400, (cursor, response.content)
        assert response.json() == {
            "detail": f"cursor: {INVALID_CURSOR}",
            "cursor": [INVALID_CURSOR],
        }
    # A real cursor still pages.
    for n in range(3):
        factories.project(manager=manager, name=f"More {n}")
    first = client.get(reverse("api-projects"), {"page_size": 2}).json()
    second = client.get(first["next"]).json()
    assert len(first["results"]) == 2 and second["results"]
    assert {p["id"] for p in first["results"]}.isdisjoint(p["id"] for p in second["results"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"trusted_sources": 5}, "trusted_sources"),
        ({"trusted_sources": ["nowhere"]}, "trusted_sources"),
        ({"judgments_per_item": 0}, "judgments_per_item"),
        ({"captions_per_image": 0}, "captions_per_image"),
        ({"near_duplicate_threshold": 65}, "near_duplicate_threshold"),
        ({"balance_ratio": -1}, "balance_ratio"),
        ({"balance_ratio": 0}, "balance_ratio"),
        ({"quality_image_max_aspect_ratio": 0.5}, "quality_image_max_aspect_ratio"),
        ({"quality_caption_min_letter_ratio": 2}, "quality_caption_min_letter_ratio"),
        ({"caption_min_words": 0}, "caption_min_words"),
        ({"gold_rate": "NaN"}, "gold_rate"),
        ({"name": "bad\x00name"}, "name"),
        ({"guidelines": "a\x00b"}, "guidelines"),
        ({"split_train": [0.7]}, "split_train"),
        # Sane upper bounds (QA finding 8): far past any use, short of endless work.
        ({"judgments_per_item": 1000, "max_judgments_per_item": 1000}, "judgments_per_item"),
        ({"max_judgments_per_item": 32767}, "max_judgments_per_item"),
        ({"captions_per_image": 10_000}, "captions_per_image"),
        ({"negatives_model_per_image": 30_000}, "negatives_model_per_image"),
        ({"quality_image_min_width": 2**31 - 1}, "quality_image_min_width"),
        ({"quality_image_min_std": 300}, "quality_image_min_std"),
        ({"balance_ratio": 1e300}, "balance_ratio"),
        ({"caption_min_words": 30_000, "caption_max_words": 30_000}, "caption_min_words"),
        ({"guidelines": "x" * 50_001}, "guidelines"),
        ({"description": "x" * 5_001}, "description"),
    ],
)
def test_project_settings_refused_on_their_field(client, project, manager, change, field):
    """The issue's 500s: each is a 400 naming the field, and nothing changes."""
    client.force_login(manager)
    before = Project.objects.values().get(pk=project.pk)
    response = client.patch(
        reverse("api-project", args=[project.slug]), change, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Project.objects.values().get(pk=project.pk) == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("judgments_per_item", "0"),
        ("near_duplicate_threshold", "65"),
        ("balance_ratio", "-1"),
        ("captions_per_image", "0"),
        ("quality_image_max_aspect_ratio", "0.5"),
    ],
)
def test_settings_page_shows_readable_messages(client, project, manager, field, value):
    client.force_login(manager)
    response = client.post(reverse("project-settings", args=[project.slug]), {field: value})
    assert response.status_code == 200
    page = response.content.decode()
    assert "datasets_project_" not in page and "Constraint" not in page
    assert response.context["form"].errors[field]


def test_api_errors_are_json(client, project, manager, settings, monkeypatch):
    client.force_login(manager)
    # 404: an unknown API path, and an object that is not there.
    for url in ("/api/v1/nothing/", "/api/v1/projects/no-such-project/"):
        response = client.get(url)
        assert response.status_code == 404 and response.json()["detail"], url
    # 405
    response = client.get("/api/v1/leases/1/submit/")
    assert response.status_code in (404, 405) and response.json()["detail"]
    response = client.put(reverse("api-projects"))
    assert response.status_code == 405 and response.json()["detail"]
    # 401
    anonymous = Client()
    response = anonymous.get(reverse("api-projects"))
    assert response.status_code == 401 and response.json()["detail"]
    # A browser asking for HTML still gets JSON from the API.
    for url in ("/api/v1/projects/no-such-project/", "/api/v1/nothing/", reverse("api-projects")):
        response = client.get(url, HTTP_ACCEPT="text/html,application/xhtml+xml")
        assert response["Content-Type"] == "application/json", url
    # 413: a JSON body over DATA_UPLOAD_MAX_MEMORY_SIZE, and a form with too many fields.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    big = json.dumps({"name": "x" * 5000})
    response = client.post(reverse("api-projects"), big, content_type="application/json")
    assert response.status_code == 413 and "at most 1000 bytes" in response.json()["detail"]
    many = "&".join(f"f{i}=1" for i in range(50))
    response = client.post(
        reverse("api-projects"), many, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413 and response.json()["detail"]
    # 400: JSON nested too deeply, and not JSON at all.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
    deep = json.dumps({"name": _deep(MAX_JSON_DEPTH + 5)})
    response = client.post(reverse("api-projects"), deep, content_type="application/json")
    assert response.status_code == 400 and "nested" in response.json()["detail"]
    response = client.post(reverse("api-projects"), "{", content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]
    # 500: an unexpected error inside a view is JSON too (the error stands in for a bug).
    from datasets import access

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(access, "projects_visible", broken)
    failing = Client(raise_request_exception=False)
    failing.force_login(manager)
    response = failing.get(reverse("api-projects"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert "logged" in response.json()["detail"]
    # Pages keep Django's HTML error pages.
    page = client.get("/projects/no-such-project/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_request_bodies_in_the_schema_are_their_own(client, manager, tmp_path):
    """POST captions documents its own body (image, text), not the lease submit's, and the
    schema is generated without a warning (two serializers sharing a name would warn)."""
    client.force_login(manager)
    schema = json.loads(client.get("/api/v1/schema/", {"format": "json"}).content)
    body = schema["paths"]["/api/v1/projects/{slug}/captions/"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {"image", "text"}
    submit = schema["paths"]["/api/v1/leases/{lease_id}/submit/"]["post"]["requestBody"]
    ref = submit["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "answer" in schema["components"]["schemas"][ref]["properties"]
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


def test_nul_in_a_typed_caption_keeps_the_text(client, project, annotator):
    """A NUL byte typed on the annotate page: the same task comes back with the text (without
    the NUL) and a message, nothing is stored, no 500 (PostgreSQL would refuse the NUL)."""
    image = factories.image(project=project, seed=4)
    tasks_open(project=project, seed=1)
    client.force_login(annotator)
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    assert lease.task.kind == "caption" and lease.task.image_id == image.pk
    text = "A red circle\x00 above a blue square"
    response = client.post(
        reverse("annotate-submit", args=[project.slug, lease.pk]),
        {"answer": "caption", "caption_text": text},
    )
    assert response.status_code == 200
    assert "A red circle above a blue square" in response.content.decode()
    assert "NUL" in response.content.decode()
    assert not image.captions.exists()
