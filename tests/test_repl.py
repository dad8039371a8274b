"""`layersplit repl` (statements from a pipe, and a session on a pseudo-terminal
with Ctrl-C) and `layersplit run SCRIPT`."""
import functools
import json
import os
import select
import signal
import subprocess
import tarfile
import termios
import time

import expect
import fixtures
from harness import assert_error, binary, layersplit

ARCHIVE = "podman_dup.tar"   # symlinked legacy dirs: files and symlinks
WAIT = 30                    # seconds before a session that stopped answering fails


def repl(text, *args):
    return layersplit("repl", *args, input=text.encode())


def lines(p):
    return p.stdout.decode().splitlines()


# ---- statements from a pipe ----

def test_piped_expression_prints_its_value(tmp):
    p = repl("return 1+1\n")
    assert p.returncode == 0, p.err
    assert lines(p) == ["2"], p.stdout


def test_piped_expression_without_return_prints_its_values(tmp):
    p = repl("x = 20\nx + 1, 'a'\n")
    assert p.returncode == 0, p.err
    assert lines(p) == ["21\ta"], p.stdout


def test_piped_multiline_for_loop_runs_once_complete(tmp):
    p = repl("for i = 1, 3 do\n  print('line ' .. i)\nend\nreturn 'done'\n")
    assert p.returncode == 0, p.err
    assert lines(p) == ["line 1", "line 2", "line 3", "done"], p.stdout


def test_piped_session_has_the_modules_as_globals(tmp):
    p = repl("return layersplit.archive == archive, type(gzip.writer), type(digest.sha256), "
             "type(fs.join), json.decode('[\"x\"]')[1], type(image.sniff)\n")
    assert p.returncode == 0, p.err
    assert lines(p) == ["true\tfunction\tfunction\tfunction\tx\tfunction"], p.stdout


def test_piped_error_shows_traceback_and_session_goes_on_exit_4(tmp):
    p = repl("local function f() error('boom') end f()\nreturn 'still here'\n")
    assert p.returncode == 4, "exit %d: %s" % (p.returncode, p.err)
    assert lines(p) == ["still here"], p.stdout
    err = p.err.splitlines()
    assert err[0] == "stdin:1: boom", p.err
    assert err[1] == "stack traceback:", p.err
    assert "in local 'f'" in p.err and "in main chunk" in p.err, p.err
    # The traceback is the statement's, not the REPL's own frames.
    assert "cli.lua" not in p.err and "repl.run" not in p.err, p.err


def test_piped_layersplit_error_shows_its_class(tmp):
    p = repl("errors = require 'layersplit.errors'\nerrors.raise('archive', 'x.tar', 'bad')\n")
    assert p.returncode == 4, p.err
    assert p.err.splitlines()[0] == "x.tar: bad [archive]", p.err


def test_piped_unfinished_statement_at_end_is_a_syntax_error(tmp):
    p = repl("return 1\nfor i = 1, 2 do\n")
    assert p.returncode == 4, p.err
    assert lines(p) == ["1"], p.stdout
    assert "<eof>" in p.err, p.err


def test_piped_session_without_input_exits_0_silently(tmp):
    p = repl("")
    assert p.returncode == 0, p.err
    assert p.stdout == b"" and p.err == "", (p.stdout, p.err)


def test_archive_handle_lists_the_entries_of_a_real_archive(tmp):
    archive = fixtures.path(ARCHIVE)
    p = repl("return ARCHIVE\nentries()\n", archive)
    assert p.returncode == 0, p.err
    out = lines(p)
    assert out[0] == str(archive), out[0]
    with tarfile.open(archive) as t:
        members = t.getmembers()
    listed = [l.split(None, 2) for l in out[1:-1]]
    assert len(listed) == len(members), "listed %d entries, the tar has %d" % (
        len(listed), len(members))
    for (kind, size, rest), m in zip(listed, members):
        want_kind = ("symlink" if m.issym() else "hardlink" if m.islnk() else
                     "file" if m.isfile() else "dir" if m.isdir() else "other")
        want = m.name + (" -> " + m.linkname if m.issym() or m.islnk() else "")
        assert (kind, int(size), rest) == (want_kind, m.size if m.isfile() else 0, want), \
            "entry %r: got %r" % (m.name, (kind, size, rest))
    assert out[-1] == str(len(members)), "entries() returned %r" % out[-1]


def test_archive_handle_pipes_a_layer_into_a_digest(tmp):
    archive = fixtures.path(ARCHIVE)
    want = expect.Archive(archive).images[0].diff_ids
    script = ("ids = {}\n"
              "for e in function() return reader:next() end do\n"
              "  if e.type == 'file' and e.path:match('^%x+%.tar$') then\n"
              "    local d = digest.sha256()\n"
              "    assert(reader:pipe(d))\n"
              "    ids[#ids + 1] = 'sha256:' .. d:hex()\n"
              "  end\n"
              "end\n"
              "table.sort(ids)\n"
              "print(table.concat(ids, ' '))\n")
    p = repl(script, archive)
    assert p.returncode == 0, p.err
    assert lines(p) == [" ".join(sorted(set(want)))], (p.stdout, want)


def test_repl_with_missing_archive_fails_with_one_line(tmp):
    p = repl("return 1\n", tmp / "absent.tar")
    assert_error(p, 3, ["absent.tar"])


def test_repl_refuses_stdin_as_the_archive(tmp):
    p = repl("return 1\n", "-")
    assert_error(p, 2, ["repl"])


def test_sigint_stops_a_piped_statement_and_the_session_goes_on(tmp):
    proc = subprocess.Popen([binary(), "repl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"print('sp' .. 'in') io.stdout:flush() while true do end\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"spin\n"
        proc.send_signal(signal.SIGINT)
        proc.stdin.write(b"return 'after'\n")
        proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
    assert out == b"after\n", (out, err)
    assert err.decode().startswith("interrupted [signal]\nstack traceback:"), err
    assert proc.returncode == 4, proc.returncode


def test_sigterm_ends_the_session_with_143(tmp):
    proc = subprocess.Popen([binary(), "repl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"print('sp' .. 'in') io.stdout:flush() while true do end\n"
                         b"print('not reached')\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"spin\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, err)
    assert out == b"", out
    assert "SIGTERM" in err.decode().splitlines()[-1], err


# ---- a session on a terminal ----

def _has_libedit():
    """Whether the binary has line editing (the Makefile adds it when found)."""
    p = subprocess.run(["ldd", binary()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return b"libedit" in p.stdout


class Session:
    """layersplit repl on a pseudo-terminal, driven like a person would."""

    def __init__(self, home, *args):
        env = {"HOME": str(home), "TERM": "dumb", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.pid, self.fd = os.forkpty()
        if self.pid == 0:
            try:
                os.execve(binary(), [binary(), "repl"] + [str(a) for a in args], env)
            finally:
                os._exit(127)
        self.out = b""
        self.seen = 0       # expect() looks at output after the last match
        self.editing = _has_libedit()
        self.status = None

    def _read(self, deadline):
        r, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:     # EIO: the child has gone and the terminal is closed
            data = b""
        if not data:
            raise EOFError
        self.out += data
        return True

    def expect(self, text):
        text = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + WAIT
        while True:
            at = self.out.find(text, self.seen)
            if at >= 0:
                self.seen = at + len(text)
                return self.out[:at]
            try:
                if not self._read(deadline):
                    raise AssertionError("waited for %r; the terminal shows %r" % (text, self.out))
            except EOFError:
                raise AssertionError("session ended waiting for %r; it showed %r" % (text, self.out))

    def send(self, data):
        """Bytes to the terminal now (Ctrl-C while a statement runs)."""
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def type(self, data):
        """Input at a prompt.  libedit prints the prompt before it puts the
        terminal in raw mode, and a Ctrl-D that arrives in between is lost:
        wait for raw mode (the master sees the terminal's settings)."""
        if self.editing:
            deadline = time.monotonic() + WAIT
            while termios.tcgetattr(self.fd)[3] & termios.ICANON:
                assert time.monotonic() < deadline, "the line editor never started"
                time.sleep(0.01)
        self.send(data)

    def end(self):
        """Ctrl-D; waits for the exit and returns its status."""
        self.type(b"\x04")
        deadline = time.monotonic() + WAIT
        try:
            while self._read(deadline):
                pass
        except EOFError:
            pass
        return self.close()

    def close(self, wait=True):
        """The exit status; without wait, a session still running is killed."""
        if self.status is None:
            # The terminal closes a moment before the exit: give it WAIT.
            deadline = time.monotonic() + (WAIT if wait else 0)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            while pid == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                os.kill(self.pid, signal.SIGKILL)
                pid, status = os.waitpid(self.pid, 0)
            os.close(self.fd)
            self.status = os.waitstatus_to_exitcode(status)
        return self.status


def session(*args):
    """A test that gets a Session (repl ARGS...) with HOME in its tmp."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(tmp):
            s = Session(tmp, *args)
            try:
                fn(tmp, s)
            finally:
                s.close(wait=False)
        return run
    return wrap


@session()
def test_terminal_continues_a_statement_with_the_second_prompt(tmp, s):
    s.expect("> ")
    s.type("for i = 1, 2 do\r")
    s.expect(">> ")
    s.type("print('n' .. i * 10) end\r")
    s.expect("n10\r\nn20\r\n> ")
    s.type("return 6 * 7\r")
    s.expect("42\r\n> ")
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


@session()
def test_terminal_shows_error_with_traceback_and_continues(tmp, s):
    s.expect("> ")
    s.type("local function f() error('oops') end f()\r")
    s.expect("stdin:1: oops\r\nstack traceback:\r\n")
    s.expect("in local 'f'")
    s.expect("> ")
    s.type("return 'alive'\r")
    s.expect("alive\r\n> ")
    # An interactive session's failures do not make its exit status.
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


@session()
def test_terminal_ctrl_c_interrupts_an_endless_loop(tmp, s):
    s.expect("> ")
    s.type("print('sp' .. 'in') while true do end\r")
    s.expect("spin\r\n")
    s.send(b"\x03")
    s.expect("interrupted [signal]")
    s.expect("> ")
    s.type("return 'next'\r")
    s.expect("next\r\n> ")
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


@session()
def test_terminal_ctrl_c_interrupts_a_c_primitive(tmp, s):
    s.expect("> ")
    s.type("r = archive.open('/dev/zero', {format = 'raw'}) r:next() "
           "print('sp' .. 'in') return r:pipe(digest.sha256())\r")
    s.expect("spin\r\n")
    s.send(b"\x03")
    s.expect("interrupted")
    s.expect("> ")
    s.type("return 'next'\r")
    s.expect("next\r\n> ")
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


@session()
def test_terminal_ctrl_c_at_the_prompt_discards_the_line(tmp, s):
    s.expect("> ")
    s.type("error('typed but abandoned')")
    s.send(b"\x03")
    s.expect("> ")
    s.type("for i = 1, 2 do\r")
    s.expect(">> ")
    s.send(b"\x03")     # also drops a statement that is half typed
    s.expect("> ")
    s.type("return 'clean'\r")
    s.expect("clean\r\n> ")
    assert b"stack traceback" not in s.out, s.out
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


@session()
def test_terminal_history_is_saved_in_home(tmp, s):
    s.expect("> ")
    s.type("return 'remember me'\r")
    s.expect("remember me\r\n> ")
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)
    history = tmp / ".layersplit_history"
    if _has_libedit():
        assert history.exists(), "no %s after a session" % history
        assert b"remember" in history.read_bytes(), history.read_bytes()
        assert history.stat().st_mode & 0o077 == 0, oct(history.stat().st_mode)
    else:
        assert not history.exists(), "history written without libedit"


@session(fixtures.path(ARCHIVE))
def test_terminal_session_with_archive_says_so_and_lists_it(tmp, s):
    banner = s.expect("> ")
    assert b"entries()" in banner and b"reader" in banner, banner
    s.type("return select('#', entries()) == 1\r")
    s.expect("manifest.json")
    s.expect("true\r\n> ")
    status = s.end()
    assert status == 0, "exit %r: %r" % (status, s.out)


# ---- layersplit run SCRIPT ----

def write(tmp, name, text):
    path = tmp / name
    path.write_text(text)
    return path


def test_run_sets_arg_like_lua(tmp):
    script = write(tmp, "args.lua",
                   "print(arg[-2], arg[-1], arg[0], #arg, arg[1], arg[2])\n"
                   "print(select('#', ...), ...)\n")
    p = layersplit("run", script, "one", "--two")
    assert p.returncode == 0, p.err
    assert lines(p) == ["layersplit\trun\t%s\t2\tone\t--two" % script, "2\tone\t--two"], p.stdout


def test_run_exit_status_is_the_scripts_integer_result(tmp):
    assert layersplit("run", write(tmp, "s.lua", "return 7\n")).returncode == 7
    assert layersplit("run", write(tmp, "t.lua", "return 'text'\n")).returncode == 0


def test_run_script_error_names_file_and_line_exit_4(tmp):
    script = write(tmp, "bad.lua", "local x = 1\nerror('it broke')\n")
    line = assert_error(layersplit("run", script), 4)
    assert line == "layersplit: %s:2: it broke" % script, line


def test_run_syntax_error_names_file_and_line_exit_4(tmp):
    script = write(tmp, "syntax.lua", "local x =\n")
    line = assert_error(layersplit("run", script), 4)
    assert line.startswith("layersplit: %s:" % script), line


def test_run_missing_script_is_a_usage_error(tmp):
    assert_error(layersplit("run", tmp / "absent.lua"), 2, ["absent.lua"])
    assert_error(layersplit("run"), 2, ["script"])


def test_run_script_uses_the_modules_on_a_real_archive(tmp):
    archive = fixtures.path(ARCHIVE)
    want = expect.Archive(archive)
    script = write(tmp, "config.lua", """
local ls = require "layersplit"
local reader <close> = assert(ls.archive.open(arg[1]))
local count = 0
for entry in function() return reader:next() end do
  if entry.path == "manifest.json" then
    print(ls.json.decode(reader:read(1 << 20))[1].Config)
  end
  count = count + 1
end
print(count)
""")
    p = layersplit("run", script, archive)
    assert p.returncode == 0, p.err
    config = json.loads(want.data["manifest.json"])[0]["Config"]
    assert lines(p) == [config, str(len(want.members))], (p.stdout, config)
