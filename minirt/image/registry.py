"""Talking to an OCI registry: HTTP requests, authentication, retries, redirects.

Lecture idea: "Docker maintains a library of images that you can run" -- the
library is a registry, a plain HTTP service (the OCI distribution spec):
``GET /v2/<name>/manifests/<tag>`` answers with a manifest, ``GET
/v2/<name>/blobs/<digest>`` with a config or a layer.  Everything is named by
digest, so nothing the registry sends needs to be trusted: it is checked.

What this module adds to HTTP is what real registries require:

- **authentication**: a request without credentials gets ``401`` and a
  ``WWW-Authenticate`` challenge.  ``Basic`` means "send user and password
  with every request"; ``Bearer realm=...,service=...,scope=...`` means "ask
  the token server at realm for a token for this scope" (with the user and
  password, or anonymously), then send the token.  Tokens are kept until they
  expire, one per scope.
- **retries**: 429 (too many requests), 5xx and broken connections are tried
  again, after a growing pause (or the server's ``Retry-After``).
- **redirects**: a registry may send blobs from elsewhere (a CDN) with a 307;
  the credentials meant for the registry are never sent to another host.
- **TLS** with the system's CAs (and docker's ``/etc/docker/certs.d/HOST/*.crt``);
  a registry on this machine (``localhost``, ``127.*``, ``::1``) or one named
  with ``--insecure-registry`` may have any certificate or speak plain HTTP,
  as docker allows: HTTPS is tried first, HTTP if the server speaks no TLS.

``Client.request`` is the one way in; pulling (``pull.py``) and pushing build
on it.  http.client, not urllib.request: it is lighter to import, and a
connection is kept per thread for the next request.
"""

import base64
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse

from minirt import lightjson
from minirt.errors import ImageError

RETRIES = 4             # attempts for a request that fails with 429, 5xx or a broken connection
MAX_REDIRECTS = 8
MAX_ERROR_BODY = 64 << 10
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def timeout() -> float:
    """Seconds a registry may stay silent before the request is given up (``$MINIRT_REGISTRY_TIMEOUT``)."""
    try:
        return float(os.environ.get("MINIRT_REGISTRY_TIMEOUT", "") or 30)
    except ValueError:
        raise ImageError("MINIRT_REGISTRY_TIMEOUT must be a number of seconds") from None


def is_insecure(registry: str, insecure=()) -> bool:
    """Docker's rule: a registry on this machine, or one named with --insecure-registry,
    may be reached without a trusted certificate, or over plain HTTP."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return host in LOCAL_HOSTS or host.startswith("127.") or registry in insecure or host in insecure


class Client:
    """Requests to one registry, with its credentials (``(user, password)`` or None)."""

    def __init__(self, registry: str, credentials=None, insecure=()):
        self.registry = registry
        self.base = "https://" + registry
        self.insecure = is_insecure(registry, insecure)  # then plain HTTP if HTTPS fails
        self.credentials = credentials
        self.timeout = timeout()
        self._scheme = None       # the registry's challenge: ("basic"|"bearer", params)
        self._tokens = {}         # scope -> (token, expires at)
        self._lock = threading.Lock()
        self._local = threading.local()

    # --- the one way in -------------------------------------------------------

    def request(self, method: str, path: str, *, scope: str, headers=None, what: str,
                ok=(200,), body: bytes | None = None) -> http.client.HTTPResponse:
        """``method path`` (under /v2/, or a URL the registry gave: an upload's
        Location), authenticated for ``scope`` (several: separated by spaces),
        with ``body`` (sent again on a retry); the response once its status is in
        ``ok`` (read it to the end or close it).  Retries, redirects and
        authentication happen here; any other answer is an ImageError naming ``what``."""
        resp = self._attempts(method, self._url(path), headers or {}, scope, what, ok, body)
        if resp.status == 401 and 401 not in ok:
            challenge = resp.getheader("WWW-Authenticate", "")
            _discard(resp)
            self._authenticate(challenge, scope, what)
            resp = self._attempts(method, self._url(path), headers or {}, scope, what, ok, body)
            if resp.status == 401 and 401 not in ok:
                raise ImageError(f"{what}: unauthorized{_error_message(resp)}{self._hint()}")
        return resp

    def _url(self, path):
        return path if path.startswith(("https://", "http://")) else self.base + path  # base: maybe plain HTTP by now

    def _attempts(self, method, url, headers, scope, what, ok, body=None):
        """The response to the request (ok, or 401), tried again on 429, 5xx and
        broken connections; an ImageError for any other status.  With ``scope``
        None, the registry's credentials are not added (a token server's request)."""
        for attempt in range(RETRIES):
            pause = 0.2 * 2 ** attempt
            try:
                resp = self._follow(method, url, headers, scope, what, body)
            except ssl.SSLError as e:
                if not (self.insecure and url.startswith(self.base) and self.base.startswith("https:")):
                    trust = isinstance(e, ssl.SSLCertVerificationError)
                    raise ImageError(f"{what}: TLS: {getattr(e, 'verify_message', None) or e.reason or e}"
                                     + (f" (--insecure-registry {self.registry} if you trust it)" if trust else "")
                                     ) from None
                self.base = "http://" + self.registry  # no TLS there: plain HTTP, from now on
                url = self.base + url[len("https://" + self.registry):]
                last, pause = f"{what}: {e}", 0
            except (OSError, http.client.HTTPException) as e:
                last = f"{what}: {_why(e)}"
            else:
                if resp.status in ok or resp.status == 401:
                    return resp
                if resp.status != 429 and resp.status < 500:
                    message = _error_message(resp)
                    if resp.status == 403:
                        raise ImageError(f"{what}: denied{message}{self._hint()}")
                    if resp.status == 404:
                        raise ImageError(f"{what}: not found{message}")
                    raise ImageError(f"{what}: {resp.status} {resp.reason}{message}")
                pause = _retry_after(resp, pause)
                last = f"{what}: {resp.status} {resp.reason}{_error_message(resp)}"
            if attempt < RETRIES - 1:
                time.sleep(pause)
        raise ImageError(f"{last} (after {RETRIES} attempts)")

    def _hint(self) -> str:
        return "" if self.credentials else f" (log in first: minirt login {self.registry})"

    def _follow(self, method, url, headers, scope, what, body=None):
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            sent = dict(headers)
            if parts.netloc == self.registry and scope is not None:  # credentials only for the registry itself
                sent.update(self._authorization(scope))
            try:
                resp = self._send(method, parts, sent, body)
            except socket.gaierror as e:  # no such host: asking again will not make one
                if e.errno == socket.EAI_AGAIN:
                    raise
                raise ImageError(f"{what}: cannot look up {parts.hostname}: {e.strerror}") from None
            if resp.status not in (301, 302, 303, 307, 308):
                return resp
            location = resp.getheader("Location")
            _discard(resp)
            if not location:
                raise ImageError(f"{what}: redirect without a Location")
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ImageError(f"{what}: redirected to {url[:80]!r}")
        raise ImageError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def _send(self, method, parts, headers, body=None):
        key = (parts.scheme, parts.netloc)
        conns = self._local.__dict__.setdefault("conns", {})
        conn, last = conns.pop(key, (None, None))
        if conn is not None and not (last.isclosed() and last.length == 0):
            conn.close()  # its last body was not read to the end: the rest would come first
            conn = None
        if conn is None:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                                   context=self._tls(parts.netloc))
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, path, body, headers={"User-Agent": "minirt", **headers})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if not resp.will_close:
            conns[key] = (conn, resp)  # for the next request, once this body is read
        return resp

    def _tls(self, netloc):
        """Certificates checked against the system's CAs and docker's
        /etc/docker/certs.d/HOST[:PORT]/*.crt; not at all for an insecure registry."""
        if self.insecure and netloc == self.registry:
            # Nothing is checked: no CA store to load (create_default_context's 40 ms).
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            return context
        context = ssl.create_default_context()
        extra = os.path.join("/etc/docker/certs.d", netloc)
        for name in sorted(os.listdir(extra)) if os.path.isdir(extra) else ():
            if name.endswith(".crt"):
                context.load_verify_locations(os.path.join(extra, name))
        return context

    # --- authentication -----------------------------------------------------

    def _authorization(self, scope):
        if self._scheme is None:
            return {}
        kind, params = self._scheme
        if kind == "basic":
            return {"Authorization": "Basic " + _basic(self.credentials)} if self.credentials else {}
        with self._lock:
            token, expires = self._tokens.get(scope, (None, 0))
        if token is None or time.monotonic() >= expires:
            token = self._token(params, scope)
        return {"Authorization": "Bearer " + token}

    def _authenticate(self, challenge: str, scope: str, what: str) -> None:
        kind, _, rest = challenge.partition(" ")
        kind = kind.lower()
        if kind not in ("basic", "bearer"):
            raise ImageError(f"{what}: unauthorized (the registry asks for {challenge[:60]!r} "
                             f"authentication, which minirt does not speak)")
        if kind == "basic" and not self.credentials:
            raise ImageError(f"{what}: unauthorized{self._hint()}")
        params = parse_challenge(rest)
        if kind == "bearer" and not params.get("realm"):
            raise ImageError(f"{what}: the registry's Bearer challenge names no realm")
        self._scheme = (kind, params)
        with self._lock:
            self._tokens.pop(scope, None)

    def _token(self, params: dict, scope: str) -> str:
        """A token for ``scope`` from the realm's token server (cached until it expires)."""
        query = [("service", params.get("service", ""))] + [("scope", s) for s in scope.split()]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not is_insecure(parts.netloc):
            raise ImageError(f"{self.registry}: token server {params['realm']!r} is not https")
        headers = {"Authorization": "Basic " + _basic(self.credentials)} if self.credentials else {}
        what = f"{self.registry}: token server"
        resp = self._attempts("GET", url, headers, None, what, ok=(200, 403))
        body = resp.read(MAX_ERROR_BODY + 1)
        resp.close()
        if resp.status in (401, 403):
            raise ImageError(f"{what}: unauthorized{self._hint()}")
        try:
            answer = lightjson.loads(body) if len(body) <= MAX_ERROR_BODY else None
        except (ValueError, UnicodeDecodeError):
            answer = None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise ImageError(f"{what}: {resp.status} {resp.reason}, no token")
        seconds = answer.get("expires_in")
        seconds = seconds if isinstance(seconds, int) and seconds > 0 else 60  # the spec's default
        with self._lock:
            # a little early: the token must not expire on its way to the registry
            self._tokens[scope] = (token, time.monotonic() + max(seconds - 5, 1))
        return token

    def close(self) -> None:
        for conn, _ in self._local.__dict__.get("conns", {}).values():
            conn.close()


def parse_challenge(text: str) -> dict:
    """``realm="https://x/token",service="reg",scope="repository:a:pull,push"`` -> dict."""
    params, i, n = {}, 0, len(text)
    while i < n:
        while i < n and text[i] in ", ":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == '"':
            value, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            params[key], i = "".join(value), i + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            params[key], i = text[i:end].strip(), end
    return params


def _basic(credentials) -> str:
    return base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()


def _discard(resp) -> None:
    try:
        resp.read(MAX_ERROR_BODY)
    finally:
        resp.close()


def _error_message(resp) -> str:
    """``: <message>`` from an OCI error body ({"errors": [{"code", "message"}]}), or ""."""
    try:
        body = resp.read(MAX_ERROR_BODY)
        errors = lightjson.loads(body).get("errors")
        first = errors[0]
        text = f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except Exception:
        text = ""
    finally:
        resp.close()
    text = " ".join(text.split())  # one line, whatever the server wrote
    return f" ({text[:200]})" if text else ""


def _retry_after(resp, default: float) -> float:
    try:
        return min(max(float(resp.getheader("Retry-After")), 0), 10)
    except (TypeError, ValueError):
        return default


def _why(e: BaseException) -> str:
    if isinstance(e, TimeoutError) or "timed out" in str(e):
        return "no answer (timed out)"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
