"""Concord settings: one module, every difference between machines comes from the environment.

The embedded default (no variables set) is a laptop install: SQLite in WAL mode, a Celery broker on
the local filesystem, media on local disk. Production sets DATABASE_URL, CELERY_BROKER_URL and the
S3 variables; see .env.example for the full list.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

# Everything the embedded mode writes (database, broker spool, media, releases) lives under VAR_DIR.
VAR_DIR = Path(env("CONCORD_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# `make run` keeps a secret key generated for the machine in VAR_DIR (bin/embedded-env), so that
# manage.py commands work as documented with nothing set. A deployment that says DEBUG=false
# never reads it: it must bring its own SECRET_KEY.
EMBEDDED_ENV = VAR_DIR / "embedded.env"
if EMBEDDED_ENV.is_file() and env.bool("DEBUG", default=True):
    environ.Env.read_env(EMBEDDED_ENV)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "datasets",
    "annotate",
    "training.registry",
    "training.negatives",
]

MIDDLEWARE = [
    # First: a load balancer's probe is answered before host checks, HTTPS redirects and logins.
    "config.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Neither caches nor the browser keep what a signed-in person or an API client was sent.
    "config.security.PrivateResponsesMiddleware",
    # Errors under /api/ are JSON, whoever answered them (DEBUG's 404 page included).
    "datasets.api.JsonErrorsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it sees the lockout flag the login attempt set and answers for it.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'concord.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a transaction
    # starts, so two annotators racing for a task serialise instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so tests that open several connections share one database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A health check is one more round trip at the start of every request (the queue's next-task
    # call makes four). Without it, a connection the server dropped (a restart) fails one request
    # and is then replaced; set CONN_HEALTH_CHECKS=1 where the database fails over under the app.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Axes first: it refuses a locked-out username before the (deliberately slow) password hash runs.
AUTHENTICATION_BACKENDS = [
    "datasets.access.LockoutBackend",
    # Django's ModelBackend, finding the account by its username whatever its case.
    "datasets.access.UsernameBackend",
]
# Brute force (issue 14): after CONCORD_LOGIN_FAILURE_LIMIT wrong passwords for one username, on
# the login page, the admin's or the token endpoint, that username is locked for
# CONCORD_LOCKOUT_MINUTES (or until a manager or administrator unlocks it). Locking by username
# rather than address stops a guesser spread over many addresses, and works behind a proxy.
AXES_FAILURE_LIMIT = env.int("CONCORD_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("CONCORD_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
# The client's address (the throttles' key, and what axes records of each attempt): the peer of
# this server, unless CONCORD_PROXY_COUNT reverse proxies stand in front and each appends to
# X-Forwarded-For (nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;). Then
# the entry the outermost proxy wrote counts; what a client sent itself never does. Set it only
# when every request passes through that many proxies, or clients could choose their address.
CONCORD_PROXY_COUNT = env.int("CONCORD_PROXY_COUNT", default=0)
if CONCORD_PROXY_COUNT < 0:
    raise ImproperlyConfigured("CONCORD_PROXY_COUNT is a number of proxies: 0 or more.")
AXES_CLIENT_IP_CALLABLE = "datasets.access.client_address"
# Failures counted per username whatever its case ("Alice" and "alice" are one person).
AXES_USERNAME_CALLABLE = "datasets.access.lockout_username"
# axes.W006 asks for the address among the lockout parameters. Annotators often share one
# address (an office, a vendor's NAT): five typos among them would lock everyone out. Addresses
# are limited by the "credentials" throttle below instead (CONCORD_THROTTLE_CREDENTIALS).
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "datasets.accounts.views.lockout_response"
AXES_COOLOFF_MESSAGE = (
    "Too many failed attempts: this account is locked for a while. Try again later, or ask a "
    "project manager or an administrator to unlock it."
)
AXES_VERBOSE = False
# Invitation links (issue 14) stay valid this long, and work once.
CONCORD_INVITATION_DAYS = env.int("CONCORD_INVITATION_DAYS", default=7)
# API tokens expire after this many days unless their owner picks another lifetime.
CONCORD_TOKEN_DAYS = env.int("CONCORD_TOKEN_DAYS", default=90)
# A link or token that expires at birth (0 days) or runs past a date Python can hold is refused.
for _name in ("CONCORD_INVITATION_DAYS", "CONCORD_TOKEN_DAYS"):
    if not 1 <= globals()[_name] <= 3650:
        raise ImproperlyConfigured(f"{_name} is a number of days from 1 to 3650.")
KNOX_TOKEN_MODEL = "datasets.ApiToken"
# knox's own migrations create its AuthToken table even when the model is swapped out (for
# datasets.ApiToken above); without them the swapped model gets no table.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=CONCORD_TOKEN_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_PREFIX": "concord_",
}

# --- Mail -----------------------------------------------------------------------------------
# Unset: no mail server. Invitation links are shown to copy, and the password reset page says
# plainly that it cannot send mail. Set EMAIL_URL (smtp://user:password@host:587/?tls=True, or
# consolemail:// to print mails) to mail invitations and password resets.
EMAIL_URL = env("EMAIL_URL", default="")
CONCORD_MAIL_CONFIGURED = bool(EMAIL_URL)
if EMAIL_URL:
    globals().update(env.email_url_config(EMAIL_URL))
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="concord@localhost")

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# Releases and model files have storage aliases of their own ("releases", "models"), so that
# retention and signed downloads apply to them alone and they can live in another bucket.
# Embedded default: local folders. With a bucket: S3 (django-storages), where a browser downloads
# through a short-lived signed URL. Every worker reads and writes them through the storage API,
# never a local path; what a worker fetches goes to its scratch folder (CONCORD_SCRATCH_DIR),
# a cache named by content hash that may be deleted at any time.
CONCORD_RELEASES_ROOT = Path(env("CONCORD_RELEASES_ROOT", default=str(VAR_DIR / "releases")))
CONCORD_MODELS_ROOT = Path(env("CONCORD_MODELS_ROOT", default=str(VAR_DIR / "models")))
CONCORD_SCRATCH_DIR = Path(env("CONCORD_SCRATCH_DIR", default=str(VAR_DIR / "scratch")))
CONCORD_SIGNED_URL_SECONDS = env.int("CONCORD_SIGNED_URL_SECONDS", default=300)

AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")


def _s3(bucket: str, *, location: str = "", overwrite: bool = False) -> dict:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "location": location,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "access_key": env("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env("AWS_SECRET_ACCESS_KEY", default=None),
            "default_acl": None,
            # Media names are unique by content; release and model names are fixed, and a
            # rebuild must replace what a crashed build left under the same name.
            "file_overwrite": overwrite,
            "querystring_auth": True,
            "querystring_expire": CONCORD_SIGNED_URL_SECONDS,
        },
    }


def _local(location: Path, *, overwrite: bool = False) -> dict:
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": location, "allow_overwrite": overwrite},
    }


# Release and model files go to the media bucket under releases/ and models/ unless they have
# buckets of their own (e.g. with a lifecycle rule, or another region).
_RELEASES_BUCKET = env("CONCORD_RELEASES_BUCKET", default=AWS_STORAGE_BUCKET_NAME)
_MODELS_BUCKET = env("CONCORD_MODELS_BUCKET", default=AWS_STORAGE_BUCKET_NAME)
STORAGES = {
    "default": _s3(AWS_STORAGE_BUCKET_NAME) if AWS_STORAGE_BUCKET_NAME else _local(MEDIA_ROOT),
    "releases": (
        _s3(_RELEASES_BUCKET, location="releases", overwrite=True)
        if _RELEASES_BUCKET
        else _local(CONCORD_RELEASES_ROOT, overwrite=True)
    ),
    "models": (
        _s3(_MODELS_BUCKET, location="models", overwrite=True)
        if _MODELS_BUCKET
        else _local(CONCORD_MODELS_ROOT, overwrite=True)
    ),
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False

# --- Uploads --------------------------------------------------------------------------------
# A browser batch may carry many files; each is still checked one by one in datasets.ingest.
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("DATA_UPLOAD_MAX_NUMBER_FILES", default=1000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
# Every uploaded file is streamed to a temporary file, however small: a thousand 3 MB photos
# held in memory would take a web worker past 3 GB. Uploads then go to the storage as jobs.
# The handler keeps each file's name as sent (Django cuts it to 255 characters silently), so an
# over-long name is refused like a zip member's rather than stored cut.
FILE_UPLOAD_HANDLERS = ["config.uploads.NamedTemporaryFileUploadHandler"]

CONCORD_MAX_IMAGE_BYTES = env.int("CONCORD_MAX_IMAGE_BYTES", default=20 * 1024 * 1024)
CONCORD_MAX_IMAGE_PIXELS = env.int("CONCORD_MAX_IMAGE_PIXELS", default=50_000_000)
CONCORD_MAX_CAPTION_CHARS = env.int("CONCORD_MAX_CAPTION_CHARS", default=1000)
CONCORD_ZIP_MAX_FILES = env.int("CONCORD_ZIP_MAX_FILES", default=10_000)
CONCORD_ZIP_MAX_BYTES = env.int("CONCORD_ZIP_MAX_BYTES", default=2 * 1024 * 1024 * 1024)
# Largest manifest or COCO file an import reads (it is parsed whole, in the worker).
CONCORD_IMPORT_MAX_BYTES = env.int("CONCORD_IMPORT_MAX_BYTES", default=256 * 1024 * 1024)
# Uploads of at most this many plain images (no zip), of at most this many bytes and of at most
# this many pixels (as their headers declare them) together, are checked in the request itself;
# anything larger is stored and run by a worker as a job. Pixels bound the work: decoding and
# re-encoding 4 megapixels costs a web worker at most about 45 MB and a few seconds, whereas 8
# PNGs of 49 megapixels (5 MB of bytes) cost 500 MB and most of a minute.
CONCORD_UPLOAD_INLINE_FILES = env.int("CONCORD_UPLOAD_INLINE_FILES", default=8)
CONCORD_UPLOAD_INLINE_BYTES = env.int("CONCORD_UPLOAD_INLINE_BYTES", default=32 * 1024 * 1024)
CONCORD_UPLOAD_INLINE_PIXELS = env.int("CONCORD_UPLOAD_INLINE_PIXELS", default=4_000_000)
CONCORD_THUMBNAIL_SIZE = 320

# --- Collection (URL manifests and S3 prefixes fetched by workers) ---------------------------
# SSRF guard: loopback, private, link-local, multicast and reserved addresses are never fetched,
# after DNS and after each redirect, unless named here (tests, an intranet image server).
CONCORD_COLLECT_ALLOW_HOSTS = env.list("CONCORD_COLLECT_ALLOW_HOSTS", default=[])
CONCORD_COLLECT_ALLOW_CIDRS = env.list("CONCORD_COLLECT_ALLOW_CIDRS", default=[])
CONCORD_COLLECT_USER_AGENT = env(
    "CONCORD_COLLECT_USER_AGENT",
    default="Concord/1.0 (image-text dataset collection; honours X-Robots-Tag noai, noimageai)",
)
# X-Robots-Tag directives that refuse an image (img2dataset's opt-out); empty to ignore them.
CONCORD_COLLECT_OPT_OUT = env.list("CONCORD_COLLECT_OPT_OUT", default=["noai", "noimageai"])
CONCORD_COLLECT_CONNECT_TIMEOUT = env.float("CONCORD_COLLECT_CONNECT_TIMEOUT", default=5.0)
CONCORD_COLLECT_READ_TIMEOUT = env.float("CONCORD_COLLECT_READ_TIMEOUT", default=10.0)
CONCORD_COLLECT_TOTAL_TIMEOUT = env.float("CONCORD_COLLECT_TOTAL_TIMEOUT", default=30.0)
CONCORD_COLLECT_MAX_REDIRECTS = env.int("CONCORD_COLLECT_MAX_REDIRECTS", default=5)
# A PEM file of CAs trusted for HTTPS besides the public ones (an intranet image server's CA).
CONCORD_COLLECT_CA_BUNDLE = env("CONCORD_COLLECT_CA_BUNDLE", default="")
# Transient failures (429/503, timeouts) are tried this many times in all, waiting Retry-After
# or BACKOFF, 2×BACKOFF, … seconds (at most BACKOFF_CAP) between tries.
CONCORD_COLLECT_ATTEMPTS = env.int("CONCORD_COLLECT_ATTEMPTS", default=3)
CONCORD_COLLECT_BACKOFF = env.float("CONCORD_COLLECT_BACKOFF", default=5.0)
CONCORD_COLLECT_BACKOFF_CAP = env.float("CONCORD_COLLECT_BACKOFF_CAP", default=600.0)
# Requests at once to one host, and requests a second to one host (0: no limit): over every
# worker when the broker is Redis, per worker process otherwise.
CONCORD_COLLECT_PER_HOST = env.int("CONCORD_COLLECT_PER_HOST", default=4)
CONCORD_COLLECT_PER_HOST_RATE = env.float("CONCORD_COLLECT_PER_HOST_RATE", default=10.0)
# Rows of one project being fetched at once, over every worker (claimed in the database). Each
# task holds two batches (one written while the next is fetched), so the default is
# 2 × BATCH × TASKS: with less, the first task claims every row and the others sleep.
CONCORD_COLLECT_PROJECT_CONCURRENCY = env.int("CONCORD_COLLECT_PROJECT_CONCURRENCY", default=128)
# Rows one task claims at a time, and the threads that fetch them.
CONCORD_COLLECT_BATCH = env.int("CONCORD_COLLECT_BATCH", default=32)
CONCORD_COLLECT_THREADS = env.int("CONCORD_COLLECT_THREADS", default=16)
# Tasks a job starts with; each works for about RUN_SECONDS, then queues itself again.
CONCORD_COLLECT_TASKS = env.int("CONCORD_COLLECT_TASKS", default=2)
CONCORD_COLLECT_RUN_SECONDS = env.float("CONCORD_COLLECT_RUN_SECONDS", default=60.0)
# A claimed row whose worker has not written it after this long is claimed again (killed worker).
CONCORD_COLLECT_CLAIM_SECONDS = env.int("CONCORD_COLLECT_CLAIM_SECONDS", default=300)
# S3-compatible source of bucket imports (empty: AWS itself; credentials from the environment).
CONCORD_COLLECT_S3_ENDPOINT = env("CONCORD_COLLECT_S3_ENDPOINT", default="")
CONCORD_COLLECT_S3_REGION = env("CONCORD_COLLECT_S3_REGION", default="") or None
CONCORD_COLLECT_S3_ACCESS_KEY = env("CONCORD_COLLECT_S3_ACCESS_KEY", default="") or None
CONCORD_COLLECT_S3_SECRET_KEY = env("CONCORD_COLLECT_S3_SECRET_KEY", default="") or None

# --- Annotation queue -----------------------------------------------------------------------
CONCORD_LEASE_SECONDS = env.int("CONCORD_LEASE_SECONDS", default=600)
CONCORD_UNDO_SECONDS = env.int("CONCORD_UNDO_SECONDS", default=20)
# Tasks leased ahead of the one on screen, so the next image is already loaded.
CONCORD_LOOKAHEAD = env.int("CONCORD_LOOKAHEAD", default=1)
# Agreement: every this many judgments ask for a recompute of the project (and beat asks every
# 10 minutes for projects with newer judgments). Requests coalesce (config.jobs): at most one
# recompute of a project waits on the "agreement" queue, sent CONCORD_AGREEMENT_DELAY seconds
# after the first request since the last run started, so the votes of those seconds go into one
# run and a label is fresh within about the delay plus one recompute.
CONCORD_AGREEMENT_EVERY = env.int("CONCORD_AGREEMENT_EVERY", default=1)
CONCORD_AGREEMENT_DELAY = env.float("CONCORD_AGREEMENT_DELAY", default=10.0)
# Items written per transaction by a recompute: on SQLite each chunk holds the one write lock
# for a few milliseconds, so annotators' submits go between the chunks.
CONCORD_AGREEMENT_CHUNK = env.int("CONCORD_AGREEMENT_CHUNK", default=500)
# Releases: each in the "releases" storage under <project slug>/v<n>/. Retention keeps the
# newest this many ready releases of each project (and every pinned one) and deletes the files
# of older ones, hourly by beat and with `manage.py prune_releases`; 0 keeps every release.
CONCORD_RELEASES_KEEP = env.int("CONCORD_RELEASES_KEEP", default=10)
# Model versions: checkpoints in the "models" storage under <project slug>/<version id>/; the
# nightly retrain runs at this hour (the Celery timezone); CONCORD_TRAIN_CONFIG holds TrainConfig
# fields that override its defaults for every run (JSON in the environment, e.g. '{"epochs": 10}').
CONCORD_NIGHTLY_HOUR = env.int("CONCORD_NIGHTLY_HOUR", default=2)
CONCORD_TRAIN_CONFIG: dict = env.json("CONCORD_TRAIN_CONFIG", default={})

# --- Cache ----------------------------------------------------------------------------------
# The API's throttles count requests here. The default is per process; with several gunicorn
# workers set CACHE_URL=redis://… (e.g. the broker's Redis, another db number) so they share counts.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first so that an anonymous request is answered 401 with a WWW-Authenticate header.
    # Tokens are django-rest-knox's (hashed, named, expiring, revocable; datasets.access).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "datasets.access.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every view: a logged-in user, and for a view of one project (its slug or a lease in the
    # URL) the one access check of datasets.access.
    "DEFAULT_PERMISSION_CLASSES": ["datasets.access.ProjectAccess"],
    "DEFAULT_THROTTLE_CLASSES": [
        "datasets.access.AnonThrottle",
        "datasets.access.UserThrottle",
    ],
    # Only datasets.access.client_address reads X-Forwarded-For; should a DRF default read it,
    # it trusts the same number of proxies.
    "NUM_PROXIES": CONCORD_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("CONCORD_THROTTLE_ANON", default="120/minute"),
        "user": env("CONCORD_THROTTLE_USER", default="6000/minute"),
        # Credential endpoints (token creation, login, password reset, invitation acceptance),
        # per client address, on top of the per-username lockout.
        "credentials": env("CONCORD_THROTTLE_CREDENTIALS", default="20/minute"),
    },
    # Errors are JSON with the field's name for a bad value; 413 for over-large bodies.
    "EXCEPTION_HANDLER": "datasets.api.exception_handler",
    # JSON only: DRF's browsable API would answer a browser (Accept: text/html) with HTML pages,
    # errors included, and inline scripts the Content-Security-Policy refuses. People use the
    # docs page (/api/v1/docs/).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "datasets.api.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "datasets.pagination.IdCursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Concord API",
    "DESCRIPTION": "Projects, images, captions and annotation work for image–text datasets.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # One name per choice set, so the schema builds without a warning (a test runs it with
    # --fail-on-warn).
    "ENUM_NAME_OVERRIDES": {
        "ReleaseStatusEnum": "datasets.models.ReleaseStatus",
        "BalanceMethodEnum": "datasets.models.BalanceMethod",
        "UploadStatusEnum": ["accepted", "duplicate", "rejected"],
    },
}

# --- Celery ---------------------------------------------------------------------------------
# The host part means nothing to the filesystem transport; naming one keeps kombu from warning.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # "filesystem://" is config/broker.py's transport (config/celery.py): messages written whole.
    # kombu's filesystem transport: one spool folder shared by producers and the local worker.
    _spool = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_spool / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_spool / "queue"),
        "data_folder_out": str(_spool / "queue"),
        "processed_folder": str(_spool / "processed"),
        "control_folder": str(_spool / "control"),
        "store_processed": False,
        # The transport polls its folder; once a second drains one message a second or so.
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Acknowledgement, time limits and the broker's visibility timeout are set together:
# * acks_late (below): a message is acknowledged when its task ends, so a worker killed mid-task
#   leaves it on the broker instead of losing it;
# * Redis hands an unacknowledged message to another worker after the visibility timeout, even
#   if the first is still working on it: the timeout must outlast the longest task's hard time
#   limit, or a long training run would start twice. Redelivery after hours is only the last
#   resort: the long jobs (release builds, agreement recomputes) hold a lease with a heartbeat
#   (config.jobs) and beat sends a job whose worker died again within minutes; the late
#   redelivery then finds the job done or running and does nothing;
# * time limits: a task past its soft limit gets SoftTimeLimitExceeded (it fails with that
#   reason, and its job is released), past the hard limit its process is killed (and its job's
#   heartbeat stops). Training and mining get CONCORD_TRAIN_TIME_LIMIT, every other task
#   CONCORD_TASK_TIME_LIMIT.
CONCORD_TASK_TIME_LIMIT = env.int("CONCORD_TASK_TIME_LIMIT", default=3600)
CONCORD_TRAIN_TIME_LIMIT = env.int("CONCORD_TRAIN_TIME_LIMIT", default=6 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = CONCORD_TASK_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = CONCORD_TASK_TIME_LIMIT + 120
CELERY_TASK_ANNOTATIONS = {
    name: {
        "soft_time_limit": CONCORD_TRAIN_TIME_LIMIT,
        "time_limit": CONCORD_TRAIN_TIME_LIMIT + 120,
    }
    for name in ("registry.train_model", "negatives.mine")
}
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env.int(
        "CELERY_VISIBILITY_TIMEOUT",
        default=max(CONCORD_TASK_TIME_LIMIT, CONCORD_TRAIN_TIME_LIMIT) + 600,
    )
CELERY_TASK_IGNORE_RESULT = True
# Tasks are written to be re-run safely, so a worker killed mid-task hands the message back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# How often beat reclaims expired leases and looks for jobs whose worker died (seconds).
CONCORD_RECOVER_SECONDS = env.float("CONCORD_RECOVER_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE: dict = {
    "reclaim-expired-leases": {
        "task": "queue.reclaim_expired_leases",
        "schedule": CONCORD_RECOVER_SECONDS,
    },
    "recompute-agreement": {"task": "agreement.recompute_due", "schedule": 600.0},
    "recover-agreement": {"task": "agreement.recover", "schedule": CONCORD_RECOVER_SECONDS},
    "prune-releases": {"task": "releases.prune", "schedule": 3600.0},
    "recover-releases": {"task": "releases.recover", "schedule": CONCORD_RECOVER_SECONDS},
    "recover-imports": {"task": "ingest.recover", "schedule": CONCORD_RECOVER_SECONDS},
    "recover-collections": {"task": "ingest.collect_recover", "schedule": CONCORD_RECOVER_SECONDS},
    "recover-trainings": {"task": "registry.recover", "schedule": CONCORD_RECOVER_SECONDS},
    "recover-minings": {"task": "negatives.recover", "schedule": CONCORD_RECOVER_SECONDS},
    "nightly-retrain": {
        "task": "registry.nightly_retrain",
        "schedule": crontab(hour=CONCORD_NIGHTLY_HOUR, minute=0),
    },
}
# Training runs have a queue of their own, so a long run never holds up thumbnails or releases:
# start a worker for it with `celery -A config worker -Q training`.
CELERY_TASK_ROUTES = {
    "registry.train_model": {"queue": "training"},
    "negatives.mine": {"queue": "training"},
    # Recomputes have their own queue too: however many there are, a release or a thumbnail
    # never waits behind them (`-Q agreement` on a worker of its own, or beside default).
    "agreement.recompute": {"queue": "agreement"},
    # Import jobs have their own queue, which a worker takes in turn with `default`: a 2-row
    # import never waits behind the thumbnail and cleaning batches of a large upload before it.
    "ingest.run_import": {"queue": "ingest"},
}
# Background jobs (config.jobs): a message waiting longer than this is taken for lost (a broker
# that dropped it) and sent again by the next request; a running job whose heartbeat is older
# than its stale time lost its worker and is sent again by beat ("*": every job not named).
CONCORD_JOB_PENDING_SECONDS = env.int("CONCORD_JOB_PENDING_SECONDS", default=900)
CONCORD_JOB_STALE_SECONDS = {
    "*": env.int("CONCORD_JOB_STALE_SECONDS", default=300),
    # Dawid–Skene over a large project runs a minute or two between two heartbeats.
    "agreement.recompute": env.int("CONCORD_AGREEMENT_STALE_SECONDS", default=600),
}
# A job whose worker died this many times in a row is failed with the reason, not sent again.
CONCORD_JOB_MAX_RUNS = env.int("CONCORD_JOB_MAX_RUNS", default=3)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The file scheduler, locked: one beat per schedule file (config/beat.py).
CELERY_BEAT_SCHEDULER = "config.beat:LockedScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One line when a username is locked out, none for each refused attempt (config.logs).
    "filters": {
        "axes_per_attempt": {"()": "config.logs.AxesPerAttemptFilter"},
        "refused_attempts": {"()": "config.logs.RefusedAttemptsFilter"},
        # URLs written as the collection shows them: no credentials, no signed query values.
        "redacted_urls": {"()": "datasets.ingest.fetching.RedactedUrlsFilter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["refused_attempts"]},
        # Every login and every failed one at INFO is noise; a lockout is one WARNING. (A
        # logger's filters see only its own records, so each axes module that logs is named.)
        "axes": {"level": env("AXES_LOG_LEVEL", default="WARNING")},
        "axes.handlers.database": {"filters": ["axes_per_attempt"]},
        "axes.handlers.proxy": {"filters": ["axes_per_attempt"]},
        # httpx logs each request's URL at INFO ("HTTP Request: GET …"): a collection's URLs
        # may carry presigned signatures and tokens. (httpcore's DEBUG lines hold no URL.)
        "httpx": {"filters": ["redacted_urls"]},
        # (A logger's filters see only its own records: each collection module that logs.)
        "datasets.ingest.services.collection": {"filters": ["redacted_urls"]},
    },
}

# --- Security headers -----------------------------------------------------------------------
# Content-Security-Policy (django-csp): scripts, styles, images and fonts from this site only;
# templates carry no inline script or style. Image files may come from the S3 endpoint, which
# signs their URLs.
_img_src = ["'self'", "data:"]
if AWS_STORAGE_BUCKET_NAME:
    _img_src.append(env("AWS_S3_ENDPOINT_URL", default="") or "https:")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": _img_src,
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# With DEBUG off Concord assumes HTTPS (served behind a TLS-terminating reverse proxy): cookies only
# over HTTPS, HSTS, plain HTTP redirected. Each can be turned off by its variable for a site that
# is not yet on HTTPS. SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https tells Django that the
# proxy's X-Forwarded-Proto says which scheme the browser used; set it only when the proxy always
# sets that header itself (overwriting any a client sent). gunicorn already trusts that header
# from a proxy on 127.0.0.1 (its forwarded_allow_ips), so the README's set-up works without it.
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_header:
    if len(_proxy_header) != 2:
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER is a header and a value, e.g. HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_header)
SESSION_COOKIE_HTTPONLY = True
