import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    """Render a manager's Markdown for annotators, sanitised: no scripts, styles or event handlers."""
    html = markdown_lib.markdown(text or "", extensions=["sane_lists", "tables"])
    return mark_safe(nh3.clean(html))  # nh3 output is sanitised HTML


@register.filter
def filesize(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""
