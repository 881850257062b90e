"""The data browser's caption search reads a stored search vector (PostgreSQL only).

A generated column, ``to_tsvector('simple', text)`` computed once when a caption is written,
replaces the expression index of 0011: the GIN index is on the column, and a phrase search
rechecks its candidates against the stored vector instead of parsing each caption's text
again. Not a model field, since SQLite has no tsvector (its search stays a substring match);
``datasets.browse.selectors`` names the column in its one expression that reads it.
"""

from django.db import migrations

COLUMN = "search_vector"
INDEX = "datasets_caption_search_vector"
OLD_INDEX = "datasets_caption_search"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"ALTER TABLE datasets_caption ADD COLUMN IF NOT EXISTS {COLUMN} tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, COALESCE(text, ''))) STORED"
    )
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON datasets_caption USING gin ({COLUMN})"
    )
    schema_editor.execute(f"DROP INDEX IF EXISTS {OLD_INDEX}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON datasets_caption "
        "USING gin (to_tsvector('simple'::regconfig, COALESCE(text, '')))"
    )
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")
    schema_editor.execute(f"ALTER TABLE datasets_caption DROP COLUMN IF EXISTS {COLUMN}")


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0013_collection"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
