"""Settings a policy declares: unknown and repeated --set keys are usage
errors that list the known settings, values are parsed (sizes, lists,
booleans, choices), `--policy NAME --help` prints them, and a policy that
declares nothing still receives every key as a string."""
import os
import subprocess

import fixtures
from harness import REPO, assert_error, binary, layersplit, split

ARCHIVE = "legacy_symlink.tar"


def refused(tmp, *options, words=()):
    """A usage error (exit 2), one line, nothing made beside OUTDIR."""
    parent = tmp / "p"
    parent.mkdir(exist_ok=True)
    p = layersplit(*options, fixtures.path(ARCHIVE), parent / "out")
    line = assert_error(p, 2, words)
    assert os.listdir(parent) == [], os.listdir(parent)
    return line


def test_unknown_key_is_a_usage_error_listing_the_known_ones(tmp):
    line = refused(tmp, "--policy", "oci-layout", "--set", "ref-name=reference")
    assert line.startswith("layersplit: --set ref-name: unknown setting of policy oci-layout"), line
    assert "known: ref_name" in line and "--policy oci-layout --help" in line, line
    line = refused(tmp, "--set", "anything=1")   # launchpad, the default, takes none
    assert "unknown setting of policy launchpad (known: none" in line, line
    for name in ("files-list", "extract", "push", str(REPO / "examples" / "configs-only.lua")):
        refused(tmp, "--policy", name, "--set", "nope=1", words=["unknown setting of policy " + name])


def test_key_given_twice_is_a_usage_error_unless_a_list(tmp):
    line = refused(tmp, "--policy", "oci-layout", "--set", "ref_name=tag", "--set", "ref_name=reference")
    assert "ref_name: given twice" in line, line


def test_bad_values_are_usage_errors_naming_the_setting(tmp):
    refused(tmp, "--policy", "oci-layout", "--set", "ref_name=short", words=["ref_name=short", "tag or reference"])
    refused(tmp, "--policy", REPO / "examples" / "max-layer-size.lua", "--set", "max_layer_size=1Q",
            words=["max_layer_size=1Q"])


def test_policy_help_prints_the_declared_settings(tmp):
    p = layersplit("--policy", "oci-layout", "--help")
    assert p.returncode == 0, p.err
    text = p.stdout.decode()
    assert text.splitlines()[0] == "settings of policy oci-layout (--set KEY=VALUE):", text
    assert "ref_name=tag" in text, text
    # SCRIPTING.md shows this output as it is
    doc = (REPO / "SCRIPTING.md").read_text()
    assert "$ layersplit --policy oci-layout --help\n" + text + "```" in doc, text
    assert layersplit("--policy", "launchpad", "--help").stdout.decode() == \
        "policy launchpad takes no settings\n"
    p = layersplit("--policy", REPO / "examples" / "max-layer-size.lua", "--help")
    assert "max_layer_size=1G" in p.stdout.decode(), p.stdout
    assert_error(layersplit("--policy", "no-such", "--help"), 2, ["unknown policy"])


def site(tmp, source):
    (tmp / "site.lua").write_text(source)
    return tmp / "site.lua"


def test_a_policy_that_declares_nothing_gets_every_key(tmp):
    """Inherited declarations do not count: a site policy wrapping launchpad
    through a metatable still receives its own keys."""
    path = site(tmp, """local launchpad = require "layersplit.policies.launchpad"
local policy = setmetatable({}, {__index = launchpad})
function policy.setup(ctx, settings)
\tlaunchpad.setup(ctx, settings)
\tctx.seen = settings.limit
end
function policy.finish(ctx)
\tctx:fail("policy", "limit", ctx.seen)
end
return policy
""")
    p = layersplit("--policy", path, "--set", "limit=7", "--set", "limit=8",
                   fixtures.path(ARCHIVE), tmp / "out")
    assert_error(p, 4)
    assert p.err.strip() == "layersplit: limit: 8", p.err
    p = layersplit("--policy", path, "--help")
    assert "declares no settings" in p.stdout.decode(), p.stdout


def test_parsed_values_and_defaults_reach_setup(tmp):
    path = site(tmp, """local settings = require "layersplit.settings"
return {
\tsettings = {
\t\t{name = "size", default = "16M", help = "a size", parse = settings.size},
\t\t{name = "list", default = "a,b", help = "a list", parse = settings.list},
\t\t{name = "flag", default = "no", help = "a flag", parse = settings.boolean},
\t\t{name = "word", help = "no default"},
\t},
\tsetup = function(ctx, s)
\t\tctx:fail("policy", "values", string.format("%d %s %s %s", s.size,
\t\t\ttable.concat(s.list, "|"), tostring(s.flag), tostring(s.word)))
\tend,
\tentry = function() end,
}
""")
    def values(*options):
        p = layersplit("--policy", path, *options, fixtures.path(ARCHIVE), tmp / "out")
        assert_error(p, 4)
        return p.err.strip().split(": ", 2)[2]
    got = values()
    assert got == "16777216 a|b false nil", got
    got = values("--set", "size=2K", "--set", "list=x\\,y,z", "--set", "list=w",
                 "--set", "flag=yes", "--set", "word=hi")
    assert got == "2048 x,y|z|w true hi", got
    line = assert_error(layersplit("--policy", path, "--set", "flag=maybe",
                                   fixtures.path(ARCHIVE), tmp / "out"), 2)
    assert "flag=maybe" in line and "yes or no" in line, line


def test_a_bad_declaration_is_a_policy_error(tmp):
    path = site(tmp, "return {settings = {{name = 'x', parse = 'size'}}, entry = function() end}\n")
    assert_error(layersplit("--policy", path, fixtures.path(ARCHIVE), tmp / "out"), 4, ["settings item 1"])
