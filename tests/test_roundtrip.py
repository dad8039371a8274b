"""The output read back by other tools: skopeo loads it as a docker-archive
(checking each layer against its diff_id) and umoci unpacks the result into
the very files fixtures.make_images() put in the image."""
import json
import os
import subprocess
import tarfile

import fixtures
from harness import split


def _as_docker_archive(out, tar_path):
    """OUT packed as a docker-archive, its Layers pointing at the .tar.gz files."""
    manifest = json.loads((out / "manifest.json").read_bytes())
    for section in manifest:
        section["Layers"] = [l.split("/")[0] + ".tar.gz" for l in section["Layers"]]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(tar_path, "w") as t:
        for name in sorted(os.listdir(out)):
            if name != "digests.json":
                t.add(out / name, name)


def _unpack(tmp, archive, ref):
    split(fixtures.path(archive), tmp / "out")
    _as_docker_archive(tmp / "out", tmp / "split.tar")
    for cmd in (["skopeo", "copy", "-q", "docker-archive:%s:%s" % (tmp / "split.tar", ref),
                 "oci:%s:t" % (tmp / "oci")],
                ["umoci", "unpack", "--rootless", "--image", "%s:t" % (tmp / "oci"), str(tmp / "bundle")]):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.returncode == 0, "%s: %s" % (cmd[0], p.stderr.decode().strip())
    return tmp / "bundle" / "rootfs"


def _base_files(root):
    assert (root / "etc/hello").read_bytes() == b"hello from the layersplit tests\n"
    assert os.readlink(root / "usr/bin/tool-link") == "tool"
    assert os.access(root / "usr/bin/tool", os.X_OK)
    readme = root / "usr/share/doc/layersplit/README"
    assert readme.read_bytes() == fixtures.words(1, 6000)
    assert os.path.samefile(readme, root / "usr/share/doc/layersplit/README.hard")
    assert (root / "var/lib/layersplit/data.bin").read_bytes() == fixtures.words(2, 1 << 20)


def test_legacy_second_image_unpacks_to_its_files(tmp):
    root = _unpack(tmp, "legacy_two_images.tar", "example.com/legacy:second")
    _base_files(root)
    assert (root / "srv/extra.txt").read_bytes() == b"only in the second image\n"


def test_legacy_duplicated_layer_image_unpacks_to_its_files(tmp):
    """Layers add opt/dup, remove it, add it again: it is there at the end."""
    root = _unpack(tmp, "legacy_symlink.tar", "example.com/legacy:dup")
    _base_files(root)
    assert (root / "opt/dup/f").read_bytes() == b"the same bytes every time\n"
    assert (root / "opt/dup/g").read_bytes() == fixtures.words(3, 3000)


def test_containerd_gzip_and_zstd_image_unpacks_to_its_files(tmp):
    root = _unpack(tmp, "docker25_containerd.tar", "example.com/ctr:1.0")
    _base_files(root)
    assert not (root / "srv").exists()
