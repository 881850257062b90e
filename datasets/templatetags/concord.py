import unicodedata
from urllib.parse import urlsplit

import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


# Links in guidelines go to web pages or mail; anything else (javascript:, data:, ftp:, a
# custom app's scheme) is left without its href.
MARKDOWN_LINK_SCHEMES = {"http", "https", "mailto"}


@register.filter
def markdown(text: str) -> str:
    """Render a manager's Markdown for annotators, sanitised: no scripts, styles or event
    handlers; images only from this site (another site's image would tell it who opened the
    guidelines, and when: a tracking pixel; the Content-Security-Policy would refuse to load it
    anyway, leaving a broken image), other images keep just their alt text; links only to web
    pages and mail, opened without a referrer."""
    html = markdown_lib.markdown(text or "", extensions=["sane_lists", "tables"])
    cleaned = nh3.clean(
        html,
        url_schemes=MARKDOWN_LINK_SCHEMES,
        attribute_filter=_markdown_attribute,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(cleaned)  # nh3 output is sanitised HTML


def _markdown_attribute(element: str, attribute: str, value: str) -> str | None:
    if element == "img" and attribute == "src" and not _same_site(value):
        return None
    if element == "a" and attribute == "href" and not _link_target(value):
        return None
    return value


def _link_target(url: str) -> bool:
    """A link that leads somewhere: this page's anchors, this site's paths, absolute http(s)
    URLs with a host, mail. Nothing with spaces or control characters (browsers drop a tab
    inside "java\tscript:"; a space makes a relative link to nowhere)."""
    if url.startswith("#") or _same_site(url):
        return not any(char.isspace() or unicodedata.category(char) == "Cc" for char in url)
    if url.lower().startswith("mailto:"):
        return not any(char.isspace() or unicodedata.category(char) == "Cc" for char in url)
    return bool(safe_url(url))


def _same_site(url: str) -> bool:
    """A path on this site: "/…", not "//host/…" (another host), no backslash (which browsers
    read as a slash) and no control characters."""
    return (
        url.startswith("/")
        and not url.startswith("//")
        and "\\" not in url
        and not any(unicodedata.category(char) == "Cc" for char in url)
    )


@register.filter
def filesize(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


@register.filter
def safe_url(value: str) -> str:
    """The value when it is an absolute http(s) URL with a host, else an empty string.

    For href attributes of URLs that came from outside (imported source and licence URLs):
    ``javascript:``, ``data:``, ``vbscript:``, relative and scheme-relative URLs, and URLs with
    spaces or control characters (which browsers strip, turning ``java\tscript:`` into a script)
    give nothing to link. Use as ``{% with href=image.source_url|safe_url %}``.
    """
    text = str(value or "")
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in text):
        return ""
    try:
        parts = urlsplit(text)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return text


@register.filter
def code_words(code: str) -> str:
    """A stored code as words for a page: ``no_match`` → "no match"."""
    return str(code or "").replace("_", " ")


SORT_WORDS = {
    "-id": "newest first",
    "id": "oldest first",
    "confidence": "confidence, lowest first",
    "-confidence": "confidence, highest first",
    "agreement": "agreement, lowest first",
    "-agreement": "agreement, highest first",
    "score": "model score, lowest first",
    "-score": "model score, highest first",
}


# Codes that read badly as words once their underscores go; the rest just lose them.
CODE_WORDS = {
    "too_fast": "Too fast",
    "low_gold_accuracy": "Low gold accuracy",
    "single_answer": "One answer for everything",
    "text_edit": "Text edit",
    "model": "Model-mined",
    "replace_color": "another colour",
    "replace_number": "another number",
    "replace_object": "another object",
    "replace_relation": "another relation",
    "swap_attributes": "attributes swapped",
    "swap_objects": "objects swapped",
    "add_attribute": "an attribute added",
    "image_extreme_aspect_ratio": "Extreme aspect ratio",
    "caption_few_letters": "Few letters",
    "caption_repeated_token": "A repeated word",
}


@register.filter
def sort_words(sort: str) -> str:
    """A data browser sort key (datasets/browse/filters.py SORTS) as words."""
    return SORT_WORDS.get(sort, sort)


@register.filter
def words(code: str) -> str:
    """A stored code (``too_fast``, ``replace_color``) as words for a page ("Too fast")."""
    text = str(code or "")
    if text in CODE_WORDS:
        return CODE_WORDS[text]
    spaced = text.replace("_", " ").strip()
    return spaced[:1].upper() + spaced[1:]
