"""Secure by default: security headers, no cross-origin form posts, and APP_API_TOKEN for the API and pages."""

from __future__ import annotations

import base64
import codecs
import json
import os
import secrets
import ssl
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from shop.core import App, MessageLog
from shop.core.access_log import RedactSecretsInURLs
from shop.core.auth import SESSION_COOKIE, Tokens, open_bind_refusal
from shop.core.hosts import allowed_hosts
from shop.core.http import create_http_app, read_form
from shop.core.kv import KeyValueStore
from shop.core.ratelimit import AttemptLimiter
from shop.core.redaction import redact
from shop.core.sessions import Sessions
from shop.core.summaries import ChatCompletionsSummarizer, SummaryConfig, SummaryError, tls_context
from shop.core.text import visible_line, visible_text, visible_url

from .conftest import AddNote, register_notes
from .fake_summary_api import FakeSummaryAPI, Reply

HTML = {"accept": "text/html"}
NOTE = {"type": "notes/add", "payload": {"id": "a", "text": "hi"}}
TOKEN = "s3cret-token-for-tests"
STRONG_TOKEN = "7f3c9e1a5b8d2f4a6c0e9b7d1f3a5c8e"  # 32 random hex characters: enough beyond loopback
NEW_TOKEN = "the-next-token-after-rotation"


def add_note_form(app: App) -> None:
    """A page route that changes state, as a feature's HTML form does."""

    async def add(request: Request) -> Response:
        form = await read_form(request)
        app.dispatch(AddNote(id=form["id"], text=form["text"]))
        return Response(status_code=303, headers={"location": "/"})

    app.add_route("/notes/new", add, methods=("POST",))


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    register_notes(app)
    add_note_form(app)
    with TestClient(create_http_app(app, tokens=[])) as client:
        yield client


def secured(app: App, *tokens: str) -> TestClient:
    register_notes(app)
    add_note_form(app)
    return TestClient(create_http_app(app, tokens=tokens or [TOKEN]))


# --- headers ---


@pytest.mark.parametrize("path", ["/", "/healthz", "/queries", "/static/app.css", "/nope"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


# --- cross-origin protection ---


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
    ],
)
def test_a_cross_origin_form_post_is_refused_and_appends_nothing(
    client: TestClient, app: App, headers: dict[str, str]
) -> None:
    response = client.post("/notes/new", data={"id": "x", "text": "forged"}, headers={**HTML, **headers})
    assert response.status_code == 403 and "another site" in response.text
    assert app.log.version() == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}, {"origin": "http://testserver"}],
)
def test_same_origin_and_non_browser_form_posts_pass(client: TestClient, app: App, headers: dict[str, str]) -> None:
    response = client.post("/notes/new", data={"id": "x", "text": "mine"}, headers=headers, follow_redirects=False)
    assert response.status_code == 303
    assert app.log.version() == 1


def test_the_json_api_keeps_refusing_anything_but_json_and_answers_no_cors(client: TestClient, app: App) -> None:
    cross = {"sec-fetch-site": "cross-site", "origin": "https://evil.example"}
    form = client.post("/commands", content=b'{"type": "notes/add"}', headers={**cross, "content-type": "text/plain"})
    assert form.status_code == 403  # refused as cross-site before its content type is even looked at
    for header in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        assert client.post("/commands", json=NOTE, headers=header).status_code == 403
    preflight = client.options("/commands", headers={**cross, "access-control-request-method": "POST"})
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert app.log.version() == 0


# --- the token ---


def test_without_a_token_the_api_is_open(client: TestClient) -> None:
    assert client.post("/commands", json=NOTE).status_code == 201


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0", f"bearer {TOKEN}x", "Bearer "])
def test_the_api_needs_the_right_bearer_token(app: App, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    with secured(app) as client:
        for method, path in [("POST", "/commands"), ("GET", "/commands"), ("GET", "/queries"), ("GET", "/events")]:
            response = client.request(method, path, json=NOTE, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in response.text
        assert client.get("/queries/notes/get", params={"id": "a"}, headers=headers).status_code == 401
        assert app.log.version() == 0


def test_the_right_token_opens_the_api(app: App) -> None:
    with secured(app) as client:
        response = client.post("/commands", json=NOTE, headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 201
        answer = client.get("/queries/notes/get", params={"id": "a"}, headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.json() == {"id": "a", "text": "hi"}


def test_during_a_rotation_both_tokens_work_and_afterwards_only_the_new_one(app: App, tmp_path: Path) -> None:
    with secured(app, TOKEN, NEW_TOKEN) as client:
        for token in (TOKEN, NEW_TOKEN):
            assert client.get("/queries", headers={"authorization": f"Bearer {token}"}).status_code == 200
    rotated = App(MessageLog(tmp_path / "after-rotation.db"))
    with secured(rotated, NEW_TOKEN) as client:
        assert client.get("/queries", headers={"authorization": f"Bearer {NEW_TOKEN}"}).status_code == 200
        assert client.get("/queries", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_healthz_stays_open_but_says_only_ok_without_the_token(app: App) -> None:
    with secured(app) as client:
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        full = client.get("/healthz", headers={"authorization": f"Bearer {TOKEN}"}).json()
        assert "workers" in full and "version" in full


# --- pages and the login ---


def test_pages_send_a_browser_to_the_login_and_back(app: App) -> None:
    with secured(app) as client:
        redirect = client.get("/", headers=HTML, follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=/"
        login = client.get("/login", headers=HTML)
        assert login.status_code == 200 and 'type="password"' in login.text
        assert client.get("/static/app.css").status_code == 200  # the login page needs its style

        wrong = client.post("/login", data={"token": "wrong", "next": "/"}, headers=HTML, follow_redirects=False)
        assert wrong.status_code == 401 and "That token is not right." in wrong.text and "wrong" not in wrong.text
        assert SESSION_COOKIE not in client.cookies

        right = client.post("/login", data={"token": TOKEN, "next": "/"}, headers=HTML, follow_redirects=False)
        assert right.status_code == 303 and right.headers["location"] == "/"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and TOKEN not in cookie
        page = client.get("/", headers=HTML)
        assert page.status_code == 200 and "Sign out" in page.text and TOKEN not in page.text


def test_a_session_opens_the_pages_and_events_but_not_the_json_api(app: App) -> None:
    with secured(app) as client:
        client.post("/login", data={"token": TOKEN}, headers=HTML)
        posted = client.post("/notes/new", data={"id": "n", "text": "signed in"}, follow_redirects=False)
        assert posted.status_code == 303
        assert client.get("/queries").status_code == 401
        assert client.post("/commands", json=NOTE).status_code == 401
        assert app.log.version() == 1


def test_signing_out_ends_the_session(app: App) -> None:
    with secured(app) as client:
        client.post("/login", data={"token": TOKEN}, headers=HTML)
        signed_out = client.post("/logout", headers=HTML, follow_redirects=False)
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"
        assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_login_goes_back_only_to_pages_of_this_site(app: App) -> None:
    with secured(app) as client:
        for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "/x\\y"):
            right = client.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
            assert right.headers["location"] == "/"


def sign_in(client: TestClient) -> str:
    """Sign in as a new browser would (no cookie yet); returns its session cookie."""
    client.cookies.clear()
    client.post("/login", data={"token": TOKEN}, headers=HTML)
    return client.cookies[SESSION_COOKIE]


def signed_in_as(client: TestClient, cookie: str) -> bool:
    client.cookies.clear()
    client.cookies[SESSION_COOKIE] = cookie
    return client.get("/", headers=HTML, follow_redirects=False).status_code == 200


def test_a_copied_session_cookie_stops_working_once_its_browser_signs_out(app: App) -> None:
    with secured(app) as client:
        copied = sign_in(client)
        assert signed_in_as(client, copied)
        client.post("/logout", headers=HTML)
        assert not signed_in_as(client, copied)
        assert client.get("/events").status_code == 401


def test_signing_out_everywhere_ends_every_session(app: App) -> None:
    with secured(app) as client:
        first, second = sign_in(client), sign_in(client)
        assert signed_in_as(client, first) and signed_in_as(client, second)
        client.post("/logout", data={"everywhere": "1"}, headers=HTML)
        assert not signed_in_as(client, first)
        assert not [key for key, _ in app.kv.items() if key.startswith("sessions/")]


def test_signing_out_everywhere_needs_a_session_of_ones_own(app: App) -> None:
    with secured(app) as client:
        member = sign_in(client)
        client.cookies.clear()
        client.post("/logout", data={"everywhere": "1"}, headers=HTML)
        assert signed_in_as(client, member)


def test_sessions_end_when_they_expire_or_their_token_is_retired(tmp_path: Path) -> None:
    now = [1_000_000.0]
    log = MessageLog(tmp_path / "sessions.db")
    sessions = Sessions(KeyValueStore(log), seconds=3600, clock=lambda: now[0])
    old, new = Tokens([TOKEN]), Tokens([NEW_TOKEN])
    cookie = sessions.start(old.fingerprint(TOKEN))
    assert TOKEN not in cookie and TOKEN not in str(list(KeyValueStore(log).items()))
    assert cookie not in str(list(KeyValueStore(log).items()))  # only its hash is stored
    assert sessions.valid(cookie, old.fingerprints)
    assert not sessions.valid(cookie, new.fingerprints)  # rotated out
    now[0] += 3601
    assert not sessions.valid(cookie, old.fingerprints)
    assert sessions.prune(old.fingerprints) == 1
    for forged in ("", "x", cookie[:-1], cookie + "A", "\xb2" * 43, "9" * 4400, None):
        assert not sessions.valid(forged, old.fingerprints)
    log.close()


def test_tokens_are_named_by_fingerprints_that_are_not_the_token() -> None:
    tokens = Tokens([TOKEN, NEW_TOKEN])
    assert len(tokens.fingerprints) == 2 and not {TOKEN, NEW_TOKEN} & tokens.fingerprints
    assert TOKEN not in repr(tokens)
    with pytest.raises(ValueError):
        tokens.fingerprint("wrong")


# --- guessing the token ---


def test_wrong_tokens_are_rate_limited_per_client_with_retry_after(app: App) -> None:
    with secured(app) as client:
        for _ in range(10):
            assert client.post("/login", data={"token": "wrong"}, headers=HTML).status_code == 401
        limited = client.post("/login", data={"token": TOKEN}, headers=HTML, follow_redirects=False)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert "Try again" in limited.text
        api = client.get("/queries", headers={"authorization": f"Bearer {TOKEN}"})
        assert api.status_code == 429 and int(api.headers["retry-after"]) > 0


def test_the_attempt_limiter_counts_per_client_and_overall_in_a_sliding_window() -> None:
    now = [0.0]
    limiter = AttemptLimiter(per_client=3, overall=5, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") is None
    limiter.failed("b")
    limiter.failed("c")
    assert limiter.retry_after("d") == 60  # five failures from anyone: everyone waits
    now[0] = 30.0
    assert limiter.retry_after("d") == 30
    now[0] = 60.5
    assert limiter.retry_after("a") is None and limiter.retry_after("d") is None


def test_a_token_in_the_url_is_refused(app: App) -> None:
    with secured(app) as client:
        for query in (f"access_token={TOKEN}", "ACCESS_TOKEN=x", f"a=1&access_token={TOKEN}", f"q={TOKEN}"):
            response = client.get(f"/queries?{query}")
            assert response.status_code == 400 and "Authorization" in response.json()["error"]
            assert TOKEN not in response.text


def test_the_access_log_never_shows_a_token_shaped_query_value_whatever_its_name() -> None:
    token = "rufHA3Wq8dT0-kPz_9Lx2mVb7NcQe4YsJg6FhUa1Azbo"  # 44 URL-safe characters, as a user's token
    scrub = RedactSecretsInURLs(secrets=[TOKEN]).scrub
    for name in ("key", "auth", "bearer", "q", "t"):
        assert scrub(f"/queries/notes/list?{name}={token}") == f"/queries/notes/list?{name}=[redacted]"
    assert token not in scrub(f"/login?authorization=Bearer%20{token}")
    assert scrub(f"/q?x={TOKEN}") == "/q?x=[redacted]"  # the app's own token, by value
    item = "0f8e2b4c6d1a3e5f7a9b0c2d4e6f8a1b"  # an id stays readable
    assert scrub(f"/queries/posts/get?id={item}") == f"/queries/posts/get?id={item}"


# --- what clients send ---


def test_only_the_apps_own_host_names_are_answered(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_ALLOWED_HOSTS")
    register_notes(app)
    add_note_form(app)
    with TestClient(create_http_app(app, tokens=[], port=8080), base_url="http://127.0.0.1:8080") as client:
        assert client.post("/commands", json=NOTE).status_code == 201
        for host in ("localhost:8080", "[::1]:8080", "LOCALHOST:8080"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200
        rebinding = {"host": "evil.example:8080", "origin": "http://evil.example:8080"}
        for host in ("evil.example", "evil.example:8080", "127.0.0.1:9999", "", "[", "127.0.0.1:8080@evil"):
            headers = {**rebinding, "host": host}
            for method, path in [("POST", "/commands"), ("POST", "/notes/new"), ("GET", "/events"), ("GET", "/")]:
                response = client.request(method, path, json=NOTE, headers=headers)
                assert response.status_code == 421, (host, method, path)
                assert response.headers["x-content-type-options"] == "nosniff"
        assert app.log.version() == 1


def test_allowed_hosts_extends_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ALLOWED_HOSTS", "example.com, .example.org,app.example.net:8443")
    hosts = allowed_hosts("127.0.0.1", 8080)
    for host in ("127.0.0.1:8080", "example.com", "example.com:1234", "example.org", "a.b.example.org:80"):
        assert hosts.allows(host), host
    for host in ("app.example.net", "notexample.org", "127.0.0.1", "example.com.evil", "xn--exmple-cua.com"):
        assert not hosts.allows(host), host
    assert hosts.allows("app.example.net:8443")
    everywhere = allowed_hosts("0.0.0.0", 8080, environ={})
    assert everywhere.allows("192.0.2.7:8080") and everywhere.allows("[2001:db8::1]:8080")
    assert not everywhere.allows("evil.example:8080") and not everywhere.allows("192.0.2.7:9999")
    assert allowed_hosts("127.0.0.1", 80, environ={}).allows("localhost")  # the default port is left out


@pytest.mark.parametrize(
    "headers",
    [
        {"cookie": "shop_session=\xb2.abc"},
        {"cookie": f"shop_session={'9' * 4400}.x"},
        {"cookie": "shop_session=\u0661\u0662.abc"},
        {"cookie": "shop_flash=%ff%fe; shop_session="},
        {"last-event-id": "9" * 5000},
        {"last-event-id": "\u0661\u0662\u0663"},
        {"last-event-id": "\xb2"},
        {"last-event-id": "-1"},
        {"origin": "http://["},
        {"origin": "http://\u00e9vil.example"},
        {"authorization": "Bearer \xb2"},
        {"accept": "text/html", "cookie": "shop_session=" + "9" * 4400},
    ],
)
def test_odd_headers_and_cookies_are_ignored_or_refused_never_a_500(headers: dict[str, str]) -> None:
    encoded = {name: _raw(value) for name, value in headers.items()}
    for tokens in ([], [TOKEN]):
        with TestClient(
            create_http_app(App(MessageLog(":memory:")), tokens=tokens), raise_server_exceptions=False
        ) as client:
            for method, path in [("GET", "/"), ("GET", "/healthz"), ("POST", "/login"), ("POST", "/commands")]:
                response = client.request(method, path, headers=encoded)
                assert response.status_code < 500, (method, path, response.status_code)


def _raw(value: str) -> bytes:
    """Header bytes as a client may send them: Latin-1 where it can (as "²", a digit to str.isdigit)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def test_head_answers_as_get_and_never_changes_state(client: TestClient, app: App) -> None:
    head = client.request(
        "HEAD",
        "/notes/new",
        content=b"id=x&text=forged",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": "https://evil.example"},
    )
    assert head.status_code in (200, 405) and head.content == b""
    assert app.log.version() == 0
    assert client.head("/healthz").status_code == 200


def test_text_fields_refuse_what_readers_cannot_see() -> None:
    for hidden in ("\x00", "\u202e", "\u2066", "\x1b[31m", "\x85", "\x7f"):
        for check in (visible_line, visible_text):
            with pytest.raises(ValueError):
                check(f"invoice{hidden}fdp.exe")
    assert visible_text("two\r\nlines\tand a tab") == "two\r\nlines\tand a tab"
    for line_break in ("\n", "\u2028"):
        with pytest.raises(ValueError):
            visible_line(f"two{line_break}lines")
    assert visible_line("Zoë — ünïcode, 日本語, emoji 👍") == "Zoë — ünïcode, 日本語, emoji 👍"


# Format characters and fillers the trials used, and the joiners and selectors alone or after Latin letters.
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u061c", "\u034f", "\u180e", "\u3164", "\ufe0f"]
INVISIBLE += ["\U000e0020", "\ufeff", "\u00ad", "\u2800"]


@pytest.mark.parametrize("hidden", INVISIBLE, ids=[f"U+{ord(char):04X}" for char in INVISIBLE])
def test_invisible_format_characters_and_fillers_are_refused(hidden: str) -> None:
    for value in (hidden, f"ab{hidden}cd", f"{hidden}title", f"a {hidden} b"):
        for check in (visible_line, visible_text):
            with pytest.raises(ValueError):
                check(value)


def test_every_unicode_format_character_is_refused_alone() -> None:
    format_characters = [chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf"]
    for char in format_characters:
        with pytest.raises(ValueError):
            visible_line(char)


@pytest.mark.parametrize(
    "value",
    ["👨\u200d👩\u200d👧 family", "❤\ufe0f love", "#\ufe0f\u20e3", "👨🏽\u200d🦰", "می\u200cخواهم", "क्\u200dष",
     "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland"],
)  # fmt: skip
def test_joiners_and_selectors_that_real_text_needs_stay(value: str) -> None:
    assert visible_line(value) == value and visible_text(value) == value


def test_a_host_with_a_delimiter_in_disguise_or_a_value_that_shows_nothing_is_refused() -> None:
    for disguise in ("\uff20", "\uff0f", "\u2215", "\u2044", "\u3002", "\uff0e", "\uff61", "\u2024", "\ufe6b"):
        with pytest.raises(ValueError):
            visible_url(f"https://good.example{disguise}evil.example/")
    for url in ("https://bücher.example/a.b?c=d", "https://例子.中国/", "http://127.0.0.1:8080/x＠y"):
        assert visible_url(url) == url  # a delimiter look-alike after the host is only text
    for nothing in ("\u0301", "\ue000", "\U000f0000\u0301", " \u0302 "):
        for check in (visible_line, visible_text):
            with pytest.raises(ValueError):
                check(nothing)
    assert visible_line("e\u0301") == "e\u0301" and visible_line("\u0301a") == "\u0301a"


# --- secrets from the summary provider ---


@pytest.mark.anyio
async def test_a_key_echoed_by_the_provider_is_redacted_even_across_the_cut_or_a_line_break() -> None:
    key = "sk-" + "a1B2c3D4e5" * 5 + "zz"  # 55 characters
    echoes = [f"{'x' * offset}{key} rest" for offset in range(150, 251)]
    echoes += [f"{'y' * 190}{key[:20]}\n{key[20:]}", f"bad key: {key[:30]}\r\n\t{key[30:]}", f"{key[:9]}…"]
    with FakeSummaryAPI() as api:
        api.queue(*[Reply(401, body=json.dumps({"error": {"message": echo}})) for echo in echoes])
        summarizer = ChatCompletionsSummarizer(SummaryConfig(api_url=api.url, api_key=key, max_attempts=1))
        for echo in echoes:
            with pytest.raises(SummaryError) as refused:
                await summarizer.summarize("text", request_id="r")
            message = str(refused.value)
            assert not any(key[i : i + 8] in message for i in range(len(key) - 7)), (echo, message)
        await summarizer.aclose()


def test_summary_clients_share_one_verifying_tls_context_per_ca_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    shared = tls_context()
    assert tls_context() is shared  # the CA bundle is loaded once, not per client
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    own = tls_context()
    assert own is not shared and own.verify_mode == ssl.CERT_REQUIRED  # another CA setting: its own context
    assert own.cert_store_stats()["x509_ca"] == 0 < shared.cert_store_stats()["x509_ca"]


def key_pieces_in(text: str, key: str, run: int = 8) -> bool:
    """Whether 8 letters and digits of ``key`` in a row are in ``text``, however spaced, folded or reversed."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    folded = "".join(char for char in normal if char.isascii() and char.isalnum())
    letters = "".join(char for char in key.casefold() if char.isalnum())
    pieces = [piece[start : start + run] for piece in (letters, letters[::-1]) for start in range(len(piece) - run + 1)]
    return any(piece in folded for piece in pieces)


@pytest.mark.anyio
async def test_a_key_reformatted_by_the_provider_is_redacted_and_summaries_lose_hidden_characters() -> None:
    key = "sk-proj-Q7vR2mXk9Lp4Wn8Ys3Tb6Hd1Jf5Gc0ZeaB3dE6gH9jK2mN"
    fullwidth = "".join(chr(ord(char) + 0xFEE0) if char.isalnum() else char for char in key)
    separators = ("\u034f", "\ufe0f", "\U000e0020", "\u3164", "\u180e", "\u061c", ".", " | ")
    echoes = [separator.join(key) for separator in separators]
    echoes += [fullwidth, "-".join(key[start : start + 4] for start in range(0, len(key), 4)), key.upper()]
    replies = [Reply(401, body=json.dumps({"error": {"message": f"bad key {echo}"}})) for echo in echoes]
    summaries = [f"Summary: {key[::-1]}.", "Invoice\u202efdp.exe and \x1b[31mred\u200b."]
    with FakeSummaryAPI() as api:
        answers = [Reply(200, body=json.dumps({"choices": [{"message": {"content": text}}]})) for text in summaries]
        api.queue(*replies, *answers)
        summarizer = ChatCompletionsSummarizer(SummaryConfig(api_url=api.url, api_key=key, max_attempts=1))
        for echo in echoes:
            with pytest.raises(SummaryError) as refused:
                await summarizer.summarize("text", request_id="r")
            assert "[redacted]" in str(refused.value) and not key_pieces_in(str(refused.value), key), echo
        assert await summarizer.summarize("text", request_id="r") == "Summary: [redacted]."
        assert await summarizer.summarize("text", request_id="r") == "Invoicefdp.exe and [31mred."
        await summarizer.aclose()


DISGUISED_KEY = "sk-test-9fA3kQ7mZx2LpR8vN4tW6yB1cD5eH0jU"
DISGUISES = {
    "base64": lambda key: base64.b64encode(key.encode()).decode(),
    "base64url": lambda key: base64.urlsafe_b64encode(f"Bearer {key}".encode()).decode().rstrip("="),
    "hex": lambda key: key.encode().hex(),
    "hex pairs": lambda key: key.encode().hex(":"),
    "percent": lambda key: "".join(f"%{byte:02X}" for byte in key.encode()),
    "entities": lambda key: "".join(f"&#{ord(char)};" for char in key),
    "hex entities": lambda key: "".join(f"&#x{ord(char):x};" for char in key),
    "json escapes": lambda key: "".join(f"\\u{ord(char):04x}" for char in key),
    "percent-encoded entities": lambda key: "".join(f"%26%23{ord(char)}%3B" for char in key),
    "rot13": lambda key: codecs.encode(key, "rot13"),
    "a letter every 7": lambda key: "Q".join(key[start : start + 7] for start in range(0, len(key), 7)),
    "a digit after each": lambda key: "".join(f"{char}{index % 10}" for index, char in enumerate(key)),
    "cyrillic look-alikes": lambda key: key.translate(str.maketrans("aeopcxyisABEKMHOPCTX", "аеорсхуіѕАВЕКМНОРСТХ")),
    "greek look-alikes": lambda key: key.translate(str.maketrans("ABEZHIKMNOPTYXov", "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧον")),
    "markup": lambda key: "".join(f"<b>{char}</b>" for char in key),
    "bbcode": lambda key: "".join(f"[i]{char}[/i]" for char in key),
    "doubled": lambda key: "".join(char * 2 for char in key),
    "tripled and reversed": lambda key: "".join(char * 3 for char in reversed(key)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("disguise", DISGUISES)
async def test_a_key_encoded_spaced_or_spelt_in_look_alikes_is_redacted_whole(disguise: str) -> None:
    """Security trial 3 (F3, F4, F15): these forms of the key were stored readable."""
    echo = DISGUISES[disguise](DISGUISED_KEY)
    refusal = json.dumps({"error": {"message": f"Incorrect API key provided: {echo}. See docs."}})
    answer = json.dumps({"choices": [{"message": {"content": f"Summary: {echo} (done)"}}]})
    with FakeSummaryAPI() as api:
        api.queue(Reply(401, body=refusal), Reply(200, body=answer))
        summarizer = ChatCompletionsSummarizer(SummaryConfig(api_url=api.url, api_key=DISGUISED_KEY, max_attempts=1))
        with pytest.raises(SummaryError) as refused:
            await summarizer.summarize("text", request_id="r")
        summary = await summarizer.summarize("text", request_id="r")
        await summarizer.aclose()
    assert str(refused.value).endswith("HTTP 401: Incorrect API key provided: [redacted]. See docs."), echo
    assert summary == "Summary: [redacted] (done)", echo


def test_ordinary_text_is_never_redacted() -> None:
    """The search for disguised keys leaves text without one alone (this app's README, in 4 KB answers)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    answers = [readme[start : start + 4096] for start in range(0, len(readme), 2048)]
    keys = [DISGUISED_KEY, "sk-proj-" + "Q7vR2mXk9Lp4Wn8Ys3Tb6Hd1Jf5Gc0Ze", "abcdefghijklmnopqrstuvwxyz0123456789"]
    for key in keys:
        for answer in answers:
            assert redact(answer, key) == answer, key


# --- serving beyond loopback ---


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert open_bind_refusal(host, [], insecure=False) is None


def test_other_interfaces_need_a_token_or_insecure() -> None:
    refusal = open_bind_refusal("0.0.0.0", [], insecure=False)
    assert refusal is not None and "APP_API_TOKEN" in refusal and "--insecure" in refusal
    assert open_bind_refusal("0.0.0.0", [STRONG_TOKEN], insecure=False) is None
    assert open_bind_refusal("0.0.0.0", [], insecure=True) is None


def test_other_interfaces_refuse_a_short_or_repetitive_token() -> None:
    for weak in ("a", TOKEN, "ab" * 20, f"{STRONG_TOKEN},short"):
        refusal = open_bind_refusal("0.0.0.0", weak.split(","), insecure=True)
        assert refusal is not None and "weak" in refusal and "32" in refusal and TOKEN not in refusal
    assert open_bind_refusal("127.0.0.1", ["a"], insecure=False) is None  # loopback: your own machine


def test_other_interfaces_refuse_a_weak_metrics_token_and_tokens_that_repeat_themselves() -> None:
    """Security trial 3, F13: APP_METRICS_TOKEN=a opened /metrics beyond loopback; 'abcdef' * 6 passed."""
    for weak in ("a", "abcdef" * 6, "abcdefgh" * 4):
        refusal = open_bind_refusal("0.0.0.0", [STRONG_TOKEN], insecure=False, metrics_tokens=[weak])
        assert refusal is not None and "weak APP_METRICS_TOKEN" in refusal and (len(weak) < 2 or weak not in refusal)
        assert "weak APP_API_TOKEN" in (open_bind_refusal("0.0.0.0", [weak], insecure=False) or "")
    assert "repeating itself" in (open_bind_refusal("0.0.0.0", ["abcdef" * 6], insecure=False) or "")
    assert open_bind_refusal("0.0.0.0", [STRONG_TOKEN], insecure=False, metrics_tokens=[STRONG_TOKEN[::-1]]) is None
    for _ in range(200):  # random tokens of the usual kinds always pass
        for token in (secrets.token_hex(16), secrets.token_urlsafe(32)):
            assert open_bind_refusal("0.0.0.0", [token], insecure=False) is None, token
    assert open_bind_refusal("127.0.0.1", [STRONG_TOKEN], insecure=False, metrics_tokens=["a"]) is None


def test_serve_refuses_a_public_interface_without_a_token_in_one_line(tmp_path: Path) -> None:
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {k: v for k, v in os.environ.items() if k != "APP_API_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "shop", "serve", "--host", "0.0.0.0", "--db", str(tmp_path / "app.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "app.db").exists()
