"""The identity of an imported caption, shared by import jobs and the demo data."""

import hashlib


def caption_import_key(text: str, occurrence: int) -> str:
    """Identity of an imported caption on its image: its normalised text and which repeat it is
    (a source may repeat a caption on purpose; a re-import must add neither again)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{digest}:{occurrence}"
