"""The upload form: many files (images or zips) in one field."""

from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(item, initial) for item in files if item]


class UploadForm(forms.Form):
    files = MultipleFileField(
        help_text="JPEG, PNG or WebP images, or zip archives of them.",
        widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,image/webp,.zip"}),
    )
