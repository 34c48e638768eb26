"""The OpenLDAP directory: Tern's schema in a private slapd, and an instance
set up with `ternctl setup --directory=ldap` (the bundled slapd supervised by
tern-master, provisioning with ternctl, tern-authd answering from LDAP,
slapd down or hung, hostile names)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import conftest
from conftest import SRC, build_path, free_port_block
from test_authd import Authd

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = os.path.join(SRC, "ldap-schema")
PASSWORD = "correct-horse-1"
# A directory change reaches the daemons' caches within about a second
# (tern-authd polls every 250 ms and tells them); the bound leaves room for
# a loaded test machine and still tells it from the cache's 60 s lifetime.
CHANGE_SEEN_WITHIN = 5.0

pytestmark = pytest.mark.skipif(
    not (os.access(SLAPD, os.X_OK) and shutil.which("ldapsearch")),
    reason="slapd and ldap-utils are not installed")


def ldapi(path):
    return "ldapi://" + urllib.parse.quote(path, safe="")


def ldap_tool(tool, uri, args, binddn=None, password=None, input=None,
              check=True):
    cmd = [tool, "-H", uri]
    if binddn:
        cmd += ["-x", "-D", binddn, "-w", password]
    else:
        cmd += ["-Q", "-Y", "EXTERNAL"]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True,
                       input=input, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd + list(args))}: exit "
                             f"{p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def parse_ldif(text):
    """{dn: {attr: [values]}} of ldapsearch -LLL output (no base64)."""
    entries, cur = {}, None
    text = re.sub(r"\n ", "", text)
    for line in text.splitlines():
        if not line.strip():
            cur = None
            continue
        k, _, v = line.partition(": ")
        if k == "dn":
            cur = entries.setdefault(v, {})
        elif cur is not None:
            cur.setdefault(k.rstrip(":").lower(), []).append(v)
    return entries


# ---- the schema files ------------------------------------------------------

def schema_defs_from_schema():
    text = open(os.path.join(SCHEMA_DIR, "tern.schema")).read()
    oids = {}
    for name, val in re.findall(r"^objectidentifier\s+(\S+)\s+(\S+)", text,
                                re.M):
        if ":" in val:
            a, b = val.split(":")
            val = oids[a] + "." + b
        oids[name] = val
    defs = []
    for kind, body in re.findall(
            r"^(attributetype|objectclass)\s+(\(.*?\))\s*$(?=\n\n|\n*\Z)",
            text, re.M | re.S):
        body = " ".join(body.split())
        body = re.sub(r"\( (\w+):(\d+)",
                      lambda m: "( " + oids[m.group(1)] + "." + m.group(2),
                      body)
        defs.append((kind, body))
    return defs


def schema_defs_from_ldif():
    text = open(os.path.join(SCHEMA_DIR, "tern.ldif")).read()
    text = re.sub(r"\n ", "", text)
    kinds = {"olcattributetypes": "attributetype",
             "olcobjectclasses": "objectclass"}
    return [(kinds[k.lower()], " ".join(v.split()))
            for k, v in re.findall(r"^(olc\w+): (.*)$", text, re.M)
            if k.lower() in kinds]


def test_schema_files_agree():
    a, b = schema_defs_from_schema(), schema_defs_from_ldif()
    assert len(a) >= 20
    assert a == b
    oid = re.compile(r"^\( 2\.25\.14691458620637388346113975222111632654"
                     r"\.([12])\.\d+ NAME '(tern\w+)'")
    names = set()
    for kind, body in a:
        m = oid.match(body)
        assert m, body
        assert m.group(1) == ("1" if kind == "attributetype" else "2")
        assert m.group(2) not in names
        names.add(m.group(2))
    assert "mailHost" not in " ".join(b for _, b in a).replace(
        "ternMailHost", "")


def slapd_configure(folder, suffix, schemas="", database="",
                    global_lines=""):
    """cn=config for a private slapd in folder (slapd.d/, db/): the core,
    cosine and inetOrgPerson schemas plus schemas (LDIF), one mdb database
    for suffix whose rootdn is this process's user by peer credentials
    over ldapi, with the database lines given; global_lines go into
    cn=config itself."""
    os.mkdir(os.path.join(folder, "slapd.d"))
    os.mkdir(os.path.join(folder, "db"))
    peer = (f"gidNumber={os.getgid()}+uidNumber={os.getuid()},"
            f"cn=peercred,cn=external,cn=auth")
    conf = f"""dn: cn=config
objectClass: olcGlobal
cn: config
{global_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

{schemas}
dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {folder}/db
olcSuffix: {suffix}
olcRootDN: {peer}
olcDbNoSync: TRUE
{database}"""
    path = os.path.join(folder, "config.ldif")
    with open(path, "w") as f:
        f.write(conf)
    subprocess.run([SLAPADD, "-n0", "-F", os.path.join(folder, "slapd.d"),
                    "-l", path], check=True, capture_output=True, timeout=30)


def slapd_run(folder, ldapi_uri, urls):
    """slapd on the configuration in folder, listening on urls (ldapi_uri
    among them); returns the process once it answers over ldapi."""
    proc = subprocess.Popen(
        [SLAPD, "-d", "0", "-h", urls, "-F", os.path.join(folder, "slapd.d")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        p = ldap_tool("ldapsearch", ldapi_uri,
                      ["-b", "", "-s", "base", "-LLL"], check=False)
        if p.returncode == 0:
            return proc
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("private slapd did not start")


class PrivateSlapd:
    """A slapd from scratch in a temporary folder: cn=config with Tern's
    schema from the source tree, one mdb database, rootdn by peer
    credentials over ldapi."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tern-slapd-", dir="/tmp")
        self.port = free_port_block(1)
        self.sock = os.path.join(self.dir, "ldapi")
        self.uri = ldapi(self.sock)
        self.proc = None
        slapd_configure(
            self.dir, "dc=test",
            schemas=f"include: file://{SCHEMA_DIR}/tern.ldif\n",
            database="olcDbIndex: objectClass eq\n"
                     "olcDbIndex: mail eq,sub\n"
                     "olcDbIndex: cn,displayName eq,sub\n"
                     "olcDbIndex: ternListMember,ternAliasTarget,"
                     "ternDomainName eq\n")

    @property
    def slapd_d(self):
        return os.path.join(self.dir, "slapd.d")

    def start(self):
        self.proc = slapd_run(self.dir, self.uri,
                              f"{self.uri} ldap://127.0.0.1:{self.port}/")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_slapd():
    s = PrivateSlapd()
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_schema_in_private_slapd(private_slapd):
    s = private_slapd
    add = """dn: dc=test
objectClass: dcObject
objectClass: organization
dc: test
o: test

dn: cn=default,dc=test
objectClass: ternCos
cn: default
ternQuota: 1000000
ternMaxRecipients: 100

dn: ternDomainName=example.com,dc=test
objectClass: ternDomain
ternDomainName: example.com
ternCosName: default
ternCatchAll: bob@example.com

dn: mail=bob@example.com,ternDomainName=example.com,dc=test
objectClass: inetOrgPerson
objectClass: ternAccount
mail: bob@example.com
cn: Bob Builder
sn: Builder
displayName: Bob Builder
userPassword: {CRYPT}$6$ternsalt$x
ternAccountId: 7
ternMailHost: mbox1.example.com
ternAccountStatus: active
ternQuota: 0

dn: mail=info@example.com,ternDomainName=example.com,dc=test
objectClass: ternAlias
mail: info@example.com
ternAliasTarget: bob@example.com

dn: mail=team@example.com,ternDomainName=example.com,dc=test
objectClass: ternDistributionList
mail: team@example.com
ternListMember: bob@example.com
ternListMember: info@example.com
"""
    ldap_tool("ldapadd", s.uri, [], input=add)
    out = ldap_tool("ldapsearch", s.uri, ["-b", "dc=test", "-LLL",
                                           "(mail=bob@example.com)"]).stdout
    e = parse_ldif(out)
    assert list(e) == ["mail=bob@example.com,ternDomainName=example.com,"
                       "dc=test"]
    (bob,) = e.values()
    assert bob["ternmailhost"] == ["mbox1.example.com"]
    assert bob["ternaccountid"] == ["7"]
    # GAL-style substring searches on mail and names (indexed)
    out = ldap_tool("ldapsearch", s.uri, ["-b", "dc=test", "-LLL",
                                           "(|(cn=bob*)(mail=te*))",
                                           "mail"]).stdout
    assert sorted(v["mail"][0] for v in parse_ldif(out).values()) == [
        "bob@example.com", "team@example.com"]
    out = ldap_tool("ldapsearch", s.uri, ["-b", "dc=test", "-LLL",
                                           "(ternListMember=INFO@example.com)",
                                           "mail"]).stdout
    assert [v["mail"] for v in parse_ldif(out).values()] == [
        ["team@example.com"]]
    # the schema refuses what Tern would never write
    bad = ("dn: mail=x@example.com,ternDomainName=example.com,dc=test\n"
           "objectClass: ternAlias\nmail: x@example.com\n")
    p = ldap_tool("ldapadd", s.uri, [], input=bad, check=False)
    assert p.returncode != 0 and "ternAliasTarget" in p.stderr
    bad = ("dn: cn=other,dc=test\nobjectClass: ternCos\ncn: other\n"
           "ternQuota: lots\n")
    p = ldap_tool("ldapadd", s.uri, [], input=bad, check=False)
    assert p.returncode != 0


# ---- an instance on the bundled slapd --------------------------------------

CONF = ("ldap_timeout = 1s\n"
        "restart_delay = 100ms\n"
        "restart_backoff_max = 1s\n"
        "auth_failure_delay_max = 0\n")


@pytest.fixture
def ldap_instance(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + build_path("authd"))
    # The LDAP port is port base + 389: make sure it is free too.
    for _ in range(50):
        base = free_port_block(1)
        if conftest.port_free(base + 389):
            break
    inst = make_instance(setup_args=("--directory=ldap", "--port-base",
                                      str(base)), conf=CONF)
    inst.ldap_port = base + 389
    inst.uri = ldapi(os.path.join(inst.root, "run", "ldapi"))
    with open(inst.conf("ldap.secret")) as f:
        inst.secret = f.read().strip()
    inst.wait_for(lambda: inst.service("ldap")["state"] == "running",
                  what="slapd running")
    return inst


def search(inst, filt, *attrs, base="dc=tern"):
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", base, "-LLL", "-o", "ldif-wrap=no", filt] +
                  list(attrs), binddn="cn=tern-service,dc=tern",
                  password=inst.secret)
    return parse_ldif(p.stdout)


def slapd_pid(inst):
    s = inst.service("ldap")
    return s["pids"][0] if s["pids"] and s["state"] == "running" else None


def test_setup_and_supervision(ldap_instance):
    inst = ldap_instance
    with open(inst.conf("services.conf")) as f:
        lines = [l for l in f if l.strip() and not l.startswith("#")]
    assert lines[0].startswith("ldap ")          # started first
    assert f"127.0.0.1:{inst.ldap_port}/" in lines[0]
    assert "directory_backend = ldap" in open(inst.conf("tern.conf")).read()
    assert os.stat(inst.conf("ldap.secret")).st_mode & 0o777 == 0o640
    # the skeleton, and a real search over TCP as the service DN
    e = search(inst, "(objectClass=*)", "dn", base="dc=tern")
    for dn in ("dc=tern", "cn=tern-service,dc=tern", "cn=tern-authd,dc=tern",
               "cn=tern,dc=tern",
               "ou=domains,dc=tern", "cn=default,ou=cos,dc=tern"):
        assert dn in e
    p = ldap_tool("ldapsearch", f"ldap://127.0.0.1:{inst.ldap_port}/",
                  ["-b", "dc=tern", "-s", "base", "-LLL", "dc"],
                  binddn="cn=tern-service,dc=tern", password=inst.secret)
    assert "dc: tern" in p.stdout
    # anonymous users see nothing of the tree
    p = ldap_tool("ldapsearch", inst.uri, ["-x", "-b", "dc=tern", "-LLL",
                                           "(objectClass=*)"], check=False)
    assert "dn:" not in p.stdout
    # killed: tern-master starts it again
    pid = slapd_pid(inst)
    os.kill(pid, signal.SIGKILL)
    inst.wait_for(lambda: slapd_pid(inst) not in (None, pid), timeout=15,
                  what="slapd restarted")
    assert inst.service("ldap")["restarts"] >= 1
    inst.wait_for(lambda: "dc=tern" in search(inst, "(dc=tern)", "dc"),
                  timeout=10, what="slapd answering")


def test_provisioning_lands_in_slapd(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("cos", "add", "staff", "--quota", "2G")
    inst.ctl("account", "add", "bob@example.com", "--name", "Bob Builder",
             "--cos", "staff", "--mailhost", "mbox1.example.com",
             input=PASSWORD + "\n")
    inst.ctl("alias", "add", "info@example.com", "bob@example.com")
    inst.ctl("list", "add", "team@example.com")
    inst.ctl("list", "member", "add", "team@example.com", "info@example.com")
    inst.ctl("list", "member", "add", "team@example.com", "ext@other.org")
    e = search(inst, "(mail=*)", "objectClass", "mail", "cn", "userPassword",
               "ternMailHost", "ternAccountId", "ternCosName",
               "ternAliasTarget", "ternListMember",
               base="ou=domains,dc=tern")
    bob = e["mail=bob@example.com,ternDomainName=example.com,"
            "ou=domains,dc=tern"]
    assert set(bob["objectclass"]) == {"inetOrgPerson", "ternAccount"}
    assert bob["cn"] == ["Bob Builder"]
    assert bob["ternmailhost"] == ["mbox1.example.com"]
    assert bob["terncosname"] == ["staff"]
    assert bob["ternaccountid"] == ["1"]
    assert "userpassword" in bob or "userpassword:" in bob
    info = e["mail=info@example.com,ternDomainName=example.com,"
             "ou=domains,dc=tern"]
    assert info["ternaliastarget"] == ["bob@example.com"]
    team = e["mail=team@example.com,ternDomainName=example.com,"
             "ou=domains,dc=tern"]
    assert sorted(team["ternlistmember"]) == ["ext@other.org",
                                              "info@example.com"]
    # the stored password is {ARGON2} and slapd accepts it for a bind
    p = ldap_tool("ldapwhoami", inst.uri, [],
                  binddn="mail=bob@example.com,ternDomainName=example.com,"
                         "ou=domains,dc=tern", password=PASSWORD)
    assert "mail=bob@example.com" in p.stdout
    # an account reads the address book, but no password hash
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", "ou=domains,dc=tern", "-LLL", "(mail=*)",
                   "mail", "userPassword"],
                  binddn="mail=bob@example.com,ternDomainName=example.com,"
                         "ou=domains,dc=tern", password=PASSWORD)
    assert "info@example.com" in p.stdout
    assert "userPassword" not in p.stdout
    # ternctl reads it all back, as with the embedded directory
    out = inst.ctl("account", "show", "bob@example.com").stdout
    assert "mbox1.example.com" in out and "staff" in out
    assert "effective: 2" in out
    assert "team@example.com" in inst.ctl("list", "list").stdout
    # refusals keep their meaning
    p = inst.ctl("account", "add", "info@example.com", "--no-password",
                 check=False)
    assert p.returncode != 0 and "alias info@example.com exists" in p.stderr
    p = inst.ctl("domain", "del", "example.com", check=False)
    assert p.returncode != 0 and "delete them first" in p.stderr
    p = inst.ctl("cos", "del", "staff", check=False)
    assert p.returncode != 0 and "still used" in p.stderr
    # deleting an account takes it out of lists
    inst.ctl("list", "member", "add", "team@example.com", "bob@example.com")
    inst.ctl("alias", "del", "info@example.com")
    inst.ctl("account", "del", "bob@example.com")
    out = inst.ctl("list", "show", "team@example.com").stdout
    assert "bob@example.com" not in out


def test_authd_answers_from_ldap(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", "--mailhost",
             "mbox1.example.com", input=PASSWORD + "\n")
    inst.ctl("account", "add", "carol@example.com", input=PASSWORD + "\n")
    inst.ctl("alias", "add", "info@example.com", "bob@example.com")
    # nested lists with a loop: each account once
    inst.ctl("list", "add", "all@example.com")
    inst.ctl("list", "add", "sub@example.com")
    inst.ctl("list", "member", "add", "all@example.com", "sub@example.com")
    inst.ctl("list", "member", "add", "all@example.com", "info@example.com")
    inst.ctl("list", "member", "add", "sub@example.com", "all@example.com")
    inst.ctl("list", "member", "add", "sub@example.com", "carol@example.com")
    inst.ctl("list", "member", "add", "sub@example.com", "bob@example.com")
    c = Authd(inst)
    mtype, f = c.call("lookup", address="Bob@EXAMPLE.com")
    assert mtype == "account", f
    assert f["mailhost"] == ["mbox1.example.com"]
    assert c.call("lookup", address="nobody@example.com")[0] == "notfound"
    mid = c.send("resolve", address="all+x@example.com")
    got = []
    while True:
        t, rid, f = c.recv()
        assert rid == mid
        if t != "target":
            break
        got.append(f["address"][0])
    assert t == "resolved" and f["detail"] == ["x"]
    assert sorted(got) == ["bob@example.com", "carol@example.com"]
    mtype, f = c.auth("bob@example.com", PASSWORD)
    assert (mtype, f["result"]) == ("auth", ["ok"])
    assert c.auth("bob@example.com", "wrong")[1]["result"] == ["authfail"]
    assert c.auth("ghost@example.com", PASSWORD)[1]["result"] == ["authfail"]
    # changes are seen by the running daemon
    inst.ctl("account", "set", "carol@example.com", "--status", "locked")
    inst.wait_for(lambda: c.auth("carol@example.com", PASSWORD)[1]["result"]
                  == ["refused"], timeout=5, what="lock seen by authd")
    inst.ctl("account", "add", "dave@example.com", input=PASSWORD + "\n")
    inst.wait_for(lambda: c.call("lookup", address="dave@example.com")[0]
                  == "account", timeout=5, what="new account seen")
    # a change made with another LDAP tool is seen too (contextCSN)
    assert c.call("lookup", address="bob@example.com")[1]["mailhost"] == [
        "mbox1.example.com"]
    ldap_tool("ldapmodify", inst.uri, [],
              binddn="cn=tern-service,dc=tern", password=inst.secret,
              input="dn: mail=bob@example.com,ternDomainName=example.com,"
                    "ou=domains,dc=tern\nchangetype: modify\n"
                    "replace: ternMailHost\nternMailHost: mbox2.example.com\n")
    inst.wait_for(lambda: c.call("lookup", address="bob@example.com")[1]
                  .get("mailhost") == ["mbox2.example.com"], timeout=5,
                  what="outside change seen")
    c.close()


def auth_result(inst, user, password=PASSWORD):
    c = Authd(inst, timeout=15)
    try:
        return c.auth(user, password)[1]["result"][0]
    finally:
        c.close()


def lookup_type(inst, address):
    c = Authd(inst, timeout=15)
    try:
        return c.call("lookup", address=address)[0]
    finally:
        c.close()


def resolve_all(c, address):
    """A resolve request's frames: (targets, the final type)."""
    mid = c.send("resolve", address=address)
    targets = []
    while True:
        t, rid, f = c.recv()
        assert rid == mid
        if t != "target":
            return targets, t
        targets.append(f["address"][0])


def test_domain_and_cos_changes_reach_lookups(ldap_instance):
    """tern-authd's LDAP connections remember domains and classes of
    service between lookups; a catch-all or a quota changed with ternctl
    is still seen within CHANGE_SEEN_WITHIN, whichever connection answers."""
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", input=PASSWORD + "\n")
    c = Authd(inst)
    try:
        # Warm every connection with the domain and the class of service.
        for _ in range(20):
            assert resolve_all(c, "ghost@example.com") == ([], "notfound")
            mtype, f = c.call("lookup", address="bob@example.com")
            assert mtype == "account", f
        before = f["quota_effective"][0]
        inst.ctl("domain", "set", "example.com", "--catchall",
                 "bob@example.com")
        t0 = time.monotonic()
        while resolve_all(c, "ghost@example.com") != \
                (["bob@example.com"], "resolved"):
            assert time.monotonic() - t0 < CHANGE_SEEN_WITHIN, \
                "catch-all not seen"
            time.sleep(0.05)
        inst.ctl("cos", "set", "default", "--quota", "7M")
        t0 = time.monotonic()
        while c.call("lookup", address="bob@example.com")[1][
                "quota_effective"][0] != 7 * 1024 * 1024:
            assert time.monotonic() - t0 < CHANGE_SEEN_WITHIN, \
                "class of service quota not seen"
            time.sleep(0.05)
        assert before != 7 * 1024 * 1024
        # Once seen, seen by every connection.
        for _ in range(20):
            assert resolve_all(c, "ghost@example.com") == \
                (["bob@example.com"], "resolved")
            assert c.call("lookup", address="bob@example.com")[1][
                "quota_effective"][0] == 7 * 1024 * 1024
    finally:
        c.close()


def test_slapd_down_or_hung_is_tempfail(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", input=PASSWORD + "\n")
    assert auth_result(inst, "bob@example.com") == "ok"
    # hung: every answer is a temporary failure after ldap_timeout
    pid = slapd_pid(inst)
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert auth_result(inst, "bob@example.com") == "tempfail"
        assert time.monotonic() - t0 < 10
        assert lookup_type(inst, "new1@example.com") == "tempfail"
        p = inst.ctl("account", "add", "x@example.com", "--no-password",
                     check=False, timeout=30)
        assert p.returncode != 0
    finally:
        os.kill(pid, signal.SIGCONT)
    inst.wait_for(lambda: auth_result(inst, "bob@example.com") == "ok",
                  timeout=10, what="recovery after SIGCONT")
    # down and kept down: tempfail, never notfound or authfail
    slapd_d = os.path.join(inst.root, "data", "ldap", "slapd.d")
    os.rename(slapd_d, slapd_d + ".away")
    try:
        os.kill(slapd_pid(inst), signal.SIGKILL)
        time.sleep(0.5)
        for i in range(3):
            assert auth_result(inst, "bob@example.com") == "tempfail"
            assert lookup_type(inst, f"new{i + 2}@example.com") == "tempfail"
    finally:
        os.rename(slapd_d + ".away", slapd_d)
    # tern-master starts it again; authd recovers without a restart
    authd_pids = inst.service("authd")["pids"]
    inst.wait_for(lambda: auth_result(inst, "bob@example.com") == "ok",
                  timeout=20, interval=0.3, what="recovery after restart")
    assert lookup_type(inst, "bob@example.com") == "account"
    assert inst.service("authd")["pids"] == authd_pids


def test_hostile_names_are_escaped(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "victim@example.com", "--name",
             "V*()\\ \"x\"", input=PASSWORD + "\n")
    made = []
    for addr in ("a*b@example.com", "q=a+b#c@example.com", "s*@example.com",
                 "{x}|~!$%&'@example.com"):
        p = inst.ctl("account", "add", addr, "--name", "N*()\\,+=",
                     input=PASSWORD + "\n", check=False)
        assert p.returncode == 0, p.stderr
        made.append(addr)
    for addr in ("x)(mail=*@example.com", "back\\slash@example.com",
                 "nul\x01x@example.com", "a\\2a@example.com"):
        p = inst.ctl("account", "add", addr, "--no-password", check=False)
        assert p.returncode != 0 and "invalid address" in p.stderr, p.stderr
    e = search(inst, "(objectClass=ternAccount)", "mail", "cn",
               base="ou=domains,dc=tern")
    mails = sorted(v["mail"][0] for v in e.values())
    assert mails == sorted(made + ["victim@example.com"])
    # a "*" in an address matches itself only, in lookups and logins
    c = Authd(inst)
    assert c.call("lookup", address="s*@example.com")[0] == "account"
    assert c.call("lookup", address="*@example.com")[0] == "notfound"
    assert c.call("lookup", address="v*@example.com")[0] == "notfound"
    assert c.auth("*@example.com", PASSWORD)[1]["result"] == ["authfail"]
    assert c.auth("s*@example.com", PASSWORD)[1]["result"] == ["ok"]
    assert c.auth("q=a+b#c@example.com", PASSWORD)[1]["result"] == ["ok"]
    c.close()
    out = inst.ctl("account", "show", "victim@example.com").stdout
    assert "V*()\\ \"x\"" in out
    for addr in made:
        inst.ctl("account", "del", addr)
    assert inst.ctl("account", "list").stdout.count("@") == 1


# ---- tern-authd's read-only DN ---------------------------------------------

def test_authd_binds_with_a_read_only_dn(ldap_instance):
    inst = ldap_instance
    conf = open(inst.conf("tern.conf")).read()
    assert "ldap_authd_bind_dn = cn=tern-authd,dc=tern" in conf
    assert os.stat(inst.conf("ldap-authd.secret")).st_mode & 0o777 == 0o640
    with open(inst.conf("ldap-authd.secret")) as f:
        secret = f.read().strip()
    assert secret and secret != inst.secret
    authd_dn = "cn=tern-authd,dc=tern"
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", "--mailhost",
             "mbox1.example.com", input=PASSWORD + "\n")
    bob = "mail=bob@example.com,ternDomainName=example.com,ou=domains,dc=tern"
    # it reads all tern-authd needs, password hashes included
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", "dc=tern", "-LLL", "-o", "ldif-wrap=no",
                   "(mail=bob@example.com)", "userPassword", "ternMailHost"],
                  binddn=authd_dn, password=secret)
    e = parse_ldif(p.stdout)[bob]
    assert e["ternmailhost"] == ["mbox1.example.com"]
    assert "userpassword" in e
    assert "ternSerial: " in ldap_tool(
        "ldapsearch", inst.uri, ["-b", "cn=tern,dc=tern", "-s", "base",
                                 "-LLL", "ternSerial"],
        binddn=authd_dn, password=secret).stdout
    # and writes nothing
    p = ldap_tool("ldapmodify", inst.uri, [], binddn=authd_dn,
                  password=secret, check=False,
                  input=f"dn: {bob}\nchangetype: modify\nreplace: "
                        "ternMailHost\nternMailHost: evil.example.com\n")
    assert p.returncode == 50, (p.returncode, p.stderr)  # insufficient
    p = ldap_tool("ldapadd", inst.uri, [], binddn=authd_dn, password=secret,
                  check=False,
                  input="dn: mail=x@example.com,ternDomainName=example.com,"
                        "ou=domains,dc=tern\nobjectClass: ternAlias\n"
                        "mail: x@example.com\n"
                        "ternAliasTarget: bob@example.com\n")
    assert p.returncode == 50, (p.returncode, p.stderr)
    # tern-authd binds as it: without the writer's password it still works,
    # while ternctl (the writer) cannot
    with open(inst.conf("ldap.secret"), "w") as f:
        f.write("not-the-password\n")
    inst.ctl("restart")
    inst.wait_for(lambda: auth_result(inst, "bob@example.com") == "ok",
                  timeout=20, interval=0.2, what="authd with its own DN")
    assert lookup_type(inst, "bob@example.com") == "account"
    p = inst.ctl("account", "add", "y@example.com", "--no-password",
                 check=False)
    assert p.returncode != 0


# ---- authentication by bind (ldap_auth = bind) -----------------------------

def test_authentication_by_bind(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", input=PASSWORD + "\n")
    inst.ctl("account", "add", "carol@example.com", "--mailhost",
             "mbox3.example.com", input=PASSWORD + "\n")
    # a hash only slapd knows: Tern itself cannot check {SSHA}
    other = "other-secret-9"
    ssha = subprocess.run(["/usr/sbin/slappasswd", "-h", "{SSHA}", "-s",
                           other], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    assert ssha.startswith("{SSHA}")
    ldap_tool("ldapmodify", inst.uri, [],
              binddn="cn=tern-service,dc=tern", password=inst.secret,
              input="dn: mail=bob@example.com,ternDomainName=example.com,"
                    "ou=domains,dc=tern\nchangetype: modify\n"
                    f"replace: userPassword\nuserPassword: {ssha}\n")
    inst.wait_for(lambda: auth_result(inst, "bob@example.com", other) ==
                  "authfail", what="hash mode refusing {SSHA}")
    inst.append_conf("ldap_auth = bind\n")
    inst.ctl("restart")
    inst.wait_for(lambda: auth_result(inst, "bob@example.com", other) ==
                  "ok", timeout=20, interval=0.2, what="bind accepted")
    assert auth_result(inst, "bob@example.com", PASSWORD) == "authfail"
    assert auth_result(inst, "bob@example.com", "") == "authfail"
    # {ARGON2}, checked by slapd's argon2 module
    assert auth_result(inst, "carol@example.com") == "ok"
    assert auth_result(inst, "carol@example.com", "wrong") == "authfail"
    assert auth_result(inst, "ghost@example.com") == "authfail"
    # the shared connection is still the service DN's: it reads what an
    # account may not (another account's mail host)
    c = Authd(inst)
    assert c.auth("bob@example.com", other)[1]["result"] == ["ok"]
    assert c.call("lookup", address="carol@example.com")[1]["mailhost"] == \
        ["mbox3.example.com"]
    c.close()
    # a locked account with the right password is refused, as with hashes
    inst.ctl("account", "set", "carol@example.com", "--status", "locked")
    inst.wait_for(lambda: auth_result(inst, "carol@example.com") ==
                  "refused", timeout=5, what="lock seen")
    # slapd hung: a temporary failure, not a wrong password
    pid = slapd_pid(inst)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert auth_result(inst, "bob@example.com", other) == "tempfail"
    finally:
        os.kill(pid, signal.SIGCONT)
    inst.wait_for(lambda: auth_result(inst, "bob@example.com", other) ==
                  "ok", timeout=10, what="recovery")


# ---- the cache of each daemon (common/authclient) -------------------------

def authd_stats(inst):
    c = Authd(inst)
    try:
        mtype, f = c.call("stats")
        assert mtype == "stats", f
        return {k: v[0] for k, v in f.items()}
    finally:
        c.close()


class Probe:
    """tests/authclient-probe kept running: one command, one line."""

    def __init__(self, inst):
        self.p = subprocess.Popen(
            [build_path("tests", "authclient-probe"),
             os.path.join(inst.root, "run", "authd.sock"), "10000"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            bufsize=1)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().rstrip("\n")

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=10)


@pytest.fixture(params=["sqlite", "ldap"])
def cache_inst(request, make_instance, monkeypatch):
    if request.param == "ldap":
        inst = request.getfixturevalue("ldap_instance")
    else:
        from test_authd import AUTHD_DIR, authd_services
        monkeypatch.setattr(conftest, "LIBEXEC",
                            conftest.LIBEXEC + ":" + AUTHD_DIR)
        inst = make_instance(services=authd_services)
    inst.ctl("domain", "add", "example.com")
    for a in ("bob", "carol"):
        inst.ctl("account", "add", f"{a}@example.com", "--mailhost",
                 "mbox1.example.com", input=PASSWORD + "\n")
    inst.ctl("alias", "add", "info@example.com", "bob@example.com")
    return inst


def authd_caught_up(inst):
    """Waits until tern-authd has checked its cache against the directory
    after the last change (two serial checks on): a change it notices
    later drops the daemons' caches (that is its job), which would take
    hits away from a count."""
    want = int(authd_stats(inst)["polls"]) + 2
    inst.wait_for(lambda: int(authd_stats(inst)["polls"]) >= want,
                  timeout=20, what="tern-authd to check the directory")


def test_daemon_cache_hits_and_sees_changes(cache_inst):
    inst = cache_inst
    authd_caught_up(inst)
    pr = Probe(inst)
    try:
        assert pr.cmd("resolve info@example.com") == \
            "resolve ok 1 bob@example.com"
        assert pr.cmd("lookup bob@example.com").startswith("lookup ok")
        before = authd_stats(inst)
        for _ in range(5):
            assert pr.cmd("resolve info@example.com") == \
                "resolve ok 1 bob@example.com"
            assert pr.cmd("lookup bob@example.com") == \
                "lookup ok bob@example.com active mbox1.example.com"
            assert pr.cmd("domain example.com") == "domain ok"
        # the second domain check on is a hit too
        assert pr.cmd("hits") == "hits 14"
        after = authd_stats(inst)
        assert after["resolve"] == before["resolve"]
        assert after["lookup"] == before["lookup"]
        assert after["domain"] == before["domain"] + 1
        # negative answers and failures are never cached
        for _ in range(3):
            assert pr.cmd("lookup ghost@example.com") == "lookup notfound"
            assert pr.cmd("domain elsewhere.org") == "domain notfound"
        again = authd_stats(inst)
        assert again["lookup"] == after["lookup"] + 3
        assert again["domain"] == after["domain"] + 3
        assert pr.cmd("hits") == "hits 14"
        # a change made with ternctl is seen within a second, although the
        # answers live 60 s (authd tells the daemons to drop them)
        inst.ctl("alias", "del", "info@example.com")
        inst.ctl("alias", "add", "info@example.com", "carol@example.com")
        t0 = time.monotonic()
        while pr.cmd("resolve info@example.com") != \
                "resolve ok 1 carol@example.com":
            assert time.monotonic() - t0 < CHANGE_SEEN_WITHIN, \
                "alias change not seen"
            time.sleep(0.02)
        inst.ctl("account", "set", "bob@example.com", "--mailhost",
                 "mbox2.example.com")
        t0 = time.monotonic()
        while pr.cmd("lookup bob@example.com") != \
                "lookup ok bob@example.com active mbox2.example.com":
            assert time.monotonic() - t0 < CHANGE_SEEN_WITHIN, \
                "mailhost change not seen"
            time.sleep(0.02)
        # a deleted account is gone at once too
        inst.ctl("account", "del", "carol@example.com")
        t0 = time.monotonic()
        while pr.cmd("lookup carol@example.com") != "lookup notfound":
            assert time.monotonic() - t0 < CHANGE_SEEN_WITHIN, \
                "deletion not seen"
            time.sleep(0.02)
    finally:
        pr.close()


def test_delivery_burst_uses_the_daemon_caches(make_instance, monkeypatch):
    """30 messages to one address through qmgr and lmtpd on LDAP: a few
    directory requests with the cache, at least one a message without."""
    import test_qmgr
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + test_qmgr.LIBEXEC_EXTRA)
    for _ in range(50):
        base = free_port_block(1)
        if conftest.port_free(base + 389):
            break
    inst = make_instance(setup_args=("--directory=ldap", "--port-base",
                                      str(base)),
                         conf=CONF + test_qmgr.CONF, start=False)
    with open(inst.conf("services.conf")) as f:
        ldap_line = [l for l in f if l.startswith("ldap ")]
    inst.write_services("".join(ldap_line) +
                        test_qmgr.services(inst.port_base))
    inst.ctl("start")
    env = test_qmgr.Env(inst)
    for name in ("ldap", "authd", "stored", "lmtp-local", "qmgr"):
        env.wait_state(name, True)
    env.ctl("domain", "add", "example.com")
    for a in ("bob", "sender"):
        env.account(f"{a}@example.com")
    n = 30

    def burst(first):
        s0 = authd_stats(inst)
        for i in range(n):
            env.inject("sender@example.com", ["bob@example.com"],
                       test_qmgr.message(f"m{first + i}"))
        env.wait_messages("bob@example.com", first + n, timeout=60)
        s1 = authd_stats(inst)
        return sum(s1[k] - s0[k] for k in ("lookup", "resolve", "domain"))

    with_cache = burst(0)
    assert with_cache < n // 3, with_cache
    inst.append_conf("authclient_cache_ttl = 0\n")
    inst.ctl("reload")
    time.sleep(0.5)
    without = burst(n)
    assert without >= n, without
    print(f"directory requests for {n} messages: {with_cache} with the "
          f"daemon caches, {without} without")


# ---- the provisioning suite of the embedded directory, run on LDAP ---------
# (test_directory.py; only its check of the SQLite file's mode is left out)

from test_directory import (  # noqa: E402,F401  collected here again
    test_accounts_and_passwords, test_aliases_and_lists,
    test_catchall_and_idna_addresses, test_cos,
    test_domain_delete_refused_while_not_empty, test_domains,
    test_password_never_from_argv, test_usage_errors)


@pytest.fixture
def inst(ldap_instance):
    """test_directory.py's instance, on the bundled slapd."""
    return ldap_instance
