"""The push tests' servers (tests/registry.py) checked against the real
docker-registry with plain HTTP, skopeo and sockets, no layersplit: each piece
does what the push tests rely on, and leaves no process behind."""
import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

import registry
from registry import (CONNECTION_ERRORS, Client, FaultProxy, Registry, TokenServer, basic_auth,
                      http, sha256_digest)

MiB = 1 << 20


def layer(n, size=4096):
    """A gzip blob of size pseudo-random bytes, different for each n."""
    data = b"".join(sha256_digest(b"%d-%d" % (n, i)).encode() for i in range(size // 71 + 1))
    return gzip.compress(data[:size], mtime=0)


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def refused(host):
    h, p = host.rsplit(":", 1)
    try:
        socket.create_connection((h, int(p)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_registry_round_trip(tmp):
    """An image pushed by plain HTTP (monolithic and streamed blobs) reads
    back through skopeo byte for byte; requests() sees each request."""
    with Registry(tmp) as reg:
        assert reg.host.startswith("127.0.0.1:") and reg.url == "http://" + reg.host
        assert http("GET", reg.url + "/v2/").status == 200
        c = Client(reg.url)
        streamed = layer(1, 300000)
        d_streamed = c.upload_blob("team/app", streamed, stream=True)
        layers = [layer(0), streamed]
        digest = c.push_image("team/app", "1.0", layers)
        raw = registry.skopeo_inspect_raw(reg.host + "/team/app:1.0")
        assert sha256_digest(raw) == digest
        manifest = json.loads(raw)
        assert [l["digest"] for l in manifest["layers"]] == [sha256_digest(b) for b in layers]
        oci = registry.skopeo_copy_to_oci(reg.host + "/team/app:1.0", tmp / "oci")
        for b in layers:
            assert (oci / "blobs/sha256" / sha256_digest(b)[7:]).read_bytes() == b
        r = c.head_blob("team/app", d_streamed)
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(streamed)
        assert c.get_blob("team/app", d_streamed).body == streamed
        assert c.head_blob("other", d_streamed).status == 404
        assert d_streamed in reg.stored_blobs()
        reqs = reg.requests()
        assert reg.count("PATCH") == 1, reqs
        # one streamed blob (POST, PATCH, PUT), three monolithic ones (POST, PUT)
        assert reg.count("POST", path=r"^/v2/team/app/blobs/uploads/$", status=202) == 4
        assert reg.count("PUT", path="/blobs/uploads/", status=201) == 4
        assert ("PUT", "/v2/team/app/manifests/1.0", 201) in reqs
        assert reg.count("HEAD", status=404) == 1
        pid = reg.pid
    assert gone(pid) and refused(reg.host)


def test_registry_requests_counts_each_new_request(tmp):
    """requests() right after a request already lists it (no waiting in the test)."""
    with Registry(tmp) as reg:
        for i in range(5):
            http("HEAD", reg.url + "/v2/x/blobs/" + sha256_digest(b"%d" % i))
            assert reg.count("HEAD") == i + 1


def test_registry_kill_and_restart(tmp):
    """kill() is SIGKILL by PID: the process is gone at once.  start() again
    keeps port and storage; thanks to http.secret an upload session opened
    before the kill goes on after the restart."""
    reg = Registry(tmp)
    try:
        c = Client(reg.url)
        d = c.upload_blob("a", layer(2))
        r = c.request("POST", "/v2/a/blobs/uploads/")
        loc = c._location(r)
        pid, host = reg.pid, reg.host
        reg.kill()
        assert gone(pid) and refused(host) and not reg.alive()
        reg.start()
        assert reg.host == host and reg.pid != pid
        assert c.head_blob("a", d).status == 200
        r = c.request("PATCH", loc, body=b"more", headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, r
    finally:
        reg.stop()
    assert gone(reg.pid)


def test_registry_stopped_on_exception(tmp):
    pid = None
    try:
        with Registry(tmp) as reg:
            pid = reg.pid
            raise KeyError("boom")
    except KeyError:
        pass
    assert pid and gone(pid) and not registry._live


def test_registry_start_failure_shows_log(tmp):
    """A port already taken: RuntimeError naming the port, with the registry's log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            Registry(tmp, port=port, secret="x")
        except RuntimeError as e:
            assert "127.0.0.1:%d" % port in str(e) and "address already in use" in str(e), e
        else:
            raise AssertionError("started on a taken port")
    assert not registry._live


def test_registry_htpasswd(tmp):
    """Basic auth: 401 with a Basic challenge without or with a wrong
    password, 200 with the right one; skopeo with --creds reads back."""
    with Registry(tmp, htpasswd={"alice": "s3cret pass", "bob": "x"}) as reg:
        r = http("GET", reg.url + "/v2/")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic "), r
        assert http("GET", reg.url + "/v2/",
                    headers={"Authorization": basic_auth("alice", "wrong")}).status == 401
        good = Client(reg.url, auth=basic_auth("alice", "s3cret pass"))
        assert good.request("GET", "/v2/").status == 200
        assert reg.count("GET", path="^/v2/$", status=401) == 2
        good.push_image("p", "t", [layer(3)])
        raw = registry.skopeo_inspect_raw(reg.host + "/p:t", creds=("alice", "s3cret pass"))
        assert json.loads(raw)["schemaVersion"] == 2


def test_proxy_forwards_everything(tmp):
    """Through the proxy: a streamed upload, monolithic ones, a manifest,
    and skopeo reading back, on kept-alive connections."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        c = Client(proxy.url)
        c.upload_blob("r", layer(4, MiB), stream=True)
        digest = c.push_image("r", "t", [layer(5)])
        raw = registry.skopeo_inspect_raw(proxy.host + "/r:t")
        assert sha256_digest(raw) == digest
        assert proxy.count("forward", "PATCH") == 1 and proxy.count("cut") == 0
        assert proxy.count("forward") >= 8 and proxy.connections >= 1
        assert reg.count("PATCH", status=202) == 1


def test_proxy_cuts_a_patch_once(tmp):
    """cut(after=N, method=PATCH): the first PATCH dies after N bytes reach
    the registry, which loses that upload; the next whole upload succeeds."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.cut(after=200000, method="PATCH")
        c = Client(proxy.url)
        blob = layer(6, 2 * MiB)
        try:
            c.upload_blob("r", blob, stream=True)
        except CONNECTION_ERRORS as e:
            err = e
        else:
            raise AssertionError("the cut PATCH succeeded")
        assert proxy.count("cut", "PATCH") == 1, (err, proxy.events)
        assert [e.detail for e in proxy.events if e.kind == "cut"] == [200000]
        assert proxy.pending() == []
        d = c.upload_blob("r", blob, stream=True)
        assert c.head_blob("r", d).status == 200
        assert proxy.count("forward", "PATCH") == 1


def test_proxy_cuts_first_k_connections(tmp):
    """cut(after=10, times=2): two connections cut 10 bytes in, the third
    request passes; the registry saw only that one."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.cut(after=10, times=2)
        for _ in range(2):
            try:
                http("GET", proxy.url + "/v2/")
            except CONNECTION_ERRORS:
                pass
            else:
                raise AssertionError("not cut")
        assert http("GET", proxy.url + "/v2/").status == 200
        assert proxy.count("cut") == 2 and proxy.connections == 3
        assert reg.count("GET", path="^/v2/$") == 1


def test_proxy_answers_errors_once(tmp):
    """respond(): 500, then 503 on the next PUT, 429 with Retry-After; each
    once, then the registry answers again.  The faked requests never reach it."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.respond(429, method="HEAD", headers={"Retry-After": "1"})
        proxy.respond(500, method="POST")
        proxy.respond(503, method="PUT", path="/blobs/uploads/")
        c = Client(proxy.url)
        d = sha256_digest(b"nothing")
        r = c.head_blob("r", d)
        assert r.status == 429 and r.headers["Retry-After"] == "1", r
        assert c.head_blob("r", d).status == 404
        r = c.request("POST", "/v2/r/blobs/uploads/")
        assert r.status == 500 and json.loads(r.body)["errors"][0]["code"] == "UNKNOWN"
        try:
            c.upload_blob("r", layer(7))
        except AssertionError as e:
            assert "PUT blob: 503" in str(e), e
        d = c.upload_blob("r", layer(7))
        assert c.head_blob("r", d).status == 200
        assert [e.detail for e in proxy.events if e.kind == "respond"] == [429, 500, 503]
        assert reg.count("HEAD") == 2 and reg.count("POST") == 2 and reg.count("PUT") == 1


def test_proxy_answers_before_an_expected_body(tmp):
    """A request with Expect: 100-continue gets the injected answer at once."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.respond(503, method="PUT")
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        s.sendall(b"PUT /v2/r/blobs/uploads/x HTTP/1.1\r\nHost: %s\r\n"
                  b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n" % proxy.host.encode())
        assert s.recv(100).startswith(b"HTTP/1.1 503 ")
        s.close()


def test_proxy_stalls(tmp):
    """stall(): the request is read and never answered (the client times
    out); the next one is forwarded."""
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.stall(method="GET")
        t = time.monotonic()
        try:
            http("GET", proxy.url + "/v2/", timeout=0.5)
        except socket.timeout:
            pass
        else:
            raise AssertionError("answered")
        assert time.monotonic() - t < 5
        assert http("GET", proxy.url + "/v2/").status == 200
        assert proxy.count("stall") == 1 and reg.count("GET") == 1


def test_proxy_stops_itself(tmp):
    """lifetime: the proxy closes its port and its connections by itself."""
    with Registry(tmp) as reg:
        proxy = FaultProxy(reg, lifetime=0.5)
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        time.sleep(1)
        assert s.recv(1) == b""
        assert refused(proxy.host)
        proxy.stop()


def test_registry_dies_with_a_killed_test_run(tmp):
    """A Python process holding a Registry is SIGKILLed (no atexit, no
    __exit__): the registry goes too."""
    code = ("import sys, time; sys.path.insert(0, %r); import registry\n"
            "r = registry.Registry(%r); print(r.pid, flush=True); time.sleep(60)\n"
            % (os.path.dirname(registry.__file__), str(tmp)))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        pid = int(p.stdout.readline())
        assert not gone(pid)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(pid), "registry %d outlived its test process" % pid


def bearer(token):
    return {"Authorization": "Bearer " + token}


def get_token(ts, *scopes, user=("alice", "pw"), **params):
    q = [("service", ts.service)] + [("scope", s) for s in scopes] + list(params.items())
    h = {"Authorization": basic_auth(*user)} if user else {}
    return http("GET", ts.realm + "?" + urllib.parse.urlencode(q), headers=h)


def test_token_auth_every_key_kind(tmp):
    """RS256 and ES256, each with a kid header (libtrust key ID) and with
    x5c: the registry challenges with Bearer realm/service, accepts the
    token for the scope granted and refuses it for another repository."""
    for alg in ("RS256", "ES256"):
        for key_header in ("kid", "x5c"):
            with TokenServer(tmp, users={"alice": "pw"}, alg=alg, key_header=key_header) as ts, \
                    Registry(tmp, token=ts) as reg:
                r = http("GET", reg.url + "/v2/")
                assert r.status == 401, r
                assert r.headers["WWW-Authenticate"] == 'Bearer realm="%s",service="%s"' % (
                    ts.realm, ts.service), r.headers
                r = get_token(ts, "repository:team/app:pull,push")
                assert r.status == 200, r
                tok = json.loads(r.body)
                assert tok["token"] == tok["access_token"] and tok["expires_in"] == 300
                header = json.loads(base64.urlsafe_b64decode(tok["token"].split(".")[0] + "=="))
                assert header["alg"] == alg and key_header in header, header
                c = Client(reg.url, auth="Bearer " + tok["token"])
                c.push_image("team/app", "1", [layer(8)])
                r = c.request("POST", "/v2/team/other/blobs/uploads/")
                assert r.status == 401 and 'error="insufficient_scope"' in \
                    r.headers["WWW-Authenticate"], (r.status, r.headers)
                assert ts.issued[-1]["access"] == [{"type": "repository", "name": "team/app",
                                                    "actions": ["pull", "push"]}]
                assert reg.count("GET", "^/v2/$", 401) == 1
                assert reg.count("POST", "^/v2/team/other/", 401) == 1
                assert reg.count("PUT", "^/v2/team/app/manifests/1$", 201) == 1


def test_token_registry_refuses_bad_tokens(tmp):
    """The registry really checks: another issuer's key, an expired token,
    another audience, another issuer name, no push action: all 401."""
    with TokenServer(tmp, users={"alice": "pw"}) as ts, \
            TokenServer(tmp, users={"alice": "pw"}, issuer=ts.issuer) as stranger, \
            Registry(tmp, token=ts) as reg:
        access = [{"type": "repository", "name": "a", "actions": ["pull", "push"]}]
        url = reg.url + "/v2/a/blobs/uploads/"
        assert http("POST", url, headers=bearer(ts.issue("alice", access))).status == 202
        for bad in (stranger.issue("alice", access),
                    ts.issue("alice", access, expires_in=-120),
                    ts.issue("alice", access, aud="elsewhere"),
                    ts.issue("alice", access, iss="someone-else"),
                    ts.issue("alice", [dict(access[0], actions=["pull"])])):
            assert http("POST", url, headers=bearer(bad)).status == 401
        assert stranger.key_id != ts.key_id


def test_token_server_checks_credentials_and_records(tmp):
    """Basic credentials checked (wrong password, unknown user, none: 401;
    anonymous=True: a token without access); several scope= parameters; the
    requests recorded with the scopes and the user, never the password."""
    with TokenServer(tmp, users={"alice": "pw-S3cret"}) as ts:
        assert get_token(ts, "repository:a:pull", user=("alice", "pw")).status == 401
        assert get_token(ts, "repository:a:pull", user=("bob", "pw-S3cret")).status == 401
        assert get_token(ts, "repository:a:pull", user=None).status == 401
        r = get_token(ts, "repository:a:pull,push", "repository:b:pull", user=("alice", "pw-S3cret"))
        assert r.status == 200
        assert ts.issued[-1]["access"] == [
            {"type": "repository", "name": "a", "actions": ["pull", "push"]},
            {"type": "repository", "name": "b", "actions": ["pull"]}]
        assert ts.scopes_asked()[-2:] == ["repository:a:pull,push", "repository:b:pull"]
        assert [(r.user, r.status) for r in ts.requests] == [
            ("alice", 401), ("bob", 401), (None, 401), ("alice", 200)]
        assert all(r.auth == "basic" for r in ts.requests if r.user)
        assert "S3cret" not in json.dumps([r._asdict() for r in ts.requests])
    with TokenServer(tmp, anonymous=True) as ts:
        r = get_token(ts, "repository:a:pull", user=None)
        assert r.status == 200 and ts.issued[-1]["access"][0]["actions"] == []


def test_token_refresh_tokens(tmp):
    """offline_token=true gives a refresh token; the OAuth2 form POST with
    grant_type=refresh_token turns it into a working access token; an
    unknown one is refused; grant_type=password too."""
    with TokenServer(tmp, users={"alice": "pw"}) as ts, Registry(tmp, token=ts) as reg:
        r = get_token(ts, "repository:a:pull", offline_token="true")
        refresh = json.loads(r.body)["refresh_token"]
        form = {"grant_type": "refresh_token", "refresh_token": refresh,
                "service": ts.service, "scope": "repository:a:pull,push repository:b:pull"}
        r = http("POST", ts.realm, body=urllib.parse.urlencode(form).encode(),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r
        tok = json.loads(r.body)
        assert "token" not in tok and tok["scope"] == form["scope"]
        assert http("POST", reg.url + "/v2/a/blobs/uploads/",
                    headers=bearer(tok["access_token"])).status == 202
        assert ts.requests[-1].user == "alice" and ts.requests[-1].form["grant_type"] == \
            ["refresh_token"]
        form["refresh_token"] = "nope"
        r = http("POST", ts.realm, body=urllib.parse.urlencode(form).encode())
        assert r.status == 401
        form = {"grant_type": "password", "username": "alice", "password": "pw",
                "service": ts.service, "scope": "repository:a:push"}
        r = http("POST", ts.realm, body=urllib.parse.urlencode(form).encode())
        assert r.status == 200 and "refresh_token" in json.loads(r.body)
        r = http("POST", ts.realm, body=urllib.parse.urlencode(dict(form, password="x")).encode())
        assert r.status == 401


def test_token_grant_limits_access(tmp):
    """grant(user, type, name, actions) decides; a token for pull only
    cannot push, so the registry answers insufficient_scope."""
    def grant(user, rtype, name, actions):
        return [a for a in actions if a == "pull" or name.startswith(user + "/")]
    with TokenServer(tmp, users={"alice": "pw"}, grant=grant) as ts, \
            Registry(tmp, token=ts) as reg:
        get_token(ts, "repository:alice/x:pull,push", "repository:bob/y:pull,push")
        assert [a["actions"] for a in ts.issued[-1]["access"]] == [["pull", "push"], ["pull"]]
        tok = ts.issue("alice", ts.issued[-1]["access"])
        assert http("POST", reg.url + "/v2/alice/x/blobs/uploads/", headers=bearer(tok)).status == 202
        assert http("POST", reg.url + "/v2/bob/y/blobs/uploads/", headers=bearer(tok)).status == 401


def test_skopeo_through_token_auth(tmp):
    """A real client (skopeo) gets tokens from the server and reads an
    image back: the token server saw its scope and user."""
    with TokenServer(tmp, users={"alice": "pw"}) as ts, Registry(tmp, token=ts) as reg:
        ts_tok = ts.issue("alice", [{"type": "repository", "name": "app",
                                     "actions": ["pull", "push"]}])
        digest = Client(reg.url, auth="Bearer " + ts_tok).push_image("app", "v1", [layer(9)])
        raw = registry.skopeo_inspect_raw(reg.host + "/app:v1", creds=("alice", "pw"))
        assert sha256_digest(raw) == digest
        assert "repository:app:pull" in ts.scopes_asked(), ts.requests
        assert all(r.user == "alice" for r in ts.requests if r.status == 200)


def test_credential_helper(tmp):
    """docker-credential-test: get by server, not found → exit 1 with
    docker's message; used by skopeo through an authfile's credHelpers
    against an htpasswd registry."""
    with Registry(tmp, htpasswd={"alice": "s3cret"}) as reg:
        Client(reg.url, auth=basic_auth("alice", "s3cret")).push_image("h", "t", [layer(10)])
        path = registry.credential_helper(tmp / "bin", {reg.host: ("alice", "s3cret")})
        env = dict(os.environ, PATH=path)
        p = subprocess.run(["docker-credential-test", "get"], input=reg.host.encode(), env=env,
                           stdout=subprocess.PIPE, timeout=30)
        assert p.returncode == 0 and json.loads(p.stdout) == {
            "ServerURL": reg.host, "Username": "alice", "Secret": "s3cret"}
        p = subprocess.run(["docker-credential-test", "get"], input=b"other:1", env=env,
                           stdout=subprocess.PIPE, timeout=30)
        assert p.returncode == 1 and b"credentials not found" in p.stdout
        auth = registry.write_authfile(tmp / "auth.json", cred_helpers={reg.host: "test"})
        old = os.environ["PATH"]
        os.environ["PATH"] = path
        try:
            registry.skopeo_inspect_raw(reg.host + "/h:t", authfile=auth)
        finally:
            os.environ["PATH"] = old
        calls = registry.credential_helper_calls(tmp / "bin")
        assert calls[:2] == [{"action": "get", "server": reg.host},
                             {"action": "get", "server": "other:1"}]
        assert {"action": "get", "server": reg.host} in calls[2:], calls
        assert "s3cret" not in (tmp / "bin" / "docker-credential-test.log").read_text()


def test_authfile(tmp):
    """write_authfile's auths entry lets skopeo in; a wrong one does not."""
    with Registry(tmp, htpasswd={"alice": "s3cret"}) as reg:
        Client(reg.url, auth=basic_auth("alice", "s3cret")).push_image("h", "t", [layer(11)])
        good = registry.write_authfile(tmp / "good.json", auths={reg.host: ("alice", "s3cret")})
        assert json.loads(good.read_text())["auths"][reg.host]["auth"] == \
            base64.b64encode(b"alice:s3cret").decode()
        registry.skopeo_inspect_raw(reg.host + "/h:t", authfile=good)
        bad = registry.write_authfile(tmp / "bad.json", auths={reg.host: ("alice", "nope")})
        try:
            registry.skopeo_inspect_raw(reg.host + "/h:t", authfile=bad)
        except AssertionError as e:
            assert "unauthorized" in str(e).lower() or "401" in str(e), e
        else:
            raise AssertionError("skopeo got in with a wrong password")


def test_proxy_holds_an_upload_while_the_registry_is_killed(tmp):
    """hold(after=N): the PATCH stops after N bytes until release(); the
    test kills the registry meanwhile: the upload fails, and after a
    restart its session is gone (404), as REGISTRY.md says."""
    import threading
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.hold(after=300000, method="PATCH")
        c = Client(proxy.url)
        r = c.request("POST", "/v2/r/blobs/uploads/")
        loc = c._location(r)
        result = {}

        def upload():
            try:
                result["r"] = c.request("PATCH", loc, body=iter([b"x" * 65536] * 32))
            except CONNECTION_ERRORS as e:
                result["e"] = e
        t = threading.Thread(target=upload)
        t.start()
        try:
            assert proxy.wait("hold", timeout=10), proxy.events
            assert reg.count("PATCH") == 0 and len(reg.upload_dirs()) == 1
            # the registry has stored part of the body: its session's size is
            # no longer the one the Location's state names (on a busy machine
            # the bytes can still sit in the socket when the hold begins)
            data = reg.data / "docker/registry/v2/repositories" / reg.upload_dirs()[0] / "data"
            deadline = time.monotonic() + 10
            while not (data.exists() and data.stat().st_size > 0) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert data.exists() and data.stat().st_size > 0, "the registry stored none of the body"
            reg.kill()
        finally:
            proxy.release()
            t.join(30)
        assert not t.is_alive() and "e" in result, result
        reg.start()
        r = c.request("GET", loc)
        assert r.status == 404 and json.loads(r.body)["errors"][0]["code"] in (
            "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"), (r.status, r.body)


def test_proxy_throttles(tmp):
    """throttle(rate): a body at 1 MiB/s takes at least its size / rate;
    the upload still succeeds."""
    blob = layer(12, 1024 * 1024)
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.throttle(MiB, method="PATCH")
        t = time.monotonic()
        d = Client(proxy.url).upload_blob("r", blob, stream=True)
        assert time.monotonic() - t >= len(blob) / MiB, (time.monotonic() - t, len(blob))
        assert proxy.count("throttle", "PATCH") == 1 and d in reg.stored_blobs()


def test_registry_without_tmp_cleaned_at_exit(tmp):
    """Registry() and TokenServer() with no directory given, never closed:
    at interpreter exit the process is stopped and their directories go."""
    code = ("import sys; sys.path.insert(0, %r); import registry\n"
            "t = registry.TokenServer(); r = registry.Registry(token=t)\n"
            "print(r.pid, r.dir, t.dir)\n" % os.path.dirname(registry.__file__))
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         timeout=60, check=True).stdout.split()
    pid, dirs = int(out[0]), [p.decode() for p in out[1:]]
    assert gone(pid) and dirs and not any(os.path.exists(d) for d in dirs), (pid, dirs)


def test_registry_mark_counts_since(tmp):
    """mark(): one registry shared by tests counts each test's requests."""
    with Registry(tmp) as reg:
        http("GET", reg.url + "/v2/")
        m = reg.mark()
        http("HEAD", reg.url + "/v2/x/blobs/" + sha256_digest(b""))
        assert reg.requests(since=m) == [("HEAD", "/v2/x/blobs/" + sha256_digest(b""), 404)]
        assert reg.count("GET", since=m) == 0 and reg.count("GET") == 1


def test_registry_tls(tmp):
    """tls=True: https with a certificate of the test CA; refused without
    that CA (the system's), read back by skopeo through cert_dir()."""
    import ssl
    with Registry(tmp, tls=True) as reg:
        assert reg.url == "https://" + reg.host
        try:
            http("GET", reg.url + "/v2/")
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("a test certificate passed the system CAs")
        c = Client(reg.url, context=reg.ssl_context())
        digest = c.push_image("s", "t", [layer(13)])
        raw = registry.skopeo_inspect_raw(reg.host + "/s:t", cert_dir=reg.cert_dir(tmp / "certs"))
        assert sha256_digest(raw) == digest and reg.count("PUT", "/manifests/") == 1


def test_registry_client_certs(tmp):
    """client_certs=True: without a client certificate the TLS handshake
    fails; with the one cert_dir() writes, skopeo gets in."""
    import ssl
    with Registry(tmp, client_certs=True) as reg:
        bare = ssl.create_default_context(cafile=str(reg.tls.ca_cert))
        try:
            http("GET", reg.url + "/v2/", context=bare)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
        else:
            raise AssertionError("no client certificate needed")
        c = Client(reg.url, context=reg.ssl_context())
        digest = c.push_image("s", "t", [layer(14)])
        certs = reg.cert_dir(tmp / "certs")
        assert sorted(os.listdir(certs)) == ["ca.crt", "client.cert", "client.key"]
        assert sha256_digest(registry.skopeo_inspect_raw(reg.host + "/s:t", cert_dir=certs)) \
            == digest
