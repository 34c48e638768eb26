"""tern-imapd: STARTTLS (and that plaintext pipelined after it is never
run), the implicit-TLS port, LOGINDISABLED before TLS when plaintext
logins are off, and COMPRESS=DEFLATE (raw deflate on a raw socket, also
inside TLS)."""
import socket
import ssl

import pytest

import imapenv
from imapenv import (acct, caps_of, need_cap, plain_ir,  # noqa
                     simple_message, srv, tls_context)


def test_starttls_imaplib(srv, acct):
    srv.deliver(acct, simple_message("over tls"))
    c = srv.imap()
    assert "STARTTLS" in caps_of(c)
    typ, _ = c.starttls(ssl_context=tls_context())
    assert typ == "OK"
    assert isinstance(c.sock, ssl.SSLSocket)
    caps = caps_of(c)
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    c.login(acct.user, acct.password)
    typ, data = c.select("INBOX")
    assert data == [b"1"]
    c.logout()


def test_starttls_discards_pipelined_plaintext(srv, acct):
    r = srv.raw()
    r.send("a STARTTLS\r\nb LOGIN " + imapenv.quote(acct.user) + " " +
           imapenv.quote(acct.password) + "\r\n")
    while True:
        resp = r.response(timeout=10)
        if resp.startswith(b"a "):
            assert resp.startswith(b"a OK"), resp
            break
        assert not resp.startswith(b"b "), resp
    try:
        r.starttls()          # (asserts nothing else came in plaintext)
        res = r.cmd("NOOP")
    except (ssl.SSLError, ConnectionError, OSError):
        # closing the connection is another way of not running it
        r.close()
        return
    assert res.status == "OK", res
    assert not any(u.startswith(b"b ") for u in res.untagged), res
    # the injected LOGIN did not run: still not authenticated
    r.not_ok("SELECT INBOX")
    # STARTTLS again inside TLS is refused
    r.not_ok("STARTTLS")
    r.login(acct)
    r.select()
    r.close()


def test_starttls_raw_then_login(srv, acct):
    r = srv.raw()
    r.ok("STARTTLS")
    r.starttls()
    r.ok("NOOP")
    r.not_ok("SELECT INBOX")
    r.not_ok("STARTTLS")
    r.login(acct)
    r.select()
    r.close()


def test_starttls_only_before_login(srv, acct):
    r = srv.raw(acct)
    r.not_ok("STARTTLS")
    r.ok("NOOP")
    r.close()


def test_implicit_tls_port(srv, acct):
    srv.deliver(acct, simple_message("via 993"))
    c = srv.imaps()
    caps = caps_of(c)
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    assert "AUTH=PLAIN" in caps
    c.login(acct.user, acct.password)
    typ, data = c.select("INBOX")
    assert data == [b"1"]
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"via 993" in data[0][1]
    c.logout()
    # plaintext on the TLS port gets no IMAP greeting
    s = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=5)
    s.sendall(b"a CAPABILITY\r\n")
    try:
        data = s.recv(1000)
    except (socket.timeout, OSError):
        data = b""
    assert not data.startswith(b"* OK"), data
    s.close()


@pytest.fixture(scope="module")
def strict_srv():
    if imapenv.TARGET != "tern":
        pytest.skip("Tern only: Dovecot counts 127.0.0.1 as secure, so it "
                    "never shows LOGINDISABLED to a loopback client")
    s = imapenv.make_server(imap_plaintext_auth="no")
    yield s
    s.close()


def test_logindisabled_before_tls(strict_srv):
    s = strict_srv
    a = s.account()
    r = s.raw()
    caps = [c.upper() for c in r.capabilities()]
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
    assert "AUTH=PLAIN" not in caps, caps
    r.not_ok("LOGIN ", imapenv.quote(a.user), " ", imapenv.quote(a.password))
    r.not_ok("AUTHENTICATE PLAIN ", plain_ir(a.user, a.password))
    r.not_ok("SELECT INBOX")
    t = r.begin("STARTTLS")
    r.finish(t)
    r.starttls()
    caps = [c.upper() for c in r.capabilities()]
    assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps
    assert "AUTH=PLAIN" in caps
    r.login(a)
    r.select()
    r.close()
    c = s.imaps(a)
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def compress(r):
    res = r.ok("COMPRESS DEFLATE")
    r.start_compress()
    return res


def test_compress_deflate(srv, acct):
    body = "".join(f"line {i} of a compressible body\r\n"
                   for i in range(8000))
    msg = simple_message("deflated", body)
    srv.deliver(acct, msg)
    r = srv.raw()
    # not before authentication
    r.not_ok("COMPRESS DEFLATE")
    r.login(acct)
    need_cap(srv, r.capabilities(), "COMPRESS=DEFLATE")
    r.not_ok("COMPRESS X-NOSUCH")
    compress(r)
    assert r.select().numbered("EXISTS") == [1]
    res = r.ok("FETCH 1 (BODY.PEEK[] RFC822.SIZE)")
    (seq, it), = res.fetches()
    assert it["BODY[]"] == msg and it["RFC822.SIZE"] == len(msg)
    res = r.not_ok("COMPRESS DEFLATE", allowed=("NO", "BAD"))
    if res.status == "NO":
        assert res.code() == "COMPRESSIONACTIVE", res
    # literals from the client go through the compression layer too
    r.ok("APPEND INBOX ", imapenv.Lit(msg))
    assert r.ok("NOOP") is not None
    assert r.select().numbered("EXISTS") == [2]
    r.ok("LOGOUT")
    r.close()


def test_compress_inside_tls(srv, acct):
    srv.deliver(acct, simple_message("tls+deflate", "x" * 5000 + "\r\n"))
    r = srv.raw(acct, tls=True)
    need_cap(srv, r.capabilities(), "COMPRESS=DEFLATE")
    compress(r)
    r.select()
    res = r.ok("FETCH 1 (BODY.PEEK[TEXT])")
    assert res.fetches()[0][1]["BODY[TEXT]"] == b"x" * 5000 + b"\r\n"
    r.close()
