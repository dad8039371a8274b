#!/usr/bin/env python3
"""make bench: layersplit against its peers, on one image, in one run.

Builds (once, cached in bench/cache/: twice BENCH_SIZE_MB on disk, the
archive and its layer tars) an image archive of about BENCH_SIZE_MB from real
files (bench/make_image.py), then times, best of BENCH_RUNS runs
(interleaved):
  - layersplit, reading the archive file (`layersplit image.tar OUT`, as
    skopeo reads it and pigz its layer files): the default engine
    (libdeflate level 6), --engine zlib and --engine isal (its default
    level, 2) with -j 1 and -j N; libdeflate levels 9 and 12 and isal
    level 3 with -j N; and from a pipe (`cat image.tar | layersplit -
    OUT`, as from `docker save`) the default and isal with -j N;
  - pigz -6 -p 1 and -p N, pigz -9 -p N, igzip -1 and -3 (one thread), each
    on the layer tars one after another: the same bytes layersplit
    compresses;
  - libdeflate-gzip -12 on each whole layer tar (first run only): the
    fewest bytes libdeflate level 12 writes for these files, the bound for
    --level 12, which compresses 1 MiB blocks;
  - skopeo copy docker-archive:image.tar oci:DIR (reads the file);
  - pushing into an empty docker-registry on 127.0.0.1 (a new one per run):
    `cat image.tar | layersplit push --engine isal -j N - REG/...` against
    `skopeo copy docker-archive:image.tar docker://REG/...`; the registry's
    own CPU time is recorded beside the tool's (not as other load);
  - the original algorithm (bench/original.py), on a smaller image
    (BENCH_ORIGINAL_MB), compared by MB/s;
  - sha256 of the archive by `openssl dgst -sha256` (OpenSSL's code, which
    layersplit uses for every hash), a floor for reading it once;
  - layersplit on an archive of 10,000 empty layers, the cap (bench/small_layers.py):
    the per-layer cost;
and prints a table (wall time, MB/s, layer file bytes, peak RSS, time ratios
to pigz -6 on the same threads and to skopeo, bytes ratio to pigz -6) with
PASS/FAIL for the targets of issues 3 and 11, and writes it with the machine and the exact commands to
bench/results.md (the rendering is bench/report.py).  Every layersplit output is checked (files hash to
digests.json; on the first run the layers decompress to their diff_ids;
-j 1 and -j N byte-identical per engine and level): a broken configuration stops the
bench, exit 1.

Other work on the machine skews the times: each row shows how many CPUs'
worth of it ran meanwhile ("other load", from /proc/stat), and before each
measurement the bench waits (up to 30 s, and BENCH_QUIET_WAIT seconds in
all) for the rest of the machine to go quiet.

Environment: BENCH_SIZE_MB (1000), BENCH_RUNS (2), BENCH_ORIGINAL_MB (100),
BENCH_MANY_LAYERS (10000, the most an archive may hold),
BENCH_JOBS (the CPUs this process may use), BENCH_QUIET_WAIT (120),
BENCH_CACHE (bench/cache), BENCH_RESULTS (bench/results.md), LAYERSPLIT
(build/layersplit), BENCH_SOURCES (see make_image.py).  Standard library only.
"""
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import make_image  # noqa: E402
import small_layers  # noqa: E402
from report import MB, find, markdown, rel, report, table, targets  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from registry import Client, Registry  # noqa: E402  (the test suite's loopback registry)

MIB = 1024 * 1024
MANY_LAYERS = 10000   # the per-layer cost row: an archive of this many empty layers (BENCH_MANY_LAYERS)
GNU_TIME = "/usr/bin/time"


class BenchError(Exception):
    pass


def env_int(name, default):
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise BenchError("%s=%r is not a whole number" % (name, value))


def busy_seconds():
    """CPU seconds the whole machine has spent not idle (steal included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit):
    """Waits (at most limit seconds) until the rest of the machine uses less
    than a fifth of a CPU; returns the load it last saw."""
    deadline = time.monotonic() + limit
    while True:
        busy = busy_seconds()
        time.sleep(0.5)
        load = (busy_seconds() - busy) / 0.5
        if load < 0.2 or time.monotonic() >= deadline:
            return load


def process_cpu(pid):
    """User + system CPU seconds process pid has used so far."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn(argv, stdout=None, pipe_from=None, rss_file=None):
    """Runs argv to completion (stdin: `cat pipe_from` through a pipe, or
    nothing; stdout: a file path, or nothing); returns (wall seconds, peak
    RSS in KiB and CPU seconds of that process, CPU seconds everything else
    on the machine used meanwhile); raises on a nonzero exit.  GNU time
    measures: a child forked by Python itself would start with Python's RSS
    high-water mark, which Linux keeps across exec."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    busy = busy_seconds()
    start = time.perf_counter()
    cat = subprocess.Popen([GNU_TIME, "-f", "%U %S", "-o", rss_file + ".cat", "cat", str(pipe_from)],
                           stdout=subprocess.PIPE) if pipe_from else None
    try:
        p = subprocess.Popen([GNU_TIME, "-f", "%M %U %S", "-o", rss_file] + [str(a) for a in argv],
                             stdin=cat.stdout if cat else subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.PIPE)
    finally:
        if cat:
            cat.stdout.close()   # the command holds the read end now
        if stdout:
            out.close()
    err = p.communicate()[1]
    wall = time.perf_counter() - start
    cat_cpu = 0.0
    if cat:
        cat.wait()
        cat_cpu = sum(float(x) for x in Path(rss_file + ".cat").read_text().splitlines()[-1].split())
    busy = busy_seconds() - busy
    if p.returncode != 0:
        raise BenchError("%s: exit %d: %s" % (" ".join(map(str, argv)), p.returncode,
                                              err.decode(errors="replace").strip()[-2000:]))
    rss, user, system = Path(rss_file).read_text().splitlines()[-1].split()
    cpu = float(user) + float(system)
    return wall, int(rss), cpu, max(0.0, busy - cpu - cat_cpu)


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def gunzip_sha256(path):
    """sha256 of what a gzip file decompresses to, with one member only."""
    d, h = zlib.decompressobj(31), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(d.decompress(chunk))
            if d.eof and (d.unused_data or f.read(1)):
                raise BenchError("%s: more than one gzip member" % path)
    if not d.eof:
        raise BenchError("%s: the gzip stream ends early" % path)
    return h.hexdigest()


class Measure:
    """One row: a command (or a sequence of them) timed on its input."""

    def __init__(self, name, threads, input_bytes, commands, count=None, check=None):
        self.name, self.threads, self.input_bytes = name, threads, input_bytes
        self.commands = commands      # [(argv, stdout path or None, pipe_from or None)] for OUT
        self.count, self.check = count, check
        self.walls, self.cpus, self.others, self.rss_kib, self.out_bytes = [], [], [], 0, None

    def argvs(self, out):
        return [([str(a).replace("{OUT}", str(out)) for a in argv],
                 stdout.replace("{OUT}", str(out)) if stdout else None, pipe)
                for argv, stdout, pipe in self.commands]

    def shown(self):
        lines = []
        for argv, stdout, pipe in self.argvs("OUT"):
            line = " ".join("python3" if a == sys.executable else a.replace(str(REPO) + "/", "")
                            for a in argv)
            if pipe:
                line = "cat %s | %s" % (str(pipe).replace(str(REPO) + "/", ""), line)
            if stdout:
                line += " > " + stdout
            lines.append(line)
        return lines

    def run(self, work, first):
        out = work / "out"
        shutil.rmtree(work, ignore_errors=True)
        out.mkdir(parents=True)
        wall = cpu = other = 0.0
        for argv, stdout, pipe in self.argvs(out):
            seconds, rss, used, others = spawn(argv, stdout, pipe, str(work / "rss"))
            wall += seconds
            cpu += used
            other += others
            self.rss_kib = max(self.rss_kib, rss)
        if self.count:
            self.out_bytes = self.count(out)
        if self.check:
            self.check(self, out, first)
        shutil.rmtree(work, ignore_errors=True)
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.others.append(other)
        return wall

    @property
    def best(self):
        return min(self.walls)

    @property
    def other_load(self):
        """CPUs' worth of other work on the machine during the best run."""
        i = self.walls.index(self.best)
        return self.others[i] / self.walls[i]

    @property
    def spread(self):
        return (max(self.walls) - min(self.walls)) / min(self.walls) if len(self.walls) > 1 else None

    @property
    def per_byte(self):
        return self.best / self.input_bytes

    @property
    def mb_per_s(self):
        return self.input_bytes / MB / self.best


class PushMeasure(Measure):
    """A row whose commands push to a registry of its own: Debian's
    docker-registry on 127.0.0.1, started empty for each run (so nothing is
    skipped as already there) and stopped after it; {REG} is its host."""

    host = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server_cpus = []   # the registry's CPU seconds, per run

    @property
    def server_cpu(self):
        """The registry's CPU seconds during the best run."""
        return self.server_cpus[self.walls.index(self.best)]

    def argvs(self, out):
        return [([a.replace("{REG}", self.host or "REGISTRY") for a in argv], stdout, pipe)
                for argv, stdout, pipe in super().argvs(out)]

    def run(self, work, first):
        reg_dir = work.parent / (work.name + "-registry")
        shutil.rmtree(reg_dir, ignore_errors=True)
        reg_dir.mkdir(parents=True)
        try:
            with Registry(reg_dir) as reg:
                self.host = reg.host
                before = process_cpu(reg.pid)
                wall = super().run(work, first)
                # the registry works for this row: not "other load"
                server = process_cpu(reg.pid) - before
                self.server_cpus.append(server)
                self.others[-1] = max(0.0, self.others[-1] - server)
                return wall
        finally:
            self.host = None
            shutil.rmtree(reg_dir, ignore_errors=True)


class PushCheck:
    """The pushed manifest names the same layer digests as the file mode's
    output of the same engine and level (LayersplitCheck's reference for it)."""

    def __init__(self, files_check, engine, repository):
        self.files_check, self.engine, self.repository = files_check, engine, repository

    def __call__(self, measure, out, first):
        r = Client("http://" + measure.host).get_manifest(self.repository, "1")
        if r.status != 200:
            raise BenchError("%s: no manifest at %s:1 (HTTP %d)" % (measure.name, self.repository, r.status))
        pushed = {l["digest"] for l in json.loads(r.body)["layers"]}
        if self.engine not in self.files_check.reference:
            return
        ref_name, files = self.files_check.reference[self.engine]
        want = {"sha256:" + sha for name, sha in files.items() if name.endswith(".tar.gz")}
        if pushed != want:
            raise BenchError("%s pushed other layer digests than %s wrote" % (measure.name, ref_name))


def sum_files(suffix):
    return lambda out: sum(p.stat().st_size for p in out.iterdir() if p.name.endswith(suffix))


def oci_layer_bytes(out):
    """The layer blobs' sizes in an OCI layout skopeo wrote (each one checked)."""
    index = json.loads((out / "index.json").read_text())
    total = 0
    for desc in index["manifests"]:
        manifest = json.loads((out / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
        for layer in manifest["layers"]:
            blob = out / "blobs" / "sha256" / layer["digest"].split(":")[1]
            if blob.stat().st_size != layer["size"]:
                raise BenchError("skopeo: %s is not %d bytes" % (blob, layer["size"]))
            total += layer["size"]
    return total


class LayersplitCheck:
    """Checks every layersplit output; one engine's outputs at one level must
    all be the same bytes, whatever the thread count."""

    def __init__(self, info):
        self.info, self.reference = info, {}

    def __call__(self, measure, out, first):
        files = {p.name: file_sha256(p) for p in sorted(out.iterdir())}
        digests = json.loads((out / "digests.json").read_text())[0]
        want = {l["diff_id"]: l["v1id"] for l in self.info["layers"]}
        if set(digests) != set(want):
            raise BenchError("%s: digests.json names %s, want %s" % (measure.name, sorted(digests), sorted(want)))
        for diff, rec in digests.items():
            name = rec["layer_id"] + ".tar.gz"
            if files.get(name) != rec["digest"]:
                raise BenchError("%s: %s does not hash to its digests.json digest" % (measure.name, name))
            if first and "sha256:" + gunzip_sha256(out / name) != diff:
                raise BenchError("%s: %s does not decompress to %s" % (measure.name, name, diff))
        engine = (measure.engine, measure.level)
        if engine not in self.reference:
            self.reference[engine] = (measure.name, files)
            return
        ref_name, ref = self.reference[engine]
        if files != ref:
            differ = sorted(n for n in set(files) | set(ref) if files.get(n) != ref.get(n))
            raise BenchError("%s and %s write different bytes (%s): a broken configuration, not measured"
                             % (ref_name, measure.name, ", ".join(differ)))


def many_check(count):
    """The many-layer archive's output: one file per layer, all the same bytes."""
    def check(measure, out, first):
        files = list((out / "out").glob("*.tar.gz"))
        if len(files) != count or len({f.read_bytes() for f in files}) != 1:
            raise BenchError("%s: %d layer files, want %d of the same bytes" % (measure.name, len(files), count))
    return check


def kept_sections(results, text):
    """The sections of an earlier results file that the bench does not write
    (measurements made by hand: a profile, a cost measured once), to keep."""
    try:
        old = results.read_text()
    except OSError:
        return ""
    # by the first word of the title: "Targets (issue 3)" was this bench's too
    written = {line.split()[1] for line in text.splitlines() if line.startswith("## ")}
    kept = []
    for part in old.split("\n## ")[1:]:
        if part.split()[0] not in written:
            kept.append("## " + part.rstrip("\n") + "\n")
    return "\n" + "\n".join(kept) if kept else ""


def version(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        return p.stdout.decode(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine(jobs):
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = "%.1f GiB" % (int(line.split()[1]) / MIB)
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "jobs": jobs, "cpu": cpu_model(), "memory": mem,
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def layersplit_row(layersplit, name, n, options, engine, level, image_tar, archive_bytes, check,
                   pipe=False):
    """The archive file as its argument (kind "layersplit"), or through a
    pipe from cat (kind "layersplit pipe")."""
    argv = [layersplit, "-q"] + options + ["-j", n, "-" if pipe else image_tar, "{OUT}"]
    m = Measure(name + (" from a pipe" if pipe else ""), n, archive_bytes,
                [(argv, None, image_tar if pipe else None)],
                count=sum_files(".tar.gz"), check=check)
    m.engine, m.level, m.kind = engine, level, "layersplit pipe" if pipe else "layersplit"
    return m


def build_measures(layersplit, info, image, small_info, small, jobs, many):
    image_tar = image / info["archive"]
    layers = [image / l["file"] for l in info["layers"]]
    layer_bytes = sum(l["bytes"] for l in info["layers"])
    archive_bytes = info["archive_bytes"]
    check = LayersplitCheck(info)
    threads = sorted({1, jobs})
    measures = []
    # (label, options, engine, level, thread counts)
    rows = [("layersplit (libdeflate -6, the default)", [], "libdeflate", 6, threads),
            ("layersplit --level 9", ["--level", "9"], "libdeflate", 9, [jobs]),
            ("layersplit --level 12", ["--level", "12"], "libdeflate", 12, [jobs]),
            ("layersplit --engine zlib", ["--engine", "zlib"], "zlib", 6, threads),
            ("layersplit --engine isal", ["--engine", "isal"], "isal", 2, threads),
            ("layersplit --engine isal --level 3", ["--engine", "isal", "--level", "3"], "isal", 3,
             [jobs])]
    for label, options, engine, level, counts in rows:
        for n in counts:
            measures.append(layersplit_row(layersplit, "%s -j %d" % (label, n), n, options, engine,
                                           level, image_tar, archive_bytes, check))
    # From a pipe, as `docker save IMAGE | layersplit - OUT` reads: cat's
    # copies share the CPUs (the push rows read a pipe too).
    piped = [r for r in rows if r[2:4] in (("libdeflate", 6), ("isal", 2))]
    for label, options, engine, level, _ in piped:
        measures.append(layersplit_row(layersplit, "%s -j %d" % (label, jobs), jobs, options, engine,
                                       level, image_tar, archive_bytes, check, pipe=True))
    for level, counts in ((6, threads), (9, [jobs])):
        for n in counts:
            m = Measure("pigz -%d -p %d" % (level, n), n, layer_bytes,
                        [(["pigz", "-%d" % level, "-p", n, "-c", l], "{OUT}/%s.gz" % l.name, None)
                         for l in layers],
                        count=sum_files(".gz"))
            m.kind, m.level = "pigz", level
            measures.append(m)
    for level in (1, 3):
        m = Measure("igzip -%d" % level, 1, layer_bytes,
                    [(["igzip", "-%d" % level, "-c", l], "{OUT}/%s.gz" % l.name, None) for l in layers],
                    count=sum_files(".gz"))
        m.kind = "igzip"
        measures.append(m)
    # The bound for --level 12's bytes: libdeflate 12 on each whole layer in
    # one call (no 1 MiB blocks), one thread; slow, so on the first run only.
    m = Measure("libdeflate-gzip -12 (whole layers)", 1, layer_bytes,
                [(["libdeflate-gzip", "-12", "-c", l], "{OUT}/%s.gz" % l.name, None) for l in layers],
                count=sum_files(".gz"))
    m.kind, m.level, m.once = "libdeflate-gzip", 12, True
    measures.append(m)
    m = Measure("skopeo copy", jobs, archive_bytes,
                [(["skopeo", "copy", "-q", "docker-archive:%s" % image_tar, "oci:{OUT}"], None, None)],
                count=oci_layer_bytes)
    m.kind = "skopeo"
    measures.append(m)
    # Pushing: layersplit from a pipe against skopeo from the file, each into
    # an empty registry on loopback; layersplit's spool and cache under OUT.
    m = PushMeasure("layersplit push --engine isal -j %d" % jobs, jobs, archive_bytes,
                    [([layersplit, "push", "-q", "--tls-verify=false", "--engine", "isal", "-j", jobs,
                       "--cache", "{OUT}/cache", "--spool", "{OUT}", "-", "{REG}/bench/layersplit:1"],
                      None, image_tar)],
                    check=PushCheck(check, ("isal", 2), "bench/layersplit"))
    m.engine, m.level, m.kind = "isal", 2, "push"
    measures.append(m)
    m = PushMeasure("skopeo copy to a registry", jobs, archive_bytes,
                    [(["skopeo", "copy", "-q", "--dest-tls-verify=false", "docker-archive:%s" % image_tar,
                       "docker://{REG}/bench/skopeo:1"], None, None)])
    m.kind = "skopeo push"
    measures.append(m)
    small_tar = small / small_info["archive"]
    m = Measure("original (Python, gzip -9)", 1, small_info["archive_bytes"],
                [([sys.executable, HERE / "original.py", small_tar, "{OUT}"], None, None)],
                count=sum_files(".tar.gz"))
    m.kind = "original"
    measures.append(m)
    m = Measure("openssl dgst -sha256 of the archive", 1, archive_bytes,
                [(["openssl", "dgst", "-sha256", image_tar], None, None)])
    m.kind = "sha256"
    measures.append(m)
    many_tar, many_count = many
    m = Measure("layersplit, %d empty layers -j %d" % (many_count, jobs), jobs, many_tar.stat().st_size,
                [([layersplit, "-q", "-j", jobs, many_tar, "{OUT}/out"], None, None)],
                check=many_check(many_count))
    m.kind = "many"
    measures.append(m)
    return measures


def run_order(measures, jobs):
    """Each layersplit row right before or after its peer (libdeflate and
    zlib: pigz on the same threads; isal: skopeo; push: skopeo's push and
    the file mode from a pipe): a machine's speed drifts over minutes, so
    rows compared run close together."""
    order = []
    for n in sorted({1, jobs}):
        order += [find(measures, "layersplit", n, "libdeflate", 6), find(measures, "pigz", n, level=6),
                  find(measures, "layersplit", n, "zlib")]
    order.append(find(measures, "layersplit pipe", jobs, "libdeflate"))
    order += [find(measures, "layersplit", n, "isal", 2) for n in sorted({1, jobs})]
    order.append(find(measures, "skopeo"))
    order += [find(measures, "layersplit pipe", jobs, "isal"), find(measures, "push"),
              find(measures, "skopeo push")]
    return order + [m for m in measures if m not in order]


def main():
    size_mb = env_int("BENCH_SIZE_MB", 1000)
    runs = env_int("BENCH_RUNS", 2)
    original_mb = min(env_int("BENCH_ORIGINAL_MB", 100), size_mb)
    jobs = env_int("BENCH_JOBS", len(os.sched_getaffinity(0)))
    quiet_left = env_int("BENCH_QUIET_WAIT", 120)
    if size_mb < 1 or runs < 1 or original_mb < 1 or jobs < 1:
        raise BenchError("BENCH_SIZE_MB, BENCH_RUNS, BENCH_ORIGINAL_MB and BENCH_JOBS must be >= 1")
    cache = Path(os.environ.get("BENCH_CACHE") or HERE / "cache").resolve()
    results = Path(os.environ.get("BENCH_RESULTS") or HERE / "results.md")
    layersplit = Path(os.environ.get("LAYERSPLIT") or REPO / "build" / "layersplit").resolve()
    if not os.access(layersplit, os.X_OK):
        raise BenchError("no layersplit binary at %s (run make)" % layersplit)
    for tool in ("pigz", "igzip", "libdeflate-gzip", "skopeo", "openssl", "cat", "docker-registry", GNU_TIME):
        if not shutil.which(tool):
            raise BenchError("%s not found (make deps installs it)" % tool)

    t0 = time.time()
    image, small = cache / ("%dmb" % size_mb), cache / ("%dmb" % original_mb)
    info = make_image.ensure(size_mb, image)
    small_info = info if small == image else make_image.ensure(original_mb, small)
    print("# image %s: %d bytes, %d layers; original on %s (%.1fs)" % (
        rel(image / info["archive"]), info["archive_bytes"], len(info["layers"]),
        rel(small / small_info["archive"]), time.time() - t0), flush=True)
    for path in [image / info["archive"], small / small_info["archive"]] + \
            [image / l["file"] for l in info["layers"]]:
        with open(path, "rb") as f:   # into the page cache, so every tool reads from memory
            while f.read(1 << 20):
                pass

    host = machine(jobs)
    versions = [version([layersplit, "--version"]), version(["pigz", "--version"]),
                version(["igzip", "--version"]), version(["skopeo", "--version"]),
                "Python " + platform.python_version()]
    many_layers = env_int("BENCH_MANY_LAYERS", MANY_LAYERS)
    many = cache / ("many-%d.tar" % many_layers)
    if not many.exists():
        small_layers.build(many_layers, str(many) + ".tmp")
        os.replace(str(many) + ".tmp", many)
    measures = build_measures(layersplit, info, image, small_info, small, jobs, (many, many_layers))
    work = cache / ("work-%d" % os.getpid())
    try:
        for r in range(runs):
            for m in run_order(measures, jobs):
                if r > 0 and getattr(m, "once", False):
                    continue
                if quiet_left > 0:
                    waited = time.monotonic()
                    wait_quiet(min(quiet_left, 30))
                    quiet_left -= time.monotonic() - waited
                wall = m.run(work, r == 0)
                print("run %d/%d  %-36s %8.2f s" % (r + 1, runs, m.name, wall), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours = ("layersplit", "layersplit pipe")
    counted = {m.name: m for m in measures if m.kind in ours}
    checked = ["%s: every run's files hash to digests.json; on run 1 every layer decompressed "
               "(one gzip member) to its diff_id." % ", ".join(counted)]
    for key in dict.fromkeys((m.engine, m.level) for m in measures if m.kind in ours):
        names = [m.name for m in measures
                 if m.kind in ours and (m.engine, m.level) == key]
        if len(names) > 1:
            checked.append("%s and %s: byte-identical outputs in all %d runs."
                           % (", ".join(names[:-1]), names[-1], runs))
    pushed = find(measures, "push")
    checked.append("%s: in every run the pushed manifest names the layer digests the file mode "
                   "(--engine isal) wrote." % pushed.name)
    checked.append("Rows of one engine and level write the same bytes from the file and from a pipe, "
                   "whatever the thread count (checked on every run).")
    target_rows = targets(measures, jobs, info["archive_bytes"])
    text = report(measures, target_rows, info, small_info, host, versions, runs, image, small, checked)
    results.write_text(text + kept_sections(results, text))
    head, rows = table(measures, jobs)
    print()
    print(markdown(head, rows))
    print()
    print(markdown(["target", "measured", "result"], [list(r) for r in target_rows]))
    print("\n# written to %s (%.0f s in all)" % (rel(results), time.time() - t0))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        sys.exit(1)
