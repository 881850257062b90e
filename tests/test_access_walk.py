"""The permission walk: every URL pattern of the site and every operation of the OpenAPI schema,
exercised with every kind of user, against the access rule each path must keep.

Roles: anonymous, outsider, annotator of another project, annotator, removed annotator (was an
annotator, holds a lease from then), suspended annotator (holds a lease from before), manager,
admin (staff). Each request runs in a transaction that is rolled back, so every role meets the
same world. A *leak* is a role that should be refused and is not; an *over-refusal* a role that
should get through and is refused. The test prints the matrix and fails on either, on any 500,
on any URL pattern it does not know (a new URL must be given its rule here) and on any schema
operation it did not exercise.
"""

import json
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Permission
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotate.models import Suspension
from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import tasks_open
from datasets.accounts import services as accounts
from datasets.ingest.services.uploads import caption_create
from datasets.models import (
    CaptionFlag,
    ClusterMember,
    DuplicateCluster,
    Image,
    ImageFlag,
    ImportJob,
    ImportKind,
    Membership,
)
from datasets.projects.services import membership_remove
from datasets.releases import services as releases
from tests import factories
from training.registry.models import ModelVersion

pytestmark = pytest.mark.django_db

ROLES = (
    "anonymous",
    "outsider",
    "other_annotator",
    "annotator",
    "removed",
    "suspended",
    "manager",
    "admin",
)

# What a path needs. PUBLIC: anyone. LOGIN: a signed-in user, no project. CREATE: may create
# projects. READ: a member (suspended too). WORK: a member whose work is not suspended. MANAGE:
# a manager. OWNER: the lease's own annotator, who must still have WORK. STAFF: the admin site.
PUBLIC, LOGIN, CREATE, READ, WORK, MANAGE, OWNER, STAFF = (
    "public",
    "login",
    "create",
    "read",
    "work",
    "manage",
    "owner",
    "staff",
)
ALLOWED = {
    PUBLIC: set(ROLES),
    LOGIN: set(ROLES) - {"anonymous"},
    CREATE: {"manager", "admin"},
    READ: {"annotator", "suspended", "manager", "admin"},
    WORK: {"annotator", "manager", "admin"},
    MANAGE: {"manager", "admin"},
    OWNER: {"annotator"},
    STAFF: {"admin"},
}

# Every URL pattern by name: its need, or a need per HTTP method.
RULES = {
    # Accounts
    "login": PUBLIC,
    "logout": PUBLIC,
    "password_change": LOGIN,
    "password_change_done": LOGIN,
    "password_reset": PUBLIC,
    "password_reset_done": PUBLIC,
    "password_reset_confirm": PUBLIC,
    "password_reset_complete": PUBLIC,
    "invitation-accept": PUBLIC,
    "tokens": LOGIN,
    "token-revoke": LOGIN,
    "tokens-revoke-all": LOGIN,
    # API: accounts and schema
    "api-token": {"POST": PUBLIC, "DELETE": LOGIN},
    "api-tokens": LOGIN,
    "api-token-detail": LOGIN,
    "api-schema": LOGIN,
    "api-docs": LOGIN,
    # API: projects and their data
    "api-projects": {"GET": LOGIN, "POST": CREATE},
    "api-project": {"GET": READ, "PATCH": MANAGE},
    "api-images": MANAGE,
    "api-image": MANAGE,
    "api-captions": MANAGE,
    "api-pairs": MANAGE,
    "api-pairs-act": MANAGE,
    "api-imports": MANAGE,
    "api-import": MANAGE,
    "api-import-rows": MANAGE,
    "api-collections": MANAGE,
    "api-collection": MANAGE,
    "api-collection-pause": MANAGE,
    "api-collection-resume": MANAGE,
    "api-collection-retry": MANAGE,
    "api-releases": MANAGE,
    "api-release": MANAGE,
    "api-release-file": MANAGE,
    "api-release-pin": MANAGE,
    "api-task-next": WORK,
    "api-task-heartbeat": WORK,
    "api-lease-submit": OWNER,
    "api-lease-skip": OWNER,
    # Pages
    "home": LOGIN,
    "project-create": CREATE,
    "project-detail": READ,
    "project-settings": MANAGE,
    "project-members": MANAGE,
    "project-member-unlock": MANAGE,
    "project-member-remove": MANAGE,
    "invitations-create": MANAGE,
    "invitation-revoke": MANAGE,
    "project-upload": MANAGE,
    "project-import": MANAGE,
    "import-job": MANAGE,
    "project-collect": MANAGE,
    "import-cancel": MANAGE,
    "import-retry": MANAGE,
    "collection-pause": MANAGE,
    "collection-resume": MANAGE,
    "collection-retry": MANAGE,
    "image-grid": MANAGE,
    "pair-list": MANAGE,
    "pairs-act": MANAGE,
    "image-detail": MANAGE,
    "image-file": READ,
    "image-thumbnail": READ,
    "duplicates-review": MANAGE,
    "cluster-confirm": MANAGE,
    "cluster-split": MANAGE,
    "quality-flags": MANAGE,
    "image-flag-override": MANAGE,
    "caption-flag-override": MANAGE,
    "releases": MANAGE,
    "release-detail": MANAGE,
    "release-row": MANAGE,
    "release-file": MANAGE,
    "release-download-all": MANAGE,
    "release-pin": MANAGE,
    "release-retry": MANAGE,
    "release-cancel": MANAGE,
    "models": MANAGE,
    "model-card": MANAGE,
    "model-cancel": MANAGE,
    "model-retry": MANAGE,
    "negatives": MANAGE,
    "mining-cancel": MANAGE,
    "mining-retry": MANAGE,
    "pair-gold": MANAGE,
    "tasks-open": MANAGE,
    "annotate": READ,
    "annotate-submit": OWNER,
    "annotate-skip": OWNER,
    "annotate-check": OWNER,
    "annotate-undo": WORK,
    "annotate-heartbeat": WORK,
    "agreement": MANAGE,
    "agreement-recompute": MANAGE,
    "agreement-disputed": MANAGE,
    "agreement-adjudicate": MANAGE,
    "agreement-suspend": MANAGE,
    "agreement-reinstate": MANAGE,
}
# The admin site (every pattern in its namespace) is for staff only.
ADMIN_PREFIX = "admin/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass
class Route:
    route: str
    name: str | None
    pattern: object
    callback: object
    methods: list[str] = field(default_factory=list)


def routes() -> list[Route]:
    """Every URL pattern of the site, with its full route and namespaced name."""
    found = []

    def walk(resolver, prefix: str, namespace: str | None) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern, prefix + str(pattern.pattern), pattern.namespace or namespace)
            else:
                name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
                found.append(Route(prefix + str(pattern.pattern), name, pattern, pattern.callback))

    walk(get_resolver(), "", None)
    return found


@pytest.fixture
def world(manager, annotator, outsider, settings, tmp_path):
    """One project with something behind every URL, and a user of every role."""
    settings.CONCORD_RELEASES_ROOT = tmp_path / "releases"
    project = factories.project(manager=manager, name="Walked")
    images = [factories.image(project=project, seed=seed) for seed in range(3)]
    captions = [
        caption_create(image=image, text=f"A small test scene number {n}", source="api")
        for n, image in enumerate(images)
    ]
    pair = captions[0].pairs.get()
    suspended = factories.user("suspended")
    removed = factories.user("removed")
    other_annotator = factories.user("other-annotator")
    other_manager = factories.user("other-manager")
    admin = factories.user("admin", is_staff=True, is_superuser=True)
    for user in (annotator, suspended, removed):
        factories.member(project=project, user=user, role="annotator")
    other = factories.project(manager=other_manager, name="Another")
    factories.member(project=other, user=other_annotator, role="annotator")
    manager.user_permissions.add(
        Permission.objects.get(codename="add_project", content_type__app_label="datasets")
    )

    tasks_open(project=project, seed=1)
    leases = {
        role: assignment_get(project=project, annotator=user, lookahead=0).current
        for role, user in (("annotator", annotator), ("suspended", suspended), ("removed", removed))
    }
    assert all(leases.values()), leases
    # The holes closed here: suspended or removed while holding a lease.
    Suspension.objects.create(project=project, annotator=suspended, suspended_at=timezone.now())
    membership_remove(project=project, user=removed)

    # Clustered images have their perceptual hashes (as the dedup worker leaves them).
    Image.objects.filter(pk__in=[i.pk for i in images[:2]]).update(
        phash=0, dhash=0, hashed_at=timezone.now()
    )
    cluster = DuplicateCluster.objects.create(project=project, canonical=images[0], size=2, doubt=2)
    for image in images[:2]:
        ClusterMember.objects.create(cluster=cluster, image=image)
    image_flag = ImageFlag.objects.create(image=images[2], code="small", message="Too small")
    caption_flag = CaptionFlag.objects.create(caption=captions[2], code="short", message="Short")
    options = releases.release_options(project=project, formats=["jsonl"])
    release = releases.release_request(project=project, user=manager, options=options)
    release = releases.release_build(release_id=release.pk)
    version = ModelVersion.objects.create(project=project, release=release)
    job = ImportJob.objects.create(
        project=project, kind=ImportKind.UPLOAD, source="upload", created_by=manager
    )
    [invitation] = [
        line.invitation
        for line in accounts.invitations_create(
            project=project, lines=[(1, "new@example.org")], role="annotator", created_by=manager
        )
    ]
    users = {
        "anonymous": None,
        "outsider": outsider,
        "other_annotator": other_annotator,
        "annotator": annotator,
        "removed": removed,
        "suspended": suspended,
        "manager": manager,
        "admin": admin,
    }
    tokens = {
        role: accounts.token_create(user=user, name="walk")[0]
        for role, user in users.items()
        if user is not None
    }
    values = {
        "slug": project.slug,
        "image_id": images[0].pk,
        "pair_id": pair.pk,
        "cluster_id": cluster.pk,
        "version": release.version,
        "name": "pairs.jsonl",
        "pk": version.pk,
        "user_id": annotator.pk,
        "invitation_id": invitation.pk,
        "job_id": job.pk,
        "token": accounts.invitation_token(invitation=invitation),
        "uidb64": urlsafe_base64_encode(force_bytes(annotator.pk)),
        "app_label": "datasets",
        "object_id": str(project.pk),
        "url": "nothing-here/",
        "content_type_id": "1",
        "id": str(annotator.pk),
    }
    per_name = {
        "image-flag-override": {"flag_id": image_flag.pk},
        "caption-flag-override": {"flag_id": caption_flag.pk},
        "cluster-split": {"image_id": images[1].pk},
        "password_reset_confirm": {"token": default_token_generator.make_token(annotator)},
    }
    return {
        "users": users,
        "values": values,
        "per_name": per_name,
        "leases": leases,
        "tokens": tokens,
        "project": project,
    }


def _kwargs(route: Route, role: str, world) -> dict:
    names = list(route.pattern.pattern.converters) or list(route.pattern.pattern.regex.groupindex)
    values = {**world["values"], **world["per_name"].get(route.name, {})}
    own_lease = world["leases"].get(role) or world["leases"]["annotator"]
    own_token = world["tokens"].get(role) or world["tokens"]["annotator"]
    values |= {"lease_id": own_lease.pk, "token_uid": own_token.uid, "token_id": own_token.uid}
    if route.name in IMAGE_OF_OWN_TASK:
        # An annotator fetches only the images of their own tasks (access.images_visible): each
        # role asks for the image of its own lease (others for the annotator's).
        values["image_id"] = own_lease.task.image_id
    return {name: values[name] for name in names}


IMAGE_OF_OWN_TASK = {"image-file", "image-thumbnail"}


def _url(route: Route, kwargs: dict) -> str:
    """The route with its arguments filled in, from the pattern text itself (so unnamed
    patterns work too)."""
    url = route.route
    pattern = route.pattern.pattern
    if pattern.converters:
        prefix = route.route[: -len(str(pattern))]
        url = prefix + str(pattern)
        for name, value in kwargs.items():
            converter = pattern.converters[name]
            kinds = {
                "IntConverter": "int",
                "SlugConverter": "slug",
                "UUIDConverter": "uuid",
                "PathConverter": "path",
                "StringConverter": "str",
            }
            # The nearest Django converter it is (config.urls bounds every int: IdConverter).
            kind = next(kinds[c.__name__] for c in type(converter).__mro__ if c.__name__ in kinds)
            url = url.replace(f"<{kind}:{name}>", str(value)).replace(f"<{name}>", str(value))
    else:
        # A regular expression pattern (the admin's): its named groups filled in.
        url = _fill_regex(url, kwargs)
    return "/" + url


def _fill_regex(regex: str, kwargs: dict) -> str:
    import re

    out = regex.replace("^", "").replace("$", "").replace("\\Z", "")
    for name, value in kwargs.items():
        out = re.sub(rf"\(\?P<{name}>[^)]*\)", str(value), out)
    return out


def _need(route: Route, method: str):
    # The admin's login page is anyone's; its logout logs out staff only (others are sent
    # to the admin's index, which asks them to log in).
    if route.name in ("admin:login", "admin:logout"):
        return PUBLIC
    if route.route.startswith(ADMIN_PREFIX):
        return STAFF
    rule = RULES[route.name]
    return rule.get(method) if isinstance(rule, dict) else rule


def _methods(route: Route, world) -> list[str]:
    """The methods a path serves: a DRF view's handlers, else GET and POST unless the admin
    role is answered 405 for them."""
    view = getattr(route.callback, "cls", None)
    if view is not None:
        return [method for method in METHODS if hasattr(view, method.lower())]
    url = _url(route, _kwargs(route, "admin", world))
    # Pages are GET and POST (what a browser sends); an API view's methods are its handlers.
    return [
        method
        for method in ("GET", "POST")
        if _request("admin", world["users"]["admin"], method, url).status_code != 405
    ]


def _may_be_absent(route: Route, response) -> bool:
    """The admin's catch-all and view-on-site answer 404 for a URL that names nothing: not a
    refusal (and no URL of the walk can name something there)."""
    return response.status_code == 404 and route.route.startswith(ADMIN_PREFIX)


def _is_api(url: str) -> bool:
    return url.startswith("/api/") and not url.startswith("/api/v1/docs/")


def _request(role: str, user, method: str, url: str):
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    cache.clear()  # throttle counts: every request of the walk is its own first attempt
    body = "{}" if _is_api(url) else ""
    content_type = "application/json" if _is_api(url) else "application/x-www-form-urlencoded"
    with transaction.atomic():
        response = client.generic(method, url, data=body, content_type=content_type)
        transaction.set_rollback(True)
    return response


def _refused(response, url: str, need: str) -> bool:
    status = response.status_code
    if need == PUBLIC:  # a public page may send anyone to the login page (logout does)
        return status in (401, 403, 404)
    location = response.get("Location", "")
    if url.startswith("/" + ADMIN_PREFIX):
        # The admin's own login page for staff-less users; the site's for anonymous ones.
        return status == 302 and location.startswith(("/admin/login/", "/accounts/login/"))
    if status in (401, 403, 404):
        return True
    return status == 302 and location.startswith("/accounts/login/")


def test_every_path_keeps_its_rule_for_every_role(world, capsys):
    known = set(RULES)
    all_routes = routes()
    unknown = [
        r.route
        for r in all_routes
        if not r.route.startswith(ADMIN_PREFIX) and (r.name is None or r.name not in known)
    ]
    assert not unknown, f"URL patterns the walk has no rule for (add them to RULES): {unknown}"

    rows, leaks, over, errors, exercised = [], [], [], [], set()
    for route in all_routes:
        for method in _methods(route, world):
            need = _need(route, method)
            if need is None:
                errors.append(f"{method} {route.route}: served but has no rule for {method}")
                continue
            exercised.add((route.name, method))
            cells = []
            for role in ROLES:
                url = _url(route, _kwargs(route, role, world))
                response = _request(role, world["users"][role], method, url)
                refused = _refused(response, url, need)
                should_refuse = role not in ALLOWED[need]
                mark = ""
                if response.status_code >= 500:
                    errors.append(f"{method} {url} as {role}: {response.status_code}")
                    mark = "E"
                elif should_refuse and not refused:
                    leaks.append(f"{method} {url} as {role}: {response.status_code} (needs {need})")
                    mark = "LEAK"
                elif not should_refuse and refused and not _may_be_absent(route, response):
                    over.append(f"{method} {url} as {role}: {response.status_code} (needs {need})")
                    mark = "X"
                cells.append(f"{response.status_code}{mark}")
            rows.append((f"{method} /{route.route}", need, cells))

    with capsys.disabled():
        width = max(len(row[0]) for row in rows)
        print()
        print(f"{'path':<{width}} {'need':<7} " + " ".join(f"{r[:9]:>9}" for r in ROLES))
        for path, need, cells in rows:
            print(f"{path:<{width}} {need:<7} " + " ".join(f"{c:>9}" for c in cells))
        print(
            f"permission walk: {len(rows)} path-methods x {len(ROLES)} roles = "
            f"{len(rows) * len(ROLES)} requests; leaks {len(leaks)}, over-refusals {len(over)}, "
            f"errors {len(errors)}"
        )
    assert not leaks, leaks
    assert not over, over
    assert not errors, errors

    # Every operation the OpenAPI schema documents was walked.
    client = Client()
    client.force_login(world["users"]["admin"])
    schema = json.loads(client.get("/api/v1/schema/", {"format": "json"}).content)
    missing = []
    for path, operations in schema["paths"].items():
        concrete = path
        for name, value in _kwargs_for_schema(world).items():
            concrete = concrete.replace("{" + name + "}", str(value))
        match = resolve(concrete)
        for method in operations:
            if method.upper() in METHODS and (match.url_name, method.upper()) not in exercised:
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"schema operations the walk did not exercise: {missing}"
    assert len(schema["paths"]) >= 15


def _kwargs_for_schema(world) -> dict:
    values = dict(world["values"])
    values |= {
        "lease_id": world["leases"]["annotator"].pk,
        "token_id": world["tokens"]["annotator"].uid,
    }
    return values


def test_walk_covers_the_lease_holes(world):
    """The failures the issue found, by name: a removed annotator cannot submit or skip the
    lease they held, a suspended one neither; nothing is written."""
    from annotate.models import Judgment

    for role, status in (("removed", 404), ("suspended", 403)):
        lease = world["leases"][role]
        client = Client()
        client.force_login(world["users"][role])
        submit = client.post(
            f"/api/v1/leases/{lease.pk}/submit/",
            {"answer": "match", "caption_text": "A person writes a caption here"},
            content_type="application/json",
        )
        skip = client.post(f"/api/v1/leases/{lease.pk}/skip/")
        assert (submit.status_code, skip.status_code) == (status, status), role
        assert submit["Content-Type"] == "application/json"
        lease.refresh_from_db()
        assert lease.state == "active"
    assert not Judgment.objects.filter(annotator__in=[world["users"]["removed"]]).exists()
    assert not Membership.objects.filter(user=world["users"]["removed"]).exists()
