"""The gzip writer's engines on inputs that hit every block boundary: one
gzip member that zlib, gzip -t and tarfile r|gz read back to the input, the
same bytes for every thread count, digests of what went in and came out.

The writer is driven directly (gzip.writer from a `layersplit run` script), so
the inputs can be shaped against each engine's block size; expected values
are computed here, by Python's zlib, tarfile and hashlib."""
import ctypes
import ctypes.util
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path

import expect
import fixtures
from harness import REPO, layersplit

WRITE = """
local gzip = require "layersplit.gzip"
local engine, level, threads, outdir = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
local results = {}
for i = 5, #arg do
	local src = arg[i]
	local f = assert(io.open(src, "rb"))
	local name = outdir .. "/" .. src:match("[^/]*$") .. ".gz"
	local w = assert(gzip.writer(name, {engine = engine, level = level, threads = threads}))
	-- writes of an odd size, so blocks fill across them
	while true do
		local s = f:read(100003)
		if not s then break end
		assert(w:write(s))
	end
	f:close()
	local r = assert(w:close())
	print(src:match("[^/]*$"), r.in_size, r.in_sha256, r.out_size, r.out_sha256)
end
"""

INFO = """
local gzip = require "layersplit.gzip"
local out = {}
for _, name in ipairs(gzip.engines()) do
	local e = gzip.engine(name)
	out[#out + 1] = string.format('"%s": [%d, %d, %d, %d]', name, e.min_level, e.max_level,
		e.default_level, e.block_size)
end
print("{" .. table.concat(out, ", ") .. "}")
"""


def engines(tmp):
    """{name: (min level, max level, default level, block size)} of the build."""
    (tmp / "info.lua").write_text(INFO)
    p = layersplit("run", tmp / "info.lua")
    assert p.returncode == 0, p.err
    return {k: tuple(v) for k, v in json.loads(p.stdout).items()}


def inputs(d, block):
    """Files shaped against the block size: {name: bytes}."""
    rng = random.Random(block)
    text = fixtures.words(7, 6 * block + 4096)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(5):
            data = fixtures.words(100 + i, block // 2 + 999 * i)
            info = tarfile.TarInfo("dir/file%d" % i)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    files = {
        "empty": b"",
        "one-byte": b"x",
        "one-block": text[:block],
        "block-plus-one": text[:block + 1],
        "two-blocks": text[:2 * block],
        # incompressible: stored blocks, over 64 KiB in one block
        "random": rng.randbytes(3 * block + 17),
        "zeros": bytes(5 * block + 3),
        "text": text,
        "layer.tar": tar.getvalue(),
    }
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return files


def write_all(tmp, engine, level, threads, src, names):
    out = Path(tempfile.mkdtemp(prefix="%s-%s-j%s-" % (engine, level, threads), dir=tmp))
    (tmp / "write.lua").write_text(WRITE)
    p = layersplit("run", tmp / "write.lua", engine, level, threads, out,
                   *[src / n for n in names])
    assert p.returncode == 0, "%s level %s -j %s: %s" % (engine, level, threads, p.err)
    reported = {}
    for line in p.stdout.decode().splitlines():
        name, in_size, in_sha, out_size, out_sha = line.split("\t")
        reported[name] = (int(in_size), in_sha, int(out_size), out_sha)
    return out, reported


def check_member(path, data, reported, what):
    """One gzip member that inflates to data, read by zlib, gzip -t and
    tarfile; the writer's digests are of exactly these bytes."""
    gz = path.read_bytes()
    assert gz[:3] == b"\x1f\x8b\x08" and gz[3] == 0 and gz[4:8] == bytes(4) and gz[9] == 3, (
        "%s: header %r" % (what, gz[:10]))
    assert expect.gunzip_one_member(gz, what) == data, "%s: inflates to other bytes" % what
    d = zlib.decompressobj(31)
    assert d.decompress(gz) == data and d.eof and d.unused_data == b"", what
    t = subprocess.run(["gzip", "-t", str(path)], stderr=subprocess.PIPE)
    assert t.returncode == 0, "%s: gzip -t: %s" % (what, t.stderr.decode())
    if path.name == "layer.tar.gz":
        assert expect.read_like_launchpad(gz, what)
        with tarfile.open(fileobj=io.BytesIO(gz), mode="r|gz") as t:
            assert len([m for m in t]) == 5, what
    assert reported == (len(data), hashlib.sha256(data).hexdigest(),
                        len(gz), hashlib.sha256(gz).hexdigest()), (
        "%s: reported %r" % (what, reported))


def test_every_engine_writes_one_member_the_same_for_every_thread_count(tmp):
    for engine, (low, high, default, block) in engines(tmp).items():
        src = tmp / ("in-" + engine)
        files = inputs(src, block)
        levels = sorted({low, default, high}) if engine == "libdeflate" else [default]
        for level in levels:
            outputs = {}
            for threads in (1, 2, 4, 7):
                out, reported = write_all(tmp, engine, level, threads, src, files)
                for name, data in files.items():
                    what = "%s level %d -j %d: %s" % (engine, level, threads, name)
                    check_member(out / (name + ".gz"), data, reported[name], what)
                outputs[threads] = {n: (out / (n + ".gz")).read_bytes() for n in files}
            for threads in (2, 4, 7):
                differ = [n for n in files if outputs[threads][n] != outputs[1][n]]
                assert not differ, "%s level %d: -j 1 and -j %d differ in %r" % (
                    engine, level, threads, differ)


def test_libdeflate_levels_trade_time_for_size(tmp):
    """Level 12 writes fewer bytes than level 6, and 6 fewer than 1, on text
    that spans several blocks."""
    low, high, default, block = engines(tmp)["libdeflate"]
    assert (low, high, default) == (1, 12, 6)
    src = tmp / "in"
    src.mkdir()
    data = fixtures.words(11, 3 * block + 5)
    (src / "text").write_bytes(data)
    sizes = {}
    for level in (1, 6, 12):
        out, reported = write_all(tmp, "libdeflate", level, 2, src, ["text"])
        check_member(out / "text.gz", data, reported["text"], "level %d" % level)
        sizes[level] = reported["text"][2]
    assert sizes[12] < sizes[6] < sizes[1], sizes


def test_a_block_of_every_padding_joins_into_one_stream(tmp):
    """libdeflate blocks end at every bit position: many blocks of varied
    data, each cut where its own deflate stream ends, still make one stream
    that zlib reads back."""
    low, high, default, block = engines(tmp)["libdeflate"]
    rng = random.Random(5)
    parts = []
    for i in range(24):
        kind = i % 3
        if kind == 0:
            parts.append(fixtures.words(200 + i, block))
        elif kind == 1:
            parts.append(bytes(rng.randrange(4)) * block)
        else:
            parts.append(rng.randbytes(block // 2) + fixtures.words(300 + i, block - block // 2))
    data = b"".join(parts)[:24 * block - 12345]
    src = tmp / "in"
    src.mkdir()
    (src / "mixed").write_bytes(data)
    for level in (1, 6, 9):
        out, reported = write_all(tmp, "libdeflate", level, 2, src, ["mixed"])
        check_member(out / "mixed.gz", data, reported["mixed"], "level %d" % level)


def test_layer_of_one_block_and_of_many_blocks_give_the_same_bytes_as_alone(tmp):
    """The writer started no thread for a one-block layer and kept an engine
    from it for the next: the bytes of each layer are those it gets when
    written alone, in any order."""
    for engine, (low, high, default, block) in engines(tmp).items():
        src = tmp / ("in-" + engine)
        src.mkdir()
        names = []
        for i, size in enumerate((0, 1, 5000, block, 3 * block + 7, 700, block + 1)):
            names.append("f%d" % i)
            (src / names[-1]).write_bytes(fixtures.words(40 + i, size))
        together, _ = write_all(tmp, engine, default, 2, src, names)
        for name in reversed(names):
            alone = write_all(tmp, engine, default, 2, src, [name])[0]
            assert (alone / (name + ".gz")).read_bytes() == (together / (name + ".gz")).read_bytes(), (
                "%s: %s differs when written alone" % (engine, name))


def zlib_engine_bytes(data, level, block=128 * 1024, dict_size=32 * 1024):
    """What the zlib engine must write, by Python's zlib: raw deflate of each
    block with the previous 32 KiB as dictionary, a sync flush after each but
    the last, the empty last block as the 2-byte static block, one header and
    trailer."""
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 3])]
    # the last block holds the last byte, or is empty after a full block
    starts = list(range(0, len(data) + 1, block))
    for i, start in enumerate(starts):
        chunk, last = data[start:start + block], i == len(starts) - 1
        if not chunk:
            out.append(b"\x03\x00")
            continue
        zdict = data[max(0, start - dict_size):start]
        c = (zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
             if zdict else zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY))
        out.append(c.compress(chunk) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    out.append(zlib.crc32(data).to_bytes(4, "little") + (len(data) % (1 << 32)).to_bytes(4, "little"))
    return b"".join(out)


def libdeflate_compress(data, level):
    """libdeflate's own raw deflate of data, through ctypes."""
    lib = ctypes.CDLL(ctypes.util.find_library("deflate"))
    lib.libdeflate_alloc_compressor.restype = ctypes.c_void_p
    lib.libdeflate_deflate_compress_bound.restype = ctypes.c_size_t
    lib.libdeflate_deflate_compress_bound.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.libdeflate_deflate_compress.restype = ctypes.c_size_t
    lib.libdeflate_deflate_compress.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.c_void_p, ctypes.c_size_t]
    lib.libdeflate_free_compressor.argtypes = [ctypes.c_void_p]
    c = lib.libdeflate_alloc_compressor(level)
    assert c, "libdeflate_alloc_compressor(%d) failed" % level
    try:
        bound = lib.libdeflate_deflate_compress_bound(c, len(data))
        buf = ctypes.create_string_buffer(bound)
        n = lib.libdeflate_deflate_compress(c, data, len(data), buf, bound)
        assert n > 0
        return buf.raw[:n]
    finally:
        lib.libdeflate_free_compressor(c)


def test_zlib_engine_writes_exactly_what_zlib_computes_for_its_blocks(tmp):
    """The zlib engine's bytes, recomputed block by block with Python's zlib:
    unchanged by how the writer schedules blocks (threads, or none for a
    one-block layer, an engine kept from the previous layer)."""
    low, high, default, block = engines(tmp)["zlib"]
    src = tmp / "in"
    files = inputs(src, block)
    for level in (1, 6, 9):
        for threads in (1, 2):
            out, _ = write_all(tmp, "zlib", level, threads, src, files)
            for name, data in files.items():
                assert (out / (name + ".gz")).read_bytes() == zlib_engine_bytes(data, level, block), (
                    "zlib level %d -j %d: %s is not what zlib computes" % (level, threads, name))


def test_libdeflate_engine_ends_with_libdeflates_own_stream(tmp):
    """A layer of one block is libdeflate's raw deflate of it, byte for byte,
    between the header and the trailer; a longer layer ends with libdeflate's
    stream of its last block (the blocks before it end non-final)."""
    low, high, default, block = engines(tmp)["libdeflate"]
    src = tmp / "in"
    files = inputs(src, block)
    for level in (1, 6, 12):
        out, _ = write_all(tmp, "libdeflate", level, 2, src, files)
        xfl = bytes([2 if level >= 8 else 4 if level < 2 else 0, 3])
        for name, data in files.items():
            gz = (out / (name + ".gz")).read_bytes()
            trailer = zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little")
            assert gz[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + xfl and gz[-8:] == trailer, name
            what = "level %d: %s" % (level, name)
            if not data:
                assert gz[10:-8] == b"\x03\x00", what
            elif len(data) < block:
                assert gz[10:-8] == libdeflate_compress(data, level), what
            elif len(data) % block == 0:
                # a full block is not the last: the empty last block follows
                assert gz[10:-8].endswith(b"\x00\x00\xff\xff\x03\x00"), what
            else:
                tail = data[len(data) // block * block:]
                assert gz[10:-8].endswith(libdeflate_compress(tail, level)), what


def test_deflate_walk_agrees_with_zlib_inflate(tmp):
    """src/deflate_walk.c (where the libdeflate engine's blocks end) against
    zlib's inflate(Z_BLOCK) on libdeflate and zlib streams of every level and
    many shapes, every padding 0-7 among them; damaged streams must not be
    read out of bounds (AddressSanitizer) nor accepted where zlib disagrees."""
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "zlib", "libdeflate"],
                           stdout=subprocess.PIPE, check=True).stdout.decode().split()
    exe = tmp / "walk_check"
    cc = os.environ.get("CC", "cc")
    build = [cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-iquote", str(REPO / "src"),
             "-o", str(exe), str(REPO / "tests" / "deflate_walk_check.c"),
             str(REPO / "src" / "deflate_walk.c")] + flags
    p = subprocess.run(build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode == 0, "cannot build the check: %s" % p.stdout.decode()
    p = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    out = p.stdout.decode()
    assert p.returncode == 0 and out.startswith("ok "), out[-3000:]
