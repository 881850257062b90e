"""Issue 15: stored codes reach pages as words (never "Too_fast" or "text_edit · replace_color")."""

from django.template.loader import render_to_string

from datasets.templatetags.concord import words


def test_codes_read_as_words():
    assert words("too_fast") == "Too fast"
    assert words("single_answer") == "One answer for everything"
    assert words("replace_color") == "another colour"
    assert words("image_blank") == "Image blank"
    assert words("") == ""


def test_a_text_edit_example_names_its_source_and_edit_in_words():
    html = render_to_string(
        "negatives/_examples.html",
        {
            "project": {"slug": "p"},
            "items": [
                {
                    "source": "text_edit",
                    "edit_type": "replace_color",
                    "score": None,
                    "caption": "a blue dog",
                    "image_id": 1,
                }
            ],
        },
    )
    assert "Text edit: another colour" in html
    assert "text_edit" not in html and "replace_color" not in html
