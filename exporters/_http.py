"""HTTP options shared by the Alertmanager and Grafana clients: auth, TLS, timeouts.

Secrets (password, bearer token, API key) live only here and in the httpx
client; :func:`redact_url` and ``__repr__`` keep them out of every log line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

_SECRET = "***"


def redact_url(url: str) -> str:
    """``http://user:pw@host/x?token=..`` -> ``http://***@host/x`` (userinfo and query removed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = _SECRET + "@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def suppressed():
    """Context manager: our own HTTP calls are not traced by HTTP-client instrumentations (no self-tracing)."""
    import contextlib

    from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

    stack = contextlib.ExitStack()
    stack.enter_context(suppress_instrumentation())
    stack.enter_context(suppress_http_instrumentation())
    return stack


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """Move ``user:password@`` out of a URL: returns (url without it, (user, password) or None)."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), (unquote(user), unquote(password))


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what}: {redact_url(url)!r} is not an http(s) URL such as http://127.0.0.1:9093")
    return url.rstrip("/")


@dataclass(frozen=True)
class HttpOptions:
    """Authentication and TLS for one backend.

    ``bearer_token`` and ``username``/``password`` are exclusive. ``ca_file``
    verifies the server; ``cert_file``/``key_file`` present a client
    certificate; ``insecure_skip_verify`` disables verification (tests only).
    """

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 5.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def validate(self) -> HttpOptions:
        if self.bearer_token and (self.username or self.password):
            raise ValueError("choose one of bearer token or basic auth (username/password), not both")
        if (self.password is not None) and not self.username:
            raise ValueError("basic auth needs a username with the password")
        if self.key_file and not self.cert_file:
            raise ValueError("a client key file needs its certificate file (cert_file)")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        return self

    def __repr__(self) -> str:  # never print secrets
        auth = "bearer" if self.bearer_token else ("basic" if self.username else "none")
        return f"HttpOptions(auth={auth}, ca_file={self.ca_file!r}, client_cert={bool(self.cert_file)}, " \
               f"insecure_skip_verify={self.insecure_skip_verify}, timeout_s={self.timeout_s})"

    def client(self, **kwargs):
        """A configured ``httpx.Client``."""
        import httpx

        verify: bool | ssl.SSLContext = True
        if self.insecure_skip_verify or self.ca_file or self.cert_file:
            verify = ssl.create_default_context(cafile=self.ca_file)
            if self.insecure_skip_verify:
                verify.check_hostname = False
                verify.verify_mode = ssl.CERT_NONE
            if self.cert_file:  # client certificate (mutual TLS), also with insecure_skip_verify
                verify.load_cert_chain(self.cert_file, self.key_file)
        headers = {"User-Agent": "otel-llm", **self.headers}
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        auth = httpx.BasicAuth(self.username, self.password or "") if self.username else None
        return httpx.Client(verify=verify, auth=auth, headers=headers, timeout=self.timeout_s,
                            follow_redirects=False, **kwargs)
