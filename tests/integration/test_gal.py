"""The Global Address List (address book) on both directory backends:
tern-authd's `gal` request, common/authclient through tests/authclient-probe,
`ternctl gal search`, and the bundled slapd's access rules for an account
that searches the address book itself."""
import json
import os

import pytest

import conftest
from test_authd import AUTHD_DIR, Authd, authd_services, probe
from test_ldap import (PASSWORD, SLAPD, ldap_instance,  # noqa: F401
                       ldap_tool, parse_ldif)

ANNA = "Anna M\u00fcller"
BOB = "Bob *(Star)\\ Builder"
BULK = 12


def have_slapd():
    import shutil
    return os.access(SLAPD, os.X_OK) and shutil.which("ldapsearch")


def provision(inst):
    inst.ctl("domain", "add", "example.com")
    inst.ctl("domain", "add", "other.example")
    for addr, name in (("anna@example.com", ANNA), ("bob@example.com", BOB),
                       ("carol@example.com", "Carol Closed"),
                       ("s*@other.example", "Star")):
        inst.ctl("account", "add", addr, "--name", name,
                 input=PASSWORD + "\n")
    inst.ctl("account", "set", "carol@example.com", "--status", "closed")
    inst.ctl("alias", "add", "info@example.com", "bob@example.com")
    inst.ctl("alias", "add", "old@example.com", "carol@example.com")
    inst.ctl("list", "add", "team@example.com")
    for i in range(BULK):
        inst.ctl("account", "add", f"user{i:02d}@other.example", "--name",
                 f"Bulk {i:02d}", "--no-password")


@pytest.fixture(params=["sqlite", "ldap"])
def gal_inst(request, make_instance, monkeypatch):
    if request.param == "ldap":
        if not have_slapd():
            pytest.skip("slapd and ldap-utils are not installed")
        inst = request.getfixturevalue("ldap_instance")
    else:
        monkeypatch.setattr(conftest, "LIBEXEC",
                            conftest.LIBEXEC + ":" + AUTHD_DIR)
        inst = make_instance(services=authd_services)
    provision(inst)
    return inst


def gal(c, text, limit=None):
    """(reply type, [(address, kind, name)]) of one gal request."""
    fields = {"text": text}
    if limit is not None:
        fields["limit"] = limit
    mid = c.send("gal", **fields)
    got = []
    while True:
        t, rid, f = c.recv()
        assert rid == mid
        if t != "gal_entry":
            break
        assert set(f) == {"kind", "address", "display_name"}, f
        got.append((f["address"][0], f["kind"][0], f["display_name"][0]))
    if t == "gal":
        assert f["entries"] == [len(got)]
    return t, got


def test_gal_request(gal_inst):
    c = Authd(gal_inst)
    assert gal(c, "m\u00fcll") == ("gal", [("anna@example.com", "account",
                                            ANNA)])
    assert gal(c, "ANNA")[1] == [("anna@example.com", "account", ANNA)]
    # filter and pattern characters are plain text
    assert gal(c, "*(star)\\")[1] == [("bob@example.com", "account", BOB)]
    assert [a for a, _, _ in gal(c, "*")[1]] == ["bob@example.com",
                                                  "s*@other.example"]
    assert gal(c, "x)(mail=*")[1] == []
    assert gal(c, "%")[1] == [] and gal(c, "_")[1] == []
    # an alias leads to its account; lists have no display name
    assert gal(c, "info@")[1] == [("bob@example.com", "account", BOB)]
    assert gal(c, "team")[1] == [("team@example.com", "list", "")]
    # closed accounts are never listed, not through an alias either
    assert gal(c, "carol")[1] == [] and gal(c, "old@")[1] == []
    # the limit: default 100, or as asked
    t, got = gal(c, "bulk")
    assert len(got) == BULK
    assert [a for a, _, _ in got] == sorted(a for a, _, _ in got)
    t, got = gal(c, "bulk", limit=5)
    assert t == "gal" and len(got) == 5
    assert all(name.startswith("Bulk ") for _, _, name in got)
    # bad requests
    assert gal(c, "a\tb")[0] == "invalid"
    assert gal(c, "bulk", limit=5000)[0] == "invalid"
    assert gal(c, "x" * 200)[0] == "error"
    assert gal(c, "")[0] == "invalid"
    # the connection is still good
    assert c.call("lookup", address="bob@example.com")[0] == "account"
    c.close()


def test_gal_through_authclient_and_ternctl(gal_inst):
    inst = gal_inst
    out = probe(inst, "gal m\u00fcll\n"
                      "gal bulk 3\n"
                      "gal carol\n"
                      "gal team\n"
                      "quit\n")
    assert out[0] == f"gal ok 1 anna@example.com:account:{ANNA}"
    assert out[1].startswith("gal ok 3 user")
    assert out[2] == "gal ok 0 "
    assert out[3] == "gal ok 1 team@example.com:list:"
    p = inst.ctl("gal", "search", "M\u00fcller")
    assert p.stdout == f"anna@example.com account {ANNA}\n"
    got = json.loads(inst.ctl("gal", "search", "bulk", "--limit", "4",
                              "--json").stdout)
    assert len(got) == 4
    assert set(got[0]) == {"address", "kind", "display_name"}
    assert all(e["kind"] == "account" for e in got)
    got = json.loads(inst.ctl("gal", "search", "@example.com",
                              "--json").stdout)
    assert [e["address"] for e in got] == [
        "anna@example.com", "bob@example.com", "team@example.com"]
    assert not any("password" in k for e in got for k in e)
    for bad in (("gal", "search", "bulk", "--limit", "0"),
                ("gal", "search", "bulk", "--limit", "x"),
                ("gal", "search", "a\tb")):
        p = inst.ctl(*bad, check=False)
        assert p.returncode == 1, p
    assert inst.ctl("gal", "search", check=False).returncode == 2


@pytest.mark.skipif(not have_slapd(), reason="slapd is not installed")
def test_bundled_slapd_lets_accounts_read_the_address_book(ldap_instance):
    inst = ldap_instance
    provision(inst)
    bob = "mail=bob@example.com,ternDomainName=example.com,ou=domains,dc=tern"
    # what a mail client bound as an account sends for "ll"
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", "ou=domains,dc=tern", "-LLL", "-o", "ldif-wrap=no",
                   "(|(mail=*ll*)(displayName=*ll*)(cn=*ll*)(sn=*ll*)"
                   "(givenName=*ll*)(ternMailAlternateAddress=*ll*))",
                   "mail", "displayName", "cn", "userPassword",
                   "ternAccountStatus", "ternMailHost"],
                  binddn=bob, password=PASSWORD)
    entries = parse_ldif(p.stdout)
    mails = sorted(e["mail"][0] for e in entries.values() if "mail" in e)
    assert "anna@example.com" in mails
    # the address-book attributes only: never a hash, status or route
    assert "userPassword" not in p.stdout
    assert "ternAccountStatus" not in p.stdout
    assert "ternMailHost" not in p.stdout
    # a non-ASCII name matches when escaped as RFC 4515 says
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", "ou=domains,dc=tern", "-LLL",
                   "(displayName=*M\\c3\\bcll*)", "mail"],
                  binddn=bob, password=PASSWORD)
    assert [e["mail"] for e in parse_ldif(p.stdout).values()] == [
        ["anna@example.com"]]
    # without a bind: nothing
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-x", "-b", "ou=domains,dc=tern", "-LLL", "(mail=*ll*)",
                   "mail"], check=False)
    assert "anna@example.com" not in p.stdout
