"""Guidelines Markdown (QA finding 14): no tracking pixels (images from other sites), no links
to anything but web pages and mail, no scripts; what remains renders."""

import pytest
from django.urls import reverse

from datasets.templatetags.concord import markdown


@pytest.mark.parametrize(
    "source",
    [
        "![pixel](https://tracker.example/p.gif?u=1)",
        "![pixel](http://tracker.example/p.gif)",
        "![pixel](//tracker.example/p.gif)",
        "![pixel](/\\tracker.example/p.gif)",
        '<img src="https://tracker.example/p.gif">',
        '<img src="data:image/gif;base64,R0lGOD">',
        '<img srcset="https://tracker.example/p.gif 1x" src="/static/x.png">',
        '<picture><source srcset="https://tracker.example/p.gif"></picture>',
        '<p style="background:url(https://tracker.example/p.gif)">x</p>',
    ],
)
def test_no_image_from_another_site(source):
    html = markdown(source)
    assert "tracker.example" not in html and "data:" not in html, html


def test_an_image_of_this_site_stays_and_others_keep_their_alt_text():
    assert '<img alt="diagram" src="/static/img/example.png">' in markdown(
        "![diagram](/static/img/example.png)"
    )
    html = markdown("![a red circle](https://tracker.example/p.gif)")
    assert "<img" in html and "src" not in html and "a red circle" in html


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html,hi)",
        "[x](vbscript:msgbox)",
        "[x](ftp://files.example/x)",
        '<a href="java\tscript:alert(1)">x</a>',
        "[x](rules.html)",
        "[x](https://)",
    ],
)
def test_links_only_to_web_pages_and_mail(source):
    html = markdown(source)
    assert "href" not in html, html
    assert ">x</a>" in html


def test_web_and_mail_links_stay_without_a_referrer():
    html = markdown("[rules](https://example.org/rules) and [us](mailto:team@example.org)")
    assert 'href="https://example.org/rules"' in html
    assert 'href="mailto:team@example.org"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    html = markdown("[home](/projects/) and [top](#top)")
    assert 'href="/projects/"' in html and 'href="#top"' in html


@pytest.mark.django_db
def test_the_project_page_renders_the_cleaned_guidelines(client, project, annotator):
    project.guidelines = (
        "**Look closely** ![p](https://tracker.example/p.gif) [ok](https://ok.example)"
    )
    project.save()
    client.force_login(annotator)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert "<strong>Look closely</strong>" in page
    assert "tracker.example" not in page and 'href="https://ok.example"' in page
