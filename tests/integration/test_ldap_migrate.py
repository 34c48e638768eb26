"""ternctl directory migrate --to=ldap: an instance on the embedded
directory moves to the bundled slapd (setup --directory=ldap on the same
root, the slapd line in services.conf, migrate, --switch, restart) and
keeps its passwords, account ids (so its mailboxes), aliases and lists."""
import base64
import imaplib
import json
import os
import sqlite3

import pytest

import conftest
import test_qmgr
from test_ldap import (CONF, PASSWORD, ldap_tool, ldapi, parse_ldif,
                       pytestmark)  # noqa: F401  (skip without slapd)

HOSTILE = "s*t=a+b#c@example.com"
HOSTILE_NAME = "Weird *()\\ name"


def services(base):
    return (test_qmgr.services(base) +
            f"imap       inet 127.0.0.1:{base + 1} 1 yes tern-imapd\n")


def ldap_search(inst, filt, *attrs, base="ou=domains,dc=tern"):
    with open(inst.conf("ldap.secret")) as f:
        secret = f.read().strip()
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", base, "-LLL", "-o", "ldif-wrap=no", filt] +
                  list(attrs), binddn="cn=tern-service,dc=tern",
                  password=secret)
    return parse_ldif(p.stdout)


def migrate(inst, *args, check=True):
    p = inst.ctl("directory", "migrate", "--to=ldap", *args, check=False)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def counts(out):
    """{kind: (added, unchanged, different, overwritten, errors)}."""
    rows = {}
    for line in out.splitlines():
        parts = line.rsplit(None, 5)
        if len(parts) == 6 and all(x.isdigit() for x in parts[1:]):
            rows[parts[0].strip()] = tuple(int(x) for x in parts[1:])
    return rows


def switched(inst):
    with open(inst.conf("tern.conf")) as f:
        return "\ndirectory_backend = ldap\n" in f.read()


def imap_login(inst, user, password):
    c = imaplib.IMAP4("127.0.0.1", inst.port_base + 1, timeout=10)
    c.login(user, password)
    return c


def inbox_count(c):
    typ, data = c.select("INBOX", readonly=True)
    assert typ == "OK", data
    return int(data[0])


@pytest.fixture
def embedded(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + test_qmgr.LIBEXEC_EXTRA +
                        ":" + conftest.build_path("imapd"))
    inst = make_instance(services=services,
                         conf=CONF + test_qmgr.CONF +
                         "imap_plaintext_auth = yes\n", start=False)
    if not conftest.port_free(inst.port_base + 10 + 389):
        pytest.skip("the LDAP port of the instance is taken")
    ctl = inst.ctl
    ctl("cos", "add", "staff", "--quota", "2G", "--max-recipients", "50")
    ctl("domain", "add", "example.com")
    ctl("domain", "add", "other.org", "--cos", "staff", "--quota", "1G")
    # account ids 1 and 2 are taken and freed, so that LDAP would hand
    # out different ones
    for a in ("gone1", "gone2"):
        ctl("account", "add", f"{a}@example.com", "--no-password")
        ctl("account", "del", f"{a}@example.com")
    ctl("account", "add", "bob@example.com", "--name", "Bob B",
        "--cos", "staff", "--quota", "100M", input=PASSWORD + "\n")
    ctl("account", "add", HOSTILE, "--name", HOSTILE_NAME,
        input="other-" + PASSWORD + "\n")
    ctl("account", "add", "carol@other.org", "--no-password", "--status",
        "locked", "--mailhost", "mbox2.example.com")
    ctl("account", "add", "sender@example.com", "--no-password")
    ctl("list", "add", "team@example.com")
    ctl("list", "member", "add", "team@example.com", "bob@example.com")
    ctl("list", "member", "add", "team@example.com", HOSTILE)
    ctl("list", "member", "add", "team@example.com", "ext@far.example")
    # an alias of an alias, an alias of a list, a list in a list
    ctl("alias", "add", "info@example.com", "bob@example.com")
    ctl("alias", "add", "help@example.com", "info@example.com")
    ctl("alias", "add", "all@example.com", "team@example.com")
    ctl("list", "add", "outer@other.org")
    ctl("list", "member", "add", "outer@other.org", "team@example.com")
    ctl("domain", "set", "example.com", "--catchall", "info@example.com")
    inst.ctl("start")
    env = test_qmgr.Env(inst)
    for name in ("authd", "stored", "lmtp-local", "qmgr", "imap"):
        env.wait_state(name, True)
    for a in ("bob@example.com", HOSTILE):
        env.ids[a] = json.loads(ctl("account", "show", a,
                                    "--json").stdout)["id"]
    assert env.ids["bob@example.com"] == 3
    # mail before the move, to find again after it
    env.inject("sender@example.com", ["bob@example.com"],
               test_qmgr.message("before"))
    env.wait_messages("bob@example.com", 1)
    inst.env_ = env
    return inst


def test_migrate_to_bundled_ldap(embedded):
    inst = embedded
    env = inst.env_
    db = os.path.join(inst.root, "data", "directory.db")
    # 1. the bundled slapd on the same root: tern.conf and services.conf
    # are kept, setup prints the line to add
    p = inst.ctl("setup", "--directory=ldap", "--port-base",
                 str(inst.port_base + 10))
    assert "kept as it is" in p.stdout
    line = [l.strip() for l in p.stdout.splitlines()
            if l.strip().startswith("ldap proc")]
    assert len(line) == 1, p.stdout
    with open(inst.conf("services.conf")) as f:
        old = f.read()
    inst.write_services(line[0] + "\n" + old)
    inst.ctl("reload")
    inst.wait_service("ldap")
    inst.uri = ldapi(os.path.join(inst.root, "run", "ldapi"))
    inst.wait_for(lambda: ldap_tool("ldapsearch", inst.uri,
                                    ["-b", "dc=tern", "-s", "base"],
                                    check=False).returncode == 0,
                  timeout=10, what="slapd answering")

    # 2. the copy
    p = migrate(inst)
    c = counts(p.stdout)
    assert c["classes of service"] == (1, 1, 0, 0, 0), p.stdout
    assert c["domains"] == (2, 0, 0, 0, 0)
    assert c["accounts"] == (4, 0, 0, 0, 0)
    assert c["aliases"] == (3, 0, 0, 0, 0)
    assert c["lists"] == (2, 0, 0, 0, 0)
    assert c["list members"] == (4, 0, 0, 0, 0)
    assert "run again with --switch" in p.stdout
    assert not switched(inst)

    # what slapd holds: every field, hashes as they were
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as q:
        hashes = dict(q.execute("SELECT address, password_hash "
                                "FROM accounts"))
    e = ldap_search(inst, "(objectClass=ternAccount)", "mail",
                    "userPassword", "ternAccountId", "ternAccountStatus",
                    "ternQuota", "ternCosName", "ternMailHost",
                    "displayName")
    acc = {v["mail"][0]: v for v in e.values()}
    assert sorted(acc) == sorted(hashes)
    for addr, h in hashes.items():
        if h is None:
            assert "userpassword" not in acc[addr]
            continue
        stored = base64.b64decode(acc[addr]["userpassword"][0]).decode()
        assert stored == "{ARGON2}" + h, addr
    bob = acc["bob@example.com"]
    assert bob["ternaccountid"] == ["3"]
    assert bob["terncosname"] == ["staff"]
    assert bob["ternquota"] == [str(100 << 20)]
    assert bob["displayname"] == ["Bob B"]
    assert acc[HOSTILE]["displayname"] == [HOSTILE_NAME]
    assert acc[HOSTILE]["ternaccountid"] == [str(env.ids[HOSTILE])]
    carol = acc["carol@other.org"]
    assert carol["ternaccountstatus"] == ["locked"]
    assert carol["ternmailhost"] == ["mbox2.example.com"]
    # the hostile address is one entry, found by an escaped filter only
    e = ldap_search(inst, "(mail=s\\2at=a+b#c@example.com)", "mail")
    assert [v["mail"] for v in e.values()] == [[HOSTILE]]
    e = ldap_search(inst, "(objectClass=ternDomain)", "ternDomainName",
                    "ternCatchAll", "ternCosName", "ternDefaultQuota")
    dom = {v["terndomainname"][0]: v for v in e.values()}
    assert dom["example.com"]["terncatchall"] == ["info@example.com"]
    assert dom["other.org"]["terncosname"] == ["staff"]
    assert dom["other.org"]["terndefaultquota"] == [str(1 << 30)]
    e = ldap_search(inst, "(objectClass=ternCos)", "cn", "ternQuota",
                    "ternMaxRecipients", base="ou=cos,dc=tern")
    cos = {v["cn"][0]: v for v in e.values()}
    assert cos["staff"]["ternquota"] == [str(2 << 30)]
    assert cos["staff"]["ternmaxrecipients"] == ["50"]
    e = ldap_search(inst, "(|(objectClass=ternAlias)"
                    "(objectClass=ternDistributionList))", "mail",
                    "ternAliasTarget", "ternListMember")
    got = {v["mail"][0]: sorted(v.get("ternaliastarget", []) +
                                v.get("ternlistmember", []))
           for v in e.values()}
    assert got == {
        "info@example.com": ["bob@example.com"],
        "help@example.com": ["info@example.com"],
        "all@example.com": ["team@example.com"],
        "team@example.com": sorted(["bob@example.com", HOSTILE,
                                    "ext@far.example"]),
        "outer@other.org": ["team@example.com"],
    }

    # 3. a second run has nothing to do
    p = migrate(inst)
    assert "nothing to do" in p.stdout, p.stdout
    assert all(r[0] == 0 and r[2:] == (0, 0, 0)
               for r in counts(p.stdout).values()), p.stdout

    # 4. an entry changed in LDAP: reported and kept, unless --force
    with open(inst.conf("ldap.secret")) as f:
        secret = f.read().strip()
    ldap_tool("ldapmodify", inst.uri, [], binddn="cn=tern-service,dc=tern",
              password=secret,
              input="dn: mail=bob@example.com,ternDomainName=example.com,"
                    "ou=domains,dc=tern\nchangetype: modify\n"
                    "replace: ternMailHost\nternMailHost: elsewhere\n")
    p = migrate(inst, check=False)
    assert p.returncode == 1
    assert "account bob@example.com: differs in LDAP (mail host): left " \
           "alone" in p.stdout
    assert counts(p.stdout)["accounts"] == (0, 3, 1, 0, 0)
    p = migrate(inst, "--switch", check=False)
    assert p.returncode == 1 and "not switched" in p.stderr
    assert not switched(inst)
    p = migrate(inst, "--force")
    assert counts(p.stdout)["accounts"] == (0, 3, 0, 1, 0), p.stdout
    assert ldap_search(inst, "(mail=bob@example.com)", "ternMailHost") \
        .popitem()[1]["ternmailhost"] != ["elsewhere"]

    # 5. the switch, then a restart on LDAP
    p = migrate(inst, "--switch")
    assert "nothing to do" in p.stdout
    conf = open(inst.conf("tern.conf")).read()
    assert "\ndirectory_backend = ldap\n" in conf
    assert "\nldap_authd_bind_dn = cn=tern-authd,dc=tern\n" in conf
    p = migrate(inst, check=False)
    assert p.returncode == 1 and "is ldap already" in p.stderr
    inst.ctl("restart")
    for name in ("ldap", "authd", "stored", "lmtp-local", "qmgr", "imap"):
        env.wait_state(name, True)
    # tern-authd reads LDAP now: an account made there is known
    inst.ctl("account", "add", "dave@example.com", "--no-password")
    out = json.loads(inst.ctl("account", "show", "dave@example.com",
                              "--json").stdout)
    assert out["id"] > max(env.ids.values())
    assert ldap_search(inst, "(mail=dave@example.com)", "mail")

    # the old passwords log in, and bob's mailbox is his (same id)
    c = imap_login(inst, "bob@example.com", PASSWORD)
    assert inbox_count(c) == 1
    c.logout()
    c = imap_login(inst, HOSTILE, "other-" + PASSWORD)
    assert inbox_count(c) == 0
    c.logout()
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(inst, "bob@example.com", "other-" + PASSWORD)
    # an alias of an alias, the catch-all and the lists deliver
    env.inject("sender@example.com", ["help@example.com"],
               test_qmgr.message("alias"))
    env.wait_messages("bob@example.com", 2)
    env.inject("sender@example.com", ["nobody@example.com"],
               test_qmgr.message("catchall"))
    env.wait_messages("bob@example.com", 3)
    env.inject("sender@example.com", ["outer@other.org"],
               test_qmgr.message("list"))
    env.wait_messages("bob@example.com", 4)
    env.wait_messages(HOSTILE, 1)
    c = imap_login(inst, HOSTILE, "other-" + PASSWORD)
    assert inbox_count(c) == 1
    c.logout()


def test_migrate_usage_and_unreachable_ldap(make_instance):
    inst = make_instance(start=False)
    p = inst.ctl("directory", check=False)
    assert p.returncode == 2 and "directory migrate" in p.stderr
    p = inst.ctl("directory", "migrate", "--to=sql", check=False)
    assert p.returncode == 2 and "--to must be ldap" in p.stderr
    p = inst.ctl("directory", "migrate", check=False)
    assert p.returncode == 2
    inst.ctl("domain", "add", "example.com")
    # no slapd answers: an error, nothing switched
    p = migrate(inst, "--switch", check=False)
    assert p.returncode == 1
    assert "not switched" in p.stderr
    assert not switched(inst)
