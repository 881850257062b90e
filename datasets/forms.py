from django import forms
from django.contrib.auth import get_user_model

from datasets.models import Project, Role
from datasets.projects import PROJECT_SETTINGS

USER_NOT_FOUND = "No user with that username."


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = PROJECT_SETTINGS
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "guidelines": forms.Textarea(attrs={"rows": 10}),
        }

    def clean(self):
        cleaned = super().clean()
        for rate in ("gold_rate", "challenge_rate", "agreement_threshold"):
            value = cleaned.get(rate)
            if value is not None and not 0 <= value <= 1:
                self.add_error(rate, "Enter a value between 0 and 1.")
        low, high = cleaned.get("caption_min_words"), cleaned.get("caption_max_words")
        if low is not None and high is not None and low > high:
            self.add_error("caption_max_words", "Must be at least the minimum.")
        gold, challenge = cleaned.get("gold_rate") or 0, cleaned.get("challenge_rate") or 0
        if gold + challenge > 1:
            self.add_error("challenge_rate", "Gold and challenge rates together cannot exceed 1.")
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
