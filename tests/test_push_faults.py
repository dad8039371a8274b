"""layersplit push when the network or the registry fails, through a fault
proxy in front of a real registry: a connection cut mid-upload, 500/503/429
answers and a stalled registry are retried (the blob again, whole, from the
spool) and the push succeeds; a dead registry, or one killed mid-upload, is
exit 3 in bounded time with no manifest, no spool and no process left;
SIGINT cancels the upload.  Also TLS: --cert-dir for a test CA and a client
certificate."""
import json
import os
import signal
import subprocess
import time

import fixtures
from harness import assert_error, binary
from registry import Client, FaultProxy, Registry, skopeo_inspect_raw
from test_push import file_mode, push, sha256

ARCHIVE = "legacy_symlink.tar"   # one layer of about 1 MiB: its upload can be cut


def spool(tmp):
    d = tmp / "spool"
    d.mkdir(exist_ok=True)
    return d


def assert_image(reg, ref, archive=ARCHIVE, tmp=None, cert_dir=None):
    """ref holds archive's image with the file mode's digests."""
    d = tmp / ("files-" + ref.replace("/", "-").replace(":", "-"))
    d.mkdir()
    (_, config, layers), = file_mode(d, fixtures.path(archive))
    manifest = json.loads(skopeo_inspect_raw("%s/%s" % (reg.host, ref), cert_dir=cert_dir))
    assert manifest["config"]["digest"] == sha256(config)
    assert [l["digest"] for l in manifest["layers"]] == [d for _, d in layers]


def our_processes(tmp):
    """layersplit processes still running with tmp in their arguments."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmd = (open("/proc/%s/cmdline" % pid, "rb").read()).split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0] == binary().encode() and any(str(tmp).encode() in a for a in cmd):
            found.append(pid)
    return found


def test_a_cut_connection_is_retried_from_the_spool(tmp):
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.cut(after=20000, method="PATCH")
        p = push(tmp, fixtures.path(ARCHIVE), "%s/cut:1" % proxy.host, "--spool", spool(tmp), "--verbose")
        assert p.returncode == 0, p.err
        assert proxy.count("cut") == 1, proxy.events
        assert "sending it again from the spool" in p.err
        assert_image(reg, "cut:1", tmp=tmp)
        assert os.listdir(spool(tmp)) == []


def test_500_503_and_429_answers_are_retried(tmp):
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.respond(503, method="POST")
        proxy.respond(500, method="PUT", path="/blobs/uploads/")
        proxy.respond(429, method="PUT", path="/manifests/", headers={"Retry-After": "1"})
        p = push(tmp, fixtures.path(ARCHIVE), "%s/answers:1" % proxy.host)
        assert p.returncode == 0, p.err
        assert proxy.count("respond") == 3 and proxy.pending() == [], proxy.events
        assert_image(reg, "answers:1", tmp=tmp)


def test_an_answer_over_the_size_cap_is_named_for_a_request_and_an_upload(tmp):
    """A registry answering with 5 MiB of body (a request's answer is read
    up to 4 MiB, a streamed upload's up to 1 MiB): the message names the
    cap, not curl's write failure.  The POST that opens an upload fails the
    push (exit 3, no retries left); a layer's streamed PATCH is sent again
    whole from the spool, saying why under --verbose."""
    big = b"x" * (5 << 20)
    d = tmp / "post"
    d.mkdir()
    with Registry(d) as reg, FaultProxy(reg) as proxy:
        proxy.respond(500, times=10, method="POST", body=big)
        p = push(d, fixtures.path(ARCHIVE), "%s/big:1" % proxy.host, "--spool", spool(d), "--retry-times", "0")
        assert_error(p, 3, ["POST blob upload: answer larger than 4194304 bytes (HTTP 500)"])
        assert os.listdir(spool(d)) == []
    d = tmp / "patch"
    d.mkdir()
    with Registry(d) as reg, FaultProxy(reg) as proxy:
        proxy.respond(500, method="PATCH", body=big)
        p = push(d, fixtures.path(ARCHIVE), "%s/big:1" % proxy.host, "--spool", spool(d), "--verbose",
                 "--trace")
        assert p.returncode == 0, p.err
        assert "PATCH blob: answer larger than 1048576 bytes (HTTP 500); sending it again from the spool" \
            in p.err, p.err
        traced = [l for l in p.err.splitlines() if l.startswith("trace: PATCH ")]
        assert any(l.endswith(": answer larger than 1048576 bytes (HTTP 500)") for l in traced), traced
        assert_image(reg, "big:1", tmp=d)


def test_a_stalled_upload_times_out_and_is_retried(tmp):
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.stall(method="PATCH")
        started = time.monotonic()
        p = push(tmp, fixtures.path(ARCHIVE), "%s/stall:1" % proxy.host, "--timeout", "2")
        assert p.returncode == 0, p.err
        assert proxy.count("stall") == 1
        assert time.monotonic() - started < 30
        assert_image(reg, "stall:1", tmp=tmp)


def test_a_dead_registry_is_exit_3_in_bounded_time(tmp):
    with Registry(tmp) as reg:
        host = reg.host
        reg.kill()
        started = time.monotonic()
        p = push(tmp, fixtures.path(ARCHIVE), "%s/dead:1" % host, "--spool", spool(tmp), "--timeout", "5")
        line = assert_error(p, 3, ["GET /v2/"])
        assert host in line, line
        assert time.monotonic() - started < 60
        assert os.listdir(spool(tmp)) == [] and our_processes(tmp) == []


def start_push(tmp, dest, *options):
    e = dict(os.environ, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
    return subprocess.Popen([binary(), "push", "--tls-verify=false", "--spool", str(spool(tmp))]
                            + [str(o) for o in options] + ["-", dest],
                            stdin=open(fixtures.path(ARCHIVE), "rb"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=e)


def finish(p, timeout=90):
    out, err = p.communicate(timeout=timeout)
    p.err = err.decode(errors="replace")
    p.stdout = out
    return p


def test_a_registry_killed_mid_upload_leaves_nothing_behind(tmp):
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.hold(after=20000, method="PATCH", skip=1)   # the second layer: 1 MiB
        started = time.monotonic()
        p = start_push(tmp, "%s/killed:1" % proxy.host, "--timeout", "5")
        try:
            assert proxy.wait("hold", timeout=30), proxy.events
            reg.kill()
        finally:
            proxy.release()
        finish(p)
        assert_error(p, 3)
        assert time.monotonic() - started < 90
        assert os.listdir(spool(tmp)) == [] and our_processes(tmp) == []
        reg.start()
        r = Client(reg.url).request("GET", "/v2/killed/manifests/1")
        assert r.status == 404, r.status


def test_sigint_during_an_upload_cancels_it_and_pushes_no_manifest(tmp):
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.hold(after=20000, method="PATCH", skip=1)   # the second layer: 1 MiB
        p = start_push(tmp, "%s/interrupted:1" % proxy.host)
        try:
            assert proxy.wait("hold", timeout=30), proxy.events
            p.send_signal(signal.SIGINT)
        finally:
            proxy.release()
        finish(p)
        assert p.returncode == 128 + signal.SIGINT, (p.returncode, p.err)
        assert "interrupted" in p.err and len(p.err.splitlines()) == 1, p.err
        assert os.listdir(spool(tmp)) == [] and our_processes(tmp) == []
        assert reg.count("PUT", path="/manifests/") == 0
        # the open session is cancelled, best effort: its PATCH may have
        # reached the registry whole meanwhile, which makes the location
        # layersplit holds stale (404), as REGISTRY.md says
        assert reg.count("DELETE", path="/blobs/uploads/") >= 1


def test_https_with_a_cert_dir_and_a_client_certificate(tmp):
    with Registry(tmp, tls=True) as reg:
        certs = reg.cert_dir(tmp / "certs")
        p = push(tmp, fixtures.path(ARCHIVE), "%s/tls:1" % reg.host, "--cert-dir", certs, verify=True)
        assert p.returncode == 0, p.err
        assert_image(reg, "tls:1", tmp=tmp, cert_dir=certs)
        assert_error(push(tmp, fixtures.path(ARCHIVE), "%s/tls:2" % reg.host, "--retry-times", "0",
                          verify=True), 3, ["certificate", "SSL"])
    with Registry(tmp, client_certs=True) as reg:
        certs = reg.cert_dir(tmp / "client-certs")
        p = push(tmp, fixtures.path(ARCHIVE), "%s/mtls:1" % reg.host, "--cert-dir", certs, verify=True)
        assert p.returncode == 0, p.err
        assert_image(reg, "mtls:1", tmp=tmp, cert_dir=certs)


def test_a_truncated_archive_is_exit_1_and_pushes_no_manifest(tmp):
    data = fixtures.path(ARCHIVE).read_bytes()
    (tmp / "half.tar").write_bytes(data[:len(data) // 2])
    with Registry(tmp) as reg:
        p = push(tmp, tmp / "half.tar", "%s/half:1" % reg.host, "--spool", spool(tmp))
        assert_error(p, 1, ["truncated", "unexpected end", "eof"])
        assert reg.count("PUT", path="/manifests/") == 0
        assert os.listdir(spool(tmp)) == [] and our_processes(tmp) == []


def test_a_slow_registry_slows_the_input_and_memory_stays_bounded(tmp):
    """The upload queue is bounded: with the registry taking 4 MB/s, feeding a
    40 MB incompressible layer through the pipe takes about as long as the
    upload (the input waits), and the process never holds the layer."""
    import random
    import threading
    import tarkit
    data = random.Random(9).randbytes(40 << 20)
    tar = tarkit.layer_tar([("big.bin", data)])
    image = {"tags": ["example.com/big:1"], "config": tarkit.config_for([tar]),
             "layers": [(tarkit.pick_id("big"), tar)]}
    archive = tmp / "big.tar"
    archive.write_bytes(tarkit.legacy_archive([image]))
    with Registry(tmp) as reg, FaultProxy(reg) as proxy:
        proxy.throttle(4 << 20, method="PATCH")
        e = dict(os.environ, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
        errfile = open(tmp / "stderr", "w+b")
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(tmp / "rss"),
                              binary(), "push", "--tls-verify=false", "-j", "2", "-", "%s/big:1" % proxy.host],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errfile, env=e)
        fed = {}

        def feed():
            started = time.monotonic()
            p.stdin.write(archive.read_bytes())
            p.stdin.close()
            fed["seconds"] = time.monotonic() - started
        t = threading.Thread(target=feed)
        t.start()
        p.wait(timeout=120)
        t.join()
        assert p.returncode == 0, (tmp / "stderr").read_text()
        assert proxy.count("throttle") == 1, proxy.events
        # 40 MB at 4 MB/s is 10 s; buffers (the pipe, the gzip ring, the 1 MiB
        # upload queue, the sockets) hold some MB of it: the input waited
        assert fed["seconds"] > 5, fed
        rss_mib = int((tmp / "rss").read_text().split()[-1]) / 1024   # GNU time: peak RSS in KiB
        assert rss_mib < 64, rss_mib
        (_, config, layers), = file_mode(tmp, archive)
        manifest = json.loads(skopeo_inspect_raw("%s/big:1" % reg.host))
        assert [l["digest"] for l in manifest["layers"]] == [d for _, d in layers]
