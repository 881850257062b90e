from django.urls import path

from datasets.accounts import views as accounts
from datasets.browse import views as browse
from datasets.curation import views as curation
from datasets.ingest import views as ingest
from datasets.projects import views as projects
from datasets.releases import views as releases

urlpatterns = [
    path("", browse.home, name="home"),
    path("projects/new/", projects.project_create, name="project-create"),
    path("projects/<slug:slug>/", browse.project_detail, name="project-detail"),
    path("projects/<slug:slug>/settings/", projects.project_settings, name="project-settings"),
    path("projects/<slug:slug>/members/", accounts.project_members, name="project-members"),
    path(
        "projects/<slug:slug>/members/<int:user_id>/unlock",
        accounts.member_unlock_request,
        name="project-member-unlock",
    ),
    path(
        "projects/<slug:slug>/invitations/",
        accounts.invitations_create_request,
        name="invitations-create",
    ),
    path(
        "projects/<slug:slug>/invitations/<int:invitation_id>/revoke",
        accounts.invitation_revoke_request,
        name="invitation-revoke",
    ),
    path(
        "accounts/invitations/<str:token>/",
        accounts.invitation_accept_page,
        name="invitation-accept",
    ),
    path("accounts/tokens/", accounts.tokens_page, name="tokens"),
    path(
        "accounts/tokens/<uuid:token_uid>/revoke",
        accounts.token_revoke_request,
        name="token-revoke",
    ),
    path(
        "accounts/tokens/revoke-all", accounts.tokens_revoke_all_request, name="tokens-revoke-all"
    ),
    path(
        "projects/<slug:slug>/members/<int:user_id>/remove/",
        projects.project_member_remove,
        name="project-member-remove",
    ),
    path("projects/<slug:slug>/upload/", ingest.project_upload, name="project-upload"),
    path("projects/<slug:slug>/import/", ingest.project_import, name="project-import"),
    path("projects/<slug:slug>/imports/<int:job_id>/", ingest.import_job, name="import-job"),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/cancel/",
        ingest.import_job_cancel_view,
        name="import-cancel",
    ),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/retry/",
        ingest.import_job_retry_view,
        name="import-retry",
    ),
    path("projects/<slug:slug>/collect/", ingest.project_collect, name="project-collect"),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/pause/",
        ingest.collection_pause_view,
        name="collection-pause",
    ),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/resume/",
        ingest.collection_resume_view,
        name="collection-resume",
    ),
    path(
        "projects/<slug:slug>/imports/<int:job_id>/retry-failed/",
        ingest.collection_retry_view,
        name="collection-retry",
    ),
    path("projects/<slug:slug>/images/", browse.image_grid, name="image-grid"),
    path("projects/<slug:slug>/pairs/", browse.pair_list, name="pair-list"),
    path("projects/<slug:slug>/pairs/act", browse.pairs_act, name="pairs-act"),
    path("projects/<slug:slug>/images/<int:image_id>/", browse.image_detail, name="image-detail"),
    path("projects/<slug:slug>/images/<int:image_id>/file", browse.image_file, name="image-file"),
    path(
        "projects/<slug:slug>/images/<int:image_id>/thumbnail",
        browse.image_thumbnail,
        name="image-thumbnail",
    ),
    path(
        "projects/<slug:slug>/duplicates/",
        curation.duplicates_review,
        name="duplicates-review",
    ),
    path(
        "projects/<slug:slug>/duplicates/<int:cluster_id>/confirm",
        curation.cluster_confirm,
        name="cluster-confirm",
    ),
    path(
        "projects/<slug:slug>/duplicates/<int:cluster_id>/split/<int:image_id>",
        curation.cluster_split,
        name="cluster-split",
    ),
    path("projects/<slug:slug>/quality/", curation.quality_flags, name="quality-flags"),
    path(
        "projects/<slug:slug>/quality/images/<int:flag_id>/override",
        curation.image_flag_override,
        name="image-flag-override",
    ),
    path(
        "projects/<slug:slug>/quality/captions/<int:flag_id>/override",
        curation.caption_flag_override,
        name="caption-flag-override",
    ),
    path("projects/<slug:slug>/releases/", releases.release_list, name="releases"),
    path(
        "projects/<slug:slug>/releases/v<int:version>/",
        releases.release_detail,
        name="release-detail",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/row",
        releases.release_row,
        name="release-row",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/pin",
        releases.release_pin,
        name="release-pin",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/download",
        releases.release_download_all,
        name="release-download-all",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/retry",
        releases.release_retry,
        name="release-retry",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/cancel",
        releases.release_cancel,
        name="release-cancel",
    ),
    path(
        "projects/<slug:slug>/releases/v<int:version>/files/<path:name>",
        releases.release_file,
        name="release-file",
    ),
]
