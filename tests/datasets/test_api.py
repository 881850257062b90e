import pytest
from django.urls import reverse

from datasets.models import Caption, Project
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, manager):
    client.force_login(manager)
    return client


def test_create_and_list_projects(api, manager):
    response = api.post(
        reverse("api-projects"),
        {"name": "Birds", "guidelines": "Name the **bird**.", "judgments_per_item": 5},
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["slug"], body["judgments_per_item"], body["captions_per_image"]) == ("birds", 5, 5)
    assert Project.objects.get(slug="birds").memberships.get().user == manager
    listing = api.get(reverse("api-projects")).json()
    assert [p["slug"] for p in listing["results"]] == ["birds"]


def test_project_settings_are_validated(api, project):
    url = reverse("api-project", kwargs={"slug": project.slug})
    bad = api.patch(url, {"gold_rate": 1.5}, content_type="application/json")
    assert bad.status_code == 400 and "gold_rate" in bad.json()
    both = api.patch(
        url, {"gold_rate": 0.6, "challenge_rate": 0.6}, content_type="application/json"
    )
    assert both.status_code == 400 and "challenge_rate" in both.json()
    ok = api.patch(url, {"gold_rate": 0.2}, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["gold_rate"] == 0.2


def test_project_language_is_a_setting_of_known_languages(api, project):
    url = reverse("api-project", kwargs={"slug": project.slug})
    assert api.get(url).json()["language"] == "en"

    bad = api.patch(url, {"language": "klingon"}, content_type="application/json")
    ok = api.patch(url, {"language": "zh"}, content_type="application/json")

    assert bad.status_code == 400 and "language" in bad.json()
    assert ok.status_code == 200 and ok.json()["language"] == "zh"
    assert Project.objects.get(pk=project.pk).language == "zh"


def test_the_database_refuses_an_unknown_language(project):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(pk=project.pk).update(language="xx")


def test_upload_without_files_is_a_clear_400(api, project):
    response = api.post(reverse("api-images", kwargs={"slug": project.slug}), {})
    assert response.status_code == 400
    assert "files" in response.json()["detail"]


def test_images_and_captions_page_with_a_cursor(api, project):
    for seed in range(5):
        image = factories.image(project=project, seed=seed)
        api.post(
            reverse("api-captions", kwargs={"slug": project.slug}),
            {"image": image.pk, "text": f"caption {seed}"},
        )
    url = reverse("api-images", kwargs={"slug": project.slug})
    first = api.get(url, {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    seen = [row["id"] for row in first["results"]]
    page = first
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [row["id"] for row in page["results"]]
    assert seen == list(project.images.order_by("id").values_list("id", flat=True))
    image = first["results"][0]
    assert image["file_url"].endswith(f"/images/{image['id']}/file")
    assert api.get(image["file_url"]).status_code == 200

    captions = api.get(
        reverse("api-captions", kwargs={"slug": project.slug}), {"image": image["id"]}
    )
    assert [c["text"] for c in captions.json()["results"]] == ["caption 0"]


def test_caption_errors(api, project):
    image = factories.image(project=project)
    url = reverse("api-captions", kwargs={"slug": project.slug})
    empty = api.post(url, {"image": image.pk, "text": " \u200b "})
    assert empty.status_code == 400 and empty.json()["text"] == ["Caption is empty."]
    long = api.post(url, {"image": image.pk, "text": "x" * 1001})
    assert long.status_code == 400 and "longer than 1000" in long.json()["text"][0]
    missing = api.post(url, {"image": 987654, "text": "hello"})
    assert missing.status_code == 400
    assert Caption.objects.count() == 0


def test_schema_describes_the_api(api):
    response = api.get(reverse("api-schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/projects/",
        "/api/v1/projects/{slug}/images/",
        "/api/v1/projects/{slug}/captions/",
    ):
        assert path in paths
    docs = api.get(reverse("api-docs"))
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
