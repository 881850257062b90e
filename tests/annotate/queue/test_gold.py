import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotate.models import Task
from tests import factories

pytestmark = pytest.mark.django_db


def test_manager_sets_gold_from_the_image_page(client, project, manager, annotator):
    [task] = factories.verify_tasks(project=project, count=1)
    url = reverse("pair-gold", kwargs={"slug": project.slug, "pair_id": task.pair_id})
    client.force_login(annotator)
    assert client.post(url, {"answer": "match"}).status_code == 403
    client.force_login(manager)
    response = client.post(url, {"answer": "no_match"}, follow=True)
    task.refresh_from_db()
    assert (task.is_gold, task.gold_answer) == (True, "no_match")
    assert "data-gold-answer" in response.content.decode()
    client.post(url, {"answer": "sometimes"})
    task.refresh_from_db()
    assert task.gold_answer == "no_match"


def test_import_gold_csv(project, tmp_path):
    tasks = factories.verify_tasks(project=project, count=2)
    path = tmp_path / "gold.csv"
    path.write_text(
        f"pair_id,answer\n{tasks[0].pair_id},match\n{tasks[1].pair_id},perhaps\n999999,match\n"
    )
    with pytest.raises(CommandError, match="2 problem"):
        call_command(
            "import_gold", project.slug, str(path), stdout=io.StringIO(), stderr=io.StringIO()
        )
    assert list(Task.objects.filter(is_gold=True).values_list("pair_id", "gold_answer")) == [
        (tasks[0].pair_id, "match")
    ]
