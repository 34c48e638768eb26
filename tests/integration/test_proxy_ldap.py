"""A site of several servers on one shared LDAP directory.

Instance D runs only the bundled directory (`ternctl setup
--directory=ldap`: slapd, on 127.0.0.1 and its ldapi socket).  Mailbox
servers A and B (the two-server site of test_proxy.py: A with tern-proxyd
and the MTA, B a second mailbox server) are switched to D's slapd
(`directory_backend = ldap`, `ldap_uri` over TCP, D's base DN, bind DN and
the two password files copied from D), and A's proxy names both servers in
`proxy_servers`.  Accounts are provisioned once, with A's ternctl, homed on
A (`account add --mailhost`) and on B (`account move`).  Through the one
proxy address both users reach their own server with IMAP and POP3; mail
sent over SMTP to A's MTA goes over LMTP to the recipient's server only;
`ternctl account move` between A and B sends the next login to the other
server, and each server keeps the UIDVALIDITY and the messages of the
mailbox it holds.
"""
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import time

import pytest

import conftest
from test_ldap import SLAPD, ldapi, search
from test_proxy import (LIBEXEC_EXTRA, PASSWORD, backend_port, deliver,
                        start_two_servers)
from test_proxy_route import server_of

# A directory change reaches every server's tern-authd and its clients
# within about a second; the bound leaves room for a loaded machine.
CHANGE_SEEN_WITHIN = 15.0

pytestmark = pytest.mark.skipif(
    not (os.access(SLAPD, os.X_OK) and shutil.which("ldapsearch")),
    reason="slapd and ldap-utils are not installed")


def start_directory(made):
    """Instance D: the bundled slapd alone (its ldap service), started."""
    for _ in range(50):
        base = conftest.free_port_block(1)
        if conftest.port_free(base + 389):
            break
    d = conftest.new_instance(setup_args=("--directory=ldap", "--port-base",
                                          str(base)), start=False)
    made.append(d)
    d.ldap_port = base + 389
    with open(d.conf("services.conf")) as f:
        lines = [ln for ln in f if ln.startswith("ldap ")]
    assert len(lines) == 1 and f"127.0.0.1:{d.ldap_port}/" in lines[0]
    d.write_services(lines[0])
    d.ctl("start")
    d.wait_running(["ldap"])
    # For test_ldap.search: ldapsearch as the writer DN over ldapi.
    d.uri = ldapi(os.path.join(d.root, "run", "ldapi"))
    with open(d.conf("ldap.secret")) as f:
        d.secret = f.read().strip()
    d.wait_for(lambda: "dc=tern" in search(d, "(dc=tern)", "dc"),
               timeout=15, what="slapd answering")
    return d


def use_directory(inst, d):
    """Points inst at D's slapd: the URI over TCP, the base DN, both bind
    DNs and copies of their password files (same owner group and mode)."""
    for name in ("ldap.secret", "ldap-authd.secret"):
        src, dst = d.conf(name), inst.conf(name)
        shutil.copyfile(src, dst)
        st = os.stat(src)
        os.chown(dst, st.st_uid, st.st_gid)
        os.chmod(dst, st.st_mode & 0o777)
    inst.append_conf("directory_backend = ldap\n"
                     f"ldap_uri = ldap://127.0.0.1:{d.ldap_port}/\n"
                     "ldap_base_dn = dc=tern\n"
                     "ldap_bind_dn = cn=tern-service,dc=tern\n"
                     "ldap_authd_bind_dn = cn=tern-authd,dc=tern\n")


@pytest.fixture(scope="module")
def site():
    saved = conftest.LIBEXEC
    conftest.LIBEXEC = saved + ":" + LIBEXEC_EXTRA
    made = []

    class Site:
        pass

    try:
        d = start_directory(made)
        a, b = start_two_servers(made)
        use_directory(a, d)
        use_directory(b, d)
        a.append_conf(f"proxy_servers = a.test=127.0.0.1:{a.port_base + 10}"
                      f" b.test=127.0.0.1:{b.port_base + 10}\n")
        for inst in (a, b):
            inst.ctl("restart")
        # One directory: provisioned once, from A (the domain that
        # start_two_servers added went to each server's own embedded
        # directory, unused now).
        a.ctl("domain", "add", "example.com")
        a.ctl("account", "add", "ann@example.com", "--mailhost", "a.test",
              input=PASSWORD + "\n")
        a.ctl("account", "add", "bob@example.com", "--mailhost", "a.test",
              input=PASSWORD + "\n")
        a.ctl("account", "move", "bob@example.com", "b.test")
        s = Site()
        s.a, s.b, s.d = a, b, d
        s.imap = a.port_base + 1
        s.pop3 = a.port_base + 3
        s.smtp = a.port_base + 6
        s.backend = {"A": a, "B": b}
        yield s
    finally:
        conftest.LIBEXEC = saved
        conftest.finish_instances(made)


def direct_imap(inst):
    return imaplib.IMAP4("127.0.0.1",
                         backend_port(inst.port_base + 10, 7143), timeout=10)


def direct_login(inst, user):
    """'ok', or the text of the refusal, of a login on inst's own IMAP
    server (not through the proxy)."""
    m = direct_imap(inst)
    try:
        m.login(user, PASSWORD)
        return "ok"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def inbox(port, user):
    """(UIDVALIDITY, the INBOX's message texts) over IMAP on port."""
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        m.login(user, PASSWORD)
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK"
        uidvalidity = int(m.response("UIDVALIDITY")[1][0])
        texts = []
        if int(data[0]) > 0:
            typ, data = m.fetch("1:*", "(BODY.PEEK[TEXT])")
            texts = [x[1] for x in data if isinstance(x, tuple)]
        return uidvalidity, texts
    finally:
        m.logout()


def direct_inbox(inst, user):
    return inbox(backend_port(inst.port_base + 10, 7143), user)


def wait_home(site, user, name):
    """Waits until both servers and the proxy see user homed on server
    name ('A' or 'B')."""
    home = site.backend[name]
    other = site.b if home is site.a else site.a

    def settled():
        return (direct_login(home, user) == "ok" and
                "UNAVAILABLE" in direct_login(other, user))
    site.a.wait_for(settled, timeout=CHANGE_SEEN_WITHIN, interval=0.2,
                    what=f"{user} homed on {name}")


def mailhost_in_directory(site, user):
    e = search(site.d, f"(mail={user})", "ternMailHost")
    return [v for entry in e.values()
            for v in entry.get("ternmailhost", [])]


def test_one_directory_homes_users_on_each_server(site):
    assert mailhost_in_directory(site, "ann@example.com") == ["a.test"]
    assert mailhost_in_directory(site, "bob@example.com") == ["b.test"]
    wait_home(site, "ann@example.com", "A")
    wait_home(site, "bob@example.com", "B")
    # Neither server keeps a directory of its own.
    for inst in (site.a, site.b):
        shown = inst.ctl("account", "show", "bob@example.com").stdout
        assert "mailhost: b.test" in shown
    assert "[UNAVAILABLE]" in direct_login(site.a, "bob@example.com")


def test_imap_and_pop3_through_the_one_proxy(site):
    deliver(site.a, "ann@example.com", "Subject: s\r\n\r\nserver A\r\n")
    deliver(site.b, "bob@example.com", "Subject: s\r\n\r\nserver B\r\n")
    assert server_of(site, "ann@example.com") == "A"
    assert server_of(site, "bob@example.com") == "B"
    log = site.a.log_text()
    for user, inst in (("ann", site.a), ("bob", site.b)):
        port = backend_port(inst.port_base + 10, 7143)
        assert re.search(rf"login: user=<{user}@example\.com>, "
                         rf"backend=127\.0\.0\.1:{port}\b", log), \
            site.a.log_tail(30)
    for user, text in (("ann@example.com", b"server A"),
                       ("bob@example.com", b"server B")):
        p = poplib.POP3("127.0.0.1", site.pop3, timeout=10)
        p.user(user)
        assert p.pass_(PASSWORD).startswith(b"+OK")
        count, _ = p.stat()
        assert count >= 1
        assert text in b"\r\n".join(p.retr(1)[1])
        p.quit()
    pop_port = backend_port(site.b.port_base + 10, 7110)
    site.a.wait_for(lambda: re.search(
        rf"proxy: user=<bob@example\.com>, client=127\.0\.0\.1, "
        rf"backend=127\.0\.0\.1:{pop_port},", site.a.log_text()),
        what="bob's POP3 session relayed to B")


def test_smtp_mail_goes_to_each_recipients_server(site):
    subject = f"routed {time.time():.6f}"
    with smtplib.SMTP("127.0.0.1", site.smtp, timeout=30) as c:
        c.sendmail("someone@example.org",
                   ["ann@example.com", "bob@example.com"],
                   f"Subject: {subject}\r\n\r\n{subject}\r\n")
    mark = subject.encode()
    for user, home in (("ann@example.com", site.a),
                       ("bob@example.com", site.b)):
        home.wait_for(lambda: any(mark in t for t in
                                  direct_inbox(home, user)[1]),
                      timeout=30, interval=0.2,
                      what=f"the message in {user}'s INBOX on its server")
    lmtp_b = backend_port(site.b.port_base + 10, 7025)
    log_a, log_b = site.a.log_text(), site.b.log_text()
    assert re.search(rf"to=<bob@example\.com>, relay=127\.0\.0\.1"
                     rf"\[127\.0\.0\.1\]:{lmtp_b}, .*status=sent", log_a), \
        site.a.log_tail(30)
    assert re.search(r"to=<ann@example\.com>, relay=lmtp-local.*"
                     r"status=sent", log_a), site.a.log_tail(30)
    # Each server's store took exactly its own user's copy.
    assert re.search(r"to=<bob@example\.com>, relay=stored, status=sent",
                     log_b), site.b.log_tail(30)
    assert not re.search(r"to=<ann@example\.com>, relay=stored", log_b)
    assert not re.search(r"to=<bob@example\.com>, relay=stored", log_a)
    # And the other server refuses the user outright (homed elsewhere).
    assert "[UNAVAILABLE]" in direct_login(site.b, "ann@example.com")
    assert "[UNAVAILABLE]" in direct_login(site.a, "bob@example.com")


def uidl_prefixes(site, user):
    """The UIDVALIDITY parts of the POP3 UIDLs seen through the proxy."""
    p = poplib.POP3("127.0.0.1", site.pop3, timeout=10)
    try:
        p.user(user)
        p.pass_(PASSWORD)
        return {int(line.split()[1].split(b".")[0], 16)
                for line in p.uidl()[1]}
    finally:
        p.quit()


def test_account_move_between_servers_keeps_uidvalidity(site):
    user = "ann@example.com"
    proxy = site.imap
    deliver(site.a, user, "Subject: a\r\n\r\nkept on A\r\n")
    uidv_a, texts = direct_inbox(site.a, user)
    assert any(b"kept on A" in t for t in texts)
    assert inbox(proxy, user)[0] == uidv_a
    assert uidl_prefixes(site, user) == {uidv_a}
    # UIDVALIDITY counts seconds: B's mailbox for ann, made after the
    # move, must come from a later second than A's.
    while time.time() < uidv_a + 1.5:
        time.sleep(0.1)

    p = site.a.ctl("account", "move", user, "b.test")
    assert "mailbox data was not copied" in p.stdout
    assert mailhost_in_directory(site, user) == ["b.test"]
    wait_home(site, user, "B")
    deliver(site.b, user, "Subject: b\r\n\r\nserver B: kept on B\r\n")
    uidv_b, texts = direct_inbox(site.b, user)
    assert any(b"kept on B" in t for t in texts)
    # A's messages stayed on A; the client sees another mailbox, with
    # another UIDVALIDITY, so it cannot mix up the UIDs of the two.
    assert not any(b"kept on A" in t for t in texts)
    assert uidv_b != uidv_a
    assert server_of(site, user) == "B"
    assert inbox(proxy, user)[0] == uidv_b
    assert uidl_prefixes(site, user) == {uidv_b}

    site.a.ctl("account", "move", user, "a.test")
    wait_home(site, user, "A")
    uidv, texts = inbox(proxy, user)
    assert uidv == uidv_a
    assert any(b"kept on A" in t for t in texts)
    assert not any(b"kept on B" in t for t in texts)
    assert uidl_prefixes(site, user) == {uidv_a}

    # And back to B: B's mailbox is still the one it made.
    site.a.ctl("account", "move", user, "b.test")
    wait_home(site, user, "B")
    uidv, texts = inbox(proxy, user)
    assert uidv == uidv_b
    assert any(b"kept on B" in t for t in texts)
    site.a.ctl("account", "move", user, "a.test")
    wait_home(site, user, "A")
