"""The fetcher against a real HTTP server on 127.0.0.1: every outcome, the SSRF guard, the
bounds. No database."""

import ipaddress
import logging
import threading
import time

import pytest

from datasets.ingest import fetching
from datasets.ingest.fetching import (
    Fetcher,
    FetchPolicy,
    HostGate,
    address_blocked,
    opted_out,
    parse_networks,
    retry_after_seconds,
)
from tests.datasets.ingest.image_server import ImageServer, closed_port

LOOPBACK = parse_networks(["127.0.0.0/8"])


@pytest.fixture(scope="module")
def server():
    running = ImageServer()
    yield running
    running.close()


def _fetcher(**changes) -> Fetcher:
    policy = {
        "max_bytes": 1024 * 1024,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "total_timeout": 2.0,
        "max_redirects": 4,
        "allow_networks": LOOPBACK,
    }
    policy.update(changes)
    return Fetcher(policy=FetchPolicy(**policy))


def test_a_good_image_comes_back_whole_with_the_user_agent_naming_concord(server):
    with _fetcher() as fetcher:
        result = fetcher.fetch(server.url("/good.png"))
    assert result.ok and result.data == server.png and result.status == 200
    assert result.failure == ""
    assert "Concord" in server.user_agents[-1]


def test_generic_binary_types_are_taken_when_the_bytes_are_an_image(server):
    with _fetcher() as fetcher:
        assert fetcher.fetch(server.url("/octet")).ok


@pytest.mark.parametrize(
    ("path", "failure", "transient"),
    [
        ("/page.html", fetching.NOT_IMAGE, False),
        ("/fake.jpg", fetching.NOT_IMAGE, False),
        ("/huge-declared", fetching.TOO_LARGE, False),
        ("/huge-streamed", fetching.TOO_LARGE, False),
        ("/slow", fetching.TIMEOUT, True),
        ("/drip", fetching.TIMEOUT, True),
        ("/loop-a", fetching.REDIRECT_LOOP, False),
        ("/chain/0", fetching.REDIRECT_LOOP, False),
        ("/to-private", fetching.BLOCKED, False),
        ("/to-metadata", fetching.BLOCKED, False),
        ("/missing.jpg", fetching.HTTP_STATUS, False),
        ("/unavailable", fetching.HTTP_STATUS, True),
        ("/noai.png", fetching.OPTED_OUT, False),
    ],
)
def test_each_failure_is_named(server, path, failure, transient):
    started = time.monotonic()
    with _fetcher() as fetcher:
        result = fetcher.fetch(server.url(path))
    assert not result.ok, result
    assert (result.failure, result.transient) == (failure, transient), result.detail
    assert result.detail
    # Bounded: nothing takes much longer than the total timeout.
    assert time.monotonic() - started < 6


def test_a_redirect_to_a_public_path_on_an_allowed_host_is_followed(server):
    with _fetcher() as fetcher:
        result = fetcher.fetch(server.url("/to-good"))
    assert result.ok and result.url == server.url("/good.png")


def test_an_opt_out_addressed_to_another_agent_does_not_concern_concord(server):
    with _fetcher() as fetcher:
        assert fetcher.fetch(server.url("/otherbot.png")).ok
    with _fetcher(opt_out=()) as fetcher:  # configurable: honouring can be switched off
        assert fetcher.fetch(server.url("/noai.png")).ok


def test_429_and_503_carry_their_retry_after(server):
    with _fetcher() as fetcher:
        result = fetcher.fetch(server.url("/unavailable"))
    assert result.transient and result.retry_after == 0.0 and "503" in result.detail


def test_refused_and_dns_failures(server):
    with _fetcher() as fetcher:
        refused = fetcher.fetch(f"http://127.0.0.1:{closed_port()}/x.jpg")
        dns = fetcher.fetch("http://no-such-host.invalid/x.jpg")
    assert refused.failure == fetching.REFUSED
    assert dns.failure == fetching.DNS


def test_without_the_allow_list_loopback_is_refused_before_any_request(server):
    before = sum(server.hits.values())
    with _fetcher(allow_networks=()) as fetcher:
        result = fetcher.fetch(server.url("/good.png"))
        by_name = fetcher.fetch(f"http://localhost:{server.port}/good.png")
    assert result.failure == fetching.BLOCKED and by_name.failure == fetching.BLOCKED
    assert sum(server.hits.values()) == before, "no request may reach a blocked address"


def test_an_allowed_host_name_is_fetched_whatever_it_resolves_to(server):
    with _fetcher(allow_networks=(), allow_hosts=frozenset({"localhost"})) as fetcher:
        assert fetcher.fetch(f"http://localhost:{server.port}/good.png").ok
        # The name is allowed, not the address: 127.0.0.1 itself stays blocked.
        assert fetcher.fetch(server.url("/good.png")).failure == fetching.BLOCKED


def test_not_http_is_refused_without_a_request():
    with _fetcher() as fetcher:
        assert fetcher.fetch("file:///etc/passwd").failure == fetching.INVALID
        assert fetcher.fetch("gopher://127.0.0.1/").failure == fetching.INVALID


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.0.0.8", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("224.0.0.251", True),
        ("0.0.0.0", True),
        ("240.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("ff02::1", True),
        ("::ffff:10.0.0.1", True),
        # IPv6 that wraps a private IPv4 address for a router to unwrap.
        ("2002:7f00:1::1", True),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", True),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", True),  # Teredo, client 10.0.0.1
        ("64:ff9b::a00:1", True),  # NAT64 of 10.0.0.1
        # NAT64 of a public address: refused too (it lies in ::/8, reserved), the safe side.
        ("64:ff9b::5db8:d822", True),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_address_ranges(address, blocked):
    assert address_blocked(ipaddress.ip_address(address)) is blocked


def test_x_robots_tag_parsing():
    directives = ("noai", "noimageai")
    assert opted_out(["noai"], directives=directives, agent="concord") == "noai"
    assert opted_out(["noindex, NoImageAI"], directives=directives, agent="concord") == "noimageai"
    assert opted_out(["concord: noai"], directives=directives, agent="concord") == "noai"
    assert opted_out(["otherbot: noai"], directives=directives, agent="concord") == ""
    assert opted_out(["noindex"], directives=directives, agent="concord") == ""
    assert opted_out(["noai"], directives=(), agent="concord") == ""


def test_retry_after_parsing():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0) == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_host_gate_bounds_concurrency_per_host():
    gate = HostGate(per_host=2, per_second=0)
    at_once, peak, lock = [0], [0], threading.Lock()

    def work():
        with gate.slot("a.example"):
            with lock:
                at_once[0] += 1
                peak[0] = max(peak[0], at_once[0])
            time.sleep(0.05)
            with lock:
                at_once[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2


def test_host_gate_spaces_requests_to_one_host():
    gate = HostGate(per_host=4, per_second=20)
    started = time.monotonic()
    for _ in range(5):
        with gate.slot("b.example"):
            pass
    assert time.monotonic() - started >= 4 / 20 - 0.01


# --- credentials inside a URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice@example.com/a.jpg", "http://***@example.com/a.jpg"),
        ("https://alice:pw@example.com:8443/a.jpg?x=1", "https://***@example.com:8443/a.jpg?x=1"),
        ("http://al%40ice:p%3Aw%2F@example.com/a.jpg", "http://***@example.com/a.jpg"),
        ("http://:pw@example.com", "http://***@example.com"),
        ("http://u:p@[2001:db8::1]/a", "http://***@[2001:db8::1]/a"),
        # An @ after the host is not userinfo.
        ("http://example.com/a@b.jpg?who=me@there", "http://example.com/a@b.jpg?who=me@there"),
        (
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc&w=2",
            "https://b.s3.amazonaws.com/k.jpg?X-Amz-Credential=***&X-Amz-Signature=***&w=2",
        ),
        ("http://e.com/a?sig=1&token=2&size=3#top", "http://e.com/a?sig=***&token=***&size=3#top"),
        ("http://e.com/a.jpg", "http://e.com/a.jpg"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_urls_are_shown_without_their_credentials(url, shown):
    assert fetching.url_redacted(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Names by kind: Google-style ``key``, any case and "-" for "_", any name holding a
        # token, secret, signature, password, credential or API key.
        ("http://e.com/a?key=KEYQ&w=1", "http://e.com/a?key=***&w=1"),
        ("http://e.com/a?Api-Key=DASHKEY", "http://e.com/a?Api-Key=***"),
        (
            "http://e.com/a?API_KEY=K&X-Refresh-Token=R",
            "http://e.com/a?API_KEY=***&X-Refresh-Token=***",
        ),
        (
            "http://e.com/a?my_secret_value=S&sessionid=Z",
            "http://e.com/a?my_secret_value=***&sessionid=***",
        ),
        # Pairs split by ";" as well as "&".
        ("http://e.com/a?x=1;token=SEMITOK", "http://e.com/a?x=1;token=***"),
        # The fragment holds parameters too (OAuth implicit flow).
        ("http://e.com/a#access_token=FRAGTOK&state=2", "http://e.com/a#access_token=***&state=2"),
        ("http://e.com/a?w=1#token=FRAGTOK", "http://e.com/a?w=1#token=***"),
        # A URL inside a parameter, percent-encoded or not: its own secrets go too.
        (
            "http://e.com/redir?to=http%3A%2F%2Fu%3ALOCPW3%40h.com%2Fa.jpg%3Ftoken%3DLOCTOK3&b=2",
            "http://e.com/redir?to=http://***@h.com/a.jpg%3Ftoken%3D***&b=2",
        ),
        (
            "http://e.com/r?to=http://u:p@h.com/x?sig=1",
            "http://e.com/r?to=http://***@h.com/x?sig=***",
        ),
        # Ordinary names that merely look alike stay.
        (
            "http://e.com/a?author=me&keyword=cat&monkey=1",
            "http://e.com/a?author=me&keyword=cat&monkey=1",
        ),
    ],
)
def test_secret_parameters_are_redacted_by_kind(url, shown):
    assert fetching.url_redacted(url) == shown


def test_no_url_with_secrets_reaches_the_log_during_a_real_fetch(server, caplog):
    """httpx logs every request's URL at INFO; settings.LOGGING redacts it on its logger."""
    secret = "?X-Amz-Signature=SIGSECRET&token=TOKSECRET&api_key=APIKEYSECRET&w=1"
    with caplog.at_level(logging.DEBUG), _fetcher() as fetcher:
        fetcher.fetch(f"http://alice:PWSECRET@127.0.0.1:{server.port}/private.jpg{secret}")
        fetcher.fetch(server.url(f"/to-good{secret}"))  # the redirect's first hop
        fetcher.fetch(server.url(f"/nothing-here{secret}"))  # a 404
    messages = [record.getMessage() for record in caplog.records]
    requests = [m for m in messages if m.startswith("HTTP Request:")]
    assert len(requests) >= 4, messages  # the lines are logged, and redacted
    assert any("token=***" in m and "w=1" in m for m in requests)
    for secret_value in ("SIGSECRET", "TOKSECRET", "APIKEYSECRET", "PWSECRET"):
        assert not any(secret_value in m for m in messages), messages


def test_the_collection_log_redacts_urls_in_messages_and_tracebacks(caplog):
    logger = logging.getLogger("datasets.ingest.services.collection")
    with caplog.at_level(logging.INFO):
        try:
            raise ValueError("bad http://u:PWSECRET@h.com/a.jpg?token=TOKSECRET")
        except ValueError:
            logger.exception("Collection: %s failed", "http://h.com/b.jpg?sig=SIGSECRET")
    (record,) = [r for r in caplog.records if r.name == logger.name]
    shown = record.getMessage() + (record.exc_text or "")
    assert "sig=***" in shown and "http://***@h.com/a.jpg?token=***" in shown
    assert not any(s in shown for s in ("PWSECRET", "TOKSECRET", "SIGSECRET"))
    assert "PWSECRET" not in caplog.text


def test_basic_authorization_decodes_percent_encoded_credentials():
    import base64

    def decoded(url):
        value = fetching.basic_authorization(url)
        return base64.b64decode(value.removeprefix("Basic ")).decode() if value else None

    assert decoded("http://al%40ice:p%3Aw%2F@example.com/") == "al@ice:p:w/"
    assert decoded("http://alice@example.com/") == "alice:"
    assert decoded("http://example.com/") is None


def test_credentials_in_the_url_are_sent_to_it_and_nowhere_else(server):
    port = server.port
    with _fetcher() as fetcher:
        assert fetcher.fetch(f"http://alice:s3cr%3Aet@127.0.0.1:{port}/private.jpg").ok
        assert not fetcher.fetch(server.url("/private.jpg")).ok  # 401 without them
        # Credentials that a redirect's Location carries are used for that hop.
        assert fetcher.fetch(server.url("/to-private-with-credentials")).ok
        # An absolute Location to another host name is fetched without the first URL's.
        moved = fetcher.fetch(f"http://alice:s3cr%3Aet@127.0.0.1:{port}/to-private-on-another-host")
        assert moved.failure == fetching.HTTP_STATUS and moved.detail == "HTTP 401"
        assert server.authorizations["/to-private-on-another-host"][-1].startswith("Basic ")
        # The last request, to localhost, carried none.
        assert server.authorizations["/private.jpg"][-1] == ""
        looped = fetcher.fetch(server.url("/credentials-loop"))
    assert looped.failure == fetching.REDIRECT_LOOP
    assert "hunter2" not in looped.detail and "carol" not in looped.detail
    assert f"http://***@127.0.0.1:{port}/credentials-loop" in looped.detail


# --- HTTPS to the vetted address, verified against the name ---------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA (its PEM in a file, as CONCORD_COLLECT_CA_BUNDLE names one) and two HTTPS servers:
    one whose certificate names localhost only (no IP address), one for another name."""
    import trustme

    from tests import factories
    from tests.datasets.ingest.tls_server import TlsImageServer

    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    body = factories.image_bytes(fmt="PNG", seed=5)
    good = TlsImageServer(ca=ca, names=["localhost"], body=body)
    wrong = TlsImageServer(ca=ca, names=["images.example"], body=body)
    yield {"bundle": str(bundle), "good": good, "wrong": wrong, "body": body}
    good.close()
    wrong.close()


def test_https_goes_to_the_vetted_address_with_the_name_in_sni_host_and_verification(tls):
    good = tls["good"]
    with _fetcher(ca_bundle=tls["bundle"]) as fetcher:
        result = fetcher.fetch(f"https://localhost:{good.port}/photo.png")
    assert result.ok and result.data == tls["body"], result.detail
    # The certificate names localhost and no address: it was checked against the name.
    assert good.server_names[-1] == "localhost"
    assert good.hosts[-1] == f"localhost:{good.port}"


def test_a_certificate_for_another_name_is_refused_with_the_reason(tls):
    with _fetcher(ca_bundle=tls["bundle"]) as fetcher:
        result = fetcher.fetch(f"https://localhost:{tls['wrong'].port}/photo.png")
    assert not result.ok and result.failure == fetching.ERROR
    assert result.detail.startswith("TLS certificate refused for localhost")
    assert "localhost" in result.detail and "mismatch" in result.detail.lower()


def test_a_ca_nobody_trusted_is_refused_and_trusted_through_the_setting(tls):
    with _fetcher() as fetcher:  # the public CAs only
        result = fetcher.fetch(f"https://localhost:{tls['good'].port}/photo.png")
    assert not result.ok and result.detail.startswith("TLS certificate refused for localhost")
    assert "issuer" in result.detail


def test_a_connection_verified_for_one_name_is_not_reused_for_another(tls):
    port = tls["good"].port
    with _fetcher(ca_bundle=tls["bundle"]) as fetcher:
        assert fetcher.fetch(f"https://localhost:{port}/a.png").ok
        # The same address by another name: the certificate does not cover 127.0.0.1, so a
        # connection pooled by address (verified for localhost) must not carry this request.
        result = fetcher.fetch(f"https://127.0.0.1:{port}/b.png")
    assert not result.ok and result.detail.startswith("TLS certificate refused for 127.0.0.1")


# --- per-host limits over every worker process (Redis) ---------------------------------------------


def _redis_url() -> str:
    """The broker's Redis, when the tests run with one (the PostgreSQL runs do)."""
    import os

    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        pytest.skip("needs CELERY_BROKER_URL=redis://…")
    return url


def test_per_host_limits_hold_over_two_worker_processes(server):
    import multiprocessing
    import uuid

    from tests.datasets.ingest.gate_worker import gated_fetches

    redis_url = _redis_url()
    prefix = f"test:{uuid.uuid4().hex}:"
    server.held_most = 0
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        runs = [
            pool.apply_async(
                gated_fetches,
                (redis_url, prefix, [server.url(f"/held/{p}-{n}.png") for n in range(6)], 2),
            )
            for p in range(2)
        ]
        fetched = [run.get(timeout=120) for run in runs]
    assert fetched == [6, 6]
    # Two processes of six threads each, the host limited to two at once: never more than two.
    assert server.held_most == 2


def test_a_rate_over_processes_spaces_the_starts_in_redis():
    import uuid

    import redis

    client = redis.Redis.from_url(_redis_url())
    prefix = f"test:{uuid.uuid4().hex}:"
    gates = [
        fetching.RedisHostGate(
            client=client, per_host=8, per_second=2, lease_seconds=30, prefix=prefix
        )
        for _ in range(2)
    ]
    booked = []
    for n in range(4):  # two "processes" alternating: the bookings are shared, 0.5 s apart
        with gates[n % 2].slot("images.example"):
            booked.append(float(client.get(f"{prefix}images.example:next")))
    assert [round(b - booked[0], 3) for b in booked] == [0.0, 0.5, 1.0, 1.5]
