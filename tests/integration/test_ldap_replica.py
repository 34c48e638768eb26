"""A replica of the bundled LDAP directory: instance A set up with
--directory=ldap (the provider, with syncprov and cn=tern-replicator),
instance B set up with --ldap-provider (its bundled slapd a syncrepl
consumer of A's).  ternctl on B writes to A (ldap_write_uri), B's
tern-authd reads its own replica, and keeps answering while A's slapd is
down."""
import os
import shutil
import time

import pytest

import conftest
import test_qmgr
from test_authd import Authd
from test_ldap import (CONF, PASSWORD, ldap_tool, ldapi, parse_ldif,
                       pytestmark)  # noqa: F401  (skip without slapd)
from test_ldap_migrate import imap_login, inbox_count

# A change on the provider reaches the replica at once (refreshAndPersist)
# and tern-authd polls every 250 ms: 5 s is plenty on a loaded machine.
SEEN_WITHIN = 5.0


def ldap_base():
    """A port base whose LDAP port (base + 389) is free."""
    for _ in range(50):
        base = conftest.free_port_block(1)
        if conftest.port_free(base + 389):
            return base
    pytest.skip("no free LDAP port")


def ldap_line(inst):
    """The slapd line setup wrote (kept, the file is rewritten later)."""
    if not hasattr(inst, "ldap_svc"):
        with open(inst.conf("services.conf")) as f:
            lines = [l for l in f if l.startswith("ldap ")]
        assert len(lines) == 1
        inst.ldap_svc = lines[0]
    return inst.ldap_svc


def services(inst, ldap=True):
    base = inst.port_base
    return ((ldap_line(inst) if ldap else "") +
            test_qmgr.services(base) +
            f"imap       inet 127.0.0.1:{base + 1} 1 yes tern-imapd\n")


def within(pred, what, limit=SEEN_WITHIN):
    """Seconds until pred() is true; fails after limit seconds."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"{what}: not seen within {limit} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def lookup(inst, address):
    c = Authd(inst)
    try:
        return c.call("lookup", address=address)[0]
    finally:
        c.close()


def auth(inst, user, password=PASSWORD):
    c = Authd(inst)
    try:
        return c.auth(user, password)[1]["result"][0]
    finally:
        c.close()


def search(inst, filt, *attrs, base="ou=domains,dc=tern"):
    """As root over ldapi:// (SASL EXTERNAL), on inst's own slapd."""
    p = ldap_tool("ldapsearch", inst.uri,
                  ["-b", base, "-LLL", "-o", "ldif-wrap=no", filt] +
                  list(attrs))
    return parse_ldif(p.stdout)


def mails(inst):
    return sorted(v["mail"][0] for v in
                  search(inst, "(objectClass=ternAccount)", "mail").values())


@pytest.fixture
def pair(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + test_qmgr.LIBEXEC_EXTRA +
                        ":" + conftest.build_path("imapd"))
    conf = CONF + test_qmgr.CONF + "imap_plaintext_auth = yes\n"
    base_a = ldap_base()
    a = make_instance(setup_args=("--directory=ldap", "--port-base",
                                  str(base_a)), conf=conf, start=False)
    a.write_services(services(a))
    a.uri = ldapi(os.path.join(a.root, "run", "ldapi"))
    a.provider = f"ldap://127.0.0.1:{base_a + 389}/"
    a.ctl("start")
    a.wait_running(["ldap", "authd"])
    a.ctl("domain", "add", "example.com")
    a.ctl("account", "add", "first@example.com", input=PASSWORD + "\n")

    base_b = ldap_base()
    b = make_instance(setup_args=(
        "--directory=ldap", "--port-base", str(base_b),
        "--ldap-provider", a.provider,
        "--ldap-replicator-password-file",
        a.conf("ldap-replicator.secret")), conf=conf, start=False)
    b.uri = ldapi(os.path.join(b.root, "run", "ldapi"))
    # a replica has no secrets of its own: the provider's, as they are
    assert not os.path.exists(b.conf("ldap.secret"))
    for name in ("ldap.secret", "ldap-authd.secret"):
        st = os.stat(a.conf(name))
        shutil.copy2(a.conf(name), b.conf(name))
        os.chown(b.conf(name), st.st_uid, st.st_gid)
    with open(b.conf("tern.conf")) as f:
        assert f"\nldap_write_uri = {a.provider}\n" in f.read()
    b.write_services(services(b))
    b.ctl("start")
    for inst in (a, b):
        for name in ("ldap", "authd", "stored", "lmtp-local", "qmgr",
                     "imap"):
            inst.wait_service(name)
    # the first refresh brings the whole tree, userPassword included
    b.wait_for(lambda: ldap_tool("ldapsearch", b.uri,
                                 ["-b", "dc=tern", "-s", "base"],
                                 check=False).returncode == 0 and
               mails(b) == ["first@example.com"], timeout=10,
               what="first refresh of the replica")
    e = search(b, "(mail=first@example.com)", "userPassword")
    assert list(e.values())[0].get("userpassword")
    return a, b


def test_replica_setup(pair):
    a, b = pair
    # the provider's replication DN reads everything, writes nothing
    with open(a.conf("ldap-replicator.secret")) as f:
        secret = f.read().strip()
    assert os.stat(a.conf("ldap-replicator.secret")).st_mode & 0o777 == 0o640
    p = ldap_tool("ldapsearch", a.uri,
                  ["-b", "dc=tern", "-LLL", "(mail=first@example.com)",
                   "userPassword"],
                  binddn="cn=tern-replicator,dc=tern", password=secret)
    assert "userPassword" in p.stdout
    p = ldap_tool("ldapmodify", a.uri, [], binddn="cn=tern-replicator,"
                  "dc=tern", password=secret, check=False,
                  input="dn: cn=tern,dc=tern\nchangetype: modify\n"
                        "replace: ternSerial\nternSerial: 1\n")
    assert p.returncode != 0 and "Insufficient access" in p.stderr
    # the replica's slapd sends writers to the provider
    with open(b.conf("ldap.secret")) as f:
        svc = f.read().strip()
    p = ldap_tool("ldapmodify", b.uri, [], binddn="cn=tern-service,dc=tern",
                  password=svc, check=False,
                  input="dn: cn=tern,dc=tern\nchangetype: modify\n"
                        "replace: ternSerial\nternSerial: 1\n")
    assert p.returncode == 10, p.stdout + p.stderr     # referral
    assert a.provider in p.stdout + p.stderr
    # usage errors
    p = b.ctl("setup", "--ldap-provider", a.provider, check=False)
    assert p.returncode != 0 and "--ldap-replicator-password-file" in \
        p.stderr
    p = b.ctl("setup", "--directory=ldap", "--ldap-provider", "x y",
              "--ldap-replicator-password-file", "/dev/null", check=False)
    assert p.returncode != 0 and "one LDAP URI" in p.stderr


def test_writes_on_the_replica_land_on_the_provider(pair):
    a, b = pair
    assert lookup(b, "bob@example.com") == "notfound"
    b.ctl("account", "add", "bob@example.com", input=PASSWORD + "\n")
    t = within(lambda: lookup(b, "bob@example.com") == "account",
               "account added on B, in B's tern-authd")
    assert "bob@example.com" in mails(a)
    assert within(lambda: auth(b, "bob@example.com") == "ok",
                  "password on B") < SEEN_WITHIN
    print(f"account added with ternctl on B seen by B's tern-authd after "
          f"{t:.2f} s")
    b.ctl("account", "set", "bob@example.com", "--status", "locked")
    within(lambda: auth(b, "bob@example.com") == "refused",
           "lock made on B")


def test_accounts_of_the_provider_work_on_the_replica(pair):
    a, b = pair
    env = test_qmgr.Env(b)
    a.ctl("account", "add", "carol@example.com", input=PASSWORD + "\n")
    t0 = time.monotonic()
    within(lambda: auth(b, "carol@example.com") == "ok",
           "account added on A, password checked on B")
    c = imap_login(b, "carol@example.com", PASSWORD)
    env.ids["carol@example.com"] = int(search(
        b, "(mail=carol@example.com)", "ternAccountId")
        .popitem()[1]["ternaccountid"][0])
    env.inject("first@example.com", ["carol@example.com"],
               test_qmgr.message("replica"))
    env.wait_messages("carol@example.com", 1, timeout=SEEN_WITHIN)
    took = time.monotonic() - t0
    assert took < 2 * SEEN_WITHIN
    assert inbox_count(c) == 1
    c.logout()
    print(f"account added on A: login and delivery on B within {took:.2f} s")


def test_replica_answers_while_the_provider_is_down(pair):
    a, b = pair
    a.ctl("account", "add", "erin@example.com", input=PASSWORD + "\n")
    within(lambda: "erin@example.com" in mails(b), "erin replicated")
    # A's slapd stops
    a.write_services(services(a, ldap=False))
    a.ctl("reload")
    a.wait_service("ldap", running=False)
    assert ldap_tool("ldapsearch", a.provider, ["-x", "-b", "", "-s", "base"],
                     check=False).returncode != 0
    # B still reads: a name never asked before, a login, IMAP
    assert lookup(b, "erin@example.com") == "account"
    assert auth(b, "erin@example.com") == "ok"
    assert auth(b, "erin@example.com", "wrong") == "authfail"
    c = imap_login(b, "first@example.com", PASSWORD)
    assert inbox_count(c) == 0
    c.logout()
    # writes have nowhere to go: a clear error, nothing half done
    p = b.ctl("account", "add", "frank@example.com", "--no-password",
              check=False)
    assert p.returncode == 1 and a.provider.rstrip("/") in p.stderr
    # A back: the replica catches up by itself (syncrepl retries)
    a.write_services(services(a))
    a.ctl("reload")
    a.wait_service("ldap")
    a.wait_for(lambda: b.ctl("account", "add", "frank@example.com",
                             "--no-password", check=False).returncode == 0,
               timeout=10, what="provider back")
    within(lambda: lookup(b, "frank@example.com") == "account",
           "account added after the provider came back", limit=15)
