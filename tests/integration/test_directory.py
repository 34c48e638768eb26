"""Directory provisioning with ternctl: domains, accounts, aliases, lists
and classes of service, as the administrator types them."""
import json
import os
import pwd

import pytest


@pytest.fixture
def inst(make_instance):
    return make_instance(start=False)


def ok(inst, *args, input=None):
    p = inst.ctl(*args, input=input)
    assert p.stderr == "", p.stderr
    assert p.stdout.strip(), "no confirmation line"
    return p.stdout


def js(inst, *args):
    return json.loads(inst.ctl(*args, "--json").stdout)


def bad(inst, *args, input=None, want=None):
    """The command fails with exit 1 and one line on stderr."""
    p = inst.ctl(*args, check=False, input=input)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("ternctl: "), lines[0]
    if want is not None:
        assert want in lines[0], lines[0]
    assert p.stdout == ""
    return lines[0]


def snapshot(inst):
    return (js(inst, "domain", "list"), js(inst, "account", "list"),
            js(inst, "alias", "list"), js(inst, "list", "list"),
            js(inst, "cos", "list"))


def test_domains(inst):
    assert "domain example.com added" in ok(inst, "domain", "add",
                                            "Example.COM")
    assert "xn--bcher-kva.example" in ok(inst, "domain", "add",
                                         "Bücher.example")
    names = [d["name"] for d in js(inst, "domain", "list")]
    assert names == ["example.com", "xn--bcher-kva.example"]
    d = js(inst, "domain", "show", "bücher.example")
    assert d["name"] == "xn--bcher-kva.example"
    assert d["cos"] == "default" and d["catchall"] is None
    assert "unicode: bücher.example" in inst.ctl(
        "domain", "show", "xn--bcher-kva.example").stdout
    text = inst.ctl("domain", "list").stdout
    assert "example.com" in text and "xn--bcher-kva.example" in text

    before = snapshot(inst)
    bad(inst, "domain", "add", "example.com", want="exists already")
    bad(inst, "domain", "add", "bad domain", want="invalid domain")
    bad(inst, "domain", "add", "example.org", "--cos", "nosuch",
        want="cos nosuch does not exist")
    bad(inst, "domain", "show", "nosuch.example", want="does not exist")
    bad(inst, "domain", "del", "nosuch.example", want="does not exist")
    bad(inst, "domain", "set", "example.com", "--quota", "lots",
        want="invalid size")
    bad(inst, "domain", "set", "example.com", want="nothing to change")
    assert snapshot(inst) == before

    ok(inst, "cos", "add", "gold")
    ok(inst, "domain", "set", "example.com", "--cos", "gold", "--quota",
       "2G")
    d = js(inst, "domain", "show", "example.com")
    assert d["cos"] == "gold" and d["default_quota"] == 2 << 30
    ok(inst, "domain", "del", "bücher.example")
    assert [d["name"] for d in js(inst, "domain", "list")] == ["example.com"]


def test_accounts_and_passwords(inst):
    ok(inst, "domain", "add", "example.com")
    out = ok(inst, "account", "add", "Bob@Example.com", "--name", "Bob B",
             "--quota", "1G", input="first pw\n")
    assert "account bob@example.com added" in out
    a = js(inst, "account", "show", "bob@example.com")
    assert a["address"] == "bob@example.com"
    assert a["display_name"] == "Bob B"
    assert a["quota"] == 1 << 30 and a["quota_effective"] == 1 << 30
    assert a["status"] == "active" and a["cos"] == "default"
    assert a["password_scheme"] == "argon2id"
    assert "password_hash" not in a and "$argon2" not in json.dumps(a)
    myhost = inst.ctl("config", "show", "myhostname",
                      "--json").stdout
    assert a["mailhost"] == json.loads(myhost)[0]["value"].lower()

    ok(inst, "account", "add", "carol@example.com", "--no-password",
       "--mailhost", "Mail2.Example.com", "--status", "locked")
    c = js(inst, "account", "show", "carol@example.com")
    assert c["password_scheme"] is None
    assert c["mailhost"] == "mail2.example.com" and c["status"] == "locked"
    ids = [x["id"] for x in js(inst, "account", "list")]
    assert len(ids) == 2 and ids[0] < ids[1]
    assert [x["address"] for x in js(inst, "account", "list",
                                     "example.com")] == [
        "bob@example.com", "carol@example.com"]
    assert "bob@example.com" in inst.ctl("account", "list").stdout

    before = snapshot(inst)
    bad(inst, "account", "add", "bob@example.com", input="x\n",
        want="ternctl: account bob@example.com exists already")
    bad(inst, "account", "add", "bob@nosuch.example", input="x\n",
        want="domain nosuch.example does not exist")
    bad(inst, "account", "add", "not an address", input="x\n",
        want="invalid address")
    bad(inst, "account", "add", "dave@example.com", input="",
        want="no password")
    bad(inst, "account", "add", "dave@example.com", input="\n",
        want="empty password")
    bad(inst, "account", "add", "dave@example.com", "--cos", "nosuch",
        input="pw\n", want="cos nosuch does not exist")
    bad(inst, "account", "set", "bob@example.com", "--status", "asleep",
        want="invalid status")
    bad(inst, "account", "set", "ghost@example.com", "--quota", "1M",
        want="account ghost@example.com does not exist")
    bad(inst, "account", "show", "ghost@example.com", want="does not exist")
    bad(inst, "account", "del", "ghost@example.com", want="does not exist")
    bad(inst, "account", "passwd", "ghost@example.com", input="x\n",
        want="does not exist")
    bad(inst, "account", "list", "nosuch.example", want="does not exist")
    assert snapshot(inst) == before

    ok(inst, "cos", "add", "gold", "--quota", "5G")
    ok(inst, "account", "set", "bob@example.com", "--quota", "0", "--cos",
       "gold", "--status", "closed", "--name", "Robert", "--mailhost",
       "mail3.example.com")
    a = js(inst, "account", "show", "bob@example.com")
    assert a["quota"] == 0 and a["quota_effective"] == 5 << 30
    assert a["cos"] == "gold" and a["status"] == "closed"
    assert a["display_name"] == "Robert"
    assert a["mailhost"] == "mail3.example.com"

    ok(inst, "account", "passwd", "carol@example.com", input="new pw\r\n")
    assert js(inst, "account", "show",
              "carol@example.com")["password_scheme"] == "argon2id"
    ok(inst, "account", "del", "carol@example.com")
    ok(inst, "account", "add", "carol@example.com", input="again\n")
    assert js(inst, "account", "show", "carol@example.com")["id"] > ids[1]


def test_password_never_from_argv(inst):
    ok(inst, "domain", "add", "example.com")
    p = inst.ctl("account", "add", "bob@example.com", "--password", "x",
                 check=False, input="pw\n")
    assert p.returncode == 2
    assert js(inst, "account", "list") == []


def test_aliases_and_lists(inst):
    ok(inst, "domain", "add", "example.com")
    ok(inst, "account", "add", "bob@example.com", input="pw\n")
    ok(inst, "account", "add", "amy@example.com", "--no-password")
    ok(inst, "alias", "add", "Postmaster@example.com", "bob@example.com")
    ok(inst, "alias", "add", "fwd@example.com", "someone@elsewhere.example")
    assert js(inst, "alias", "list") == [
        {"address": "fwd@example.com",
         "target": "someone@elsewhere.example"},
        {"address": "postmaster@example.com", "target": "bob@example.com"}]
    assert "postmaster@example.com -> bob@example.com" in inst.ctl(
        "alias", "list", "example.com").stdout

    ok(inst, "list", "add", "team@example.com")
    ok(inst, "list", "member", "add", "team@example.com", "bob@example.com")
    ok(inst, "list", "member", "add", "team@example.com", "Amy@example.com")
    ok(inst, "list", "member", "add", "team@example.com",
       "ext@elsewhere.example")
    ok(inst, "list", "add", "all@example.com")
    ok(inst, "list", "member", "add", "all@example.com", "team@example.com")
    assert js(inst, "list", "show", "team@example.com") == {
        "address": "team@example.com",
        "members": ["amy@example.com", "bob@example.com",
                    "ext@elsewhere.example"]}
    assert [x["address"] for x in js(inst, "list", "list")] == [
        "all@example.com", "team@example.com"]
    assert "amy@example.com" in inst.ctl("list", "show",
                                         "team@example.com").stdout

    before = snapshot(inst)
    # one namespace for accounts, aliases and lists
    bad(inst, "alias", "add", "bob@example.com", "amy@example.com",
        want="account bob@example.com exists already")
    bad(inst, "list", "add", "postmaster@example.com",
        want="alias postmaster@example.com exists already")
    bad(inst, "account", "add", "team@example.com", "--no-password",
        want="list team@example.com exists already")
    bad(inst, "alias", "add", "x@example.com", "ghost@example.com",
        want="ghost@example.com does not exist")
    bad(inst, "alias", "add", "x@nosuch.example", "bob@example.com",
        want="domain nosuch.example does not exist")
    bad(inst, "alias", "add", "x@example.com", "not-an-address",
        want="invalid address")
    bad(inst, "alias", "del", "ghost@example.com", want="does not exist")
    bad(inst, "list", "member", "add", "team@example.com",
        "bob@example.com", want="already a member")
    bad(inst, "list", "member", "add", "nolist@example.com",
        "bob@example.com", want="list nolist@example.com does not exist")
    bad(inst, "list", "member", "del", "team@example.com",
        "ghost@example.com", want="not a member")
    bad(inst, "list", "show", "nolist@example.com", want="does not exist")
    bad(inst, "list", "del", "nolist@example.com", want="does not exist")
    assert snapshot(inst) == before

    p = inst.ctl("list", "member", "frob", "a@example.com", "b@example.com",
                 check=False)
    assert p.returncode == 2

    ok(inst, "list", "member", "del", "team@example.com", "bob@example.com")
    ok(inst, "alias", "del", "fwd@example.com")
    ok(inst, "list", "del", "team@example.com")
    assert js(inst, "list", "show", "all@example.com")["members"] == []
    assert [x["address"] for x in js(inst, "alias", "list")] == [
        "postmaster@example.com"]


def test_domain_delete_refused_while_not_empty(inst):
    ok(inst, "domain", "add", "example.com")
    ok(inst, "account", "add", "a@example.com", "--no-password")
    ok(inst, "account", "add", "b@example.com", "--no-password")
    ok(inst, "account", "add", "c@example.com", "--no-password")
    ok(inst, "alias", "add", "x@example.com", "a@example.com")
    before = snapshot(inst)
    bad(inst, "domain", "del", "example.com",
        want="domain example.com still has 3 accounts, 1 alias and 0 lists:"
        " delete them first")
    assert snapshot(inst) == before
    for a in ("a", "b", "c"):
        ok(inst, "account", "del", f"{a}@example.com")
    bad(inst, "domain", "del", "example.com", want="1 alias")
    ok(inst, "alias", "del", "x@example.com")
    ok(inst, "domain", "del", "example.com")
    assert js(inst, "domain", "list") == []


def test_cos(inst):
    c = js(inst, "cos", "list")
    assert [x["name"] for x in c] == ["default"]
    ok(inst, "cos", "add", "gold", "--quota", "10G", "--max-message-size",
       "50M", "--max-recipients", "500")
    assert js(inst, "cos", "show", "gold") == {
        "name": "gold", "quota": 10 << 30, "max_message_size": 50 << 20,
        "max_recipients": 500}
    ok(inst, "cos", "set", "gold", "--max-recipients", "100")
    assert js(inst, "cos", "show", "gold")["max_recipients"] == 100
    assert js(inst, "cos", "show", "gold")["quota"] == 10 << 30
    assert "gold" in inst.ctl("cos", "list").stdout
    ok(inst, "domain", "add", "example.com", "--cos", "gold")

    before = snapshot(inst)
    bad(inst, "cos", "add", "gold", want="cos gold exists already")
    bad(inst, "cos", "add", "bad name", want="invalid cos name")
    bad(inst, "cos", "add", "x", "--max-recipients", "-1",
        want="--max-recipients")
    bad(inst, "cos", "set", "silver", "--quota", "1G",
        want="cos silver does not exist")
    bad(inst, "cos", "del", "gold", want="still used by 1 domain")
    bad(inst, "cos", "del", "default", want="cannot be deleted")
    bad(inst, "cos", "show", "silver", want="does not exist")
    assert snapshot(inst) == before
    ok(inst, "domain", "set", "example.com", "--cos", "default")
    ok(inst, "cos", "del", "gold")
    assert [x["name"] for x in js(inst, "cos", "list")] == ["default"]


def test_catchall_and_idna_addresses(inst):
    ok(inst, "domain", "add", "Bücher.example")
    ok(inst, "account", "add", "Info@BÜCHER.example", "--no-password")
    assert js(inst, "account", "list")[0]["address"] == \
        "info@xn--bcher-kva.example"
    ok(inst, "domain", "set", "bücher.example", "--catchall",
       "info@bücher.example")
    d = js(inst, "domain", "show", "xn--bcher-kva.example")
    assert d["catchall"] == "info@xn--bcher-kva.example"
    assert d["accounts"] == 1
    bad(inst, "domain", "set", "bücher.example", "--catchall",
        "ghost@bücher.example", want="does not exist")
    ok(inst, "domain", "set", "bücher.example", "--no-catchall")
    assert js(inst, "domain", "show", "bücher.example")["catchall"] is None


def test_usage_errors(inst):
    for args in (("domain",), ("domain", "frob"), ("account", "add"),
                 ("domain", "list", "--frob"),
                 ("alias", "add", "a@example.com"),
                 ("account", "passwd", "a@example.com", "--quota", "1M")):
        p = inst.ctl(*args, check=False)
        assert p.returncode == 2, args
        assert "usage" in p.stderr


def test_file_owner_and_mode(inst):
    ok(inst, "domain", "add", "example.com")
    path = os.path.join(inst.root, "data", "directory.db")
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o640
    if os.geteuid() == 0:
        assert pwd.getpwuid(st.st_uid).pw_name == "tern"
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                assert os.stat(path + suffix).st_uid == st.st_uid
