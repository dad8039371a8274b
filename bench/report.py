"""The benchmark's table, targets and bench/results.md, from its measurements
(bench/bench.py's Measure rows: name, kind, threads, input_bytes, walls,
cpus, others, rss_kib, out_bytes).  Standard library only."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1000 * 1000
BUSY = 0.25   # other processes' load (CPUs) that skews a measurement
TARGETS = {"default_vs_pigz": 0.6, "default_bytes": 1.0, "level12_bytes": 0.96, "zlib_vs_pigz": 1.05,
           "isal_speedup": 3.0, "isal_bytes": 1.05, "rss_mib": 64, "push_speedup": 2.0, "push_vs_files": 1.15}


def rel(path):
    """A path relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def find(measures, kind, threads=None, engine=None, level=None):
    for m in measures:
        if m.kind == kind and (threads is None or m.threads == threads) and \
                (engine is None or getattr(m, "engine", None) == engine) and \
                (level is None or getattr(m, "level", None) == level):
            return m
    return None


def per_run(a, b, invert=False):
    """The ratio of two rows' times in each run, as text."""
    return ", ".join("%.2f" % (y / x if invert else x / y) for x, y in zip(a.walls, b.walls))


def verdict(value, limit, at_most, *rows):
    """PASS or FAIL, with a warning when the margin is inside the rows'
    run-to-run spread or other processes loaded the machine meanwhile."""
    ok = value <= limit if at_most else value >= limit
    notes = []
    noise = max([m.spread or 0 for m in rows] + [0])
    if abs(value - limit) / limit <= noise:
        notes.append("within the noise: spread %.0f%%" % (100 * noise))
    busy = max([m.other_load for m in rows] + [0])
    if busy >= BUSY:
        notes.append("machine busy: other load %.2f" % busy)
    return ("PASS" if ok else "FAIL") + (" (%s)" % "; ".join(notes) if notes else "")


def time_target(rows, what, a, b, limit):
    """a's wall time over b's, at most limit."""
    r = a.best / b.best
    rows.append(("%s <= %.2fx %s" % (a.name, limit, b.name),
                 "%.3fx (%.2f s vs %.2f s; each run: %s)" % (r, a.best, b.best, per_run(a, b)),
                 verdict(r, limit, True, a, b)))


def bytes_target(rows, a, b, limit):
    r = a.out_bytes / b.out_bytes
    rows.append(("%s layer files <= %.2fx %s's" % (a.name, limit, b.name),
                 "%.4fx (%.1f MB vs %.1f MB)" % (r, a.out_bytes / MB, b.out_bytes / MB),
                 verdict(r, limit, True)))


def run_cpu(m):
    """The tool's CPU seconds in its best run."""
    return m.cpus[m.walls.index(m.best)]


def targets(measures, jobs, archive_bytes):
    """[(target, measured, result)] for the targets of issues 3 and 11 (files) and 9 (push), from this run."""
    rows = []
    pigz = find(measures, "pigz", jobs, level=6)
    default = find(measures, "layersplit", jobs, "libdeflate", 6)
    time_target(rows, "wall", default, pigz, TARGETS["default_vs_pigz"])
    bytes_target(rows, default, pigz, TARGETS["default_bytes"])
    bytes_target(rows, find(measures, "layersplit", jobs, "libdeflate", 12), pigz, TARGETS["level12_bytes"])
    whole = find(measures, "libdeflate-gzip")
    if whole:
        target, measured, result = rows[-1]
        rows[-1] = (target, measured + "; libdeflate 12 on each whole layer, no blocks: %.4fx (%.1f MB), "
                    "the least libdeflate writes for these files" % (whole.out_bytes / pigz.out_bytes,
                                                                      whole.out_bytes / MB), result)
    time_target(rows, "wall", find(measures, "layersplit", jobs, "zlib"), pigz, TARGETS["zlib_vs_pigz"])
    isal, skopeo = find(measures, "layersplit", jobs, "isal", 2), find(measures, "skopeo")
    speedup = skopeo.best / isal.best
    rows.append(("%s >= %.1fx faster than skopeo copy" % (isal.name, TARGETS["isal_speedup"]),
                 "%.2fx (%.2f s vs %.2f s; each run: %s)" % (speedup, isal.best, skopeo.best,
                                                             per_run(isal, skopeo, invert=True)),
                 verdict(speedup, TARGETS["isal_speedup"], False, isal, skopeo)))
    bytes_target(rows, isal, skopeo, TARGETS["isal_bytes"])
    push, skopeo_push = find(measures, "push"), find(measures, "skopeo push")
    if push and skopeo_push:
        speedup = skopeo_push.best / push.best
        rows.append(("push --engine isal -j %d from a pipe >= %.1fx faster than skopeo copy from the file "
                     "(into a registry on loopback)" % (push.threads, TARGETS["push_speedup"]),
                     "%.2fx (%.2f s vs %.2f s; each run: %s)" % (speedup, push.best, skopeo_push.best,
                                                                 per_run(push, skopeo_push, invert=True)),
                     verdict(speedup, TARGETS["push_speedup"], False, push, skopeo_push)))
        files = find(measures, "layersplit pipe", push.threads, "isal", 2)
        r = push.best / files.best
        own = run_cpu(push) / run_cpu(files)
        rows.append(("push <= %.2fx the file mode (--engine isal -j %d, both from a pipe)"
                     % (TARGETS["push_vs_files"], push.threads),
                     "%.3fx (%.2f s vs %.2f s; each run: %s); CPU: layersplit's own %.2fx the file mode's "
                     "(%.1f s vs %.1f s), and the registry on the same CPUs used %.1f s more"
                     % (r, push.best, files.best, per_run(push, files), own, run_cpu(push), run_cpu(files),
                        push.server_cpu),
                     verdict(r, TARGETS["push_vs_files"], True, push, files)))
    peak = max(m.rss_kib for m in measures if m.kind in ("layersplit", "layersplit pipe", "push")) / 1024
    rows.append(("peak RSS <= %d MiB (every layersplit row on the image, from the file and from a pipe, "
                 "push too)" % TARGETS["rss_mib"],
                 "%.1f MiB (on %.0f MB)" % (peak, archive_bytes / MB), verdict(peak, TARGETS["rss_mib"], True)))
    return rows


def contention(measures):
    busy = [m for m in measures if m.other_load >= BUSY]
    if not busy:
        return "- The machine was quiet: other load below %.2f in every row." % BUSY
    return "- **The machine was busy** (other processes) during %s: those times are longer than on a " \
        "quiet machine; CPU s is not affected as much." % ", ".join(
            "%s (%.2f)" % (m.name, m.other_load) for m in busy)


def fmt_ratio(m, peer):
    return "%.2f" % (m.per_byte / peer.per_byte) if peer and m.kind != "many" else "-"


def bytes_ratio(m, peer):
    """Layer file bytes over the peer's, for the rows that compress the image's layers."""
    if not peer or m.out_bytes is None or m.kind not in ("layersplit", "layersplit pipe", "skopeo", "igzip", "pigz",
                                                           "libdeflate-gzip"):
        return "-"
    return "%.3f" % (m.out_bytes / peer.out_bytes)


def cpu_cell(m):
    """The tool's CPU seconds; for a push, + the registry's (same run)."""
    i = m.walls.index(m.best)
    cell = "%.1f" % m.cpus[i]
    if getattr(m, "server_cpus", None):
        cell += " + %.1f registry" % m.server_cpu
    return cell


def table(measures, jobs):
    skopeo = find(measures, "skopeo")
    head = ["tool", "threads", "input MB", "wall s", "spread", "CPU s", "other load", "MB/s",
            "layer files MB", "out/in", "peak RSS MiB", "time vs pigz -6", "time vs skopeo",
            "bytes vs pigz -6", "bytes vs skopeo"]
    rows = []
    pigz6 = find(measures, "pigz", jobs, level=6)
    for m in measures:
        pigz = find(measures, "pigz", m.threads if m.threads in (1, jobs) else 1, level=6)
        rows.append([m.name, str(m.threads), "%.1f" % (m.input_bytes / MB), "%.2f" % m.best,
                     "%.0f%%" % (100 * m.spread) if m.spread is not None else "-",
                     cpu_cell(m), "%.2f" % m.other_load,
                     "%.1f" % m.mb_per_s,
                     "%.1f" % (m.out_bytes / MB) if m.out_bytes is not None else "-",
                     "%.3f" % (m.out_bytes / m.input_bytes) if m.out_bytes is not None else "-",
                     "%.1f" % (m.rss_kib / 1024),
                     fmt_ratio(m, pigz), fmt_ratio(m, skopeo),
                     bytes_ratio(m, pigz6), bytes_ratio(m, skopeo)])
    return head, rows


def markdown(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(measures, target_rows, info, small_info, host, versions, runs, image, small, checked):
    head, rows = table(measures, host["jobs"])
    layer_mb = ", ".join("%.0f" % (l["bytes"] / MB) for l in info["layers"])
    out = ["# layersplit benchmark", "",
           "Written by `make bench` (bench/bench.py) on %s." % host["date"], "",
           "- Machine: %d CPUs (nproc), %s, %s RAM, Linux %s; N = %d threads."
           % (host["nproc"], host["cpu"], host["memory"], host["kernel"], host["jobs"]),
           "- Tools: " + "; ".join(versions) + ".",
           "- Input: `%s`, %d bytes (%.1f MB), docker <= 24 layout, %d layers of %s MB (files from %s); "
           "the layer tars total %d bytes." % (rel(image / info["archive"]), info["archive_bytes"],
                                               info["archive_bytes"] / MB, len(info["layers"]), layer_mb,
                                               ", ".join(info["sources"]),
                                               sum(l["bytes"] for l in info["layers"])),
           "- The original algorithm, being slow, ran on `%s`, %d bytes (%.1f MB): compare it by MB/s."
           % (rel(small / small_info["archive"]), small_info["archive_bytes"], small_info["archive_bytes"] / MB),
           "- Each time is the best of %d run(s), interleaved (each layersplit row next to the peer "
           "it is compared with); spread = (slowest - fastest) / fastest. "
           "MB = 10^6 bytes, MiB = 2^20; MB/s = input bytes / wall time; peak RSS by GNU time (%%M) "
           "(layersplit's own, not cat's; for pigz and igzip the largest over the layers)." % runs,
           "- threads = compression threads (-j, -p; skopeo: Go's default, all CPUs); layersplit also "
           "has a reading thread, and for a layer of more than one block a writing thread, which "
           "hashes what goes in and what comes out.",
           "- \"time vs\" = seconds per input byte over the peer's (pigz with the same thread count; "
           "< 1 is faster). pigz and igzip compress the layer tars one after another (the same bytes "
           "layersplit compresses) and hash nothing; layersplit reads the whole archive file (\"from a "
           "pipe\": through cat, whose CPU is not in the row's) and hashes every layer twice (sha256 of "
           "the tar and of the .tar.gz); skopeo reads the file.",
           "- The input was in the page cache (read once before timing). \"CPU s\" = user + system "
           "time of the tool (best run; a push row adds the loopback registry's, which serves that run alone "
           "and is not other load); \"other load\" = CPUs' worth of other processes on the machine "
           "during the best run (from /proc/stat; 0.00 = a quiet machine; from %.2f on, the targets "
           "it enters are marked)." % BUSY, contention(measures),
           "",
           "## Results", "", markdown(head, rows), "",
           "## Targets (issues 3, 9 and 11)", "", markdown(["target", "measured", "result"], [list(r) for r in target_rows]),
           "", "## Correctness", ""]
    out += ["- " + c for c in checked]
    out += ["", "## Commands", "", "OUT is a fresh directory per run; the image paths are relative to "
            "the repository.", "", "```"]
    for m in measures:
        out.append("# " + m.name)
        out += m.shown()
    out += ["```", "", "Rerun: `make bench` (BENCH_SIZE_MB=%d BENCH_RUNS=%d here)." % (info["size_mb"], runs), ""]
    return "\n".join(out)
