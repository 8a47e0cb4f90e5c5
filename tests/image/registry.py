"""A real OCI registry for the tests: Debian's docker-registry (distribution 2.8).

``Registry(tmp, auth=None|"basic"|"token", tls=False)`` starts one on 127.0.0.1 at a free
port, with its own config and storage under ``tmp``; ``stop()`` ends it (and
the token server).  ``push(archive, name)`` copies an image archive into it
with skopeo, as a user would.

- ``tls``: HTTPS only, with a self-signed certificate.
- ``basic``: an htpasswd file (bcrypt, the only hash distribution accepts)
  with ``USER``/``PASSWORD``.
- ``token``: the registry trusts a self-made certificate; a token server run
  here, in a thread, hands out JWTs signed with its key (``openssl dgst``) to
  ``USER``/``PASSWORD`` (or anonymously for pulls with ``anonymous_pull``),
  for the scope asked, valid ``token_seconds``.  ``token_requests`` counts them.

``Proxy(registry)`` stands in front of one and notes every request (method,
path, status): what a client asked the registry for, which its log does not
say exactly.  ``serve(handler, n)`` starts n servers of a hand-made registry
(the faulty ones, a ``Handler`` each); ``minirt(root, ...)`` runs the CLI with its own logins.
"""

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

USER, PASSWORD = "student", "s3cret pass"
SERVICE, ISSUER = "minirt-test-registry", "minirt-test-issuer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def minirt(root, *args, input=None):
    """``python -m minirt`` with its state under ``root``/state and logins of its own."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(root / "cfg"), DOCKER_CONFIG=str(root / "docker"))
    return subprocess.run([sys.executable, "-m", "minirt", "--root", str(root / "state"), *args],
                          capture_output=True, text=True, input=input, timeout=120, env=env)


def ok(r):
    assert r.returncode == 0 and "Traceback" not in r.stderr, r
    return r.stdout


class Handler(http.server.BaseHTTPRequestHandler):
    """A hand-made registry's requests: ``reply`` answers one."""
    protocol_version = "HTTP/1.1"

    def reply(self, code, body, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(handler, n):
    """n HTTP servers of ``handler`` on free ports, in threads: [(host:port, stop)]."""
    out = []
    for _ in range(n):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.handle_error = lambda *args: None  # a client that gave up on a stalled answer
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()

        def stop(httpd=httpd, thread=thread):
            httpd.shutdown()
            httpd.server_close()
            thread.join()

        out.append((f"127.0.0.1:{httpd.server_address[1]}", stop))
    return out


class TokenServer:
    def __init__(self, tmp, seconds=60):
        self.key, self.cert = os.path.join(tmp, "token.key"), os.path.join(tmp, "token.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=minirt-test-token"],
                       check=True, capture_output=True)
        pem = open(self.cert).read()
        self.x5c = "".join(pem.split("-----")[2].split())  # the DER, base64
        self.seconds, self.requests, self.anonymous_pull = seconds, [], False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scopes = query.get("scope", [])
                auth = self.headers.get("Authorization", "")
                good = auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth and not good or not auth and not server.anonymous_pull:
                    self.send_response(401)
                    self.end_headers()
                    return
                token = server.token(query.get("service", [""])[0], scopes, push=good)
                body = json.dumps({"token": token, "expires_in": server.seconds}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        host, self.stop = serve(Handler, 1)[0]
        self.url = f"http://{host}/token"

    def token(self, service, scopes, push):
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, name, actions = one.split(":", 2) if one.count(":") >= 2 else ("", "", "")
                allowed = [a for a in actions.split(",") if a == "pull" or push]
                access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": USER, "aud": service, "exp": now + self.seconds, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing}.{_b64url(sig)}"


class Proxy:
    """An HTTP server that passes each request on to ``target`` (host:port) and
    notes it in ``requests``, as (method, path, status)."""

    def __init__(self, target):
        import http.client

        self.requests = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(target, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():  # Host too: the registry's Locations point here
                    conn.putheader(k, v)
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                proxy.requests.append((self.command, self.path, resp.status))
                self.send_response_only(resp.status)
                for k, v in resp.getheaders():  # the body is sent whole: its length is known
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_any

            def log_message(self, *args):
                pass

        self.host, self.stop = serve(Handler, 1)[0]


class Registry:
    def __init__(self, tmp, auth=None, tls=False):
        self.tmp, self.auth, self.tokens = str(tmp), auth, None
        self.user, self.password = USER, PASSWORD
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": os.path.join(self.tmp, "data")},
                              "delete": {"enabled": True}},
                  "http": {"addr": self.host}}
        if auth == "basic":
            import bcrypt
            path = os.path.join(self.tmp, "htpasswd")
            with open(path, "w") as f:
                f.write(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()}\n")
            config["auth"] = {"htpasswd": {"realm": "minirt-test", "path": path}}
        elif auth == "token":
            self.tokens = TokenServer(self.tmp)
            config["auth"] = {"token": {"realm": self.tokens.url, "service": SERVICE, "issuer": ISSUER,
                                        "rootcertbundle": self.tokens.cert}}
        if tls:  # a certificate nobody trusts
            key, cert = os.path.join(self.tmp, "tls.key"), os.path.join(self.tmp, "tls.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            config["http"]["tls"] = {"certificate": cert, "key": key}
        self.tls = tls
        path = os.path.join(self.tmp, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.log = open(os.path.join(self.tmp, "registry.log"), "w+")
        self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        import http.client

        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}: {self.log.read()[-2000:]}")
            try:
                if self.tls:
                    import ssl
                    c = http.client.HTTPSConnection(self.host, timeout=2, context=ssl._create_unverified_context())
                else:
                    c = http.client.HTTPConnection(self.host, timeout=2)
                c.request("GET", "/v2/")
                c.getresponse().read()
                c.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def creds(self):
        return ["--dest-creds", f"{USER}:{PASSWORD}"] if self.auth else []

    def push(self, source, name, *extra):
        """skopeo copy SOURCE (a transport:path) to NAME in this registry; returns NAME's full reference."""
        ref = f"{self.host}/{name}"
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", *self.creds(), *extra,
                        source, f"docker://{ref}"], check=True, capture_output=True)
        return ref

    def inspect(self, name, raw=False):
        creds = ["--creds", f"{USER}:{PASSWORD}"] if self.auth else []
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *creds, *(["--raw"] if raw else []),
                              f"docker://{self.host}/{name}"], check=True, capture_output=True).stdout
        return json.loads(out)

    def delete_blob(self, name, digest):
        """Take the blob ``digest`` out of repository ``name``: a later GET of it is a 404."""
        import http.client

        c = http.client.HTTPConnection(self.host, timeout=10)
        c.request("DELETE", f"/v2/{name}/blobs/{digest}")
        status = c.getresponse().status
        c.close()
        assert status == 202, status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.tokens:
            self.tokens.stop()
        shutil.rmtree(os.path.join(self.tmp, "data"), ignore_errors=True)
