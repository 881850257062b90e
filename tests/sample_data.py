"""Where the shared sample data lives: ``../shared/data`` beside the clone (COCO-mini, Flickr8k-1k).

Tests that read it skip with this path in their reason when it is absent (a clone elsewhere)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
