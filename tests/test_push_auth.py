"""layersplit push to registries that want credentials: htpasswd Basic
(given with --creds, an --authfile, $REGISTRY_AUTH_FILE, ~/.docker/config.json
or a docker-credential helper) and Bearer tokens from a token server (with a
password or an identity token); missing or wrong credentials are exit 3 with
one line; the password is in no output, trace or error."""
import json
import os

import fixtures
from harness import assert_error
from registry import (Registry, TokenServer, credential_helper, credential_helper_calls,
                      skopeo_inspect_raw, write_authfile)
from test_push import push, sha256

USER, PASSWORD = "builder", "s3cret-Pa55-word"
ARCHIVE = "podman_dup.tar"


def config_of(archive):
    import expect
    return expect.Archive(fixtures.path(archive)).images[0].config


def assert_pushed(p, reg, ref, creds=(USER, PASSWORD)):
    assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.err.strip())
    out = p.stdout.decode(errors="replace") + p.err
    assert PASSWORD not in out, "the password appears in the output"
    manifest = json.loads(skopeo_inspect_raw("%s/%s" % (reg.host, ref), creds=creds))
    assert manifest["config"]["digest"] == sha256(config_of(ARCHIVE))


def test_basic_auth_with_creds(tmp):
    with Registry(tmp, htpasswd={USER: PASSWORD}) as reg:
        p = push(tmp, fixtures.path(ARCHIVE), "%s/basic/creds:1" % reg.host,
                 "--creds", "%s:%s" % (USER, PASSWORD), "--trace", "--verbose")
        assert_pushed(p, reg, "basic/creds:1")
        assert "trace: PATCH" in p.err


def test_basic_auth_from_an_authfile_and_the_default_files(tmp):
    with Registry(tmp, htpasswd={USER: PASSWORD}) as reg:
        auth = write_authfile(tmp / "auth.json", auths={reg.host: (USER, PASSWORD)})
        p = push(tmp, fixtures.path(ARCHIVE), "%s/basic/authfile:1" % reg.host, "--authfile", auth)
        assert_pushed(p, reg, "basic/authfile:1")
        p = push(tmp, fixtures.path(ARCHIVE), "%s/basic/env:1" % reg.host,
                 env={"REGISTRY_AUTH_FILE": str(auth)})
        assert_pushed(p, reg, "basic/env:1")
        write_authfile(tmp / "runtime" / "containers" / "auth.json", auths={reg.host: (USER, PASSWORD)})
        p = push(tmp, fixtures.path(ARCHIVE), "%s/basic/runtime:1" % reg.host,
                 env={"XDG_RUNTIME_DIR": str(tmp / "runtime")})
        assert_pushed(p, reg, "basic/runtime:1")
        write_authfile(tmp / ".docker" / "config.json", auths={reg.host: (USER, PASSWORD)})
        p = push(tmp, fixtures.path(ARCHIVE), "%s/basic/docker:1" % reg.host)   # HOME is tmp
        assert_pushed(p, reg, "basic/docker:1")


def test_basic_auth_through_a_credential_helper(tmp):
    with Registry(tmp, htpasswd={USER: PASSWORD}) as reg:
        path = credential_helper(tmp / "bin", {reg.host: (USER, PASSWORD)})
        for key, auth in (("credHelpers", write_authfile(tmp / "helpers.json", cred_helpers={reg.host: "test"})),
                          ("credsStore", write_authfile(tmp / "store.json", creds_store="test"))):
            p = push(tmp, fixtures.path(ARCHIVE), "%s/helper/%s:1" % (reg.host, key.lower()),
                     "--authfile", auth, env={"PATH": path})
            assert_pushed(p, reg, "helper/%s:1" % key.lower())
        calls = credential_helper_calls(tmp / "bin")
        assert calls and all(c == {"action": "get", "server": reg.host} for c in calls), calls


def test_token_auth_with_a_password_and_with_an_identity_token(tmp):
    with TokenServer(tmp, users={USER: PASSWORD}) as tokens, Registry(tmp, token=tokens) as reg:
        p = push(tmp, fixtures.path(ARCHIVE), "%s/token/creds:1" % reg.host,
                 "--creds", "%s:%s" % (USER, PASSWORD), "--trace")
        assert_pushed(p, reg, "token/creds:1")
        assert "repository:token/creds:pull,push" in tokens.scopes_asked()
        refresh = tokens.refresh_token_for(USER)
        auth = write_authfile(tmp / "auth.json", auths={reg.host: {"identitytoken": refresh}})
        p = push(tmp, fixtures.path(ARCHIVE), "%s/token/identity:1" % reg.host, "--authfile", auth)
        assert_pushed(p, reg, "token/identity:1")
        assert refresh not in p.err
        assert any(r.method == "POST" and r.form.get("grant_type") == ["refresh_token"]
                   for r in tokens.requests), tokens.requests


def test_token_auth_mounts_from_another_repository(tmp):
    """A mount needs pull on the source too: the token asked for covers it."""
    with TokenServer(tmp, users={USER: PASSWORD}) as tokens, Registry(tmp, token=tokens) as reg:
        creds = ("--creds", "%s:%s" % (USER, PASSWORD), "--json")
        p = push(tmp, fixtures.path(ARCHIVE), "%s/token/a:1" % reg.host, *creds)
        assert p.returncode == 0, p.err
        p = push(tmp, fixtures.path(ARCHIVE), "%s/token/b:1" % reg.host, *creds)
        assert p.returncode == 0, p.err
        assert json.loads(p.stdout)["layer_counts"]["mounted"] > 0
        assert "repository:token/a:pull" in tokens.scopes_asked()


def test_missing_or_wrong_credentials_are_exit_3_in_one_line(tmp):
    with Registry(tmp, htpasswd={USER: PASSWORD}) as reg:
        line = assert_error(push(tmp, fixtures.path(ARCHIVE), "%s/none:1" % reg.host), 3, ["401"])
        assert reg.host in line and "UNAUTHORIZED" in line, line
        p = push(tmp, fixtures.path(ARCHIVE), "%s/wrong:1" % reg.host, "--creds", "%s:wrong-%s" % (USER, PASSWORD))
        line = assert_error(p, 3, ["401"])
        assert PASSWORD not in p.err
    with TokenServer(tmp, users={USER: PASSWORD}) as tokens, Registry(tmp, token=tokens) as reg:
        line = assert_error(push(tmp, fixtures.path(ARCHIVE), "%s/none:1" % reg.host), 3, ["token", "401"])
        p = push(tmp, fixtures.path(ARCHIVE), "%s/wrong:1" % reg.host, "--creds", "%s:x%s" % (USER, PASSWORD))
        assert_error(p, 3, ["token", "401"])
        assert PASSWORD not in p.err


def test_a_failing_credential_helper_is_exit_3(tmp):
    with Registry(tmp, htpasswd={USER: PASSWORD}) as reg:
        auth = write_authfile(tmp / "auth.json", cred_helpers={reg.host: "absent"})
        assert_error(push(tmp, fixtures.path(ARCHIVE), "%s/x:1" % reg.host, "--authfile", auth), 3,
                     ["docker-credential-absent"])
        assert_error(push(tmp, fixtures.path(ARCHIVE), "%s/x:1" % reg.host, "--authfile", tmp / "nope.json"),
                     2, ["authfile"])
        assert not os.path.exists(tmp / "nope.json")


def test_insufficient_scope_gets_a_new_token(tmp):
    """The token server first grants pull only: the registry's 401 with
    error="insufficient_scope" makes the push ask again, and it succeeds."""
    asked = []

    def grant(user, rtype, name, actions):
        asked.append(name)
        return ["pull"] if len(asked) == 1 else actions
    with TokenServer(tmp, users={USER: PASSWORD}, grant=grant) as tokens, Registry(tmp, token=tokens) as reg:
        p = push(tmp, fixtures.path(ARCHIVE), "%s/scope/app:1" % reg.host, "--creds", "%s:%s" % (USER, PASSWORD))
        assert_pushed(p, reg, "scope/app:1")
        assert tokens.issued[0]["access"][0]["actions"] == ["pull"], tokens.issued[0]
        assert len(tokens.issued) >= 2
