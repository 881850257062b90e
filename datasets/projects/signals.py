"""Signals of the projects stage, for later stages that act on membership without it knowing them."""

from django.dispatch import Signal

# Sent after a member was removed from a project (on commit), with ``project`` and ``user``.
# The queue gives back the tasks they held (annotate.apps).
member_removed = Signal()
