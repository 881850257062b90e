"""Forms of the project pages: settings (every project setting, grouped). The Members page's
forms are datasets.accounts's."""

from django import forms

from datasets.models import Project, Source
from datasets.projects.services import PROJECT_SETTINGS, SETTINGS_GROUPS, settings_problems


class ProjectForm(forms.ModelForm):
    """Every project setting, grouped; fields left out of a POST keep their current value."""

    trusted_sources = forms.MultipleChoiceField(
        choices=[(value, label) for value, label in Source.choices if value != Source.ANNOTATOR],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Captions from these sources count as positives without judgments.",
    )

    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "guidelines": forms.Textarea(attrs={"rows": 10}),
            "caption_banned_openings": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name != "name" and Project._meta.get_field(name).has_default():
                field.required = False

    def groups(self) -> list[tuple[str, list]]:
        return [(title, [self[name] for name in names]) for title, names in SETTINGS_GROUPS.items()]

    def settings(self) -> dict:
        """The cleaned values of the settings this POST carried (omitted ones stay as they are)."""
        return {
            name: value
            for name, value in self.cleaned_data.items()
            if name == "trusted_sources"
            or not self.fields[name].widget.value_omitted_from_data(
                self.data, self.files, self.add_prefix(name)
            )
        }

    def clean(self):
        cleaned = super().clean()
        values = {
            name: getattr(self.instance, name) if cleaned.get(name) is None else cleaned[name]
            for name in PROJECT_SETTINGS
        }
        for name, problem in settings_problems(values=values).items():
            self.add_error(name, problem)
        return cleaned
