"""The upload handler: every uploaded file streamed to a temporary file, its full name kept.

Django cuts an uploaded file's name to 255 characters (keeping the extension) when it makes the
UploadedFile, silently. Ingest refuses a name longer than a stored name can hold, as it does for
a zip member's, so the handler keeps the name as the client sent it in ``full_name``.
"""

from django.core.files.uploadhandler import TemporaryFileUploadHandler


class NamedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """TemporaryFileUploadHandler whose files carry ``full_name``, the name before Django's cut
    (the base name the multipart parser made safe, at any length)."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.file.full_name = self.file_name
