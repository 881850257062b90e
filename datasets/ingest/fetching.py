"""Fetching one image by URL, politely and within bounds, never from an address it must not reach.

A pure core (httpx and the standard library, no Django): ``Fetcher.fetch(url)`` returns a
``Fetched`` that either holds the image's bytes or names why not, with one of the failure codes
below (the values of ``datasets.models.FetchFailure``). What it guarantees:

* **SSRF guard**: the host is resolved here, every address is checked (loopback, link-local,
  private, shared, multicast, reserved and unspecified ranges are refused, IPv4-mapped IPv6
  included), and the connection goes to the vetted address itself (``_PinnedBackend``) while the
  URL keeps the name, so the ``Host`` header, the TLS server name (SNI), certificate
  verification and the connection pool all go by the name: a second lookup that answers
  differently (DNS rebinding) is never made, and a connection verified for one name never
  carries a request for another. HTTPS trusts the public CAs and ``ca_bundle``. Redirects are followed by hand, one hop at a time, each vetted the
  same way. ``allow_hosts``/``allow_networks`` are an explicit allow-list (tests, intranets).
* **Bounds**: connect and read timeouts, a total time per URL (a server that drips one byte a
  second does not hold a worker), a size cap checked against Content-Length and again while
  streaming, a redirect limit, loop detection.
* **Is it an image**: Content-Type must be an image type (or a generic binary one) and the first
  bytes must be JPEG, PNG or WebP magic; the full image checks run later in ingest.
* **Politeness**: a User-Agent that names Concord; ``X-Robots-Tag`` directives such as ``noai``
  and ``noimageai`` (for every agent, or addressed to Concord) refuse the image, as img2dataset
  does; ``HostGate`` bounds concurrent requests and the request rate per host in one process,
  ``RedisHostGate`` over every process that shares a Redis.
* **Credentials in a URL** (``https://user:password@host/…``, percent-encoded as URLs require)
  are sent as HTTP Basic authorization to that URL only: a relative redirect (same host) keeps
  them, an absolute ``Location`` is fetched with the credentials it carries itself, if any. They are never shown or kept as
  provenance: ``url_redacted`` is how a URL leaves the fetcher (failure details, the caller's
  rows, logs), with the userinfo and the values of query parameters that are secrets by name
  (signatures, tokens, keys of presigned URLs) written as ``***``.
* **Transient or not**: 429 and 503 (with their ``Retry-After``, seconds or an HTTP date) and
  timeouts are marked transient, so the caller may retry them later; nothing else is.
"""

import base64
import email.utils
import errno
import ipaddress
import logging
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import certifi
import httpcore
import httpx

DNS = "dns"
REFUSED = "refused"
TIMEOUT = "timeout"
HTTP_STATUS = "http_status"
TOO_LARGE = "too_large"
NOT_IMAGE = "not_image"
REDIRECT_LOOP = "redirect_loop"
BLOCKED = "blocked"
OPTED_OUT = "opted_out"
INVALID = "invalid"
ERROR = "error"

TRANSIENT_STATUSES = (429, 503)
IMAGE_TYPES_GENERIC = ("application/octet-stream", "binary/octet-stream")
DEFAULT_OPT_OUT = ("noai", "noimageai")
_REDIRECTS = (301, 302, 303, 307, 308)
REDACTED = "***"
# Query (and fragment) parameters whose values are secrets, by name: compared in lower case with
# "-" read as "_", so ``Api-Key``, ``api_key`` and ``API-KEY`` are one name. Exact names here
# (presigned S3/GCS/Azure/CloudFront URLs, Google-style ``key``), and every name that holds one
# of SECRET_NAME_PARTS (``access_token``, ``client_secret``, ``X-Amz-Signature``…).
SECRET_QUERY_NAMES = frozenset(
    {"sig", "key", "auth", "authorization", "jwt", "awsaccesskeyid", "policy", "key_pair_id"}
)
SECRET_NAME_PARTS = (
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "credential",
    "apikey",
    "api_key",
    "access_key",
    "accesskey",
    "private_key",
    "session",
)
# A URL inside running text (a log line, an error): up to a space, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchPolicy:
    """How one fetch is bounded. Times in seconds, sizes in bytes."""

    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_redirects: int = 5
    user_agent: str = "Concord/1.0 (image-text dataset collection; honours X-Robots-Tag noai)"
    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[Network, ...] = ()
    # X-Robots-Tag directives that refuse an image; empty to ignore the header.
    opt_out: tuple[str, ...] = DEFAULT_OPT_OUT
    agent_name: str = "concord"
    # A PEM file of certificate authorities trusted besides the public ones (an intranet's CA).
    ca_bundle: str = ""


@dataclass
class Fetched:
    """The result of one fetch: ``data`` on success, else ``failure`` (a code above) and
    ``detail`` (for a person). ``transient`` failures may be retried after ``retry_after``
    seconds (None: the caller's own backoff). ``url`` is the last URL asked (after redirects)."""

    url: str
    data: bytes | None = None
    content_type: str = ""
    failure: str = ""
    detail: str = ""
    transient: bool = False
    retry_after: float | None = None
    status: int | None = None
    checked: object = None  # what the caller's image checks made of ``data``, if it ran them
    # The row itself is unusable (a sidecar caption that is not UTF-8): ``detail`` is its reason
    # as is, in a manifest row's words, not a fetch failure.
    row_problem: bool = False

    @property
    def ok(self) -> bool:
        return self.data is not None


class _Refused(Exception):
    def __init__(self, failure: str, detail: str, *, transient: bool = False, retry_after=None):
        super().__init__(detail)
        self.failure, self.detail = failure, detail
        self.transient, self.retry_after = transient, retry_after


def url_redacted(url: str) -> str:
    """The URL as it may be shown, stored or logged: the userinfo before the host
    (``user:password@``, ``user@``) and the values of secret parameters (``secret_name``) in the
    query and in the fragment, pairs split by ``&`` or ``;``, replaced by ``***``; a parameter
    whose value is itself a URL (percent-encoded or not) has that URL redacted the same way.
    Everything else stays as it was. Works on the text, so a URL too odd to parse is redacted
    too."""
    scheme_end = url.find("://")
    if scheme_end >= 0:
        start = scheme_end + 3
        ends = [at for at in (url.find(c, start) for c in "/?#") if at >= 0]
        end = min(ends) if ends else len(url)
        authority = url[start:end]
        if "@" in authority:
            url = url[:start] + REDACTED + authority[authority.rindex("@") :] + url[end:]
    fragment_at = url.find("#")
    fragment = url[fragment_at + 1 :] if fragment_at >= 0 else None
    head = url[:fragment_at] if fragment_at >= 0 else url
    query_at = head.find("?")
    if query_at >= 0:
        head = head[: query_at + 1] + _pairs_redacted(head[query_at + 1 :])
    if fragment is None:
        return head
    return head + "#" + _pairs_redacted(fragment)


def secret_name(name: str) -> bool:
    """Whether a query parameter of this name holds a secret (see SECRET_QUERY_NAMES)."""
    folded = unquote(name).strip().lower().replace("-", "_")
    return folded in SECRET_QUERY_NAMES or any(part in folded for part in SECRET_NAME_PARTS)


def _pairs_redacted(text: str) -> str:
    parts = re.split(r"([&;])", text)
    for n in range(0, len(parts), 2):
        name, equals, value = parts[n].partition("=")
        if not equals:
            continue
        if secret_name(name):
            parts[n] = f"{name}={REDACTED}"
            continue
        decoded = unquote(value)
        if "://" in decoded or "@" in decoded:
            # A URL carried in a parameter (a redirect target): its own secrets go too.
            shown = url_redacted(decoded)
            if shown != decoded:
                parts[n] = f"{name}={quote(shown, safe=':/*@') if decoded != value else shown}"
    return "".join(parts)


def text_redacted(text: str) -> str:
    """Running text (a log line, an error message) with every URL in it redacted
    (``url_redacted``)."""
    return _URL_IN_TEXT.sub(lambda match: url_redacted(match.group(0)), text)


class RedactedUrlsFilter(logging.Filter):
    """A logging filter that writes every URL in a record's message and traceback as
    ``url_redacted`` shows it. On httpx's logger (settings.LOGGING), whose INFO line
    ``HTTP Request: GET <url>`` holds the URL as sent, presigned signatures and tokens included,
    and on the collection's own."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit: leave it to the handler
            return True
        shown = text_redacted(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and not record.exc_text:
            # A traceback quotes exception messages, which may hold a URL: formatted here,
            # redacted, and kept where handlers look for it first.
            record.exc_text = text_redacted(logging.Formatter().formatException(record.exc_info))
        return True


def basic_authorization(url: str) -> str | None:
    """The ``Authorization`` header value for credentials in the URL (``user:password@``, either
    part percent-encoded; ``user@`` alone means an empty password), or None without any."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def parse_networks(values: list[str] | tuple[str, ...]) -> tuple[Network, ...]:
    """CIDR strings ("127.0.0.0/8", "10.1.0.0/16", "::1/128") as networks; raises ValueError."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries to a router: IPv4-mapped, 6to4 (2002::/16),
    Teredo (2001::/32, server and client) and NAT64 (64:ff9b::/96)."""
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found += list(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def address_blocked(address: Address) -> bool:
    """True for every address a collection must not reach by default: anything not globally
    routable (loopback, private, link-local, shared, reserved, unspecified) and multicast, and
    an IPv6 address that wraps such an IPv4 address (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if any(address_blocked(v4) for v4 in embedded):
            return True
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


def opted_out(header_values: list[str], *, directives: tuple[str, ...], agent: str) -> str:
    """The X-Robots-Tag directive that refuses this image, or "". A value is a comma-separated
    list of directives, each optionally addressed to one agent ("otherbot: noai" does not
    concern Concord; "concord: noai" and "noai" do)."""
    if not directives:
        return ""
    wanted = {d.lower() for d in directives}
    for value in header_values:
        addressed = None
        for part in value.split(","):
            token = part.strip().lower()
            if ":" in token:
                name, _, rest = token.partition(":")
                name, rest = name.strip(), rest.strip()
                if rest and name not in ("unavailable_after",):
                    addressed, token = name, rest
            if addressed not in (None, agent) or not token:
                continue
            if token in wanted:
                return token
    return ""


def image_magic(head: bytes) -> str:
    """The format the first bytes announce (JPEG, PNG, WEBP), or ""."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return ""


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HostGate:
    """At most ``per_host`` requests at once to one host, started at most ``per_second`` a
    second (0: no rate limit). Shared by the threads of one worker process."""

    def __init__(self, *, per_host: int, per_second: float):
        self.per_host, self.interval = max(1, per_host), (1.0 / per_second if per_second else 0.0)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with semaphore, self._local_rate(host):
            yield

    @contextmanager
    def _local_rate(self, host: str) -> Iterator[None]:
        # Requests to one host start at least `interval` apart in this process.
        if self.interval:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next.get(host, 0.0))
                self._next[host] = start + self.interval
            if start > now:
                time.sleep(start - now)
        yield


# One atomic step in Redis: drop the host's expired slots, take one if fewer than per_host are
# held, and book the next start time when there is a rate. Returns -1 when every slot is taken,
# else the seconds to wait before starting (as a string: Lua numbers become integers in replies).
_REDIS_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local lease, interval = tonumber(ARGV[4]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
if interval <= 0 then return '0' end
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
redis.call('SET', KEYS[2], tostring(start + interval), 'EX', math.ceil(interval) + 60)
return tostring(start - now)
"""


class RedisHostGate(HostGate):
    """HostGate's limits over every worker process that shares the Redis ``client`` (redis-py):
    at most ``per_host`` requests at once to a host and one start every 1/``per_second`` s,
    counted in Redis, in one atomic script per request and one command to release. A slot is a
    lease of ``lease_seconds`` (longer than any fetch), so a process killed mid-fetch frees it
    when that runs out. The process's own semaphores come first, so its threads queue locally
    rather than polling Redis; if Redis cannot be reached, the limits hold per process."""

    def __init__(
        self,
        *,
        client,
        per_host: int,
        per_second: float,
        lease_seconds: float,
        prefix: str = "concord:collect:host:",
        poll_seconds: float = 0.02,
    ):
        super().__init__(per_host=per_host, per_second=per_second)
        self._client, self._lease, self._prefix = client, lease_seconds, prefix
        self._poll = poll_seconds
        self._acquire = client.register_script(_REDIS_ACQUIRE)

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with semaphore:
            slots, token = f"{self._prefix}{host}:slots", uuid.uuid4().hex
            try:
                wait = self._take(slots, f"{self._prefix}{host}:next", token)
            except Exception as exc:  # redis-py raises its own types; any of them: stay local
                _redis_unreachable(exc)
                with self._local_rate(host):
                    yield
                return
            if wait > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                with suppress(Exception):
                    self._client.zrem(slots, token)

    def _take(self, slots: str, next_start: str, token: str) -> float:
        while True:
            answer = self._acquire(
                keys=[slots, next_start], args=[token, self.per_host, self.interval, self._lease]
            )
            if float(answer) >= 0:
                return float(answer)
            time.sleep(self._poll * (0.5 + random.random()))


def _redis_unreachable(exc: Exception) -> None:
    logging.getLogger(__name__).warning(
        "Collection: per-host limits held per process, Redis is unreachable (%s)", exc
    )


def tls_context(ca_bundle: str = "") -> ssl.SSLContext:
    """Certificates verified against the public CAs (certifi's), and those in ``ca_bundle`` too."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class _PinnedBackend(httpcore.SyncBackend):
    """Opens every connection to the address this thread's fetch vetted, whatever name the URL
    holds, so the name stays in the URL: the Host header, the TLS server name, certificate
    verification and the connection pool all go by the name (a connection verified for one
    name is never reused for another on the same address), and no second lookup is made."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextmanager
    def pinned(self, address: Address) -> Iterator[None]:
        self._local.address = str(address)
        try:
            yield
        finally:
            self._local.address = None

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = getattr(self._local, "address", None)
        if address is None:  # never resolve a name here: only a vetted address is reached
            raise httpcore.ConnectError(f"no vetted address for {host}")
        return super().connect_tcp(
            address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )


def _pinned_transport(
    *, verify: ssl.SSLContext, limits: httpx.Limits, backend
) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=verify, limits=limits, trust_env=False)
    # httpx builds its pool without a way to pass a network backend: the same pool, with ours.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=verify,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport


@dataclass
class Fetcher:
    """Fetches image URLs under one policy; thread-safe (one httpx client, pooled)."""

    policy: FetchPolicy
    gate: HostGate | None = None
    _client: httpx.Client = field(init=False, repr=False)
    _backend: _PinnedBackend = field(init=False, repr=False)

    def __post_init__(self) -> None:
        policy = self.policy
        self._backend = _PinnedBackend()
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=policy.connect_timeout,
                read=policy.read_timeout,
                write=policy.read_timeout,
                pool=policy.total_timeout,
            ),
            follow_redirects=False,
            headers={"User-Agent": policy.user_agent, "Accept": "image/*"},
            trust_env=False,  # never through a proxy the environment names: we vet the target
            transport=_pinned_transport(
                verify=tls_context(policy.ca_bundle),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                backend=self._backend,
            ),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fetch(self, url: str) -> Fetched:
        """Fetch one image URL (see the module docstring). Never raises for anything the network
        or the server does; the failure is in the result."""
        deadline = time.monotonic() + self.policy.total_timeout
        seen = {url}
        current = url
        try:
            for _hop in range(self.policy.max_redirects + 1):
                result, location = self._one(current, deadline=deadline)
                if location is None:
                    return result
                current = location
                if current in seen:
                    raise _Refused(REDIRECT_LOOP, f"redirects back to {url_redacted(current)}")
                seen.add(current)
            raise _Refused(REDIRECT_LOOP, f"more than {self.policy.max_redirects} redirects")
        except _Refused as exc:
            return Fetched(
                url=current,
                failure=exc.failure,
                detail=exc.detail,
                transient=exc.transient,
                retry_after=exc.retry_after,
            )

    # --- one hop -------------------------------------------------------------------------------

    def _one(self, url: str, *, deadline: float) -> tuple[Fetched, str | None]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise _Refused(INVALID, f"not an http(s) URL: {url_redacted(url)[:200]}")
        host = parts.hostname.rstrip(".").lower()
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as exc:
            raise _Refused(INVALID, f"bad port in {url_redacted(url)[:200]}") from exc
        address = self._vetted_address(host, port)
        # The URL as sent: the credentials become a header, the fragment stays here.
        netloc = parts.netloc.rpartition("@")[2]
        target = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
        headers = {}
        if authorization := basic_authorization(url):
            headers["Authorization"] = authorization
        gate = self.gate.slot(host) if self.gate is not None else _nothing()
        with gate, self._backend.pinned(address):
            return self._request(url, target, headers, host=host, deadline=deadline)

    def _vetted_address(self, host: str, port: int) -> Address:
        policy = self.policy
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _Refused(DNS, f"{host} did not resolve ({exc})") from exc
        addresses = []
        for info in infos:
            try:
                addresses.append(ipaddress.ip_address(info[4][0].split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise _Refused(DNS, f"{host} resolved to no usable address")
        if host in policy.allow_hosts:
            return addresses[0]
        for address in addresses:
            if any(address in network for network in policy.allow_networks):
                return address
            if not address_blocked(address):
                return address
        raise _Refused(BLOCKED, f"{host} resolves to {addresses[0]}, which may not be fetched")

    def _request(
        self, url: str, target: str, headers: dict, *, host: str, deadline: float
    ) -> tuple[Fetched, str | None]:
        policy = self.policy
        try:
            request = self._client.build_request("GET", target, headers=headers)
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _Refused(TIMEOUT, f"timed out ({type(exc).__name__})", transient=True) from exc
        except httpx.ConnectError as exc:
            if verify := _certificate_error(exc):
                raise _Refused(ERROR, f"TLS certificate refused for {host}: {verify}") from exc
            if _is_refused(exc):
                raise _Refused(REFUSED, "connection refused") from exc
            raise _Refused(ERROR, f"could not connect ({exc})") from exc
        except httpx.HTTPError as exc:
            raise _Refused(ERROR, f"{type(exc).__name__}: {exc}") from exc
        try:
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise _Refused(HTTP_STATUS, f"HTTP {status} without a Location")
                return Fetched(url=url, status=status), urljoin(url, location.strip())
            if status >= 400 or status < 200 or status == 204:
                transient = status in TRANSIENT_STATUSES
                raise _Refused(
                    HTTP_STATUS,
                    f"HTTP {status}",
                    transient=transient,
                    retry_after=retry_after_seconds(response.headers.get("retry-after"))
                    if transient
                    else None,
                )
            if directive := opted_out(
                response.headers.get_list("x-robots-tag"),
                directives=policy.opt_out,
                agent=policy.agent_name,
            ):
                raise _Refused(OPTED_OUT, f"X-Robots-Tag: {directive}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type and not (
                content_type.startswith("image/") or content_type in IMAGE_TYPES_GENERIC
            ):
                raise _Refused(NOT_IMAGE, f"Content-Type {content_type[:100]}")
            length = response.headers.get("content-length")
            if length and length.isdigit() and int(length) > policy.max_bytes:
                raise _Refused(
                    TOO_LARGE, f"{int(length):,} bytes; the limit is {policy.max_bytes:,}"
                )
            data = self._body(response, deadline=deadline)
            if not image_magic(data[:16]):
                raise _Refused(NOT_IMAGE, "the bytes are not a JPEG, PNG or WebP image")
            return Fetched(url=url, data=data, content_type=content_type, status=status), None
        finally:
            response.close()

    def _body(self, response: httpx.Response, *, deadline: float) -> bytes:
        limit = self.policy.max_bytes
        chunks, size = [], 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _Refused(TOO_LARGE, f"more than {limit:,} bytes")
                if time.monotonic() > deadline:
                    raise _Refused(
                        TIMEOUT,
                        f"not done within {self.policy.total_timeout:g} s",
                        transient=True,
                    )
                chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise _Refused(TIMEOUT, "read timed out", transient=True) from exc
        except httpx.HTTPError as exc:
            raise _Refused(ERROR, f"{type(exc).__name__}: {exc}") from exc
        return b"".join(chunks)


def _certificate_error(exc: BaseException) -> str:
    """Why the server's certificate was not accepted, when that is what ended the connection."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc.verify_message or str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return str(exc).split("certificate verify failed: ", 1)[-1].split(" (_ssl", 1)[0]
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return ""


def _is_refused(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 8:
        if (
            isinstance(exc, ConnectionRefusedError)
            or getattr(exc, "errno", None) == errno.ECONNREFUSED
        ):
            return True
        if "refused" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# --- objects in S3-compatible storage -------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def s3_split(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key); ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.lstrip("/"):
        raise ValueError(f"not an s3://bucket/key URL: {url[:200]}")
    return parts.netloc, parts.path.lstrip("/")


def s3_fetch(client, url: str, *, max_bytes: int) -> Fetched:
    """One object's bytes through a boto3 S3 client, with the same size cap and magic-byte check
    as a URL, and the failure codes above (a missing object is HTTP_STATUS 404). Throttling
    (503 SlowDown) and timeouts are transient."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    try:
        bucket, key = s3_split(url)
    except ValueError as exc:
        return Fetched(url=url, failure=INVALID, detail=str(exc))
    try:
        response = client.get_object(Bucket=bucket, Key=key)
        size = response.get("ContentLength") or 0
        if size > max_bytes:
            response["Body"].close()
            return Fetched(url=url, failure=TOO_LARGE, detail=f"{size:,} bytes")
        data = response["Body"].read(max_bytes + 1)
        response["Body"].close()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        transient = status in TRANSIENT_STATUSES or error.get("Code") == "SlowDown"
        return Fetched(
            url=url,
            failure=HTTP_STATUS,
            detail=f"S3 {status} {error.get('Code', '')}".strip(),
            transient=transient,
            status=status,
        )
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        return Fetched(url=url, failure=TIMEOUT, detail=str(exc), transient=True)
    except EndpointConnectionError as exc:
        return Fetched(url=url, failure=REFUSED, detail=str(exc))
    except BotoCoreError as exc:
        return Fetched(url=url, failure=ERROR, detail=f"{type(exc).__name__}: {exc}")
    if len(data) > max_bytes:
        return Fetched(url=url, failure=TOO_LARGE, detail=f"more than {max_bytes:,} bytes")
    if not image_magic(data[:16]):
        return Fetched(url=url, failure=NOT_IMAGE, detail="not a JPEG, PNG or WebP image")
    return Fetched(url=url, data=data, status=200)


def s3_text(client, bucket: str, key: str, *, max_bytes: int = 64 * 1024) -> str | None:
    """A sidecar caption (``photo.txt`` beside ``photo.jpg``) as text, or None when absent;
    bytes that are not UTF-8 are kept as lone surrogates (``surrogateescape``) for the caller to
    refuse."""
    from botocore.exceptions import ClientError

    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError:
        return None
    data = response["Body"].read(max_bytes)
    response["Body"].close()
    # Bytes that are not UTF-8 become lone surrogates, as in a manifest: the caller refuses the
    # row with the manifest's words (sources.text_problem) instead of storing U+FFFD.
    return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff").strip() or None


def s3_list_images(client, bucket: str, prefix: str) -> Iterator[str]:
    """Every image key under the prefix, in listing order, a page (1,000 keys) at a time."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            if entry["Key"].lower().endswith(IMAGE_SUFFIXES):
                yield entry["Key"]
