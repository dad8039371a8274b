"""The progress line: on stderr when it is a terminal (a pseudo-terminal here),
redrawn in place and cleared at the end, never on stdout; nothing on a pipe
unless --progress=always.  The runs that must be caught mid-way are fed their
archive on a pipe that the test holds open, so no test depends on timing."""
import os
import pty
import re
import select
import signal
import subprocess
import tarfile
import threading
import time

import fixtures
from harness import assert_error, binary, layersplit, staging_dirs

ARCHIVE = "legacy_two_images.tar"   # a 1 MiB layer, after three small ones
WAIT = 60                           # seconds before a wait is a failure, not a measurement
DRAW = re.compile(rb"\r(layersplit: [^\r\n]*?)\x1b\[K")


class Terminal:
    """layersplit with stderr on a pseudo-terminal, stdout on a pipe and
    stdin on a pipe the test feeds (or a file)."""

    def __init__(self, *args, stdin=subprocess.PIPE):
        master, slave = pty.openpty()
        self.p = subprocess.Popen([binary()] + [str(a) for a in args], stdin=stdin,
                                  stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        self.master, self.out, self.closed = master, b"", False

    def _read(self, deadline):
        ready, _, _ = select.select([self.master], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:      # EIO: every holder of the terminal is gone
            chunk = b""
        self.out += chunk
        self.closed = not chunk

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT
        while not predicate(self.out):
            assert not self.closed, "stderr closed before %s: %r" % (what, self.out[-600:])
            assert time.monotonic() < deadline, "no %s within %ds: %r" % (what, WAIT, self.out[-600:])
            self._read(deadline)

    def finish(self, stdin_data=b""):
        """Feeds the rest of stdin, reads the terminal to its end, waits for the exit."""
        if self.p.stdin is not None:
            def feed():
                try:
                    self.p.stdin.write(stdin_data)
                    self.p.stdin.close()
                except BrokenPipeError:
                    pass
            threading.Thread(target=feed, daemon=True).start()
        self.wait_for(lambda out: self.closed, "end of stderr")
        self.p.wait(timeout=WAIT)
        os.close(self.master)
        self.stdout = self.p.stdout.read()
        self.p.stdout.close()
        return self.p.returncode


def draws(out):
    """The progress lines drawn, in order."""
    return [m.group(1).decode() for m in DRAW.finditer(out)]


def screen(out):
    """What a terminal shows after `out`: \\r returns, ESC[K clears to the end
    of the line, \\n starts a new one."""
    lines, line, col, i = [], [], 0, 0
    text = out.decode(errors="replace")
    while i < len(text):
        c = text[i]
        if text.startswith("\x1b[K", i):
            del line[col:]
            i += 3
            continue
        if c == "\r":
            col = 0
        elif c == "\n":
            lines.append("".join(line))
            line, col = [], 0
        else:
            line[col:col + 1] = [c]
            col += 1
        i += 1
    if line:
        lines.append("".join(line))
    return lines


def member_names(archive):
    with tarfile.open(archive) as t:
        return [m.name for m in t]


def labelled(names):
    """A predicate: some progress line names an archive entry, after a layer."""
    def check(out):
        for d in draws(out):
            layers = re.search(r"  (\d+) layers?  (.+)$", d)
            if layers and int(layers.group(1)) >= 1:
                label = layers.group(2).removeprefix("...")
                if any(n.endswith(label) for n in names):
                    return True
        return False
    return check


def test_progress_on_a_terminal_names_the_entry_and_is_cleared(tmp):
    """stderr a terminal: progress lines with bytes read, layers done and the
    entry being read appear while the run waits for input; at the end the
    line is cleared and only the summary stays on screen; stdout gets nothing."""
    data = fixtures.path(ARCHIVE).read_bytes()
    t = Terminal("-", tmp / "out")
    t.p.stdin.write(data[:65536])
    t.p.stdin.flush()
    t.wait_for(labelled(member_names(fixtures.path(ARCHIVE))), "progress line naming an entry")
    status = t.finish(data[65536:])
    assert status == 0, "exit %d: %r" % (status, t.out)
    assert t.stdout == b"", "stdout got %r" % t.stdout
    first = draws(t.out)[0]
    assert re.match(r"layersplit: \d+(\.\d)? (B|KiB|MiB)", first), first
    assert "%" not in first, "a pipe has no known size, yet: %r" % first
    shown = [line for line in screen(t.out) if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("layersplit: %s: 2 images" % (tmp / "out")), \
        "screen after the run: %r" % shown
    assert (tmp / "out" / "manifest.json").exists()


def test_progress_of_a_regular_file_shows_its_size_and_percentage(tmp):
    size = fixtures.path(ARCHIVE).stat().st_size
    t = Terminal(fixtures.path(ARCHIVE), tmp / "out", stdin=subprocess.DEVNULL)
    status = t.finish()
    assert status == 0, "exit %d: %r" % (status, t.out)
    lines = draws(t.out)
    assert lines, "no progress line: %r" % t.out
    total = "%.1f MiB" % (size / (1 << 20))
    assert all((" of %s " % total) in d and re.search(r" \d+%", d) for d in lines), lines
    assert t.stdout == b""


def test_interrupt_during_progress_clears_the_line_and_exits_130(tmp):
    """SIGINT reaches the main thread (the ticker blocks signals): the blocked
    read stops at once, the line is cleared, the error is the last line and
    nothing is left behind."""
    data = fixtures.path(ARCHIVE).read_bytes()
    t = Terminal("-", tmp / "out")
    t.p.stdin.write(data[:65536])
    t.p.stdin.flush()
    t.wait_for(lambda out: len(draws(out)) >= 2, "two progress lines")
    t.p.send_signal(signal.SIGINT)
    t.wait_for(lambda out: b"interrupted" in out, "the interruption message, stdin still open")
    status = t.finish()
    assert status == 130, "exit %d: %r" % (status, t.out)
    shown = [line for line in screen(t.out) if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("layersplit: interrupted by SIGINT"), shown
    assert not (tmp / "out").exists() and staging_dirs(tmp) == []


def test_quiet_trace_or_never_draw_nothing_on_a_terminal(tmp):
    for i, options in enumerate((["--quiet"], ["--trace"], ["--progress", "never"],
                                 ["--progress=never"], ["--verbose"])):
        t = Terminal(*options, fixtures.path(ARCHIVE), tmp / str(i), stdin=subprocess.DEVNULL)
        status = t.finish()
        assert status == 0, "%s: exit %d: %r" % (options, status, t.out)
        assert b"\x1b[K" not in t.out, "%s drew progress: %r" % (options, t.out[:300])
        if options == ["--quiet"]:
            assert t.out == b"", t.out


def test_no_progress_when_stderr_is_a_pipe(tmp):
    p = layersplit(fixtures.path(ARCHIVE), tmp / "out")
    assert p.returncode == 0, p.err
    assert b"\r" not in p.stderr and b"\x1b" not in p.stderr, p.stderr
    assert len(p.err.splitlines()) == 1 and p.err.startswith("layersplit: "), p.err
    assert p.stdout == b""


def test_progress_always_draws_on_a_pipe_too(tmp):
    p = layersplit("--progress=always", fixtures.path(ARCHIVE), tmp / "out")
    assert p.returncode == 0, p.err
    assert draws(p.stderr), p.stderr
    assert re.search(rb"\x1b\[K\r\x1b\[Klayersplit: [^\r\x1b]*\n$", p.stderr), \
        "the last progress line is not cleared before the summary: %r" % p.stderr
    shown = [line for line in screen(p.stderr) if line.strip()]
    assert len(shown) == 1 and " 2 images" in shown[0], shown
    assert p.stdout == b""


def test_progress_always_with_json_keeps_stdout_pure(tmp):
    p = layersplit("--progress", "always", "--json", "-", tmp / "out",
                   input=fixtures.path(ARCHIVE).read_bytes())
    assert p.returncode == 0, p.err
    assert draws(p.stderr) and screen(p.stderr) in ([], [""]), p.stderr
    assert p.stdout.startswith(b"{") and b"\r" not in p.stdout and b"\x1b" not in p.stdout


def test_bad_progress_value_is_a_usage_error(tmp):
    p = layersplit("--progress=sometimes", fixtures.path(ARCHIVE), tmp / "out")
    assert_error(p, 2, ["--progress"])
    assert not (tmp / "out").exists()


def test_control_bytes_in_entry_names_do_not_reach_the_terminal(tmp):
    """A hostile entry name with terminal escapes, invalid UTF-8 and a C1
    control is drawn escaped, as every message is (\\ddd)."""
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("evil\x1b[2J\x1b]0;owned\x07\rname\udcff\u009b")
        info.size = 256 * 1024
        t.addfile(info, io.BytesIO(b"\0" * info.size))
    data = buf.getvalue()
    t = Terminal("-", tmp / "out")
    t.p.stdin.write(data[:65536])
    t.p.stdin.flush()
    t.wait_for(lambda out: b"evil" in out, "a progress line naming the entry")
    t.finish(data[65536:])
    assert t.out.count(b"\x1b") == t.out.count(b"\x1b[K"), "escape reached the terminal: %r" % t.out[:300]
    assert b"\x07" not in t.out and b"\xff" not in t.out and b"\xc2\x9b" not in t.out
    assert any("evil\\027[2J\\027]0;owned\\007\\013name\\255\\194\\155" in d
               for d in draws(t.out)), draws(t.out)
