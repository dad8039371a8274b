"""The documentation tells the truth and the install works: the man page
renders cleanly and names every option of --help and every bundled policy;
`make install` into a DESTDIR gives a binary that runs from anywhere, with its
policies, and `make uninstall` takes everything away again; the commands in
README.md that can run offline do, as written."""
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import expect
import fixtures
from harness import REPO, binary, layersplit

MAN = REPO / "doc" / "layersplit.1"


def man_text(page=MAN):
    p = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", str(page)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    return p.stdout.decode()


def help_options():
    text = layersplit("--help").stdout.decode()
    options = set()
    for line in text.splitlines():
        if re.match(r"  -", line):     # an option line; its description follows two spaces
            options.update(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line[2:].split("  ")[0]))
    assert {"--policy", "--help", "-j"} <= options, options
    return options


def test_man_page_renders_without_warnings(tmp):
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings", "-l", str(MAN)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat"))
        assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()
        assert b"layersplit" in p.stdout


def test_every_help_option_is_in_the_man_page(tmp):
    text = man_text()
    missing = sorted(o for o in help_options() if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), text))
    assert not missing, "options in --help but not in doc/layersplit.1: %s" % missing


def test_every_usage_form_is_in_the_man_page_synopsis(tmp):
    """`layersplit run ...`, `layersplit repl ...`: each form --help shows."""
    text = layersplit("--help").stdout.decode()
    forms = re.findall(r"^(?:usage:)?\s+layersplit ([a-z]+) ", text, re.M)
    synopsis = man_text().split("\nSYNOPSIS\n")[1].split("\nDESCRIPTION\n")[0]
    assert "run" in forms, text
    for form in forms:
        assert re.search(r"layersplit %s\b" % form, synopsis), \
            "doc/layersplit.1 SYNOPSIS lacks `layersplit %s`" % form


def test_man_page_names_every_bundled_policy(tmp):
    section = man_text().split("\nPOLICIES\n")[1].split("\nOUTPUT\n")[0]
    for policy in sorted(p.stem for p in (REPO / "lua" / "policies").glob("*.lua")):
        assert re.search(r"^\s+%s$" % re.escape(policy), section, re.M), \
            "doc/layersplit.1 POLICIES does not describe %s" % policy


def files_under(d):
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*") if not p.is_dir())


def make(*args):
    build = []
    if os.environ.get("LAYERSPLIT") and Path(binary()).name == "layersplit":
        build = ["BUILD=%s" % Path(binary()).parent]   # install the binary under test
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO)] + build + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    assert p.returncode == 0, "make %s: %s" % (" ".join(args), p.stderr.decode())


SITE_POLICY = """
-- A site policy on top of the bundled launchpad one.
local fs = require "layersplit.fs"
local errors = require "layersplit.errors"
local launchpad = require "layersplit.policies.launchpad"
local policy = setmetatable({}, {__index = launchpad})
function policy.finish(ctx)
	launchpad.finish(ctx)
	errors.check(fs.write_file(ctx:path("site.txt"), "images: " .. #ctx.summary.images .. "\\n"))
end
return policy
"""


def test_install_into_destdir_runs_from_anywhere_and_uninstalls_clean(tmp):
    root = tmp / "root"
    make("install", "DESTDIR=%s" % root, "PREFIX=/opt/ls")
    prefix = root / "opt" / "ls"
    installed = files_under(root)
    lua = sorted("opt/ls/share/layersplit/lua/layersplit/" + p.name for p in (REPO / "lua" / "layersplit").glob("*.lua"))
    lua += sorted("opt/ls/share/layersplit/lua/layersplit/policies/" + p.name for p in (REPO / "lua" / "policies").glob("*.lua"))
    want = ["opt/ls/bin/layersplit", "opt/ls/share/doc/layersplit/README.md",
            "opt/ls/share/doc/layersplit/SCRIPTING.md", "opt/ls/share/man/man1/layersplit.1"] + lua
    assert installed == sorted(want), "installed %s" % installed
    for name in lua:
        rel = name.split("share/layersplit/lua/layersplit/")[1]
        source = REPO / "lua" / ("policies/" + rel.split("/")[1] if rel.startswith("policies/") else "layersplit/" + rel)
        assert (root / name).read_bytes() == source.read_bytes(), name
    assert os.access(prefix / "bin" / "layersplit", os.X_OK)
    assert man_text(prefix / "share" / "man" / "man1" / "layersplit.1") == man_text()

    exe = str(prefix / "bin" / "layersplit")
    work = tmp / "elsewhere"    # no source tree in sight
    work.mkdir()

    def run(*args):
        p = subprocess.run([exe] + [str(a) for a in args], cwd=work, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert p.returncode == 0, "%s: exit %d: %s" % (args, p.returncode, p.stderr.decode())
        return p

    assert run("--help").stdout == layersplit("--help").stdout
    archive = fixtures.path("oci_archive.tar")
    run("--policy", "oci-layout", archive, "oci")
    index = json.loads((work / "oci" / "index.json").read_text())
    assert json.loads((work / "oci" / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    for descriptor in index["manifests"]:
        blob = (work / "oci" / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_bytes()
        assert expect.sha256(blob) == descriptor["digest"].split(":")[1] and len(blob) == descriptor["size"]
    (work / "site.lua").write_text(SITE_POLICY)
    run("--policy", "./site.lua", fixtures.path("legacy_two_images.tar"), "site")
    assert (work / "site" / "site.txt").read_text() == "images: 2\n"
    (work / "site" / "site.txt").unlink()     # the rest is launchpad's, exactly
    expect.check_output(fixtures.path("legacy_two_images.tar"), work / "site")

    make("uninstall", "DESTDIR=%s" % root, "PREFIX=/opt/ls")
    assert files_under(root) == [], "left after uninstall: %s" % files_under(root)


def code_blocks(text, lang=""):
    """The fenced blocks of a Markdown text whose info string is lang."""
    blocks, current, info = [], None, None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_readme_options_are_real(tmp):
    """Every --option README.md names on a layersplit line exists in --help."""
    known = help_options()
    other_tools = re.compile(r"\b(skopeo|docker|podman|pigz|igzip|umoci|gzip|zstd|make|tar)\b ")
    for line in (REPO / "README.md").read_text().splitlines():
        if other_tools.search(line) and "layersplit" not in line:
            continue
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
            if line.lstrip().startswith(("skopeo", "docker", "podman")) and \
                    line.find(option) < line.find("layersplit"):
                continue   # the producer's own option
            assert option in known, "README.md names %s, which --help does not have: %r" % (option, line)


def readme_push(command, tmp, env, out):
    """A README push line, run against a registry of the test's own standing
    for registry.example.com (plain http on loopback)."""
    from registry import Registry, skopeo_inspect_raw
    with Registry(tmp) as reg:
        shell = (command.replace("registry.example.com", reg.host)
                 .replace("layersplit push ", "layersplit push --tls-verify=false ", 1)
                 .replace("OUT/", str(out) + "/"))
        e = dict(env, HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"))
        p = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp, env=e,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        assert p.returncode == 0, "README.md: %s: exit %d: %s" % (command, p.returncode, p.stderr.decode())
        if "--out" in command:
            assert (out / "manifest.json").exists() and (out / "digests.json").exists()
        if "--json" in command:
            for pushed in json.loads((tmp / "pushed.json").read_text())["pushed"]:
                assert json.loads(skopeo_inspect_raw("%s:%s" % (pushed["repository"], pushed["tag"])))
    return 1


def test_readme_commands_run_as_written(tmp):
    """The README's shell lines that need no container engine run, with
    image.tar, IMAGE and OUT/ standing for a real archive, an image and a
    fresh directory; skopeo reads an OCI layout instead of containers-storage."""
    readme = (REPO / "README.md").read_text()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "layersplit").symlink_to(binary())
    shutil.copy(fixtures.path("legacy_two_images.tar"), tmp / "image.tar")
    oci = tmp / "oci"
    oci.mkdir()
    with tarfile.open(fixtures.path("oci_archive.tar")) as t:
        t.extractall(oci)
    reference = expect.Archive(fixtures.path("oci_archive.tar")).images[0].tags[0]
    sites = code_blocks(readme, "lua")
    assert sites, "README.md has no site policy example"
    (tmp / "site.lua").write_text(sites[0])
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    ran = 0
    for block in code_blocks(readme):
        for line in block.splitlines():
            command = line.split("#")[0].strip()
            if command.startswith("make "):
                target = command.split()[1]
                assert target in targets, "README.md: make %s: no such target" % target
                continue
            if not re.match(r"(layersplit|skopeo|docker|podman) ", command):
                continue
            if command.startswith(("docker ", "podman ")):
                assert re.search(r"\| layersplit (push )?- \S+$", command), command
                continue   # no container engine here
            out = tmp / ("out%d" % ran)
            if command.startswith("layersplit push "):
                ran += readme_push(command, tmp, env, out)
                continue
            shell = (command.replace("containers-storage:IMAGE", "oci:%s:%s" % (oci, reference))
                     .replace("IMAGE", reference).replace("OUT/", str(out) + "/"))
            p = subprocess.run(["bash", "-o", "pipefail", "-c", shell], cwd=tmp, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=120)
            assert p.returncode == 0, "README.md: %s: exit %d: %s" % (line, p.returncode, p.stderr.decode())
            assert (out / "manifest.json").exists() or (out / "index.json").exists(), line
            if "skopeo" in command:
                manifest = json.loads((out / "manifest.json").read_text())
                assert manifest[0]["RepoTags"] == [reference], manifest
            if "--json" in command:
                summary = json.loads((tmp / "summary.json").read_text())
                assert summary["layers"] == len(list(out.glob("*.tar.gz")))
            if "site.lua" in command:
                check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                assert check.returncode == 0, check.stdout + check.stderr
                assert len(check.stdout.splitlines()) == len(list(out.glob("*.tar.gz")))
            ran += 1
    assert ran >= 4, "only %d README commands ran" % ran
