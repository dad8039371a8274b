"""make bench's pieces on a tiny image: the image builder writes a valid,
reproducible docker <= 24 archive, and bench/bench.py runs end to end and
refuses to time a configuration whose output is wrong.  No timing is asserted."""
import json
import os
import re
import subprocess
import sys
import tarfile

import expect
from harness import REPO, binary, split

sys.path.insert(0, str(REPO / "bench"))
import make_image  # noqa: E402

DEFAULT = "layersplit (libdeflate -6, the default)"
ROWS = [DEFAULT + " -j 1", DEFAULT + " -j 2", "layersplit --level 9 -j 2", "layersplit --level 12 -j 2",
        "layersplit --engine zlib -j 1", "layersplit --engine zlib -j 2",
        "layersplit --engine isal -j 1", "layersplit --engine isal -j 2",
        "layersplit --engine isal --level 3 -j 2", DEFAULT + " -j 2 from a pipe",
        "layersplit --engine isal -j 2 from a pipe", "pigz -6 -p 1", "pigz -6 -p 2", "pigz -9 -p 2",
        "igzip -1", "igzip -3", "libdeflate-gzip -12 (whole layers)", "skopeo copy", "layersplit push --engine isal -j 2",
        "skopeo copy to a registry", "original (Python, gzip -9)", "openssl dgst -sha256 of the archive",
        "layersplit, 300 empty layers -j 2"]
NOT_LAYER_FILES = {"layersplit push --engine isal -j 2", "skopeo copy to a registry",
                   "original (Python, gzip -9)", "openssl dgst -sha256 of the archive", "layersplit, 300 empty layers -j 2"}
TARGETS = 9


def bench(tmp, layersplit=None, size_mb=5):
    env = dict(os.environ, BENCH_SIZE_MB=str(size_mb), BENCH_RUNS="1", BENCH_JOBS="2",
               BENCH_QUIET_WAIT="0", BENCH_MANY_LAYERS="300", BENCH_CACHE=str(tmp / "cache"),
               BENCH_RESULTS=str(tmp / "results.md"), LAYERSPLIT=layersplit or binary())
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench.py")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)


def section(text, title):
    return text.split("## " + title + "\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text):
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ")][2:]   # no head, no rule


def test_bench_image_is_a_reproducible_docker_save_archive(tmp):
    info = make_image.ensure(2, tmp / "a")
    archive = tmp / "a" / "image.tar"
    with tarfile.open(archive) as t:
        names = t.getnames()
    assert names == sorted(names), "entries not in lexical order: %s" % names
    assert {"manifest.json", "repositories", info["config"]} <= set(names), names
    model = expect.Archive(archive)
    assert len(model.images) == 1 and len(model.images[0].blobs) == len(info["layers"]) >= 2
    image = model.images[0]
    assert image.diff_ids == [l["diff_id"] for l in info["layers"]]
    for layer, blob, diff in zip(info["layers"], image.blobs, image.diff_ids):
        assert (tmp / "a" / layer["file"]).read_bytes() == blob, layer["file"]
        assert "sha256:" + expect.sha256(blob) == diff
        with tarfile.open(tmp / "a" / layer["file"]) as t:
            assert any(m.isfile() and m.size > 0 for m in t), "%s holds no file" % layer["file"]
    p = subprocess.run(["skopeo", "inspect", "--config", "docker-archive:%s" % archive],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    assert json.loads(p.stdout)["rootfs"]["diff_ids"] == image.diff_ids
    split(archive, tmp / "out", pipe=True)
    expect.check_output(model, tmp / "out")
    assert make_image.ensure(2, tmp / "b")["key"] == info["key"]
    assert (tmp / "b" / "image.tar").read_bytes() == archive.read_bytes(), "not reproducible"
    stamp = archive.stat().st_mtime_ns
    make_image.ensure(2, tmp / "a")
    assert archive.stat().st_mtime_ns == stamp, "a cached image was built again"


def test_bench_runs_end_to_end_on_a_tiny_image(tmp):
    # a section measured by hand in the results file stays; the bench's own are rewritten
    (tmp / "results.md").write_text("# old\n\n## Results\n\nold rows\n\n## Targets (issue 1)\n\nold\n\n"
                                    "## Profile\n\nby hand\n")
    p = bench(tmp)
    assert p.returncode == 0, "exit %d: %s" % (p.returncode, p.stderr.decode())
    text = (tmp / "results.md").read_text()
    assert text.endswith("\n## Profile\n\nby hand\n") and "old rows" not in text, text[-300:]
    assert "issue 1)" not in text, text
    rows = table_rows(section(text, "Results"))
    assert [r[0] for r in rows] == ROWS, [r[0] for r in rows]
    for r in rows:
        wall, mb_s, rss = float(r[3]), float(r[7]), float(r[10])
        assert wall > 0 and mb_s > 0 and rss > 0, r
        if r[0] not in NOT_LAYER_FILES - {"original (Python, gzip -9)"}:
            assert 0 < float(r[9]) < 1, "%s: out/in %s" % (r[0], r[9])
        if r[0] not in NOT_LAYER_FILES:
            assert float(r[13]) > 0 and float(r[14]) > 0, "%s: bytes ratios %s" % (r[0], r[13:])
    pigz = next(r for r in rows if r[0] == "pigz -6 -p 2")
    assert float(pigz[11]) == 1 and float(pigz[13]) == 1, pigz
    targets = table_rows(section(text, "Targets (issues 3, 9 and 11)"))
    assert len(targets) == TARGETS, targets
    for t in targets:
        assert re.match(r"(PASS|FAIL)\b", t[2]), t
    level12 = next(t for t in targets if t[0].startswith("layersplit --level 12"))
    assert "libdeflate 12 on each whole layer, no blocks: " in level12[1], level12
    push = next(t for t in targets if t[0].startswith("push <="))
    assert re.search(r"CPU: layersplit's own [\d.]+x .* the registry on the same CPUs used [\d.]+ s more",
                     push[1]), push
    push_row = next(r for r in rows if r[0] == "layersplit push --engine isal -j 2")
    assert re.match(r"[\d.]+ \+ [\d.]+ registry$", push_row[5]), push_row
    rss_mib = float(re.search(r"([\d.]+) MiB", targets[-1][1]).group(1))
    assert targets[-1][2].startswith("PASS" if rss_mib <= 64 else "FAIL"), targets[-1]
    correctness = section(text, "Correctness")
    for name in (DEFAULT, "layersplit --engine isal"):
        assert "%s -j 1, %s -j 2 and %s -j 2 from a pipe: byte-identical" % (name, name, name) \
            in correctness, correctness
    assert "layersplit --engine zlib -j 1 and layersplit --engine zlib -j 2: byte-identical" in correctness
    commands = section(text, "Commands")
    assert re.search(r"^\S*layersplit -q -j 2 \S+/5mb/image\.tar OUT$", commands, re.M), commands
    assert re.search(r"^\S*layersplit -q --engine isal -j 2 \S+/5mb/image\.tar OUT$", commands, re.M), commands
    assert re.search(r"^cat \S+/5mb/image\.tar \| \S*layersplit -q -j 2 - OUT$", commands, re.M), commands
    assert re.search(r"^skopeo copy -q docker-archive:\S+/5mb/image\.tar oci:OUT$", commands, re.M), commands
    assert re.search(r"^cat \S+/5mb/image\.tar \| \S*layersplit push -q --tls-verify=false --engine isal -j 2 "
                     r"--cache OUT/cache --spool OUT - REGISTRY/bench/layersplit:1$", commands, re.M), commands
    assert re.search(r"^\S*layersplit -q -j 2 \S+/many-300\.tar OUT/out$", commands, re.M), commands
    assert p.stdout.decode().count("| PASS") + p.stdout.decode().count("| FAIL") == TARGETS


def test_bench_stops_when_thread_counts_give_different_bytes(tmp):
    # A layersplit whose -j 1 output differs (another level): the bench must
    # refuse to time it rather than report numbers for a broken configuration.
    wrapper = tmp / "layersplit"
    wrapper.write_text('#!/bin/sh\ncase " $* " in *" -j 1 "*) exec %s --level 1 "$@";; esac\n'
                       'exec %s "$@"\n' % (binary(), binary()))
    wrapper.chmod(0o755)
    p = bench(tmp, layersplit=str(wrapper), size_mb=2)
    err = p.stderr.decode()
    assert p.returncode == 1, "exit %d: %s" % (p.returncode, err)
    assert "bench: %s -j 1 and %s -j 2 write different bytes" % (DEFAULT, DEFAULT) in err, err
    assert not (tmp / "results.md").exists()
