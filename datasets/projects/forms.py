"""Forms of the project pages: settings (every project setting, grouped) and members."""

from django import forms
from django.contrib.auth import get_user_model

from datasets.models import Project, Role, Source
from datasets.projects.services import PROJECT_SETTINGS, SETTINGS_GROUPS, settings_problems

USER_NOT_FOUND = "No user with that username."


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


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(USER_NOT_FOUND)
        self.cleaned_data["user"] = user
        return username
