import io
import random

import numpy as np
import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from datasets.demo.services import DEMO_ACCOUNTS, DEMO_SLUG
from datasets.demo.synthetic import COLOURS, INVERSE, draw_scene, generate, random_scene
from datasets.models import Caption, Project, Source


def test_scenes_are_reproducible_and_captions_describe_them():
    first = [scene for scene, _ in generate(5, seed=3)]
    again = [scene for scene, _ in generate(5, seed=3)]
    assert first == again
    scene = random_scene(random.Random(1))
    a, b, c = scene.captions()
    assert a.startswith(scene.first.with_article) and scene.relation in a
    assert INVERSE[scene.relation] in b and b.startswith(scene.second.with_article)
    assert scene.background in c


def test_the_first_shape_is_drawn_where_the_caption_says():
    rng = random.Random(5)
    for _ in range(20):
        scene = random_scene(rng)
        picture = draw_scene(scene, size=96, rng=rng)
        first = _centroid(picture, COLOURS[scene.first.colour])
        second = _centroid(picture, COLOURS[scene.second.colour])
        dx, dy = first[0] - second[0], first[1] - second[1]
        expected = {
            "above": dy < -20,
            "below": dy > 20,
            "left of": dx < -20,
            "right of": dx > 20,
        }
        assert expected[scene.relation], (scene, first, second)


def _centroid(picture, colour):
    pixels = np.asarray(picture, dtype=int)
    mask = np.abs(pixels - np.array(colour)).sum(axis=2) < 30
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


@pytest.mark.django_db
def test_seed_demo_creates_accounts_and_project_once():
    out = io.StringIO()
    call_command("seed_demo", "--images", "6", stdout=out)
    project = Project.objects.get(slug=DEMO_SLUG)
    assert project.images.count() == 6
    described = Caption.objects.filter(image__project=project).exclude(source=Source.TEXT_EDIT)
    assert described.count() == 18
    # One text edit per image, and a challenge item per image to judge it and a random caption.
    assert Caption.objects.filter(image__project=project, source=Source.TEXT_EDIT).count() == 6
    assert project.tasks.filter(kind="challenge").count() == 6
    for account in DEMO_ACCOUNTS:
        assert authenticate(username=account.username, password=account.password)
        assert f"{account.username} / {account.password}" in out.getvalue()
        assert project.memberships.get(user__username=account.username).role == account.role

    call_command("seed_demo", "--images", "6", "--if-empty", stdout=io.StringIO())
    call_command("seed_demo", "--images", "6", stdout=io.StringIO())  # same seed: nothing new
    assert project.images.count() == 6
    assert described.count() == 18
    assert project.tasks.filter(kind="challenge").count() == 6
