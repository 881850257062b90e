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
    "django.contrib.auth.backends.ModelBackend",
]
# Brute force (issue 14): after CONCORD_LOGIN_FAILURE_LIMIT wrong passwords for one username, on
# the login page, the admin's or the token endpoint, that username is locked for
# CONCORD_LOCKOUT_MINUTES (or until a manager or administrator unlocks it). Locking by username
# rather than address stops a guesser spread over many addresses, and works behind a proxy.
AXES_FAILURE_LIMIT = env.int("CONCORD_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("CONCORD_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
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

# --- Annotation queue -----------------------------------------------------------------------
CONCORD_LEASE_SECONDS = env.int("CONCORD_LEASE_SECONDS", default=600)
CONCORD_UNDO_SECONDS = env.int("CONCORD_UNDO_SECONDS", default=20)
# Tasks leased ahead of the one on screen, so the next image is already loaded.
CONCORD_LOOKAHEAD = env.int("CONCORD_LOOKAHEAD", default=1)
# Agreement is recomputed after every this many judgments (and every 10 minutes by beat).
CONCORD_AGREEMENT_EVERY = env.int("CONCORD_AGREEMENT_EVERY", default=200)
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
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
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
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
# Tasks are written to be re-run safely, so a worker killed mid-task hands the message back.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULE: dict = {
    "reclaim-expired-leases": {"task": "queue.reclaim_expired_leases", "schedule": 60.0},
    "recompute-agreement": {"task": "agreement.recompute_due", "schedule": 600.0},
    "prune-releases": {"task": "releases.prune", "schedule": 3600.0},
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
    # Import jobs have their own queue, which a worker takes in turn with `default`: a 2-row
    # import never waits behind the thumbnail and cleaning batches of a large upload before it.
    "ingest.run_import": {"queue": "ingest"},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Every login and every failed one at INFO is noise; lockouts are WARNING.
        "axes": {"level": env("AXES_LOG_LEVEL", default="WARNING")},
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
