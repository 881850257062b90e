import pytest
from django.urls import reverse

from training.registry import versions
from training.registry.models import ModelVersion


@pytest.mark.django_db
@pytest.mark.parametrize("who, status", [("manager", 200), ("annotator", 403), ("outsider", 404)])
def test_only_managers_see_models(client, project, release, request, who, status):
    client.force_login(request.getfixturevalue(who))
    url = reverse("models", args=[project.slug])
    assert client.get(url).status_code == status
    assert client.post(url).status_code == (302 if status == 200 else status)
    assert ModelVersion.objects.count() == (1 if status == 200 else 0)


@pytest.mark.django_db
def test_models_page_shows_metrics_and_trains_now(
    client, project, manager, release, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    url = reverse("models", args=[project.slug])
    assert b"No model yet" in client.get(url).content
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, follow=True)
    assert len(callbacks) == 1 and b"queued" in response.content
    version = ModelVersion.objects.get()
    versions.model_train(version_id=version.pk)
    page = client.get(url).content.decode()
    assert f'id="model-{version.pk}"' in page and "data-promoted" in page
    assert "Promoted" in page and "I→T R@1" in page and "T→I R@10" in page
    assert "<td>test</td>" in page and 'aria-current="page">Models' in page
