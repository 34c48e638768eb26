"""tern-popd on a real instance (authd, stored, lmtp, and tern-popd on
three services: pop3 with two processes, pop3s with implicit TLS, and
pop3strict that refuses plaintext logins): every RFC 1939 command and its
errors with Python's poplib, CAPA, AUTH PLAIN, STLS (with the plaintext
injection check), the [IN-USE] lock across processes, DELE only at QUIT,
stable UIDLs, a message expunged by another session, line endings and
dot-stuffing, the shared failure delay, LOGIN-DELAY and EXPIRE; then
fetchmail downloading 1,000 messages delivered through tern-lmtpd, and
curl's pop3:// URLs.

Messages arrive through tern-lmtpd (smtplib.LMTP) or, for stored line
endings LMTP would not produce, with the store's append request.
"""
import base64
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

import conftest
import ternipc
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in
                         ("authd", "stored", "lmtpd", "popd"))
PASSWORD = "Pop-Secret 42"     # with a space: PASS takes the whole line

CONF = ("authd_timeout = 5s\n"
        "pop3_store_timeout = 5s\n"
        "pop3_plaintext_auth = yes\n"
        "pop3_line_limit = 1k\n"
        "auth_failure_delay_max = 1s\n"
        "restart_delay = 100ms\n")


def services(base):
    return (f"authd      unix run/authd.sock 1 yes tern-authd\n"
            f"stored     unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp       inet 127.0.0.1:{base} 2 yes tern-lmtpd\n"
            f"pop3       inet 127.0.0.1:{base + 1} 2 yes tern-popd\n"
            f"pop3s      inet 127.0.0.1:{base + 2} 1 yes tern-popd\n"
            f"pop3strict inet 127.0.0.1:{base + 3} 1 yes tern-popd "
            f"-o pop3_plaintext_auth=no\n")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(tag, body="hello\r\n"):
    return (f"From: sender@example.org\r\nTo: someone@example.com\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\n"
            f"{body}END-{tag}\r\n")


class Env:
    def __init__(self, inst):
        self.inst = inst
        self.root = inst.root
        self.lmtp_port = inst.port_base
        self.port = inst.port_base + 1
        self.ssl_port = inst.port_base + 2
        self.strict_port = inst.port_base + 3
        self.ids = {}

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def account(self, address, *args, password=PASSWORD):
        if password is None:
            self.ctl("account", "add", address, "--no-password", *args)
        else:
            self.ctl("account", "add", address, *args,
                     input=password + "\n")
        p = self.ctl("account", "show", address, "--json")
        import json
        self.ids[address] = json.loads(p.stdout)["id"]

    def deliver(self, rcpt, msgs, connections=1):
        """Delivers each message text through tern-lmtpd."""
        import smtplib
        errors = []

        def worker(part):
            try:
                with smtplib.LMTP("127.0.0.1", self.lmtp_port) as c:
                    c.ehlo("mta.example.org")
                    for m in part:
                        c.sendmail("sender@example.org", [rcpt], m)
            except Exception as e:      # noqa: BLE001 (reported below)
                errors.append(e)
        parts = [msgs[i::connections] for i in range(connections)]
        threads = [threading.Thread(target=worker, args=(p,))
                   for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    def store(self):
        return ternipc.Client(os.path.join(self.root, "run", "stored.sock"),
                              "tern-stored", 1, 30.0)

    def append(self, address, data):
        """Appends raw bytes to the INBOX through the store (any line
        endings); returns the UID."""
        tmp = os.path.join(self.root, "data", "store", "tmp")
        path = os.path.join(tmp, f"pop3test.{time.monotonic_ns()}")
        with open(path, "wb") as f:
            f.write(data)
        st = self.store()
        try:
            _, ok = st.ok("append", [
                ("account", self.ids[address]), ("address", address),
                ("folder", "INBOX"), ("file", path)])
            return ok.get("uid")
        finally:
            st.close()

    def uids(self, address):
        st = self.store()
        try:
            frames, _ = st.ok("fetch", [
                ("account", self.ids[address]), ("address", address),
                ("folder", "INBOX")])
            return [m.get("uid") for m in frames]
        finally:
            st.close()

    def expunge(self, address, uid):
        st = self.store()
        try:
            base = [("account", self.ids[address]), ("address", address),
                    ("folder", "INBOX"), ("uids", str(uid))]
            st.ok("store", base + [("mode", "+"), ("flags", 8)])
            st.ok("expunge", base)
        finally:
            st.close()

    def pop(self, user=None, port=None):
        c = poplib.POP3("127.0.0.1", port or self.port, timeout=30)
        if user is not None:
            c.user(user)
            c.pass_(PASSWORD)
        return c

    def set_conf(self, key, value):
        path = self.inst.conf("tern.conf")
        with open(path) as f:
            lines = [l for l in f if not l.startswith(key + " ")]
        lines.append(f"{key} = {value}\n")
        with open(path, "w") as f:
            f.writelines(lines)
        self.ctl("reload")

    def log_has(self, pattern, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.inst.log_text()):
                return True
            time.sleep(0.05)
        raise AssertionError(f"log has no {pattern!r}:\n"
                             f"{self.inst.log_tail(60)}")

    def wait_running(self, names):
        self.inst.wait_running(names)


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=services, conf=CONF, start=False)
    e = Env(inst)
    e.ctl("domain", "add", "example.com")
    for a in ("ann", "bob", "carol", "fred"):
        e.account(f"{a}@example.com")
    e.account("dave@example.com", "--status", "locked")
    inst.ctl("start")
    e.wait_running(["authd", "stored", "lmtp", "pop3", "pop3s",
                    "pop3strict"])
    yield e
    print(inst.log_tail(80))     # shown when the test failed
    inst.ctl("stop", check=False, timeout=90)
    found, text = inst.problems_logged()
    assert not found, text[-6000:]


def err(c, line):
    """The -ERR text of a command (poplib raises on -ERR)."""
    with pytest.raises(poplib.error_proto) as e:
        c._shortcmd(line)
    text = e.value.args[0].decode()
    assert text.startswith("-ERR"), text
    return text


class Raw:
    """A line-level client for what poplib cannot send."""

    def __init__(self, port, sock=None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port),
                                                     timeout=30)
        self.f = self.sock.makefile("rb")

    def line(self):
        raw = self.f.readline()
        if not raw:
            raise ConnectionError("closed")
        assert raw.endswith(b"\r\n"), raw
        return raw[:-2].decode("utf-8", "replace")

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.line()

    def multi(self):
        out = []
        while True:
            raw = self.f.readline()
            assert raw.endswith(b"\r\n"), raw
            if raw == b".\r\n":
                return out
            out.append(raw[:-2])

    def close(self):
        self.f.close()
        self.sock.close()


# ---- tests -----------------------------------------------------------------

def test_greeting_and_capa(env):
    c = env.pop()
    assert c.getwelcome().startswith(b"+OK")
    capa = c.capa()
    for k in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE",
              "PIPELINING", "STLS"):
        assert k in capa, capa
    assert capa["SASL"] == ["PLAIN"]
    assert capa["IMPLEMENTATION"] == ["Tern"]
    assert "EXPIRE" not in capa and "LOGIN-DELAY" not in capa
    c.user("ann@example.com")
    c.pass_(PASSWORD)
    capa = c.capa()
    assert "USER" not in capa and "STLS" not in capa and "TOP" in capa
    c.quit()


def test_rfc1939_session(env):
    a = "ann@example.com"
    bodies = [message("one"), message("two", ".dot line\r\n..two\r\n.\r\n"),
              message("three", ("x" * 1000 + "\r\n") * 50)]
    env.deliver(a, bodies)
    c = env.pop(a)
    count, size = c.stat()
    assert count == 3
    resp, listing, _ = c.list()
    assert resp.startswith(b"+OK 3 messages")
    sizes = [int(l.split()[1]) for l in listing]
    assert [int(l.split()[0]) for l in listing] == [1, 2, 3]
    assert sum(sizes) == size
    assert c.list(2) == f"+OK 2 {sizes[1]}".encode()
    resp, uidl, _ = c.uidl()
    uids = [l.split()[1] for l in uidl]
    assert len(set(uids)) == 3
    assert all(re.fullmatch(rb"[0-9a-f]+\.[0-9a-f]+", u) for u in uids)
    assert c.uidl(3).split()[2] == uids[2]
    for i in (1, 2, 3):
        resp, lines, octets = c.retr(i)
        assert resp == f"+OK {sizes[i - 1]} octets".encode()
        got = b"\r\n".join(lines) + b"\r\n"
        # The stored message starts with the Return-Path/Received lmtpd
        # adds, then the bytes we sent (poplib undoes the dot-stuffing).
        assert got.endswith(bodies[i - 1].encode()), got
        assert len(got) == sizes[i - 1]
    resp, lines, _ = c.top(2, 1)
    assert lines[-2:] == [b"", b".dot line"], lines
    resp, lines, _ = c.top(2, 0)
    assert lines[-1] == b"" and b"Subject: two" in lines
    assert c.noop().startswith(b"+OK")
    assert c.dele(1).startswith(b"+OK")
    assert c.stat() == (2, size - sizes[0])
    assert "deleted" in err(c, "RETR 1")
    assert "deleted" in err(c, "DELE 1")
    assert "deleted" in err(c, "LIST 1")
    assert c.uidl()[1][0].split()[0] == b"2"
    assert c.rset().startswith(b"+OK 3 messages")
    assert c.stat() == (3, size)
    assert c.dele(3).startswith(b"+OK")
    assert c.quit().startswith(b"+OK")
    assert len(env.uids(a)) == 2
    c = env.pop(a)
    assert [l.split()[1] for l in c.uidl()[1]] == uids[:2]
    c.quit()


def test_errors_keep_the_session_usable(env):
    a = "bob@example.com"
    env.deliver(a, [message("b1")])
    c = env.pop()
    assert "before login" in err(c, "STAT")
    assert "before login" in err(c, "NOOP")
    assert "USER first" in err(c, "PASS x")
    assert "Unknown command" in err(c, "FROB")
    assert "Line too long" in err(c, "NOOP " + "x" * 3000)
    assert "APOP" in err(c, "APOP bob@example.com 0123456789abcdef")
    assert "Unsupported" in err(c, "AUTH CRAM-MD5")
    c.user(a)
    assert "[AUTH]" in err(c, "PASS wrong")
    c.user(a)
    c.pass_(PASSWORD)
    assert "Invalid message number" in err(c, "RETR 0")
    assert "Invalid message number" in err(c, "RETR x")
    assert "No such message" in err(c, "RETR 2")
    assert "No such message" in err(c, "TOP 99 1")
    assert "Syntax" in err(c, "TOP 1")
    assert "Syntax" in err(c, "DELE")
    assert "Too many arguments" in err(c, "STAT 1")
    assert "after login" in err(c, "USER x")
    assert "before login" in err(c, "STLS")
    assert "Unknown command" in err(c, "XTND XMIT")
    assert c.stat()[0] == 1
    assert c.retr(1)[1][-1] == b"END-b1"
    c.quit()
    # Locked account and unknown user.
    c = env.pop()
    c.user("dave@example.com")
    assert "[SYS/PERM]" in err(c, "PASS " + PASSWORD)
    c.user("nobody@example.com")
    assert "[AUTH]" in err(c, "PASS " + PASSWORD)
    c.quit()


def test_pipelining(env):
    a = "ann@example.com"
    env.deliver(a, [message(f"p{i}") for i in range(5)])
    r = Raw(env.port)
    assert r.line().startswith("+OK")
    r.send(f"USER {a}\r\nPASS {PASSWORD}\r\nSTAT\r\nRETR 1\r\nRETR 2\r\n"
           "BOGUS\r\nUIDL 5\r\nQUIT\r\n")
    assert r.line().startswith("+OK")
    assert r.line().startswith("+OK Logged in, 5 messages")
    assert r.line().startswith("+OK 5 ")
    for i in (1, 2):
        assert r.line().endswith("octets")
        assert r.multi()[-1] == f"END-p{i - 1}".encode()
    assert r.line().startswith("-ERR")
    assert r.line().startswith("+OK 5 ")
    assert r.line().startswith("+OK")
    r.close()


def test_auth_plain(env):
    a = "ann@example.com"
    good = base64.b64encode(f"\0{a}\0{PASSWORD}".encode()).decode()
    bad = base64.b64encode(f"\0{a}\0nope".encode()).decode()
    r = Raw(env.port)
    r.line()
    assert r.cmd("AUTH PLAIN *not-base64*").startswith("-ERR [AUTH]")
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*").startswith("-ERR")
    assert r.cmd("AUTH PLAIN " + bad).startswith("-ERR [AUTH]")
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd(good).startswith("+OK Logged in")
    assert r.cmd("QUIT").startswith("+OK")
    r.close()
    r = Raw(env.port)
    r.line()
    assert r.cmd("AUTH") == "+OK Mechanisms follow"
    assert r.multi() == [b"PLAIN"]
    assert r.cmd("AUTH plain " + good).startswith("+OK Logged in")
    assert r.cmd("STAT").startswith("+OK")
    r.close()


def test_stls_pop3s_and_plaintext_policy(env):
    a = "ann@example.com"
    env.deliver(a, [message("tls")])
    # pop3strict: no plaintext login before STLS.
    c = env.pop(port=env.strict_port)
    capa = c.capa()
    assert "STLS" in capa and "USER" not in capa and "SASL" not in capa
    assert "[AUTH] Plaintext" in err(c, "USER " + a)
    assert "[AUTH] Plaintext" in err(c, "AUTH PLAIN AGEAYg==")
    c.stls(tls_context())
    capa = c.capa()
    assert "STLS" not in capa and "USER" in capa
    assert "already active" in err(c, "STLS")
    c.user(a)
    c.pass_(PASSWORD)
    assert c.retr(1)[1][-1] == b"END-tls"
    c.quit()
    # pop3s: implicit TLS.
    c = poplib.POP3_SSL("127.0.0.1", env.ssl_port, context=tls_context(),
                        timeout=30)
    assert "STLS" not in c.capa()
    c.user(a)
    c.pass_(PASSWORD)
    assert c.stat()[0] == 1
    c.quit()
    # Plaintext sent after STLS is never run inside TLS.
    r = Raw(env.strict_port)
    r.line()
    r.send("STLS\r\nUSER " + a + "\r\n")
    assert r.line() == "+OK Begin TLS negotiation"
    r.f.close()
    tls = tls_context().wrap_socket(r.sock)
    t = Raw(None, sock=tls)
    assert t.cmd("PASS " + PASSWORD) == "-ERR Send USER first"
    assert t.cmd("CAPA").startswith("+OK")
    t.close()


def test_in_use_across_processes_and_dele_at_quit(env):
    a = "carol@example.com"
    env.deliver(a, [message(f"c{i}") for i in range(3)])
    first = env.pop(a)
    uidl = first.uidl()[1]
    # Several attempts, so that both tern-popd processes answer.
    for _ in range(6):
        c = env.pop()
        c.user(a)
        with pytest.raises(poplib.error_proto) as e:
            c.pass_(PASSWORD)
        assert b"[IN-USE]" in e.value.args[0]
        c.quit()
    first.dele(1)
    # Gone without QUIT: nothing is deleted, the lock goes.
    first.file.close()
    first.sock.close()
    env.inst.wait_for(lambda: _can_login(env, a), timeout=10,
                      what="lock released")
    c = env.pop(a)
    assert c.uidl()[1] == uidl
    c.dele(1)
    c.quit()
    assert len(env.uids(a)) == 2
    c = env.pop(a)
    assert c.uidl()[1] == [b"1 " + uidl[1].split()[1],
                           b"2 " + uidl[2].split()[1]]
    c.quit()
    env.log_has(r"logout: user=<carol@example.com>, quit, retrieved=0/0, "
                r"deleted=1")


def _can_login(env, a):
    c = env.pop()
    c.user(a)
    try:
        c.pass_(PASSWORD)
    except poplib.error_proto:
        c.quit()
        return False
    c.quit()
    return True


def test_expunged_by_another_session(env):
    a = "fred@example.com"
    env.deliver(a, [message("f1"), message("f2"), message("f3")])
    uids = env.uids(a)
    c = env.pop(a)
    assert c.stat()[0] == 3
    st = env.store()
    try:
        frames, _ = st.ok("fetch", [("account", env.ids[a]), ("address", a),
                                    ("folder", "INBOX")])
        blob2 = frames[1].get("blob")
    finally:
        st.close()
    # As an IMAP session would.  (Message 1 may already be open: tern-popd
    # reads ahead, and an open blob stays readable; 2 is not.)  The store
    # removes the file just after it answers: wait for that.
    env.expunge(a, uids[1])
    env.inst.wait_for(lambda: not os.path.exists(blob2),
                      what="the expunged message's file removed")
    assert "removed by another session" in err(c, "RETR 2")
    assert c.stat()[0] == 3            # the snapshot stays
    assert c.retr(1)[1][-1] == b"END-f1"
    assert c.retr(3)[1][-1] == b"END-f3"
    for i in (1, 2, 3):
        c.dele(i)
    assert c.quit().startswith(b"+OK")
    assert env.uids(a) == []


def _flags(env, a):
    st = env.store()
    try:
        frames, _ = st.ok("fetch", [("account", env.ids[a]), ("address", a),
                                    ("folder", "INBOX")])
        return {m.get("uid"): m.get("flags") for m in frames}
    finally:
        st.close()


def _listing(env, a, retr=False):
    """(UIDLs, last lines) of a whole session; RETR of every message when
    retr (so QUIT sets \\Seen)."""
    c = env.pop(a)
    uidls = [u.split()[1] for u in c.uidl()[1]]
    ends = [c.top(i + 1, 99)[1][-1] for i in range(len(uidls))]
    if retr:
        for i in range(len(uidls)):
            c.retr(i + 1)
    assert c.quit().startswith(b"+OK")
    return uidls, ends


def test_snapshot_cache_follows_changes(env):
    a = "ann@example.com"
    env.deliver(a, [message("s1"), message("s2")])
    # Enough sessions for both tern-popd processes to cache the list.
    first = [_listing(env, a) for _ in range(4)]
    assert all(x == first[0] for x in first), first
    assert first[0][1] == [b"END-s1", b"END-s2"]
    u1, u2 = env.uids(a)
    # One expunged and one delivered: the same count, other messages.
    env.expunge(a, u1)
    env.deliver(a, [message("s3")])
    for _ in range(4):
        uidls, ends = _listing(env, a)
        assert ends == [b"END-s2", b"END-s3"], ends
        assert uidls[0] == first[0][0][1] and uidls[1] not in first[0][0]
    # RETR and QUIT set \Seen; once it is gone again (as an IMAP client
    # may do), the next session's QUIT sets it again.
    _listing(env, a, retr=True)
    assert all(f & 1 for f in _flags(env, a).values()), _flags(env, a)
    # A new message: the lists cached from here on know 2 of 3 as seen.
    env.deliver(a, [message("s4")])
    for _ in range(4):
        assert _listing(env, a)[1] == [b"END-s2", b"END-s3", b"END-s4"]
    st = env.store()
    try:
        st.ok("store", [("account", env.ids[a]), ("address", a),
                        ("folder", "INBOX"), ("uids", "1:*"),
                        ("mode", "-"), ("flags", 1)])
    finally:
        st.close()
    assert not any(f & 1 for f in _flags(env, a).values())
    _listing(env, a, retr=True)
    assert all(f & 1 for f in _flags(env, a).values()), _flags(env, a)
    # An expunge alone: one message fewer.
    env.expunge(a, env.uids(a)[0])
    for _ in range(4):
        assert _listing(env, a)[1] == [b"END-s3", b"END-s4"]


def test_stored_line_endings_and_dots(env):
    a = "bob@example.com"
    env.append(a, b"Subject: lf\n\n.leading dot\nplain\n..two\nno end")
    env.append(a, b"Subject: cr\r\rline\r.\r")
    env.append(a, b"Subject: crlf\r\n\r\nbody\r\n.\r\n")
    r = Raw(env.port)
    r.line()
    r.cmd("USER " + a)
    assert r.cmd("PASS " + PASSWORD).startswith("+OK")
    r.send("RETR 1\r\n")
    assert r.line().startswith("+OK")
    assert r.multi() == [b"Subject: lf", b"", b"..leading dot", b"plain",
                         b"...two", b"no end"]
    r.send("RETR 2\r\n")
    r.line()
    assert r.multi() == [b"Subject: cr", b"", b"line", b".."]
    r.send("TOP 3 0\r\n")
    r.line()
    assert r.multi() == [b"Subject: crlf", b""]
    r.send("RETR 3\r\n")
    r.line()
    assert r.multi() == [b"Subject: crlf", b"", b"body", b".."]
    assert r.cmd("QUIT").startswith("+OK")
    r.close()


def test_failures_share_authd_delay(env):
    c = env.pop()
    times = []
    for _ in range(3):
        c.user("ann@example.com")
        t = time.monotonic()
        with pytest.raises(poplib.error_proto):
            c.pass_("wrong")
        times.append(time.monotonic() - t)
    # the third failure closes the connection
    with pytest.raises((EOFError, ConnectionError, poplib.error_proto)):
        c.noop()
    assert max(times) >= 0.8, times       # authd's delay (capped at 1s)
    env.log_has(r"authentication failed: service=pop3 rip=127\.0\.0\.1 "
                r"user=<ann@example\.com> reason=password")


def _pop3_connections(env, rip="127.0.0.1"):
    """authd's count of open POP3 connections from rip."""
    c = ternipc.Client(os.path.join(env.root, "run", "authd.sock"),
                       "tern-authd", 1, 10.0)
    try:
        _, m = c.answer(c.send("connections", [("service", "pop3"),
                                                ("rip", rip)]),
                        final=("connections", "error"))
        assert m.type == "connections", m
        return int(m.get("count"))
    finally:
        c.close()


def _wait_connections(env, want):
    got = None
    end = time.monotonic() + 10
    while time.monotonic() < end:
        got = _pop3_connections(env)
        if got == want:
            return
        time.sleep(0.02)
    assert got == want, f"authd counts {got} POP3 connections, not {want}"


def test_connections_reported_to_authd(env):
    _wait_connections(env, 0)
    a = Raw(env.port)
    assert a.line().startswith("+OK")
    b = Raw(env.ssl_port, tls_context().wrap_socket(
        socket.create_connection(("127.0.0.1", env.ssl_port), timeout=30)))
    assert b.line().startswith("+OK")
    c = env.pop("ann@example.com")       # logged in, a mailbox open
    _wait_connections(env, 3)
    assert a.cmd("QUIT").startswith("+OK")
    a.close()
    _wait_connections(env, 2)
    b.close()                            # gone without QUIT
    _wait_connections(env, 1)
    c.quit()
    _wait_connections(env, 0)
    # another IP's count is untouched
    assert _pop3_connections(env, "192.0.2.1") == 0


def test_login_delay_and_expire(env):
    env.set_conf("pop3_login_delay", "30s")
    env.set_conf("pop3_expire", "NEVER")
    a = "ann@example.com"

    def capa_ok():
        c = env.pop()
        capa = c.capa()
        c.quit()
        return capa.get("LOGIN-DELAY") == ["30"] and \
            capa.get("EXPIRE") == ["NEVER"]
    env.inst.wait_for(capa_ok, timeout=10, what="reloaded settings")
    c = env.pop(a)
    c.quit()
    c = env.pop()
    c.user(a)
    with pytest.raises(poplib.error_proto) as e:
        c.pass_(PASSWORD)
    assert b"[LOGIN-DELAY]" in e.value.args[0]
    c.quit()


def _fetchmail(env, tmp, extra, server=""):
    rc = os.path.join(tmp, "fetchmailrc")
    with open(rc, "w") as f:
        f.write(f'set no bouncemail\nset no syslog\n'
                f'poll 127.0.0.1 service {env.port} protocol pop3 '
                f'auth password timeout 60 {server}\n'
                f'  user "carol@example.com" password "{PASSWORD}" '
                f'is root here\n'
                f'  sslproto "" {extra}\n'
                f'  mda "{tmp}/deliver.sh"\n')
    os.chmod(rc, 0o600)
    p = subprocess.run(["fetchmail", "-f", rc, "-i",
                        os.path.join(tmp, "ids"), "--nodetach"],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HOME=tmp))
    # 0: mail fetched; 1: no mail
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return p


def _count(tmp):
    return len([n for n in os.listdir(os.path.join(tmp, "out"))])


@pytest.mark.skipif(shutil.which("fetchmail") is None,
                    reason="fetchmail not installed")
def test_fetchmail_1000(env, tmp_path):
    a = "carol@example.com"
    msgs = [message(f"m{i}", f"line {i}\r\n" + (".\r\n" if i % 50 == 0
                                                  else "")) for i in
            range(1000)]
    env.deliver(a, msgs, connections=4)
    assert len(env.uids(a)) == 1000
    tmp = str(tmp_path)
    os.mkdir(os.path.join(tmp, "out"))
    with open(os.path.join(tmp, "deliver.sh"), "w") as f:
        f.write(f'#!/bin/sh\nexec cat > "$(mktemp {tmp}/out/m.XXXXXXXX)"\n')
    os.chmod(os.path.join(tmp, "deliver.sh"), 0o755)
    t = time.monotonic()
    _fetchmail(env, tmp, "keep", "uidl")
    assert _count(tmp) == 1000
    assert len(env.uids(a)) == 1000
    _fetchmail(env, tmp, "keep", "uidl")          # UIDLs seen: nothing new
    assert _count(tmp) == 1000
    _fetchmail(env, tmp, "fetchall no keep")   # all again, then deleted
    assert _count(tmp) == 2000
    assert env.uids(a) == []
    p = _fetchmail(env, tmp, "fetchall no keep")
    assert _count(tmp) == 2000, p.stdout + p.stderr
    assert time.monotonic() - t < 240
    got = set()
    for n in os.listdir(os.path.join(tmp, "out")):
        with open(os.path.join(tmp, "out", n), "rb") as f:
            m = re.search(rb"Subject: (m\d+)\r?\n", f.read())
            got.add(m.group(1))
    assert len(got) == 1000


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
def test_curl(env):
    a = "ann@example.com"
    env.deliver(a, [message("curl1"), message("curl2", ".dot\r\n")])
    url = f"pop3://127.0.0.1:{env.port}/"
    user = f"{a}:{PASSWORD}"
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "-u", user, url],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert [l.split()[0] for l in lines] == ["1", "2"]
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "-u", user,
                        url + "2"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(b"Subject: curl2\r\nMessage-ID: <curl2@test>"
                             b"\r\n\r\n.dot\r\nEND-curl2\r\n"), p.stdout
    # and over pop3s
    p = subprocess.run(["curl", "-sS", "-k", "--max-time", "30", "-u", user,
                        f"pop3s://127.0.0.1:{env.ssl_port}/1"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert b"END-curl1" in p.stdout
