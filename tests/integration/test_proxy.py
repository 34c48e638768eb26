"""tern-proxyd in front of mailbox servers, on real instances.

Instance A runs authd, stored, lmtp, tern-imapd and tern-popd on their
backend services, and tern-proxyd on imap, imaps, pop3 and pop3s.  Instance
B is a second mailbox server (its own root, ports and directory holding
the accounts homed there), reached by A's proxy through proxy_servers; both
share the proxy secret.  Users log in to the proxy with imaplib and poplib
and land on their server; the capabilities after login are the backend's;
a mailbox server that is down gives a clean "try again later" while the
other server's users go on; a backend that does not trust the proxy's
network refuses its logins; bytes relay both ways (a 2 MB message), and
every proxied session leaves one log line with the bytes.
"""
import imaplib
import os
import poplib
import re
import smtplib
import ssl
import time

import pytest

import conftest
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in
                         ("authd", "stored", "lmtpd", "imapd", "popd",
                          "proxyd", "smtpd", "qmgr"))
PASSWORD = "Proxy-Secret 7"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def backend_port(setup_base, std):
    """tern_port(): the port of a standard port under a port base."""
    return setup_base + (std if std < 1000 else 1000 + std % 1000)


def services_a(base):
    b = base + 10   # the port base `ternctl setup` was given
    return (f"authd        unix run/authd.sock 1 yes tern-authd\n"
            f"stored       unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp         inet 127.0.0.1:{base} 1 yes tern-lmtpd\n"
            f"imap-backend inet 127.0.0.1:{backend_port(b, 7143)} 1 yes "
            f"tern-imapd\n"
            f"pop3-backend inet 127.0.0.1:{backend_port(b, 7110)} 1 yes "
            f"tern-popd\n"
            f"imaps-backend inet 127.0.0.1:{backend_port(b, 7993)} 1 yes "
            f"tern-imapd\n"
            f"pop3s-backend inet 127.0.0.1:{backend_port(b, 7995)} 1 yes "
            f"tern-popd\n"
            f"imap         inet 127.0.0.1:{base + 1} 2 yes tern-proxyd\n"
            f"imaps        inet 127.0.0.1:{base + 2} 1 yes tern-proxyd\n"
            f"pop3         inet 127.0.0.1:{base + 3} 1 yes tern-proxyd\n"
            f"pop3s        inet 127.0.0.1:{base + 4} 1 yes tern-proxyd\n"
            f"imapstrict   inet 127.0.0.1:{base + 5} 1 yes tern-proxyd "
            f"-o imap_plaintext_auth=no\n"
            f"smtp         inet 127.0.0.1:{base + 6} 1 yes tern-smtpd\n"
            f"lmtp-local   unix run/lmtp.sock 1 yes tern-lmtpd\n"
            f"qmgr         proc - 1 yes tern-qmgr\n")


def services_b(base):
    b = base + 10
    return (f"authd        unix run/authd.sock 1 yes tern-authd\n"
            f"stored       unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp         inet 127.0.0.1:{base} 1 yes tern-lmtpd\n"
            f"imap-backend inet 127.0.0.1:{backend_port(b, 7143)} 1 yes "
            f"tern-imapd\n"
            f"pop3-backend inet 127.0.0.1:{backend_port(b, 7110)} 1 yes "
            f"tern-popd\n"
            f"imaps-backend inet 127.0.0.1:{backend_port(b, 7993)} 1 yes "
            f"tern-imapd\n"
            f"pop3s-backend inet 127.0.0.1:{backend_port(b, 7995)} 1 yes "
            f"tern-popd\n"
            f"lmtp-net     inet 127.0.0.1:{backend_port(b, 7025)} 1 yes "
            f"tern-lmtpd\n")


CONF = ("authd_timeout = 5s\n"
        "imap_plaintext_auth = yes\n"
        "pop3_plaintext_auth = yes\n"
        "auth_failure_delay_max = 1s\n"
        "proxy_connect_timeout = 3s\n"
        "proxy_backend_retry = 2s\n"
        "smtpd_greet_delay = 0\n"
        "restart_delay = 100ms\n")


def add_account(inst, address, mailhost):
    inst.ctl("account", "add", address, input=PASSWORD + "\n")
    inst.ctl("account", "set", address, "--mailhost", mailhost)


def deliver(inst, rcpt, text):
    with smtplib.LMTP("127.0.0.1", inst.port_base) as c:
        c.sendmail("sender@example.org", [rcpt], text)


def start_two_servers(made, conf_a=""):
    """Mailbox servers B, then A with the proxy (conf_a added to its
    tern.conf), sharing the proxy secret; both started, with the domain
    example.com.  Each instance is appended to made as soon as it exists
    (the caller finishes them)."""
    b = conftest.new_instance(services=services_b, start=False,
                              conf=CONF + "myhostname = b.test\n")
    made.append(b)
    a = conftest.new_instance(services=services_a, start=False,
                              conf=CONF + "myhostname = a.test\n"
                              f"proxy_servers = b.test=127.0.0.1:"
                              f"{b.port_base + 10}\n" + conf_a)
    made.append(a)
    for port in (backend_port(inst.port_base + 10, std)
                 for inst in (a, b)
                 for std in (7143, 7110, 7993, 7995, 7025)):
        if not conftest.port_free(port):
            pytest.skip(f"port {port} is in use")
    # One site secret: B takes A's.
    with open(os.path.join(a.root, "conf", "proxy.secret")) as f:
        secret = f.read()
    with open(os.path.join(b.root, "conf", "proxy.secret"), "w") as f:
        f.write(secret)
    a.ctl("start")
    b.ctl("start")
    for inst in (a, b):
        inst.ctl("domain", "add", "example.com")
    return a, b


@pytest.fixture(scope="module")
def site():
    """Two instances: A with the proxy, B a second mailbox server."""
    saved = conftest.LIBEXEC
    conftest.LIBEXEC = saved + ":" + LIBEXEC_EXTRA
    made = []

    class Site:
        pass

    try:
        a, b = start_two_servers(made)
        add_account(a, "ann@example.com", "a.test")
        add_account(a, "bob@example.com", "b.test")
        add_account(b, "bob@example.com", "b.test")
        s = Site()
        s.a, s.b = a, b
        s.imap = a.port_base + 1
        s.imaps = a.port_base + 2
        s.pop3 = a.port_base + 3
        s.pop3s = a.port_base + 4
        s.strict = a.port_base + 5
        s.smtp = a.port_base + 6
        yield s
    finally:
        conftest.LIBEXEC = saved
        conftest.finish_instances(made)


def test_imap_through_proxy_to_both_servers(site):
    deliver(site.a, "ann@example.com", "Subject: for ann\r\n\r\nA side\r\n")
    deliver(site.b, "bob@example.com", "Subject: for bob\r\n\r\nB side\r\n")
    for user, body in (("ann@example.com", b"A side"),
                       ("bob@example.com", b"B side")):
        m = imaplib.IMAP4("127.0.0.1", site.imap)
        assert "AUTH=PLAIN" in m.capabilities
        assert "QRESYNC" not in m.capabilities     # before login
        typ, data = m.login(user, PASSWORD)
        assert typ == "OK"
        # the backend's capabilities reach the client
        assert b"QRESYNC" in data[0] and b"APPENDLIMIT" in data[0]
        typ, data = m.select("INBOX")
        assert typ == "OK" and int(data[0]) >= 1
        typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
        assert data[0][1].startswith(body)
        m.logout()


def test_imaps_pop3_and_pop3s(site):
    deliver(site.b, "bob@example.com",
            "Subject: pop\r\nMessage-ID: <pop@x>\r\n\r\nover pop3\r\n")
    m = imaplib.IMAP4_SSL("127.0.0.1", site.imaps, ssl_context=tls_context())
    assert m.login("bob@example.com", PASSWORD)[0] == "OK"
    m.logout()
    for port, tls in ((site.pop3, False), (site.pop3s, True)):
        p = (poplib.POP3_SSL("127.0.0.1", port, context=tls_context())
             if tls else poplib.POP3("127.0.0.1", port))
        assert "STLS" in p.capa() or tls
        p.user("bob@example.com")
        assert p.pass_(PASSWORD).startswith(b"+OK")
        count, _ = p.stat()
        assert count >= 1
        texts = [b"\r\n".join(p.retr(i)[1]) for i in range(1, count + 1)]
        assert any(b"over pop3" in t for t in texts)
        # commands after login are the backend's (UIDL is not a proxy's)
        assert len(p.uidl()[1]) == count
        p.quit()


def test_starttls_and_logindisabled(site):
    # after a reload the certificate is loaded again: TLS still works
    site.a.ctl("reload")
    time.sleep(0.5)
    m = imaplib.IMAP4("127.0.0.1", site.strict)
    assert "LOGINDISABLED" in m.capabilities
    with pytest.raises(imaplib.IMAP4.error):
        m.login("ann@example.com", PASSWORD)
    m.starttls(tls_context())
    assert "LOGINDISABLED" not in m.capabilities
    assert m.login("ann@example.com", PASSWORD)[0] == "OK"
    m.logout()
    p = poplib.POP3("127.0.0.1", site.pop3)
    p.stls(tls_context())
    p.user("ann@example.com")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()
    # and on the servers behind it, over their own STARTTLS
    site.b.ctl("reload")
    time.sleep(0.5)
    m = imaplib.IMAP4("127.0.0.1", backend_port(site.b.port_base + 10, 7143))
    m.starttls(tls_context())
    assert m.login("bob@example.com", PASSWORD)[0] == "OK"
    m.logout()
    p = poplib.POP3("127.0.0.1", backend_port(site.b.port_base + 10, 7110))
    p.stls(tls_context())
    p.user("bob@example.com")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()


def test_wrong_password_and_sasl(site):
    m = imaplib.IMAP4("127.0.0.1", site.imap)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("ann@example.com", "not the password")
    # the session goes on: a right login afterwards works, with SASL-IR
    typ, _ = m.authenticate(
        "PLAIN", lambda _: b"\0ann@example.com\0" + PASSWORD.encode())
    assert typ == "OK"
    m.logout()
    p = poplib.POP3("127.0.0.1", site.pop3)
    p.user("ann@example.com")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.pass_("wrong")
    p.quit()
    assert "authentication failed" in site.a.log_text()


def test_big_message_relays_both_ways(site):
    body = ("x" * 76 + "\r\n") * 27000         # about 2 MB
    deliver(site.a, "ann@example.com", "Subject: big\r\n\r\n" + body)
    m = imaplib.IMAP4("127.0.0.1", site.imap)
    m.login("ann@example.com", PASSWORD)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", "big")
    n = data[0].split()[-1]
    typ, data = m.fetch(n, "(BODY.PEEK[TEXT])")
    assert data[0][1] == body.encode()
    # and the other way: APPEND through the proxy
    typ, data = m.append("INBOX", None, None,
                         ("Subject: up\r\n\r\n" + body).encode())
    assert typ == "OK" and b"APPENDUID" in data[0]

    def session_lines():
        return [ln for ln in site.a.log_text().splitlines()
                if "proxy: user=<ann@example.com>" in ln]

    before = len(session_lines())
    m.logout()
    site.a.wait_for(lambda: len(session_lines()) > before,
                    what="the session log line")
    line = session_lines()[-1]
    assert "backend=127.0.0.1:" in line and "in=" in line
    sizes = dict(kv.split("=") for kv in line.split(", ")
                 if kv.startswith(("in=", "out=")))
    assert int(sizes["in"]) > 2000000 and int(sizes["out"]) > 2000000


def test_backend_down_and_back(site):
    # B's IMAP server goes away: bob gets "try again later", ann goes on
    site.b.ctl("stop")
    try:
        m = imaplib.IMAP4("127.0.0.1", site.imap)
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            m.login("bob@example.com", PASSWORD)
        # marked down: the next try is refused at once
        t = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            m.login("bob@example.com", PASSWORD)
        assert time.monotonic() - t < 2.5
        m.logout()
        p = poplib.POP3("127.0.0.1", site.pop3)
        p.user("bob@example.com")
        with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
            p.pass_(PASSWORD)
        p.quit()
        m = imaplib.IMAP4("127.0.0.1", site.imap)
        assert m.login("ann@example.com", PASSWORD)[0] == "OK"
        m.logout()
    finally:
        site.b.ctl("start")
    # after proxy_backend_retry, bob is back
    deadline = time.monotonic() + 15
    while True:
        m = imaplib.IMAP4("127.0.0.1", site.imap)
        try:
            assert m.login("bob@example.com", PASSWORD)[0] == "OK"
            m.logout()
            break
        except imaplib.IMAP4.error:
            m.logout()
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_backend_refuses_untrusted_proxy(site):
    # B stops trusting the proxy's network: its proxy logins fail, and the
    # client sees a temporary failure, never a login as someone else.
    site.b.append_conf("proxy_trusted_networks = 192.0.2.0/24\n")
    site.b.ctl("reload")
    try:
        # every proxy process has forgotten earlier failures of B
        time.sleep(2.5)
        m = imaplib.IMAP4("127.0.0.1", site.imap)
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            m.login("bob@example.com", PASSWORD)
        m.logout()
        site.b.wait_for(lambda: "authorization identity refused" in
                        site.b.log_text(), what="the refusal")
    finally:
        site.b.append_conf("proxy_trusted_networks = 127.0.0.0/8 ::1\n")
        site.b.ctl("reload")


def test_tls_to_backends(site):
    """proxy_backend_tls: the proxy reaches both mailbox servers on their
    implicit-TLS backend ports; clients notice nothing."""
    a, b = site.a, site.b
    a.append_conf("proxy_backend_tls = yes\n")
    a.ctl("reload")
    time.sleep(0.5)
    try:
        deliver(a, "ann@example.com", "Subject: tls a\r\n\r\nA over TLS\r\n")
        deliver(b, "bob@example.com", "Subject: tls b\r\n\r\nB over TLS\r\n")
        for user, body in (("ann@example.com", b"A over TLS"),
                           ("bob@example.com", b"B over TLS")):
            m = imaplib.IMAP4("127.0.0.1", site.imap, timeout=10)
            m.login(user, PASSWORD)
            m.select("INBOX")
            typ, data = m.search(None, "ALL")
            last = data[0].split()[-1]
            typ, data = m.fetch(last, "(BODY.PEEK[TEXT])")
            assert body in data[0][1]
            m.logout()
            p = poplib.POP3("127.0.0.1", site.pop3, timeout=10)
            p.user(user)
            p.pass_(PASSWORD)
            assert p.stat()[0] >= 1
            p.quit()
        # The log lines of the backends' TLS sessions (written a moment
        # after the sessions).
        for inst, daemon in ((a, "imapd"), (b, "imapd"), (b, "popd")):
            pattern = (rf"{daemon}\[\d+\]: \w+: .*TLS connection "
                       rf"established from 127\.0\.0\.1")
            inst.wait_for(lambda: re.search(pattern, inst.log_text()),
                          timeout=10, what=f"a TLS session of {daemon}")
    finally:
        a.append_conf("proxy_backend_tls = no\n")
        a.ctl("reload")
        time.sleep(0.5)


def imap_bodies(site, user):
    """The bodies of user's INBOX, read through the proxy; none while the
    proxy still holds a server marked down by an earlier test."""
    m = imaplib.IMAP4("127.0.0.1", site.imap, timeout=10)
    try:
        try:
            m.login(user, PASSWORD)
        except imaplib.IMAP4.error as e:
            if b"UNAVAILABLE" not in str(e).encode():
                raise
            return []
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(BODY.PEEK[TEXT])")
        return [d[1] for d in data if isinstance(d, tuple)]
    finally:
        m.logout()


def test_mta_delivers_to_each_users_server(site):
    """Mail sent to the MTA on A goes over LMTP to the server holding each
    recipient's mailbox: ann's on A (its own tern-lmtpd), bob's on B
    (proxy_servers names B's port base; B's tern-lmtpd on its LMTP
    port); both read it through the proxy, which takes bob to B."""
    with smtplib.SMTP("127.0.0.1", site.smtp, timeout=30) as c:
        c.sendmail("someone@example.org",
                   ["ann@example.com", "bob@example.com"],
                   "Subject: routed\r\n\r\nrouted by mail host\r\n")
    for user in ("ann@example.com", "bob@example.com"):
        site.a.wait_for(lambda: any(b"routed by mail host" in body
                                    for body in imap_bodies(site, user)),
                        timeout=30, what=f"the message in {user}'s INBOX")
    log = site.a.log_text()
    lmtp_b = backend_port(site.b.port_base + 10, 7025)
    assert re.search(rf"to=<bob@example\.com>, relay=127\.0\.0\.1"
                     rf"\[127\.0\.0\.1\]:{lmtp_b}, .*status=sent", log), \
        site.a.log_tail(30)
    assert re.search(r"to=<ann@example\.com>, relay=lmtp-local.*"
                     r"status=sent", log), site.a.log_tail(30)
