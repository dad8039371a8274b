"""Real servers for the push tests, on loopback only: Debian's `docker-registry`
(distribution 2.8.2), a TCP proxy that injects faults in front of it, a JWT
token server, a fake `docker-credential-*` helper, and ways to look at what a
registry holds (skopeo, plain HTTP).  Standard library only, plus the tools
`make deps` installs (docker-registry, htpasswd, openssl, skopeo).

    with Registry(tmp) as reg:                 # plain http on 127.0.0.1:PORT
        with FaultProxy(reg) as proxy:
            proxy.cut(after=65536, method="PATCH")
            ... push to proxy.host ...
        assert reg.count("PATCH") == 2

Every process started here is stopped by its PID when its `with` block ends
(also on an exception), by `stop()`, and at interpreter exit; it also dies
with the thread that started it (setpriv --pdeathsig), so a killed test run
leaves nothing behind.
"""
import atexit
import base64
import collections
import contextlib
import hashlib
import http.client as httpclient
import http.server as httpserver
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15
_live = set()          # every Popen started here and not yet reaped
_own_dirs = set()      # directories made here for objects given no tmp


def free_port():
    """A TCP port free on 127.0.0.1 right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _spawn(argv, log_path, env=None):
    logf = open(log_path, "ab")
    try:
        # setpriv execs argv (same PID) with SIGKILL as its parent-death signal
        p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL"] + [str(a) for a in argv],
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
    finally:
        logf.close()
    _live.add(p)
    return p


def _end(p, sig=signal.SIGTERM, grace=5):
    """Signals p by its PID, waits (SIGKILL after grace seconds), reaps it."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(grace)
    _live.discard(p)


@atexit.register
def _end_all():
    for p in list(_live):
        _end(p, signal.SIGKILL)
    for d in list(_own_dirs):
        shutil.rmtree(d, ignore_errors=True)


class _Managed:
    """`with` closes; a directory made for the object (no tmp given) goes too."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _remove_own_dir(self):
        if getattr(self, "_own_dir", False):
            shutil.rmtree(self.dir.parent, ignore_errors=True)
            _own_dirs.discard(self.dir.parent)


def _base_dir(tmp, prefix):
    """tmp, or a new temporary directory removed by close() or at exit."""
    if tmp is not None:
        return Path(tmp)
    d = Path(tempfile.mkdtemp(prefix=prefix))
    _own_dirs.add(d)
    return d


def _yaml(v):
    """YAML flow style for the config: JSON is valid YAML."""
    return json.dumps(v)


# ---------------------------------------------------------------- HTTP helpers

Response = collections.namedtuple("Response", "status headers body")
# What a request cut or refused on the way raises.
CONNECTION_ERRORS = (OSError, httpclient.HTTPException)


def http(method, url, body=None, headers=None, timeout=30, context=None):
    """One request with http.client; never raises on an HTTP status.
    body: bytes, or an iterable of bytes sent with chunked transfer encoding.
    context: the ssl.SSLContext for an https URL (default: the system CAs).
    Returns Response(status, headers (an http.client.HTTPMessage), body bytes)."""
    u = urllib.parse.urlsplit(url)
    assert u.hostname in (LOOPBACK, "::1", "localhost"), "not loopback: %s" % url
    if u.scheme == "https":
        conn = httpclient.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                          context=context or ssl.create_default_context())
    else:
        conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        hdrs = dict(headers or {})
        chunked = body is not None and not isinstance(body, (bytes, bytearray))
        conn.request(method, path, body=body, headers=hdrs, encode_chunked=chunked)
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def basic_auth(user, password):
    """The Authorization header value for Basic credentials."""
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ TLS

TLS = collections.namedtuple("TLS", "ca_cert ca_key cert key client_cert client_key")


def make_tls(directory):
    """A test CA, a server certificate for 127.0.0.1 and localhost, and a
    client certificate, all signed by that CA (P-256 keys), made with openssl into
    directory.  Returns TLS(ca_cert, ca_key, cert, key, client_cert, client_key)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    t = TLS(*(d / n for n in ("ca.crt", "ca.key", "server.crt", "server.key",
                              "client.cert", "client.key")))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]   # fast to make
    _openssl("req", "-x509", *ec, "-nodes", "-keyout", t.ca_key,
             "-out", t.ca_cert, "-days", "2", "-subj", "/CN=layersplit test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for cert, key, cn, ext in (
            (t.cert, t.key, "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
             "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
            (t.client_cert, t.client_key, "layersplit test client",
             "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")):
        csr, extfile = d / (key.name + ".csr"), d / (key.name + ".ext")
        extfile.write_text(ext)
        _openssl("req", *ec, "-nodes", "-keyout", key, "-out", csr,
                 "-subj", "/CN=" + cn)
        _openssl("x509", "-req", "-in", csr, "-CA", t.ca_cert, "-CAkey", t.ca_key,
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extfile)
    return t


# ------------------------------------------------------------------ registry

Request = collections.namedtuple("Request", "method path status")


class Registry(_Managed):
    """Debian's docker-registry on 127.0.0.1:PORT with its own storage and config.

    Registry(tmp, htpasswd={"user": "password"})  Basic auth (bcrypt via htpasswd)
    Registry(tmp, token=TokenServer(...))         Bearer tokens from that server
    Registry(tmp, port=N)                          that port (default: a free one)
    Registry(tmp, tls=True)                        https with a certificate from a test
                                                   CA (.tls, .ssl_context(), .cert_dir())
    Registry(tmp, client_certs=True)               https that requires a client
                                                   certificate from that CA
    Attributes: host ("127.0.0.1:PORT"), port, url ("http://host"), dir (its
    working directory: config.yml, data/, registry.log), pid.
    """

    def __init__(self, tmp=None, htpasswd=None, token=None, secret="layersplit-test-secret",
                 port=None, tls=False, client_certs=False, start=True):
        self._own_dir = tmp is None
        base = _base_dir(tmp, "registry-")
        self.dir = Path(tempfile.mkdtemp(prefix="registry-", dir=base))
        self.data = self.dir / "data"
        self.log_path = self.dir / "registry.log"
        self.config_path = self.dir / "config.yml"
        self.htpasswd, self.token, self.secret = htpasswd, token, secret
        self.client_certs = client_certs
        self.tls = make_tls(self.dir / "tls") if tls or client_certs else None
        self.proc = None
        self.port = port
        self._sync = 0
        if start:
            self.start()

    @property
    def host(self):
        return "%s:%d" % (LOOPBACK, self.port)

    @property
    def url(self):
        return ("https://" if self.tls else "http://") + self.host

    def ssl_context(self):
        """For https: trusts the registry's CA, presents the client certificate."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        if self.client_certs:
            ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return ctx

    def cert_dir(self, path):
        """A --cert-dir as skopeo and containers read it: ca.crt, and with
        client_certs client.cert + client.key."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.tls.ca_cert, path / "ca.crt")
        if self.client_certs:
            shutil.copy(self.tls.client_cert, path / "client.cert")
            shutil.copy(self.tls.client_key, path / "client.key")
        return path

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _write_config(self):
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.data)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": self.secret},
        }
        if self.tls:
            cfg["http"]["tls"] = {"certificate": str(self.tls.cert), "key": str(self.tls.key)}
            if self.client_certs:
                cfg["http"]["tls"]["clientcas"] = [str(self.tls.ca_cert)]
        if self.htpasswd:
            path = self.dir / "htpasswd"
            with open(path, "w") as f:
                for user, password in self.htpasswd.items():
                    out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    f.write(out.stdout.decode().strip() + "\n")
            cfg["auth"] = {"htpasswd": {"realm": "layersplit-test", "path": str(path)}}
        elif self.token:
            cfg["auth"] = {"token": self.token.registry_config()}
        self.config_path.write_text(_yaml(cfg) + "\n")

    def start(self, timeout=START_TIMEOUT):
        """Starts the registry (again, after stop() or kill(): same port and
        storage, so open upload sessions may survive) and waits until
        GET /v2/ answers.  Raises RuntimeError with the log on failure."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        tries = 1 if self.port else 3    # a fresh port may be taken in between
        for attempt in range(tries):
            if not self.port or attempt:
                self.port = free_port()
            self._write_config()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.proc = _spawn(["docker-registry", "serve", self.config_path], self.log_path)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    http("GET", self.url + "/v2/", timeout=1, context=self.ssl_context(),
                         headers={"User-Agent": "layersplit-test-sync/start"})
                    return self
                except OSError:
                    time.sleep(0.05)
            log = self.log_path.read_bytes()[offset:].decode(errors="replace")
            _end(self.proc, signal.SIGKILL)
            if "address already in use" not in log:
                break
        raise RuntimeError("docker-registry did not start on %s within %ss; its log:\n%s"
                           % (self.host, timeout, log[-4000:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM by PID (SIGKILL after 5 s), reaped; start() may follow.
        close() (and the end of `with`) also removes the directory when
        Registry() made it (tmp=None)."""
        if self.proc:
            _end(self.proc)

    def kill(self):
        """SIGKILL by PID, reaped at once: a registry that dies mid-request."""
        if self.proc:
            _end(self.proc, signal.SIGKILL)

    def close(self):
        self.stop()
        self._remove_own_dir()

    def log(self):
        """The registry's whole log (JSON lines) as text."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self, since=0):
        """Every request the registry answered, in order: [Request(method,
        path, status)], path without its query.  While the registry runs, a
        marker request is made first and waited for, so requests answered
        before this call are all there.  401s are there (2.8.2 logs them
        without a status; they are read as 401); a request cut in the middle
        of its body is not (2.8.2 logs nothing for it).  since: a mark()
        taken before, to see only the requests after it."""
        marker = None
        if self.alive():
            self._sync += 1
            marker = "layersplit-test-sync/%d" % self._sync
            http("GET", self.url + "/v2/", headers={"User-Agent": marker}, timeout=5,
                 context=self.ssl_context())
            deadline = time.monotonic() + 5
            while marker not in self.log() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.02)   # a line still being written by a busy registry
        out = []
        for line in self.log().splitlines():
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if "http.request.method" not in e:
                continue
            if "http.response.status" in e:
                status = int(e["http.response.status"])
            elif str(e.get("msg", "")).startswith("error authorizing context"):
                status = 401          # 2.8.2 logs its 401s this way, without a status
            else:
                continue
            if str(e.get("http.request.useragent", "")).startswith("layersplit-test-sync/"):
                continue
            path = urllib.parse.urlsplit(e.get("http.request.uri", "")).path
            out.append(Request(e["http.request.method"], path, status))
        return out[since:]

    def mark(self):
        """A point in the request log for requests(since=) and count(since=):
        one registry shared by several tests counts each test's own."""
        return len(self.requests())

    def count(self, method=None, path=None, status=None, since=0):
        """How many requests match: method, a regex searched in the path,
        status; after the mark `since`."""
        return sum(1 for r in self.requests(since)
                   if (method is None or r.method == method)
                   and (path is None or re.search(path, r.path))
                   and (status is None or r.status == status))

    def stored_blobs(self):
        """The digests of every blob in the storage (all repositories)."""
        root = self.data / "docker/registry/v2/blobs/sha256"
        return sorted("sha256:" + p.name for p in root.glob("*/*") if (p / "data").exists())

    def upload_dirs(self):
        """Upload sessions still open in the storage (repository/uuid)."""
        root = self.data / "docker/registry/v2/repositories"
        return sorted(str(p.relative_to(root)) for p in root.glob("**/_uploads/*"))


# ----------------------------------------------------- a client for the checks

class Client:
    """Plain-HTTP registry calls to check a registry or seed it, with no
    layersplit involved.  auth: an Authorization header value or None;
    context: an ssl.SSLContext for https (Registry.ssl_context())."""

    def __init__(self, base_url, auth=None, context=None):
        self.base, self.auth, self.context = base_url.rstrip("/"), auth, context

    def request(self, method, path_or_url, body=None, headers=None):
        url = path_or_url if "://" in path_or_url else self.base + path_or_url
        h = dict(headers or {})
        if self.auth:
            h.setdefault("Authorization", self.auth)
        return http(method, url, body=body, headers=h, context=self.context)

    def head_blob(self, repo, digest):
        return self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest))

    def get_blob(self, repo, digest):
        return self.request("GET", "/v2/%s/blobs/%s" % (repo, digest))

    def get_manifest(self, repo, ref, accept=None):
        accept = accept or ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json"])
        return self.request("GET", "/v2/%s/manifests/%s" % (repo, ref), headers={"Accept": accept})

    def _location(self, r):
        return urllib.parse.urljoin(self.base + "/", r.headers["Location"])

    def upload_blob(self, repo, data, stream=False):
        """POST, then a monolithic PUT (or one chunked PATCH + PUT with
        stream=True).  Returns the digest; asserts 201."""
        digest = sha256_digest(data)
        r = self.request("POST", "/v2/%s/blobs/uploads/" % repo)
        assert r.status == 202, "POST upload: %d %r" % (r.status, r.body)
        loc = self._location(r)
        if stream:
            r = self.request("PATCH", loc, body=iter([data[i:i + 65536]
                                                     for i in range(0, len(data), 65536)]))
            assert r.status == 202, "PATCH: %d %r" % (r.status, r.body)
            loc, data = self._location(r), b""
        sep = "&" if "?" in loc else "?"
        r = self.request("PUT", loc + sep + "digest=" + digest, body=data,
                         headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, "PUT blob: %d %r" % (r.status, r.body)
        return digest

    def put_manifest(self, repo, ref, manifest_bytes,
                     media_type="application/vnd.docker.distribution.manifest.v2+json"):
        r = self.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), body=manifest_bytes,
                         headers={"Content-Type": media_type})
        assert r.status == 201, "PUT manifest: %d %r" % (r.status, r.body)
        return r.headers["Docker-Content-Digest"]

    def push_image(self, repo, tag, layers, config=None):
        """A schema 2 image from layer blobs (bytes, e.g. gzip data) and a
        config (bytes; a minimal one by default).  Returns the manifest digest."""
        if config is None:
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cfg = {"mediaType": "application/vnd.docker.container.image.v1+json",
               "size": len(config), "digest": self.upload_blob(repo, config)}
        ls = [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
               "size": len(b), "digest": self.upload_blob(repo, b)} for b in layers]
        manifest = json.dumps({"schemaVersion": 2, "mediaType":
                               "application/vnd.docker.distribution.manifest.v2+json",
                               "config": cfg, "layers": ls}).encode()
        return self.put_manifest(repo, tag, manifest)


# ------------------------------------------------------------------ skopeo

def skopeo(*args, authfile=None, timeout=120):
    """skopeo with args (plain http allowed through the options given);
    asserts success, returns stdout bytes."""
    argv = ["skopeo"] + [str(a) for a in args]
    env = dict(os.environ)
    if authfile:
        env["REGISTRY_AUTH_FILE"] = str(authfile)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout, env=env)
    assert p.returncode == 0, "%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stderr.decode(errors="replace").strip())
    return p.stdout


def _creds(creds, prefix=""):
    return ["--%screds" % prefix, "%s:%s" % tuple(creds)] if creds else []


def _tls(cert_dir, prefix=""):
    """Plain http or unverified TLS, or TLS verified with cert_dir (ca.crt,
    client.cert/client.key)."""
    if cert_dir:
        return ["--%scert-dir" % prefix, str(cert_dir), "--%stls-verify=true" % prefix]
    return ["--%stls-verify=false" % prefix]


def skopeo_inspect_raw(ref, creds=None, authfile=None, cert_dir=None):
    """The manifest bytes at docker://REF (HOST/REPO:TAG), as stored."""
    return skopeo("inspect", "--raw", *_tls(cert_dir), *_creds(creds),
                  "docker://" + ref, authfile=authfile)


def skopeo_inspect_config(ref, creds=None, authfile=None, cert_dir=None):
    """The image config at docker://REF, parsed."""
    return json.loads(skopeo("inspect", "--config", "--raw", *_tls(cert_dir),
                             *_creds(creds), "docker://" + ref, authfile=authfile))


def skopeo_copy_to_oci(ref, oci_dir, tag="image", creds=None, authfile=None, cert_dir=None):
    """skopeo copy docker://REF oci:DIR:TAG (layers as stored, digests kept)."""
    skopeo("copy", "--quiet", *_tls(cert_dir, "src-"), *_creds(creds, "src-"),
           "docker://" + ref, "oci:%s:%s" % (oci_dir, tag), authfile=authfile)
    return Path(oci_dir)


# ------------------------------------------------------------ the fault proxy

Event = collections.namedtuple("Event", "kind method path detail")


class _Rule:
    def __init__(self, kind, times, method, path, skip, **kw):
        self.kind, self.times, self.method, self.path, self.skip = kind, times, method, path, skip
        self.kw = kw

    def matches(self, method, path):
        return ((self.method is None or self.method == method)
                and (self.path is None or re.search(self.path, path) is not None))


class _Reader:
    """Buffered reads from a socket with a per-read time limit."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def line(self, limit=65536):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        i = self.buf.index(b"\r\n") + 2
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def some(self, n):
        if not self.buf:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Cut(Exception):
    pass


class FaultProxy(_Managed):
    """A TCP proxy on 127.0.0.1 in front of a Registry (or any loopback
    HOST:PORT) that sees each HTTP/1.1 request and, by rules set beforehand,
    forwards it or fails it.  Each rule fires for the next `times` requests
    that match (method, a regex searched in the path) after letting `skip`
    matching ones through:

      cut(after=N)             forward N bytes of the request (headers+body),
                               then cut the connection (RST; FIN with reset=False);
                               a request shorter than N is forwarded whole and
                               the connection cut before the answer
      respond(500|503|429...)  answer that status itself (registry-style JSON
                               error, or `body`; extra headers such as
                               Retry-After), after reading the request body,
                               then close
      stall()                  read what comes and never answer, until the
                               client gives up or the proxy stops
      hold(after=N)            forward N bytes, then wait for release() (at
                               most `timeout` s) before forwarding the rest:
                               wait("hold") then signal or kill something
                               in the middle of an upload
      throttle(rate)           forward the request at `rate` bytes/s

    `events` records what it did (Event(kind, method, path, detail)), with
    kind "forward", "cut", "respond", "stall", "hold", "throttle" ("raw" for a connection that does
    not speak HTTP, such as skopeo's TLS probe, passed through untouched);
    `count(kind)` counts them;
    `connections` counts accepted connections.  Every socket read has a
    time limit (idle) and the proxy stops itself after `lifetime` seconds.
    """

    def __init__(self, upstream, idle=30, lifetime=600):
        if isinstance(upstream, Registry):
            upstream = upstream.host
        host, port = upstream.rsplit(":", 1)
        assert host in (LOOPBACK, "localhost", "[::1]"), "not loopback: %s" % upstream
        self.upstream = (host.strip("[]"), int(port))
        self.idle, self.lifetime = idle, lifetime
        self.rules, self.events, self.connections = [], [], 0
        self._lock = threading.Lock()
        self._socks = set()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def host(self):
        return "%s:%d" % (LOOPBACK, self.port)

    @property
    def url(self):
        return "http://" + self.host

    # -- rules
    def _add(self, kind, times, method, path, skip, **kw):
        with self._lock:
            self.rules.append(_Rule(kind, times, method, path, skip, **kw))
        return self

    def cut(self, after, times=1, method=None, path=None, skip=0, reset=True):
        return self._add("cut", times, method, path, skip, after=after, reset=reset)

    def respond(self, status, times=1, method=None, path=None, skip=0, headers=None, body=None):
        return self._add("respond", times, method, path, skip, status=status,
                         headers=dict(headers or {}), body=body)

    def stall(self, times=1, method=None, path=None, skip=0):
        return self._add("stall", times, method, path, skip)

    def hold(self, after, times=1, method=None, path=None, skip=0, timeout=60):
        return self._add("hold", times, method, path, skip, after=after, timeout=timeout,
                         released=threading.Event())

    def release(self):
        """Lets every held request go on (they also go on after their timeout)."""
        with self._lock:
            for r in self.rules:
                if r.kind == "hold":
                    r.kw["released"].set()

    def throttle(self, rate, times=1, method=None, path=None, skip=0):
        return self._add("throttle", times, method, path, skip, rate=float(rate))

    def wait(self, kind, n=1, timeout=30):
        """Waits until `n` events of kind have happened; True if they did."""
        deadline = time.monotonic() + timeout
        while self.count(kind) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def clear(self):
        with self._lock:
            self.rules = []

    def pending(self):
        """Rules that have not fired as often as asked: [(kind, times left)]."""
        with self._lock:
            return [(r.kind, r.times) for r in self.rules if r.times > 0]

    def count(self, kind, method=None):
        with self._lock:
            return sum(1 for e in self.events
                       if e.kind == kind and (method is None or e.method == method))

    def _pick(self, method, path):
        with self._lock:
            for r in self.rules:
                if r.times > 0 and r.matches(method, path):
                    if r.skip > 0:
                        r.skip -= 1
                        continue
                    r.times -= 1
                    return r
        return None

    def _event(self, *e):
        with self._lock:
            self.events.append(Event(*e))

    # -- life
    def stop(self):
        """Stops accepting, closes every connection, joins the accept thread."""
        self._stop.set()
        self.release()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            self._close(s)
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()

    close = stop

    def _stopping(self):
        return self._stop.is_set() or time.monotonic() > self._deadline

    def _track(self, s):
        with self._lock:
            self._socks.add(s)

    def _close(self, s, reset=False):
        with contextlib.suppress(OSError):
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            else:
                s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()
        with self._lock:
            self._socks.discard(s)

    def _accept_loop(self):
        try:
            while not self._stopping():
                try:
                    client, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                with self._lock:
                    self.connections += 1
                self._track(client)
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()
        finally:
            with contextlib.suppress(OSError):
                self._listener.close()
            if not self._stop.is_set():      # lifetime over: drop everything
                self._stop.set()
                with self._lock:
                    socks = list(self._socks)
                for s in socks:
                    self._close(s)

    def _pump(self, src, dst):
        """Upstream to client, verbatim."""
        try:
            while not self._stopping():
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _serve(self, client):
        upstream = None
        try:
            client.settimeout(self.idle)
            upstream = socket.create_connection(self.upstream, timeout=self.idle)
            self._track(upstream)
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            reader = _Reader(client)
            reader.fill()
            if not re.match(rb"[A-Z]", reader.buf):
                # not HTTP (skopeo tries TLS first): pass through untouched
                upstream.sendall(reader.buf)
                self._event("raw", None, None, len(reader.buf))
                self._pump(client, upstream)
                return
            while not self._stopping():
                self._one_request(reader, client, upstream)
        except (EOFError, OSError, ValueError, _Cut):
            pass
        finally:
            self._close(client)
            if upstream is not None:
                self._close(upstream)

    def _one_request(self, reader, client, upstream):
        head = reader.line()
        while not head.strip():            # stray CRLF between requests
            head = reader.line()
        lines = [head]
        while lines[-1] != b"\r\n":
            lines.append(reader.line())
            if len(lines) > 200:
                raise ValueError("too many header lines")
        method, target = head.decode("latin-1").split()[:2]
        path = urllib.parse.urlsplit(target).path
        hdrs = {}
        for l in lines[1:-1]:
            k, _, v = l.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        rule = self._pick(method, path)
        kind = rule.kind if rule else "forward"
        state = {"sent": 0, "start": time.monotonic()}

        def send(data):
            if kind == "cut":
                room = rule.kw["after"] - state["sent"]
                if len(data) >= room:
                    upstream.sendall(data[:room])
                    state["sent"] += room
                    raise _Cut
            elif kind == "hold" and not state.get("held"):
                room = rule.kw["after"] - state["sent"]
                if len(data) >= room:
                    upstream.sendall(data[:room])
                    state["sent"] += room
                    data = data[room:]
                    state["held"] = True
                    self._event("hold", method, path, state["sent"])
                    rule.kw["released"].wait(rule.kw["timeout"])
            elif kind == "throttle":
                for i in range(0, len(data), 16384):
                    piece = data[i:i + 16384]
                    upstream.sendall(piece)
                    state["sent"] += len(piece)
                    pause = state["start"] + state["sent"] / rule.kw["rate"] - time.monotonic()
                    if pause > 0:
                        time.sleep(min(pause, self.idle))
                return
            if kind != "respond":
                upstream.sendall(data)
            state["sent"] += len(data)

        def finish_cut():
            self._event("cut", method, path, state["sent"])
            self._close(upstream, reset=rule.kw["reset"])
            self._close(client, reset=rule.kw["reset"])
            raise _Cut

        if kind == "stall":
            self._event("stall", method, path, None)
            while not self._stopping():
                try:
                    reader.buf = b""
                    reader.fill()
                except socket.timeout:
                    continue
            raise EOFError
        if kind == "respond" and "100-continue" in hdrs.get("expect", "").lower():
            return self._answer(client, rule, method, path)
        try:
            send(b"".join(lines))
            self._body(reader, hdrs, send)
        except _Cut:
            finish_cut()
        if kind == "cut":
            finish_cut()
        if kind == "respond":
            return self._answer(client, rule, method, path)
        self._event("throttle" if kind == "throttle" else "forward", method, path, state["sent"])

    def _body(self, reader, hdrs, send):
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                size_line = reader.line()
                send(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:               # trailers, then the empty line
                        t = reader.line()
                        send(t)
                        if t == b"\r\n":
                            return
                left = size + 2
                while left:
                    data = reader.some(left)
                    send(data)
                    left -= len(data)
        left = int(hdrs.get("content-length", "0") or 0)
        while left:
            data = reader.some(min(left, 65536))
            send(data)
            left -= len(data)

    def _answer(self, client, rule, method, path):
        status = rule.kw["status"]
        code = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED"}.get(status, "UNKNOWN")
        body = rule.kw.get("body")
        if body is None:
            body = json.dumps({"errors": [{"code": code, "message": "injected by the test proxy",
                                           "detail": None}]}).encode()
        reason = httpclient.responses.get(status, "Error")
        hdrs = {"Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(body)), "Connection": "close",
                "Docker-Distribution-Api-Version": "registry/2.0"}
        hdrs.update(rule.kw["headers"])
        out = "HTTP/1.1 %d %s\r\n" % (status, reason)
        out += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        client.sendall(out.encode("latin-1") + body)
        self._event("respond", method, path, status)
        self._close(client)
        raise _Cut


# ------------------------------------------------------------ the token server

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl(*args, input=None):
    p = subprocess.run(["openssl"] + [str(a) for a in args], input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 0, "openssl %s: %s" % (args[0], p.stderr.decode(errors="replace"))
    return p.stdout


def _der_ecdsa_to_raw(der, size=32):
    """openssl's DER ECDSA signature (SEQUENCE of two INTEGERs) as JWS
    wants it: r and s, each size bytes, big-endian."""
    assert der[0] == 0x30, "not a DER sequence"
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02, "not a DER integer"
        n = der[i + 1]
        out += int.from_bytes(der[i + 2:i + 2 + n], "big").to_bytes(size, "big")
        i += 2 + n
    return out


def libtrust_key_id(public_der):
    """The key ID distribution 2.8.2 gives a root certificate's key (libtrust):
    base32 of the first 240 bits of sha256(DER of the public key), in 12
    groups of 4 joined by ':'."""
    b32 = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def parse_scope(scope):
    """'repository:team/app:pull,push' → ('repository', 'team/app', ['pull', 'push'])."""
    rtype, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return rtype, name, [a for a in actions.split(",") if a]


TokenRequest = collections.namedtuple(
    "TokenRequest", "method path query form user auth scopes status")


class TokenServer(_Managed):
    """A Docker token server on 127.0.0.1 (http.server in a thread) whose
    JWTs the Registry accepts: Registry(tmp, token=TokenServer(tmp, ...)).

    users: {name: password} checked against Basic credentials.  A user who
    authenticates gets every action asked for, unless grant(user, type,
    name, actions) says less; anonymous=True gives clients without
    credentials a token with no access (else 401).  alg "RS256" or "ES256";
    key_header "kid" (libtrust key ID of the root certificate's key) or
    "x5c" (the certificate itself): distribution 2.8.2 accepts both.
    GET /token?service=&scope=&scope= (Basic auth; offline_token=true adds a
    refresh_token) and POST /token with the OAuth2 form (grant_type
    refresh_token or password).  `requests` records each request as
    TokenRequest(method, path, query {k: [v]}, form {k: [v]}, user, auth
    ("basic", "bearer" or None), scopes asked, status); `issued` each token's
    claims.  issue() signs a token with any claims (expired ones, say).
    """

    def __init__(self, tmp=None, users=None, service="layersplit-test",
                 issuer="layersplit-test-issuer", alg="RS256", key_header="kid",
                 expires_in=300, anonymous=False, grant=None, lifetime=600):
        assert alg in ("RS256", "ES256") and key_header in ("kid", "x5c")
        base = _base_dir(tmp, "tokens-")
        self._own_dir = tmp is None
        self.dir = Path(tempfile.mkdtemp(prefix="tokens-", dir=base))
        self.users = dict(users or {})
        self.service, self.issuer, self.alg, self.key_header = service, issuer, alg, key_header
        self.expires_in, self.anonymous, self.grant = expires_in, anonymous, grant
        self.refresh_tokens = {}            # token → user
        self.requests, self.issued = [], []
        self._lock = threading.Lock()
        self.key, self.rootcert = self.dir / "key.pem", self.dir / "root.crt"
        newkey = (["-newkey", "rsa:2048"] if alg == "RS256" else
                  ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        _openssl("req", "-x509", *newkey, "-nodes", "-keyout", self.key, "-out",
                 self.rootcert, "-days", "2", "-subj", "/CN=layersplit test token issuer")
        self.cert_der = _openssl("x509", "-in", self.rootcert, "-outform", "DER")
        pub_pem = _openssl("x509", "-in", self.rootcert, "-pubkey", "-noout")
        self.key_id = libtrust_key_id(_openssl("pkey", "-pubin", "-outform", "DER",
                                               input=pub_pem))
        self._server = _TokenHTTPServer((LOOPBACK, 0), _TokenHandler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()

    @property
    def host(self):
        return "%s:%d" % (LOOPBACK, self.port)

    @property
    def realm(self):
        return "http://%s/token" % self.host

    def registry_config(self):
        """The `auth.token` section of a registry config."""
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": str(self.rootcert)}

    def refresh_token_for(self, user):
        """A new identity (refresh) token for user, for an authfile's identitytoken."""
        tok = "refresh-" + uuid.uuid4().hex
        with self._lock:
            self.refresh_tokens[tok] = user
        return tok

    def issue(self, sub, access, expires_in=None, **claims):
        """A signed JWT for sub with access [{type, name, actions}]; claims
        override iss, aud, exp, nbf, iat, jti."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": sub, "aud": self.service,
                "exp": now + (self.expires_in if expires_in is None else expires_in),
                "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        body.update(claims)
        header = {"typ": "JWT", "alg": self.alg}
        if self.key_header == "kid":
            header["kid"] = self.key_id
        else:
            header["x5c"] = [base64.b64encode(self.cert_der).decode()]
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(body).encode())).encode()
        sig = _openssl("dgst", "-sha256", "-sign", self.key, input=signing_input)
        if self.alg == "ES256":
            sig = _der_ecdsa_to_raw(sig)
        with self._lock:
            self.issued.append(body)
        return signing_input.decode() + "." + _b64url(sig)

    def scopes_asked(self):
        """Every scope string asked for, in order."""
        return [s for r in self.requests for s in r.scopes]

    def stop(self):
        self._timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._remove_own_dir()

    close = stop

    def _record(self, *fields):
        with self._lock:
            self.requests.append(TokenRequest(*fields))

    def _access(self, user, scopes):
        access = []
        for scope in scopes:
            rtype, name, actions = parse_scope(scope)
            if user is None:
                actions = []
            elif self.grant is not None:
                actions = list(self.grant(user, rtype, name, actions))
            access.append({"type": rtype, "name": name, "actions": actions})
        return access


class _TokenHTTPServer(httpserver.ThreadingHTTPServer):
    daemon_threads = True


class _TokenHandler(httpserver.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args):
        pass

    def _reply(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _basic_user(self, srv):
        """(user or None, auth kind, credentials ok)."""
        h = self.headers.get("Authorization", "")
        kind, _, value = h.partition(" ")
        if not h:
            return None, None, True
        if kind.lower() != "basic":
            return None, kind.lower(), False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, "basic", False
        ok = user in srv.users and srv.users[user] == password
        return user, "basic", ok

    def _handle(self, form):
        srv = self.server.owner
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        params = form if self.command == "POST" else query
        scopes = [s for v in params.get("scope", []) for s in v.split()]
        user, auth, ok = self._basic_user(srv)
        refresh = None
        status = 200
        if u.path != "/token":
            status = 404
        elif params.get("service", [None])[0] != srv.service:
            status = 400
        elif self.command == "POST":
            grant_type = form.get("grant_type", [""])[0]
            if grant_type == "refresh_token":
                with srv._lock:
                    user = srv.refresh_tokens.get(form.get("refresh_token", [""])[0])
                status = 200 if user else 401
            elif grant_type == "password":
                user = form.get("username", [""])[0]
                ok = srv.users.get(user) == form.get("password", [None])[0]
                status = 200 if ok else 401
                refresh = srv.refresh_token_for(user) if ok else None
            else:
                status = 400
        elif not ok or (user is None and not srv.anonymous):
            status = 401
        elif query.get("offline_token", [""])[0] == "true" and user:
            refresh = srv.refresh_token_for(user)
        srv._record(self.command, u.path, query, form, user, auth, scopes, status)
        if status != 200:
            return self._reply(status, {"errors": [{"code": "UNAUTHORIZED" if status == 401
                                                    else "DENIED", "message": "token refused"}]},
                               {"WWW-Authenticate": 'Basic realm="layersplit-test-token"'}
                               if status == 401 else None)
        token = srv.issue(user or "", srv._access(user, scopes))
        out = {"token": token, "access_token": token, "expires_in": srv.expires_in,
               "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.command == "POST":
            out.pop("token")
            out["scope"] = " ".join(scopes)
        if refresh:
            out["refresh_token"] = refresh
        self._reply(200, out)

    def do_GET(self):
        self._handle({})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0") or 0)
        if n > 1 << 20:
            return self._reply(413, {"errors": []})
        body = self.rfile.read(n).decode(errors="replace")
        self._handle(urllib.parse.parse_qs(body, keep_blank_values=True))


# ------------------------------------------------- credentials on the client side

_HELPER = r'''#!/usr/bin/env python3
# A docker credential helper for tests: `get` reads a server on stdin and
# prints its credentials from the table below; every call is logged
# (action and server only, never a secret).
import json, sys
CREDS = json.loads(%r)
LOG = %r
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
with open(LOG, "a") as f:
    f.write(json.dumps({"action": action, "server": data.strip()}) + "\n")
if action == "get":
    server = data.strip()
    if server not in CREDS:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = CREDS[server]
    print(json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))
elif action == "list":
    print(json.dumps({s: c[0] for s, c in CREDS.items()}))
elif action not in ("store", "erase"):
    print("unknown action %%r" %% action, file=sys.stderr)
    sys.exit(2)
'''


def credential_helper(bindir, creds, name="test"):
    """Writes the executable bindir/docker-credential-NAME implementing the
    helper protocol: `get` reads a server (as the client writes it, e.g.
    "127.0.0.1:5000") on stdin and prints {"ServerURL", "Username",
    "Secret"} from creds {server: (user, secret)} (user "<token>": secret is
    an identity token), else "credentials not found in native keychain" and
    exit 1.  Each call goes to bindir/docker-credential-NAME.log as a JSON
    line {"action", "server"}.  Returns the PATH value with bindir first."""
    bindir = Path(bindir)
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / ("docker-credential-" + name)
    log = bindir / ("docker-credential-%s.log" % name)
    table = json.dumps({s: list(c) for s, c in creds.items()})
    exe.write_text(_HELPER % (table, str(log)))
    exe.chmod(0o755)
    return str(bindir) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")


def credential_helper_calls(bindir, name="test"):
    """The helper's calls so far: [{"action", "server"}]."""
    log = Path(bindir) / ("docker-credential-%s.log" % name)
    if not log.exists():
        return []
    return [json.loads(l) for l in log.read_text().splitlines() if l.strip()]


def write_authfile(path, auths=None, cred_helpers=None, creds_store=None):
    """A docker config.json (as skopeo and podman also read it).
    auths: {host: (user, password)} → {"auth": base64 "user:password"}, or
    {host: {...}} written as given (e.g. {"identitytoken": T}).
    cred_helpers: {host: helper name}; creds_store: a helper name."""
    doc = {"auths": {}}
    for host, v in (auths or {}).items():
        if isinstance(v, dict):
            doc["auths"][host] = v
        else:
            doc["auths"][host] = {"auth": base64.b64encode(("%s:%s" % tuple(v)).encode()).decode()}
    if cred_helpers:
        doc["credHelpers"] = dict(cred_helpers)
    if creds_store:
        doc["credsStore"] = creds_store
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    path.chmod(0o600)
    return path
