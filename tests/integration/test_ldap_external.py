"""An external directory for passwords and the address book (ext_ldap_*,
docs/ldap.md): a private slapd playing Active Directory (userPrincipalName,
sAMAccountName, a size limit of 5 entries per answer) next to an instance
with the embedded directory, where the same accounts exist with other
passwords.  Also: paged searches on the bundled slapd of an LDAP instance
with its size limit lowered."""
import imaplib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import conftest
from conftest import free_port_block
from imapenv import TERN_LIBEXEC, tern_services
from test_authd import Authd
from test_gal import gal
from test_ldap import (PASSWORD, SLAPD, ldap_instance,  # noqa: F401
                       slapd_configure, slapd_run,
                       ldap_tool, ldapi, parse_ldif, search)

SUFFIX = "dc=ad,dc=test"
PEOPLE = "ou=People," + SUFFIX
READER = "cn=tern-reader,ou=Services," + SUFFIX
READER_PASSWORD = "reader-secret-9"
TERN_PASSWORD = "tern-only-password-1"
USERS = 8                    # more than the server's size limit (5)
SIZE_LIMIT = 5
LOCKOUT = 20                 # failed logins from one IP before its lockout
DIR_LDAP_PAGE_SIZE = 500     # common/dir_ldap.h

pytestmark = pytest.mark.skipif(
    not (os.access(SLAPD, os.X_OK) and shutil.which("ldapsearch")),
    reason="slapd and ldap-utils are not installed")

# Active Directory's two naming attributes with their AD OIDs, and an
# auxiliary class named like AD's user class to carry them (AD's own
# "user" is structural; here inetOrgPerson is).
AD_SCHEMA = """dn: cn=adtest,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: adtest
olcAttributeTypes: ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcObjectClasses: ( 1.2.840.113556.1.5.9 NAME 'user' SUP top AUXILIARY
  MAY ( userPrincipalName $ sAMAccountName ) )
"""


def ext_password(i):
    return f"external-password-{i}"


def display(i):
    return f"Ext Person {i:02d}"


def make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl);
    returns the CA file."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True,
                       timeout=60, cwd=folder)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=Test AD CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(folder, "san.ext"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey",
        "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
        "-out", "server.crt")
    return os.path.join(folder, "ca.crt")


class ADSlapd:
    """A slapd from scratch playing Active Directory.  Its size limit is 5
    entries per answer for everyone but its rootdn; like AD's MaxPageSize
    it applies to each page of a paged search, not to the whole of it
    (size.prtotal=unlimited; slapd's default would cap the total too)."""

    def __init__(self, tls=False):
        self.dir = tempfile.mkdtemp(prefix="tern-adslapd-", dir="/tmp")
        self.port = free_port_block(1)
        self.sock = os.path.join(self.dir, "ldapi")
        self.uri = ldapi(self.sock)
        self.tcp = f"ldap://127.0.0.1:{self.port}/"
        self.ldaps = None
        self.proc = None
        tls_conf = ""
        if tls:
            self.ldaps = f"ldaps://127.0.0.1:{free_port_block(1)}/"
            self.ca = make_certificates(self.dir)
            # tern-authd (the daemon user) reads the CA file
            os.chmod(self.dir, 0o755)
            os.chmod(self.ca, 0o644)
            tls_conf = (f"olcTLSCACertificateFile: {self.ca}\n"
                        f"olcTLSCertificateFile: {self.dir}/server.crt\n"
                        f"olcTLSCertificateKeyFile: {self.dir}/server.key\n")
        slapd_configure(
            self.dir, SUFFIX, schemas=AD_SCHEMA, global_lines=tls_conf,
            database=f"olcSizeLimit: size.soft={SIZE_LIMIT} "
                     f"size.hard={SIZE_LIMIT} size.prtotal=unlimited\n"
                     "olcDbIndex: objectClass eq\n"
                     "olcDbIndex: userPrincipalName,sAMAccountName eq\n"
                     "olcDbIndex: mail eq,sub\n"
                     "olcAccess: {0}to attrs=userPassword by anonymous "
                     "auth by * none\n"
                     "olcAccess: {1}to * by users read by * none\n")

    def start(self):
        urls = f"{self.uri} {self.tcp}" + (f" {self.ldaps}" if self.ldaps
                                           else "")
        self.proc = slapd_run(self.dir, self.uri, urls)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def people_ldif():
    out = [f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: ad
o: AD test

dn: ou=People,{SUFFIX}
objectClass: organizationalUnit
ou: People

dn: ou=Services,{SUFFIX}
objectClass: organizationalUnit
ou: Services

dn: {READER}
objectClass: person
cn: tern-reader
sn: reader
userPassword: {READER_PASSWORD}
"""]
    people = [(f"user{i}", f"user{i}@example.com", ext_password(i),
               display(i), f"Given{i}", f"Sur{i}") for i in range(USERS)]
    # no display name: the address book shows "given surname"
    people.append(("nodisplay", "nodisplay@example.com", "nd-password",
                   None, "Nora", "Plain"))
    # the one a hostile "vic*" must not reach
    people.append(("victim", "victim@example.com", "victim-password",
                   "The Victim", "Vic", "Tim"))
    for sam, upn, pw, name, given, sn in people:
        entry = (f"dn: cn={sam},{PEOPLE}\nobjectClass: inetOrgPerson\n"
                 f"objectClass: user\ncn: {sam}\ngivenName: {given}\n"
                 f"sn: {sn}\nmail: {upn}\nuserPrincipalName: {upn}\n"
                 f"sAMAccountName: {sam}\nuserPassword: {pw}\n")
        if name:
            entry += f"displayName: {name}\n"
        out.append(entry)
    return "\n".join(out)


def running_ad(tls=False):
    """An ADSlapd started and filled with people_ldif(), stopped after."""
    s = ADSlapd(tls=tls)
    try:
        s.start()
        ldap_tool("ldapadd", s.uri, [], input=people_ldif())
        yield s
    finally:
        s.stop()


@pytest.fixture
def ad_slapd():
    yield from running_ad()


def ext_conf(s, secret):
    return (
        "imap_plaintext_auth = yes\n"
        "auth_failure_delay_max = 0\n"
        f"auth_lockout_threshold = {LOCKOUT}\n"
        "restart_delay = 100ms\n"
        "ext_ldap_auth = yes\n"
        "ext_ldap_gal = yes\n"
        f"ext_ldap_uri = {s.tcp}\n"
        f"ext_ldap_base_dn = {SUFFIX}\n"
        f"ext_ldap_bind_dn = {READER}\n"
        f"ext_ldap_bind_password_file = {secret}\n"
        "ext_ldap_timeout = 2s\n"
        "ext_ldap_user_filter = "
        "(&(objectClass=user)(userPrincipalName=%u))\n"
        "ext_ldap_gal_filter = (&(objectClass=user)(|(mail=*%s*)"
        "(displayName=*%s*)(givenName=*%s*)(sn=*%s*)))\n")


@pytest.fixture
def ext_inst(ad_slapd, make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + TERN_LIBEXEC)
    inst = make_instance(services=tern_services, start=False)
    secret = inst.conf("ext-ldap.secret")
    with open(secret, "w") as f:
        f.write(READER_PASSWORD + "\n")
    os.chmod(secret, 0o644)
    inst.append_conf(ext_conf(ad_slapd, secret))
    inst.ctl("domain", "add", "example.com")
    for addr in ([f"user{i}@example.com" for i in range(USERS)] +
                 ["nodisplay@example.com", "victim@example.com",
                  "vic*@example.com", "tern-only@example.com",
                  "locked@example.com"]):
        inst.ctl("account", "add", addr, input=TERN_PASSWORD + "\n")
    inst.ctl("account", "set", "user1@example.com", "--status", "locked")
    inst.ctl("list", "add", "staff@example.com")
    inst.ctl("alias", "add", "ext-help@example.com", "user2@example.com")
    inst.ctl("start")
    inst.wait_running(["authd", "imap"])
    inst.imap_port = inst.port_base + 1
    inst.ad = ad_slapd
    return inst


def imap_login(inst, user, password):
    """"OK", or the text of the NO."""
    c = imaplib.IMAP4("127.0.0.1", inst.imap_port, timeout=20)
    try:
        c.login(user, password)
        c.logout()
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            c.shutdown()
        except OSError:
            pass


def test_login_with_the_external_password(ext_inst):
    inst = ext_inst
    assert imap_login(inst, "user0@example.com", ext_password(0)) == "OK"
    assert imap_login(inst, "USER3@Example.COM", ext_password(3)) == "OK"
    # Tern's own password is not the one any more
    r = imap_login(inst, "user0@example.com", TERN_PASSWORD)
    assert "AUTHENTICATIONFAILED" in r, r
    # another user's password
    r = imap_login(inst, "user0@example.com", ext_password(4))
    assert "AUTHENTICATIONFAILED" in r, r
    # an empty password would be an anonymous bind
    r = imap_login(inst, "user0@example.com", "")
    assert r != "OK"
    # in Tern's directory but not in the external one
    for pw in (TERN_PASSWORD, ext_password(0)):
        r = imap_login(inst, "tern-only@example.com", pw)
        assert "AUTHENTICATIONFAILED" in r, r
    # in the external directory, locked in Tern's: Tern decides
    r = imap_login(inst, "user1@example.com", ext_password(1))
    assert r != "OK" and "UNAVAILABLE" not in r, r
    # failures are counted and logged like any other
    text = inst.log_text()
    assert "reason=external-unknown" in text
    assert "user=<user0@example.com> reason=password" in text


def test_external_failures_count_for_the_lockout(ext_inst):
    c = Authd(ext_inst)
    rip = "192.0.2.77"
    for i in range(LOCKOUT):
        user = "user6@example.com" if i % 2 else "tern-only@example.com"
        assert c.auth(user, "wrong", rip=rip)[1]["result"] == ["authfail"]
    assert c.auth("user6@example.com", ext_password(6),
                  rip=rip)[1]["result"] == ["lockedout"]
    assert c.auth("user6@example.com", ext_password(6),
                  rip="192.0.2.78")[1]["result"] == ["ok"]
    c.close()


def test_hostile_addresses_match_nobody_else(ext_inst):
    inst = ext_inst
    assert imap_login(inst, "victim@example.com", "victim-password") == "OK"
    # unescaped, (userPrincipalName=vic*@example.com) finds the victim
    r = imap_login(inst, "vic*@example.com", "victim-password")
    assert "AUTHENTICATIONFAILED" in r, r
    for user in ("*", "*@example.com", "vic*)(cn=*@example.com",
                 "victim@example.com)(|(cn=*", "v\\2a@example.com"):
        r = imap_login(inst, user, "victim-password")
        assert r != "OK" and "UNAVAILABLE" not in r, (user, r)


def test_external_directory_down_is_temporary(ext_inst):
    inst = ext_inst
    assert imap_login(inst, "user5@example.com", ext_password(5)) == "OK"
    authd_pids = inst.service("authd")["pids"]
    inst.ad.kill()
    for _ in range(3):
        r = imap_login(inst, "user5@example.com", ext_password(5))
        assert "[UNAVAILABLE]" in r, r
    # a hung server: the same, within ext_ldap_timeout
    inst.ad.start()
    os.kill(inst.ad.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = imap_login(inst, "user5@example.com", ext_password(5))
        assert "[UNAVAILABLE]" in r, r
        assert time.monotonic() - t0 < 10
    finally:
        os.kill(inst.ad.proc.pid, signal.SIGCONT)
    inst.wait_for(lambda: imap_login(inst, "user5@example.com",
                                     ext_password(5)) == "OK",
                  timeout=20, interval=0.3, what="login after restart")
    assert inst.service("authd")["pids"] == authd_pids
    # the address book recovers too
    assert len(gal(Authd(inst), "Ext Person")[1]) == USERS


def ctl_gal(inst, text, *args):
    return json.loads(inst.ctl("gal", "search", text, "--json",
                               *args).stdout)


def test_address_book_from_the_external_directory(ext_inst):
    inst = ext_inst
    # a plain search is cut at 5 by the server: paging gets them all
    p = ldap_tool("ldapsearch", inst.ad.tcp,
                  ["-b", PEOPLE, "-LLL", "(objectClass=user)", "cn"],
                  binddn=READER, password=READER_PASSWORD, check=False)
    assert p.returncode == 4 and p.stdout.count("dn: ") == SIZE_LIMIT
    got = ctl_gal(inst, "Ext Person")
    assert len(got) == USERS > SIZE_LIMIT
    assert [(e["address"], e["display_name"]) for e in got] == [
        (f"user{i}@example.com", display(i)) for i in range(USERS)]
    got = ctl_gal(inst, "example.com", "--limit", "1000")
    names = {e["address"]: e["display_name"] for e in got}
    assert names["nodisplay@example.com"] == "Nora Plain"
    assert names["victim@example.com"] == "The Victim"
    # Tern's own list is merged in
    assert "staff@example.com" in names
    # cut at the limit, in address order
    got = ctl_gal(inst, "Ext Person", "--limit", "3")
    assert [e["address"] for e in got] == [
        f"user{i}@example.com" for i in range(3)]
    # the search text is a value: "*" matches a '*', not everything
    assert [e["address"] for e in ctl_gal(inst, "*")] == ["vic*@example.com"]
    assert ctl_gal(inst, "Person)(cn=*") == []
    # tern-authd's gal request gives the same
    c = Authd(inst)
    t, entries = gal(c, "Ext Person")
    assert t == "gal"
    assert [(a, n) for a, _, n in entries] == [
        (f"user{i}@example.com", display(i)) for i in range(USERS)]
    t, entries = gal(c, "Ext Person", limit=2)
    assert [a for a, _, _ in entries] == ["user0@example.com",
                                          "user1@example.com"]
    # Tern's aliases still lead to their accounts
    t, entries = gal(c, "ext-help")
    assert [a for a, _, _ in entries] == ["user2@example.com"]
    c.close()


def test_address_book_over_many_pages(ext_inst):
    """More entries than one page of 500: the cookie is followed, and a
    search stops at its limit."""
    inst = ext_inst
    n = DIR_LDAP_PAGE_SIZE + 120
    ldap_tool("ldapadd", inst.ad.uri, [], input="\n".join(
        f"dn: cn=many{i},{PEOPLE}\nobjectClass: inetOrgPerson\n"
        f"objectClass: user\ncn: many{i}\nsn: Many\n"
        f"displayName: Many {i:04d}\nmail: many{i:04d}@example.org\n"
        f"userPrincipalName: many{i:04d}@example.org\n"
        for i in range(n)))
    got = ctl_gal(inst, "Many", "--limit", "1000")
    assert [e["address"] for e in got] == [
        f"many{i:04d}@example.org" for i in range(n)]
    assert got[-1]["display_name"] == f"Many {n - 1:04d}"
    got = ctl_gal(inst, "Many", "--limit", str(DIR_LDAP_PAGE_SIZE + 10))
    assert len(got) == DIR_LDAP_PAGE_SIZE + 10
    c = Authd(inst)
    assert len(gal(c, "many", limit=1000)[1]) == n
    c.close()


# ---- paged searches on Tern's own LDAP directory ---------------------------

def test_bundled_slapd_lists_past_its_size_limit(ldap_instance):
    inst = ldap_instance
    inst.ctl("domain", "add", "example.com")
    for i in range(12):
        inst.ctl("account", "add", f"bulk{i:02d}@example.com",
                 "--no-password")
    # and more than one page of accounts, added with another LDAP tool
    n = DIR_LDAP_PAGE_SIZE + 20
    ldap_tool("ldapadd", inst.uri, [], input="\n".join(
        f"dn: mail=page{i:04d}@example.com,ternDomainName=example.com,"
        f"ou=domains,dc=tern\nobjectClass: inetOrgPerson\n"
        f"objectClass: ternAccount\nmail: page{i:04d}@example.com\n"
        f"cn: Page {i}\nsn: Page\nternAccountId: {100000 + i}\n"
        f"ternAccountStatus: active\nternQuota: 0\n" for i in range(n)))
    # and more than one page of domains, each counting its accounts with
    # a paged search of its own (after the domains' search is over)
    ldap_tool("ldapadd", inst.uri, [], input="\n".join(
        f"dn: ternDomainName=d{i:04d}.example,ou=domains,dc=tern\n"
        f"objectClass: ternDomain\nternDomainName: d{i:04d}.example\n"
        for i in range(n)))
    # olcSizeLimit 5, for Tern's service DNs too (their own limits go)
    ldap_tool("ldapmodify", inst.uri, [], input=(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\n"
        "replace: olcSizeLimit\nolcSizeLimit: size.soft=5 size.hard=5 "
        "size.prtotal=unlimited\n-\ndelete: olcLimits\n"))
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", "dc=tern", "-LLL", "(objectClass=ternAccount)",
                   "mail"], binddn="cn=tern-service,dc=tern",
                  password=inst.secret, check=False)
    assert p.returncode == 4 and p.stdout.count("dn: ") == 5, p
    got = json.loads(inst.ctl("account", "list", "--json").stdout)
    assert [a["address"] for a in got] == [
        f"bulk{i:02d}@example.com" for i in range(12)] + [
        f"page{i:04d}@example.com" for i in range(n)]
    doms = json.loads(inst.ctl("domain", "list", "--json").stdout)
    assert [(d["name"], d["accounts"]) for d in doms] == [
        (f"d{i:04d}.example", 0) for i in range(n)] + [
        ("example.com", 12 + n)]
    c = Authd(inst)
    assert len(gal(c, "bulk", limit=1000)[1]) == 12
    assert len(gal(c, "page", limit=1000)[1]) == n
    assert len(gal(c, "page", limit=510)[1]) == 510
    c.close()


@pytest.fixture
def ad_tls():
    yield from running_ad(tls=True)


def test_external_directory_over_tls(ad_tls, make_instance, monkeypatch):
    """ldaps:// and STARTTLS to the external directory, its certificate
    verified against ext_ldap_ca_file: logins work.  With the system's CAs
    (which do not know the test CA) they are 'try again later', never a
    bind in plaintext or to an unverified server."""
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + TERN_LIBEXEC)
    inst = make_instance(services=tern_services, start=False)
    secret = inst.conf("ext-ldap.secret")
    with open(secret, "w") as f:
        f.write(READER_PASSWORD + "\n")
    os.chmod(secret, 0o644)
    base_conf = inst.conf("tern.conf")
    with open(base_conf) as f:
        kept = f.read()

    def configure(uri, extra):
        text = ext_conf(ad_tls, secret).replace(
            f"ext_ldap_uri = {ad_tls.tcp}\n", f"ext_ldap_uri = {uri}\n")
        with open(base_conf, "w") as f:
            f.write(kept + text + extra)

    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "user0@example.com",
             input=TERN_PASSWORD + "\n")
    inst.imap_port = inst.port_base + 1
    ca = f"ext_ldap_ca_file = {ad_tls.ca}\n"
    for uri, extra, want in (
            (ad_tls.ldaps, ca, "OK"),
            (ad_tls.tcp, ca + "ext_ldap_starttls = yes\n", "OK"),
            (ad_tls.ldaps, "", "UNAVAILABLE"),
            (ad_tls.tcp, "ext_ldap_starttls = yes\n", "UNAVAILABLE")):
        configure(uri, extra)
        inst.ctl("stop", check=False, timeout=90)
        inst.ctl("start")
        inst.wait_running(["authd", "imap"])
        got = imap_login(inst, "user0@example.com", ext_password(0))
        assert want in got, (uri, extra, got)
        if want == "OK":
            # and Tern's own password is not what counts
            assert imap_login(inst, "user0@example.com",
                              TERN_PASSWORD) != "OK"
