"""layersplit push against a real registry (Debian's docker-registry on
loopback, one per test module): every corpus layout pushed from a pipe is
read back by skopeo with the config's diff_ids and the very layer digests
the file mode writes in the same test; the config is pushed as its own
bytes; a second push sends no layer bytes; known blobs are HEAD-checked or
cross-mounted; --out writes the file mode's files in the same pass."""
import functools
import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path

import fixtures
from harness import REPO, assert_error, binary, split, with_repo_tags
from registry import Client, Registry, skopeo_copy_to_oci, skopeo_inspect_config, skopeo_inspect_raw

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

_registry = None


def with_registry(fn):
    """Runs the test with a registry of its own, stopped by PID at its end."""
    @functools.wraps(fn)
    def run(tmp):
        global _registry
        with Registry(tmp) as reg:
            _registry = reg
            try:
                fn(tmp)
            finally:
                _registry = None
    return run


def registry():
    return _registry


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(tmp, archive, dest, *options, pipe=True, env=None, timeout=120, verify=False):
    """layersplit push [options] ARCHIVE|- DEST with a cache and HOME of the
    test's own (and --tls-verify=false unless verify); the completed process
    (err: stderr text)."""
    e = dict(os.environ, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
    e.pop("REGISTRY_AUTH_FILE", None)
    e.pop("XDG_RUNTIME_DIR", None)
    e.update(env or {})
    argv = [binary(), "push"] + ([] if verify else ["--tls-verify=false"]) + [str(o) for o in options]
    if pipe:
        data = Path(archive).read_bytes()
        p = subprocess.run(argv + ["-", dest], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=e, timeout=timeout)
    else:
        p = subprocess.run(argv + [str(archive), dest], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=timeout)
    p.err = p.stderr.decode(errors="replace")
    return p


def pushed(tmp, archive, dest, *options, **kw):
    p = push(tmp, archive, dest, "--json", *options, **kw)
    assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.err.strip())
    return json.loads(p.stdout)


def split_reference(ref):
    """As the push rules read an archive's reference: (name without a
    registry host or None for a bare OCI ref name, tag)."""
    last = ref.rsplit("/", 1)[-1]
    name, tag = ref, None
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
    elif "/" not in ref:
        return None, ref
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        name = rest
    return name, tag or "latest"


def test_split_reference_reads_the_registry_host_as_docker_does(tmp):
    """push.split_reference: a first component with ".", ":", "localhost"
    or an upper-case letter is a registry host; the Python mirror above
    agrees on every case."""
    cases = ["MyHost/app:1", "example.com/team/app:1.0", "ubuntu:22.04", "team/app", "1.0",
             "localhost/a:b", "host:5000/a", "Team/App/x"]
    script = tmp / "split.lua"
    script.write_text('local push = require "layersplit.policies.push"\n'
                      'for _, r in ipairs(arg) do print(r, push.split_reference(r)) end\n')
    p = subprocess.run([binary(), "run", str(script)] + cases, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    got = [line.split("\t") for line in p.stdout.decode().splitlines()]
    assert got[0] == ["MyHost/app:1", "app", "1"], got
    assert got[7] == ["Team/App/x", "App/x", "latest"], got
    for (ref, name, tag), case in zip(got, cases):
        want = split_reference(case)
        assert ref == case and (None if name == "nil" else name, tag) == want, (case, name, tag, want)


def file_mode(tmp, archive):
    """The file mode's output for archive: [(repo_tags, config bytes,
    [(diff_id, digest)])] per manifest.json section."""
    out = tmp / ("files-" + Path(archive).name)
    split(archive, out)
    manifest = json.loads((out / "manifest.json").read_bytes())
    digests = json.loads((out / "digests.json").read_bytes())
    images = []
    for section, mapping in zip(manifest, digests):
        config = (out / section["Config"]).read_bytes()
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        layers = [(d, "sha256:" + mapping[d]["digest"]) for d in diff_ids]
        images.append((section["RepoTags"] or [], config, layers))
    return images


def expected_references(repository, images):
    """{reference under repository: [indexes of the images pushed there]}."""
    names = {split_reference(t)[0] for tags, _, _ in images for t in tags} - {None}
    refs = {}
    for i, (tags, _, _) in enumerate(images):
        for t in tags or ["latest"]:
            name, tag = split_reference(t)
            repo = repository + "/" + name if len(names) > 1 else repository
            refs.setdefault("%s:%s" % (repo, tag), []).append(i)
    return refs


def check_image(ref, manifest, config, layers):
    """manifest (at ref) names config by its own digest and the layers by the
    file mode's digests, in diff_id order."""
    assert manifest["config"]["digest"] == sha256(config), ref
    assert manifest["config"]["size"] == len(config)
    assert [l["digest"] for l in manifest["layers"]] == [d for _, d in layers], ref


def check_layers_by_copy(tmp, ref, layers):
    """skopeo copy docker://ref oci:DIR: every layer blob hashes to its
    digest and decompresses to the config's diff_id."""
    oci = skopeo_copy_to_oci(ref, tmp / ("copy-%s" % ref.replace("/", "-").replace(":", "-")))
    index = json.loads((oci / "index.json").read_bytes())
    manifest = json.loads((oci / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    got = []
    for layer in manifest["layers"]:
        blob = (oci / "blobs/sha256" / layer["digest"][7:]).read_bytes()
        assert sha256(blob) == layer["digest"]
        got.append(sha256(gzip.decompress(blob)))
    assert got == [d for d, _ in layers], ref


def check_pushed(tmp, archive, repository, images, copy=False):
    reg = registry()
    for ref, which in expected_references(reg.host + "/" + repository, images).items():
        raw = skopeo_inspect_raw(ref)
        doc = json.loads(raw)
        if len(which) == 1:
            assert doc["mediaType"] == DOCKER_MANIFEST, (ref, doc)
            _, config, layers = images[which[0]]
            check_image(ref, doc, config, layers)
            assert skopeo_inspect_config(ref)["rootfs"]["diff_ids"] == [d for d, _ in layers]
            if copy:
                check_layers_by_copy(tmp, ref, layers)
                copy = False   # one image per archive is enough
        else:
            assert doc["mediaType"] == DOCKER_LIST, (ref, doc)
            assert len(doc["manifests"]) == len(which)
            for entry, i in zip(doc["manifests"], which):
                assert entry["platform"]["architecture"], entry
                sub = json.loads(skopeo_inspect_raw(ref.rsplit(":", 1)[0] + "@" + entry["digest"]))
                _, config, layers = images[i]
                check_image(ref, sub, config, layers)


@with_registry
def test_every_layout_round_trips_from_a_pipe_and_a_file(tmp):
    """Each image reads back with the file mode's layer digests (computed
    here, with the same build), its own config bytes and the config's
    diff_ids; skopeo copies one image of each archive to an OCI layout whose
    layers decompress to those diff_ids."""
    for name in fixtures.LAYOUTS:
        archive = fixtures.path(name)
        repository = "layouts/" + name.split(".")[0].replace("_", "-")
        images = file_mode(tmp, archive)
        from_pipe = pushed(tmp, archive, "%s/%s" % (registry().host, repository))
        check_pushed(tmp, archive, repository, images, copy=True)
        # and from the file, into another repository: the same manifests
        from_file = pushed(tmp, archive, "%s/%s-file" % (registry().host, repository), pipe=False)
        check_pushed(tmp, archive, repository + "-file", images)
        assert [p["digest"] for p in from_file["pushed"]] == [p["digest"] for p in from_pipe["pushed"]]


@with_registry
def test_skopeo_copies_a_pushed_image_with_the_config_diff_ids(tmp):
    archive = fixtures.path("docker25_containerd.tar")
    images = file_mode(tmp, archive)
    ref = "%s/copy/ctr:1.0" % registry().host
    pushed(tmp, archive, ref)
    check_layers_by_copy(tmp, ref, images[0][2])
    oci = tmp / ("copy-%s" % ref.replace("/", "-").replace(":", "-"))
    index = json.loads((oci / "index.json").read_bytes())
    manifest = json.loads((oci / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    config = images[0][1]
    # skopeo rewrites a Docker config as an OCI one: the content is the same
    copied = json.loads((oci / "blobs/sha256" / manifest["config"]["digest"][7:]).read_bytes())
    assert copied["rootfs"] == json.loads(config)["rootfs"]


@with_registry
def test_push_from_a_file_equals_push_from_a_pipe(tmp):
    archive = fixtures.path("legacy_symlink.tar")
    a = pushed(tmp, archive, "%s/from/pipe:1" % registry().host)
    b = pushed(tmp, archive, "%s/from/file:1" % registry().host, pipe=False)
    assert [p["digest"] for p in a["pushed"]] == [p["digest"] for p in b["pushed"]]


@with_registry
def test_oci_format_pushes_oci_media_types(tmp):
    archive = fixtures.path("oci_platforms.tar")
    images = file_mode(tmp, archive)
    ref = "%s/oci/multi:1.0" % registry().host
    pushed(tmp, archive, ref, "--format", "oci")
    index = json.loads(skopeo_inspect_raw(ref))
    assert index["mediaType"] == OCI_INDEX
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    for entry, (_, config, layers) in zip(index["manifests"], images):
        assert entry["mediaType"] == OCI_MANIFEST
        sub = json.loads(skopeo_inspect_raw("%s/oci/multi@%s" % (registry().host, entry["digest"])))
        assert sub["mediaType"] == OCI_MANIFEST
        assert {l["mediaType"] for l in sub["layers"]} == {OCI_LAYER}
        check_image(ref, sub, config, layers)


@with_registry
def test_second_push_sends_no_layer_bytes(tmp):
    """Layers known from the cache (tar layers) or by name (gzip blobs) are
    HEAD-checked, not sent: no PATCH and no PUT of a blob the second time."""
    reg = registry()
    for name in ("legacy_symlink.tar", "podman_two_images.tar", "docker25_containerd.tar"):
        archive = fixtures.path(name)
        dest = "%s/again/%s" % (reg.host, name.split(".")[0].replace("_", "-"))
        first = pushed(tmp, archive, dest)
        assert first["layer_counts"]["pushed"] > 0, first
        before = reg.requests()
        second = pushed(tmp, archive, dest)
        new = reg.requests()[len(before):]
        assert [r for r in new if r.method == "PATCH"] == [], new
        assert [r for r in new if r.method == "PUT" and "/blobs/" in r.path] == [], new
        assert any(r.method == "HEAD" for r in new), new
        assert second["layer_counts"]["pushed"] == 0, second
        assert [p["digest"] for p in first["pushed"]] == [p["digest"] for p in second["pushed"]]


@with_registry
def test_blobs_in_another_repository_are_mounted(tmp):
    reg = registry()
    archive = fixtures.path("podman_dup.tar")
    pushed(tmp, archive, "%s/mount/source:1" % reg.host)
    before = len(reg.requests())
    doc = pushed(tmp, archive, "%s/mount/target:1" % reg.host)
    new = reg.requests()[before:]
    assert doc["layer_counts"]["mounted"] > 0 and doc["layer_counts"]["pushed"] == 0, doc
    assert not [r for r in new if r.method == "PATCH"], new
    statuses = {l["status"] for img in doc["images"] for l in img["layers"]}
    assert statuses == {"mounted"}, statuses


@with_registry
def test_several_images_go_under_a_prefix(tmp):
    """Each keeps its path minus a registry host: example.com/team/app:1.0
    -> DEST/team/app:1.0, ubuntu:22.04 -> DEST/ubuntu:22.04."""
    reg = registry()
    archive = with_repo_tags(tmp / "names.tar", ["example.com/team/app:1.0"],
                             ["ubuntu:22.04", "localhost/tools/x:2"])
    images = file_mode(tmp, archive)
    doc = pushed(tmp, archive, "%s/prefix" % reg.host)
    refs = sorted("%s:%s" % (p["repository"], p["tag"]) for p in doc["pushed"])
    assert refs == ["%s/prefix/%s" % (reg.host, r) for r in ("team/app:1.0", "tools/x:2", "ubuntu:22.04")], refs
    check_pushed(tmp, archive, "prefix", images)


@with_registry
def test_several_images_and_a_tag_is_a_usage_error(tmp):
    p = push(tmp, fixtures.path("docker25_classic.tar"), "%s/prefix:1.0" % registry().host)
    assert_error(p, 2, ["prefix", "tag"])


@with_registry
def test_out_also_writes_the_file_mode_files(tmp):
    archive = fixtures.path("legacy_two_images.tar")
    split(archive, tmp / "files")
    pushed(tmp, archive, "%s/withfiles" % registry().host, "--out", tmp / "out")
    for name in ("manifest.json", "digests.json", "repositories"):
        assert (tmp / "out" / name).read_bytes() == (tmp / "files" / name).read_bytes(), name
    assert sorted(os.listdir(tmp / "out")) == sorted(os.listdir(tmp / "files"))


@with_registry
def test_bad_destinations_are_usage_errors(tmp):
    archive = fixtures.path("podman_dup.tar")
    for dest in ("app", "127.0.0.1:5000/UPPER", "127.0.0.1:5000/app@sha256:00", "127.0.0.1:5000/a:b:c"):
        assert_error(push(tmp, archive, dest), 2, ["destination"])


@with_registry
def test_spool_is_removed(tmp):
    spool = tmp / "spool"
    spool.mkdir()
    pushed(tmp, fixtures.path("podman_dup.tar"), "%s/spool:1" % registry().host, "--spool", spool)
    assert os.listdir(spool) == []


@with_registry
def test_push_from_the_repl_and_the_client_from_a_script(tmp):
    """push(ARCHIVE, DEST, opts) at the REPL; layersplit.client in a script
    run by `layersplit run` reads back the manifest it pushed."""
    reg = registry()
    archive = fixtures.path("podman_dup.tar")
    env = dict(os.environ, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
    statements = ('p = push(ARCHIVE, "%s/repl/app:1", {tls_verify = false})\n'
                  'print(p[1].repository, p[1].tag, p[1].digest)\n' % reg.host)
    p = subprocess.run([binary(), "repl", archive], input=statements.encode(), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    repository, tag, digest = p.stdout.decode().split()
    assert (repository, tag) == ("%s/repl/app" % reg.host, "1")
    assert sha256(skopeo_inspect_raw("%s/repl/app:1" % reg.host)) == digest
    script = tmp / "read.lua"
    script.write_text(
        'local client = require "layersplit.client"\n'
        'local digest = require "layersplit.digest"\n'
        'local c = client.new{host = arg[1], tls_verify = false}\n'
        'c:probe()\n'
        'local body = c:get_manifest("repl/app", "1", {"application/vnd.docker.distribution.manifest.v2+json"})\n'
        'print("sha256:" .. digest.sha256_hex(body))\n')
    p = subprocess.run([binary(), "run", script, reg.host], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().strip() == digest


def pulled_from(tmp, reg, archive):
    """As if docker had pulled archive's layers from reg's pulled/base: each
    layer recompressed by another tool (gzip -9) and uploaded there, with
    its v2metadata record.  (layers, the v2metadata directory, {diff_id:
    the registry's digest})."""
    (_, _, layers), = file_mode(tmp, archive)
    out = tmp / ("files-" + archive.name)
    digests = json.loads((out / "digests.json").read_bytes())[0]
    client = Client(reg.url)
    v2 = tmp / "v2metadata"
    v2.mkdir()
    pulled = {}
    for diff_id, _ in layers:
        tar = gzip.decompress((out / (digests[diff_id]["layer_id"] + ".tar.gz")).read_bytes())
        pulled[diff_id] = client.upload_blob("pulled/base", gzip.compress(tar, 9, mtime=0))
        (v2 / diff_id[7:]).write_text(json.dumps([{"Digest": pulled[diff_id],
                                                   "SourceRepository": reg.host + "/pulled/base", "HMAC": ""}]))
    return layers, v2, pulled


@with_registry
def test_v2metadata_blobs_on_the_same_registry_are_mounted_not_sent(tmp):
    """--v2metadata: a layer docker pulled from this registry (its record's
    SourceRepository) is mounted from there as the registry's own blob, which
    the manifest then names; nothing is streamed for it."""
    reg = registry()
    archive = fixtures.path("podman_dup.tar")
    layers, v2, pulled = pulled_from(tmp, reg, archive)
    mark = len(reg.requests())
    doc = pushed(tmp, archive, "%s/pulled/app:1" % reg.host, "--v2metadata", v2)
    assert not [r for r in reg.requests()[mark:] if r.method == "PATCH"]
    manifest = json.loads(skopeo_inspect_raw("%s/pulled/app:1" % reg.host))
    assert [l["digest"] for l in manifest["layers"]] == [pulled[d] for d, _ in layers]
    assert {l["status"] for l in doc["images"][0]["layers"]} == {"mounted"}
    check_layers_by_copy(tmp, "%s/pulled/app:1" % reg.host, layers)


@with_registry
def test_v2metadata_blobs_are_named_only_in_the_registry_that_has_them(tmp):
    """Two targets (examples/push-mirror.lua): the first registry holds the
    pulled blobs (--v2metadata), the mirror does not; each manifest names
    blobs its own registry holds; a pulled blob is looked at once (a HEAD,
    the mount, a HEAD for its size), not again when the manifest is made."""
    reg = registry()
    archive = fixtures.path("podman_dup.tar")
    layers, v2, pulled = pulled_from(tmp, reg, archive)
    mark = len(reg.requests())
    with Registry(tmp) as mirror:
        pushed(tmp, archive, "%s/pulled/app:1" % reg.host, "--v2metadata", v2,
               "--policy", REPO / "examples" / "push-mirror.lua", "--set", "mirror=%s/mirror/app" % mirror.host)
        heads = [r.path for r in reg.requests()[mark:] if r.method == "HEAD"]
        for r, repo in ((reg, "pulled/app"), (mirror, "mirror/app")):
            manifest = json.loads(skopeo_inspect_raw("%s/%s:1" % (r.host, repo)))
            for layer in manifest["layers"]:
                assert Client(r.url).head_blob(repo, layer["digest"]).status == 200, (r.host, layer)
            check_layers_by_copy(tmp, "%s/%s:1" % (r.host, repo), layers)
        first = json.loads(skopeo_inspect_raw("%s/pulled/app:1" % reg.host))
        assert [l["digest"] for l in first["layers"]] == [pulled[d] for d, _ in layers]
    for d in set(pulled.values()):
        assert sum(path.endswith("/pulled/app/blobs/" + d) for path in heads) == 2, heads


@with_registry
def test_a_missing_spool_and_https_to_a_plain_registry_are_clear_errors(tmp):
    reg = registry()
    archive = fixtures.path("podman_dup.tar")
    assert_error(push(tmp, archive, "%s/x:1" % reg.host, "--spool", tmp / "absent"), 2, ["--spool"])
    line = assert_error(push(tmp, archive, "%s/x:1" % reg.host, "--retry-times", "0", verify=True), 3,
                        ["GET /v2/"])
    assert "--tls-verify=false" in line, line
    assert reg.count("PUT") == 0
