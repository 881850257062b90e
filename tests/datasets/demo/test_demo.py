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


@pytest.mark.django_db
def test_demo_guidelines_state_the_rule_the_demo_enforces():
    """What the guidelines tell an annotator is what caption_check refuses: the word limits
    (one word under / over refused, the limits themselves accepted) and every banned opening,
    no more and no fewer. (They said 4 to 20 words while 40 were accepted, and named two of the
    six banned openings.)"""
    import re

    from annotate.queue.caption_rules import caption_check
    from annotate.queue.services.judgments import caption_rules_for
    from datasets.demo.services import demo_guidelines_for

    call_command("seed_demo", "--images", "2", stdout=io.StringIO())
    project = Project.objects.get(slug=DEMO_SLUG)
    rules = caption_rules_for(project)
    text = project.guidelines
    assert text == demo_guidelines_for(project)

    low, high = map(int, re.search(r"(\d+) to (\d+) words", text).groups())
    assert (low, high) == (rules.min_words, rules.max_words)

    def words(n):
        return " ".join(["red", "circle", "above", "blue", "square"] * 10).split()[:n]

    def ok(caption):
        return caption_check(caption, rules=rules, existing=[]).ok

    assert ok(" ".join(words(low))) and ok(" ".join(words(high)))
    assert not ok(" ".join(words(low - 1))) and not ok(" ".join(words(high + 1)))

    stated = re.findall(r"“([^”]+)”", text)
    assert stated and set(stated) == set(rules.banned_openings)
    for opening in stated:
        assert not ok(f"{opening} a red circle above a blue square")

    # The demo's own captions (the examples annotators see beside a task) keep the rule too.
    for caption in Caption.objects.filter(image__project=project).exclude(source=Source.TEXT_EDIT):
        assert ok(caption.text), caption.text

    # The text is written from the settings, not fixed: other limits, other words.
    project.caption_max_words = 12
    assert "4 to 12 words" in demo_guidelines_for(project)
