"""tern-smtpd on a real instance (authd, stored, and tern-smtpd on three
services: smtp (MX, two processes), submission (STARTTLS then AUTH
required) and submissions (implicit TLS)), driven by Python's smtplib and
by a raw client where smtplib would tidy up what we send: every command,
each policy refusal, STARTTLS with plaintext injection, AUTH PLAIN and
LOGIN, BDAT, DSN parameters landing in the queue file, SMTP smuggling
attempts, the size, recipient, error and connection limits, the early
talker, and durability: the queue file is complete when 250 arrives, a
kill -9 mid-DATA leaves nothing in queue/incoming, and an unwritable queue
gives 452 4.3.1 without harming what was queued before.
"""
import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import time

import pytest

import conftest
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in ("authd", "stored", "smtpd"))
PASSWORD = "Smtp-Secret 42"

CONF = ("authd_timeout = 5s\n"
        "auth_failure_delay_max = 1s\n"
        "restart_delay = 100ms\n"
        "smtpd_greet_delay = 0\n"
        "message_size_limit = 200k\n"
        "smtpd_client_connection_limit = 8\n"
        "mynetworks = 192.0.2.0/24\n")

QUEUE_ID = re.compile(r"queued as ([0-9A-Z]{16})")


def services(base, authd=True):
    return (f"authd       unix run/authd.sock 1 {'yes' if authd else 'no'} "
            f"tern-authd\n"
            f"stored      unix run/stored.sock 1 yes tern-stored\n"
            f"smtp        inet 127.0.0.1:{base} 2 yes tern-smtpd\n"
            f"submission  inet 127.0.0.1:{base + 1} 1 yes tern-smtpd\n"
            f"submissions inet 127.0.0.1:{base + 2} 1 yes tern-smtpd\n"
            f"smtps-mx    inet 127.0.0.1:{base + 3} 1 yes tern-smtpd "
            f"-o tls=implicit -o smtpd_plaintext_auth=yes\n")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message(tag, body="hello\r\n"):
    return (f"From: sender@example.org\r\nTo: bob@example.com\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\n"
            f"{body}END-{tag}\r\n")


def read_queue_file(path):
    """Parses a queue file (docs/protocols/queue.md): returns (envelope
    dict, list of recipient dicts, message bytes).  Raises ValueError for
    anything incomplete or malformed."""
    with open(path, "rb") as f:
        data = f.read()
    pos, env, rcpts, msg, ended = 0, {}, [], b"", False
    while pos < len(data):
        if ended:
            raise ValueError("bytes after the end record")
        t = chr(data[pos])
        colon = data.index(b":", pos)
        n = int(data[pos + 1:colon])
        value = data[colon + 1:colon + 1 + n]
        if len(value) != n or data[colon + 1 + n:colon + 2 + n] != b"\n":
            raise ValueError("truncated record")
        pos = colon + 2 + n
        if t == "D":
            msg += value
        elif t == "Z":
            if int(value) != len(msg):
                raise ValueError("size mismatch")
            ended = True
        elif t == "R":
            rcpts.append({"address": value.decode()})
        elif t in "no":
            rcpts[-1][t] = value.decode()
        else:
            env[t] = value.decode()
    if not ended:
        raise ValueError("no end record")
    return env, rcpts, msg


class Raw:
    """A raw SMTP client for what smtplib would not send as it is."""

    def __init__(self, port, timeout=15.0, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.lines = []
        if greeting:
            code, text = self.reply()
            assert code == 220, text

    def close(self):
        self.f.close()
        self.sock.close()

    def reply(self):
        self.lines = []
        while True:
            raw = self.f.readline()
            if not raw:
                raise ConnectionError("smtpd closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line[4:]

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()


class Env:
    def __init__(self, inst):
        self.inst = inst
        self.root = inst.root
        self.port = inst.port_base
        self.sub_port = inst.port_base + 1
        self.ssl_port = inst.port_base + 2
        self.incoming = os.path.join(self.root, "queue", "incoming")

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def account(self, address):
        self.ctl("account", "add", address, input=PASSWORD + "\n")

    def smtp(self, port=None, helo=True):
        c = smtplib.SMTP("127.0.0.1", port or self.port, timeout=30)
        if helo:
            c.ehlo("client.example.org")
        return c

    def submission(self, user="ann@example.com"):
        c = self.smtp(self.sub_port)
        c.starttls(context=tls_context())
        c.ehlo("client.example.org")
        if user is not None:
            c.login(user, PASSWORD)
        return c

    def send(self, c, sender, rcpts, msg, mail_opts=(), rcpt_opts=()):
        """MAIL, RCPTs, DATA; returns the queue id from the 250, after
        checking that the queue file is there and complete."""
        code, text = c.mail(sender, list(mail_opts))
        assert code == 250, text
        for r in rcpts:
            code, text = c.rcpt(r, list(rcpt_opts))
            assert code == 250, (r, text)
        code, text = c.data(msg)
        assert code == 250, text
        qid = QUEUE_ID.search(text.decode()).group(1)
        # Durable before the reply: present and complete right now.
        read_queue_file(os.path.join(self.incoming, qid))
        return qid

    def queued(self, qid):
        return read_queue_file(os.path.join(self.incoming, qid))

    def set_conf(self, key, value):
        path = self.inst.conf("tern.conf")
        with open(path) as f:
            lines = [l for l in f if not l.startswith(key + " ")]
        lines.append(f"{key} = {value}\n")
        with open(path, "w") as f:
            f.writelines(lines)
        self.ctl("reload")
        time.sleep(0.5)

    def log_has(self, pattern, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.inst.log_text()):
                return True
            time.sleep(0.05)
        raise AssertionError(f"log has no {pattern!r}:\n"
                             f"{self.inst.log_tail(60)}")

    def set_services(self, **kw):
        self.inst.write_services(services(self.port, **kw))
        self.ctl("reload")

    def wait_state(self, name, running):
        self.inst.wait_service(name, running)

    def wait_running(self, names):
        self.inst.wait_running(names)


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=services, conf=CONF, start=False)
    e = Env(inst)
    e.ctl("domain", "add", "example.com")
    for a in ("ann", "bob"):
        e.account(f"{a}@example.com")
    e.ctl("alias", "add", "info@example.com", "ann@example.com")
    e.ctl("list", "add", "team@example.com")
    for m in ("ann@example.com", "bob@example.com"):
        e.ctl("list", "member", "add", "team@example.com", m)
    inst.ctl("start")
    e.wait_running(["authd", "stored", "smtp", "submission", "submissions",
                    "smtps-mx"])
    yield e
    print(inst.log_tail(80))     # shown when the test failed
    inst.ctl("stop", check=False, timeout=90)
    found, text = inst.problems_logged()
    assert not found, text[-4000:]


def test_ehlo_extensions_and_helo(env):
    c = env.smtp(helo=False)
    code, text = c.ehlo("client.example.org")
    assert code == 250
    for ext in ("pipelining", "size", "starttls", "enhancedstatuscodes",
                "8bitmime", "dsn", "smtputf8", "chunking"):
        assert c.has_extn(ext), ext
    assert c.esmtp_features["size"] == str(200 * 1024)
    assert not c.has_extn("auth")     # no AUTH without TLS
    c.starttls(context=tls_context())
    c.ehlo("client.example.org")
    assert c.has_extn("auth") and not c.has_extn("starttls")
    assert "PLAIN" in c.esmtp_features["auth"]
    assert "LOGIN" in c.esmtp_features["auth"]
    c.quit()
    c = env.smtp(helo=False)
    code, _ = c.helo("old.example.org")
    assert code == 250
    # HELO: no ESMTP parameters
    code, _ = c.docmd("MAIL FROM:<x@example.org> BODY=8BITMIME")
    assert code == 555
    qid = env.send(c, "x@example.org", ["bob@example.com"], message("helo"))
    envelope, _, _ = env.queued(qid)
    assert envelope["P"] == "SMTP" and envelope["H"] == "old.example.org"
    c.quit()


def test_every_simple_command(env):
    c = env.smtp(helo=False)
    assert c.docmd("MAIL FROM:<a@example.org>")[0] == 503    # no EHLO
    c.ehlo("client.example.org")
    assert c.noop()[0] == 250
    assert c.rset()[0] == 250
    code, text = c.docmd("HELP")
    assert code == 214 and b"EHLO" in text
    code, text = c.docmd("VRFY bob@example.com")
    assert code == 252 and b"bob" not in text
    assert c.docmd("EXPN team@example.com")[0] == 502
    assert c.docmd("ETRN example.com")[0] == 500
    assert c.docmd("LHLO x")[0] == 500
    assert c.docmd("RCPT TO:<bob@example.com>")[0] == 503
    assert c.docmd("DATA")[0] == 503
    assert c.docmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.docmd("MAIL FROM:<a@example.org>")[0] == 503    # nested
    assert c.docmd("DATA")[0] == 554                          # no rcpts
    assert c.docmd("RCPT TO:<bob@example.com>")[0] == 250
    assert c.rset()[0] == 250
    assert c.docmd("DATA")[0] == 503                          # RSET done
    assert c.docmd("MAIL FROM:<a@example.org> FOO=bar")[0] == 555
    assert c.docmd("EHLO")[0] == 501
    assert c.docmd("EHLO bad(name)")[0] == 501
    assert c.docmd("NOOP " + "x" * 20000)[0] == 500           # too long
    assert c.noop()[0] == 250                                 # still in step
    c.send(b"NOOP\nNOOP\r\n")                                # bare LF
    assert c.getreply()[0] == 500
    code, text = c.docmd("QUIT")
    assert code == 221
    c.close()


def test_message_lands_in_incoming(env):
    c = env.smtp()
    qid = env.send(c, "alice@example.org", ["bob@example.com",
                                            "info@example.com"],
                   message("first"))
    c.quit()
    envelope, rcpts, msg = env.queued(qid)
    assert envelope["V"] == "tern-queue 1"
    assert envelope["I"] == qid
    assert envelope["S"] == "alice@example.org"
    assert envelope["C"] == "127.0.0.1"
    assert envelope["H"] == "client.example.org"
    assert envelope["P"] == "ESMTP"
    assert "A" not in envelope and "L" not in envelope
    assert abs(float(envelope["T"]) - time.time()) < 60
    assert [r["address"] for r in rcpts] == ["bob@example.com",
                                              "info@example.com"]
    assert msg.startswith(b"Received: from client.example.org "
                          b"(unknown [127.0.0.1])\r\n")
    assert f"with ESMTP id {qid}".encode() in msg
    assert msg.endswith(b"\r\nhello\r\nEND-first\r\n")
    assert b"Subject: first\r\n" in msg
    env.log_has(rf"{qid}: from=<alice@example.org>, size=\d+, nrcpt=2")
    env.log_has(rf"{qid}: client=unknown\[127.0.0.1\]")
    env.log_has(rf"{qid}: message-id=<first@test>")
    # Nothing else is left: no temporary file either.
    assert os.listdir(os.path.join(env.root, "queue", "tmp")) == []


def test_unknown_local_recipient_and_relay(env):
    c = env.smtp()
    assert c.mail("alice@example.org")[0] == 250
    code, text = c.rcpt("nobody@example.com")
    assert code == 550 and b"5.1.1" in text
    code, text = c.rcpt("someone@elsewhere.example")
    assert code == 554 and b"5.7.1" in text and b"Relay" in text
    # An address literal is another host: relaying too.
    code, text = c.rcpt("someone@[192.0.2.1]")
    assert code == 554 and b"5.7.1" in text, text
    code, text = c.rcpt("bob@example.com")
    assert code == 250
    c.quit()
    env.log_has(r"reject: RCPT from unknown\[127.0.0.1\]: 550 5.1.1 "
                r"<nobody@example.com>.*to=<nobody@example.com>")
    # mynetworks may relay.
    env.set_conf("mynetworks", "127.0.0.0/8")
    c = env.smtp()
    env.send(c, "alice@example.org", ["someone@elsewhere.example",
                                      "someone@[IPv6:2001:db8::1]"],
             message("relay"))
    assert c.mail("alice@example.org")[0] == 250
    code, text = c.rcpt("x@[tag:general]")
    assert code == 501 and b"5.1.3" in text, (code, text)
    c.quit()


def test_submission_requires_starttls_then_auth(env):
    c = env.smtp(env.sub_port)
    assert c.has_extn("starttls") and not c.has_extn("auth")
    code, text = c.mail("ann@example.com")
    assert code == 530 and b"STARTTLS" in text
    code, text = c.docmd("AUTH PLAIN " + base64.b64encode(
        f"\0ann@example.com\0{PASSWORD}".encode()).decode())
    assert code == 530 and b"STARTTLS" in text
    c.starttls(context=tls_context())
    c.ehlo("client.example.org")
    code, text = c.mail("ann@example.com")
    assert code == 530 and b"Authentication required" in text
    c.rset()
    c.login("ann@example.com", PASSWORD)
    qid = env.send(c, "ann@example.com", ["someone@elsewhere.example",
                                          "bob@example.com"],
                   message("sub"))
    c.quit()
    envelope, _, msg = env.queued(qid)
    assert envelope["A"] == "ann@example.com"
    assert envelope["P"] == "ESMTPSA"
    assert envelope["L"].startswith("TLSv1.")
    assert b"(using TLSv1." in msg.split(b"\r\n\r\n")[0]
    env.log_has(rf"{qid}: client=unknown\[127.0.0.1\], session=\S+, "
                rf"sasl_method=PLAIN, sasl_username=ann@example.com")


def test_submissions_implicit_tls_auth_login(env):
    c = smtplib.SMTP_SSL("127.0.0.1", env.ssl_port, timeout=30,
                         context=tls_context())
    c.ehlo("client.example.org")
    assert c.has_extn("auth") and not c.has_extn("starttls")
    c.user, c.password = "bob@example.com", PASSWORD
    code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
    assert code == 235
    qid = env.send(c, "bob@example.com", ["ann@example.com"],
                   message("implicit"))
    c.quit()
    assert env.queued(qid)[0]["A"] == "bob@example.com"


def test_auth_failures(env):
    c = env.submission(user=None)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        c.login("ann@example.com", "wrong password")
    assert e.value.smtp_code == 535
    code, _ = c.docmd("AUTH CRAM-MD5")
    assert code == 504
    code, _ = c.docmd("AUTH PLAIN")
    assert code == 334
    code, _ = c.docmd("*")
    assert code == 501
    code, _ = c.docmd("AUTH PLAIN !!notbase64")
    assert code == 501
    # authorization identity of someone else
    code, _ = c.docmd("AUTH PLAIN " + base64.b64encode(
        f"bob@example.com\0ann@example.com\0{PASSWORD}".encode()).decode())
    assert code == 535
    c.close()
    c = env.submission()
    assert c.docmd("AUTH PLAIN x")[0] == 503   # already authenticated
    c.quit()
    # PLAIN after the 334 continuation, LOGIN with an initial response
    c = env.submission(user=None)
    c.user, c.password = "ann@example.com", PASSWORD
    assert c.auth("PLAIN", c.auth_plain, initial_response_ok=False)[0] == 235
    c.quit()
    c = env.submission(user=None)
    user64 = base64.b64encode(b"bob@example.com").decode()
    assert c.docmd("AUTH LOGIN " + user64)[0] == 334
    assert c.docmd(base64.b64encode(PASSWORD.encode()).decode())[0] == 235
    c.quit()


def test_sender_must_be_owned(env):
    c = env.submission("ann@example.com")
    code, text = c.mail("bob@example.com")
    assert code == 553 and b"5.7.1" in text
    env.send(c, "info@example.com", ["bob@example.com"], message("alias"))
    env.send(c, "ANN+tag@example.com", ["bob@example.com"], message("tag"))
    env.send(c, "", ["bob@example.com"], message("null"))
    code, _ = c.mail("team@example.com")      # a list, not ann's alone
    assert code == 553
    c.quit()
    env.set_conf("smtpd_sender_login_check", "no")
    c = env.submission("ann@example.com")
    env.send(c, "bob@example.com", ["bob@example.com"], message("any"))
    c.quit()


def recv_reply(sock):
    """Reads one whole reply straight from the socket (no read-ahead)."""
    data = b""
    while True:
        data += sock.recv(1)
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data


def test_starttls_plaintext_injection(env):
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    assert recv_reply(sock).startswith(b"220 ")
    sock.sendall(b"EHLO client.example.org\r\n")
    assert b"STARTTLS" in recv_reply(sock)
    # The NOOP rides in the same packet as STARTTLS: it must never run,
    # neither in plaintext nor inside TLS.
    sock.sendall(b"STARTTLS\r\nNOOP\r\n")
    assert recv_reply(sock).startswith(b"220 ")
    time.sleep(0.5)
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(1, socket.MSG_PEEK)     # no plaintext "250" for the NOOP
    sock.setblocking(True)
    sock.settimeout(5)
    try:
        tls = tls_context().wrap_socket(sock, server_hostname="localhost")
    except (ssl.SSLError, OSError):
        sock.close()
        return      # the injected bytes broke the handshake: not taken
    tls.sendall(b"EHLO again.example.org\r\n")
    first = tls.recv(4096)
    assert first.startswith(b"250-"), first    # not the NOOP's "250 2.0.0"
    tls.close()


def test_starttls_forgets_the_session(env):
    c = env.smtp()
    c.starttls(context=tls_context())
    # EHLO is needed again after STARTTLS
    code, _ = c.mail("a@example.org")
    assert code == 503
    c.ehlo("client.example.org")
    qid = env.send(c, "a@example.org", ["bob@example.com"], message("tls"))
    assert env.queued(qid)[0]["P"] == "ESMTPS"
    assert c.docmd("STARTTLS")[0] == 554
    c.quit()


def test_dsn_parameters_in_queue_file(env):
    c = env.smtp()
    qid = env.send(c, "alice@example.org", ["bob@example.com"],
                   message("dsn"),
                   mail_opts=["RET=HDRS", "ENVID=QQ+2B314", "BODY=8BITMIME",
                              "SMTPUTF8", "SIZE=1000"],
                   rcpt_opts=["NOTIFY=SUCCESS,FAILURE",
                              "ORCPT=rfc822;bob@example.com"])
    envelope, rcpts, _ = env.queued(qid)
    assert envelope["X"] == "HDRS"
    assert envelope["E"] == "QQ+2B314"
    assert envelope["B"] == "8BITMIME"
    assert envelope["U"] == "1"
    assert rcpts == [{"address": "bob@example.com",
                      "n": "SUCCESS,FAILURE",
                      "o": "rfc822;bob@example.com"}]
    assert c.mail("a@example.org", ["RET=SOME"])[0] == 555
    assert c.mail("a@example.org", ["ENVID=bad=value"])[0] == 501
    assert c.mail("a@example.org")[0] == 250
    assert c.rcpt("bob@example.com", ["NOTIFY=NEVER,DELAY"])[0] == 501
    assert c.rcpt("bob@example.com", ["ORCPT=nosemicolon"])[0] == 501
    assert c.rcpt("bob@example.com", ["NOTIFY=never"])[0] == 250
    c.quit()


def bdat_session(env, chunks, last_empty=False):
    """Sends MAIL, RCPT and the chunks with BDAT (the last with LAST);
    returns the replies."""
    r = Raw(env.port)
    r.cmd("EHLO client.example.org")
    assert r.cmd("MAIL FROM:<alice@example.org>")[0] == 250
    assert r.cmd("RCPT TO:<bob@example.com>")[0] == 250
    replies = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1 and not last_empty
        r.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode()
               + chunk)
        replies.append(r.reply())
    if last_empty:
        replies.append(r.cmd("BDAT 0 LAST"))
    r.cmd("QUIT")
    r.close()
    return replies


def test_bdat(env):
    body = message("bdat", body="line\r\n.dot stays\r\n").encode()
    replies = bdat_session(env, [body[:10], body[10:30], body[30:]])
    assert [c for c, _ in replies] == [250, 250, 250]
    assert "10 octets" in replies[0][1]
    qid = QUEUE_ID.search(replies[-1][1]).group(1)
    _, _, msg = env.queued(qid)
    assert msg.endswith(body) and b"\r\n.dot stays\r\n" in msg
    replies = bdat_session(env, [body], last_empty=True)
    assert replies[-1][0] == 250
    # a bare LF in a chunk is refused like in DATA
    replies = bdat_session(env, [b"Subject: x\r\n\r\nbare\nlf\r\n"])
    assert replies[-1][0] == 550
    # BDAT without a transaction: the chunk is read and refused
    r = Raw(env.port)
    r.cmd("EHLO client.example.org")
    r.send(b"BDAT 5\r\nRSET\r")
    assert r.reply()[0] == 503
    assert r.cmd("NOOP")[0] == 250
    # DATA after BDAT in one transaction
    r.cmd("MAIL FROM:<a@example.org>")
    r.cmd("RCPT TO:<bob@example.com>")
    r.send(b"BDAT 3\r\nabc")
    assert r.reply()[0] == 250
    assert r.cmd("DATA")[0] == 503
    r.close()


def smuggle(env, payload):
    """DATA with a raw payload ending in CRLF.CRLF; returns the replies
    that follow (the final one and any the smuggled commands caused)."""
    r = Raw(env.port, timeout=3)
    r.cmd("EHLO client.example.org")
    r.cmd("MAIL FROM:<alice@example.org>")
    r.cmd("RCPT TO:<bob@example.com>")
    assert r.cmd("DATA")[0] == 354
    r.send(payload)
    replies = [r.reply()]
    r.send(b"NOOP\r\n")
    replies.append(r.reply())
    r.close()
    return replies


@pytest.mark.parametrize("end", [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r.\r\n"])
def test_smuggling_is_refused(env, end):
    inner = (b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
             b"DATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    # The inner message's CRLF.CRLF is the only end marker: the outer
    # message (with its bare line end) ends there and is refused whole.
    payload = b"Subject: outer\r\n\r\nbody" + end + inner
    before = set(os.listdir(env.incoming))
    replies = smuggle(env, payload)
    assert replies[0][0] == 550 and "5.5.2" in replies[0][1], replies
    assert replies[1][0] == 250      # the NOOP: nothing else was answered
    assert set(os.listdir(env.incoming)) == before


def test_normalize_mode(env):
    env.set_conf("smtpd_bare_newline", "normalize")
    r = Raw(env.port)
    r.cmd("EHLO client.example.org")
    r.cmd("MAIL FROM:<alice@example.org>")
    r.cmd("RCPT TO:<bob@example.com>")
    r.cmd("DATA")
    r.send(b"Subject: n\r\n\r\none\ntwo\rthree\n.\nstill\r\n.\r\n")
    code, text = r.reply()
    assert code == 250, text
    qid = QUEUE_ID.search(text).group(1)
    _, _, msg = env.queued(qid)
    assert msg.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n.\r\nstill\r\n")
    r.close()


def test_size_limit(env):
    c = env.smtp()
    code, text = c.mail("a@example.org", [f"SIZE={300 * 1024}"])
    assert code == 552 and b"5.3.4" in text
    assert c.mail("a@example.org")[0] == 250
    assert c.rcpt("bob@example.com")[0] == 250
    code, text = c.data(message("big", body="x" * 998 + "\r\n") * 1 +
                        ("y" * 998 + "\r\n") * 220)
    assert code == 552 and b"5.3.4" in text
    # the session goes on
    env.send(c, "a@example.org", ["bob@example.com"], message("small"))
    c.quit()
    # BDAT over the limit
    replies = bdat_session(env, [b"z" * (150 * 1024), b"z" * (100 * 1024),
                                 b"end"])
    assert replies[1][0] == 552


def test_recipient_and_error_limits(env):
    env.set_conf("smtpd_recipient_limit", "3")
    c = env.smtp()
    c.mail("a@example.org")
    for _ in range(3):
        assert c.rcpt("bob@example.com")[0] == 250
    code, text = c.rcpt("bob@example.com")
    assert code == 452 and b"4.5.3" in text
    c.quit()
    env.set_conf("smtpd_error_limit", "5")
    r = Raw(env.port)
    codes = []
    try:
        for _ in range(10):
            codes.append(r.cmd("BOGUS")[0])
    except ConnectionError:
        pass
    assert codes[:5] == [500] * 5 and codes[5] == 421, codes
    r.close()


def test_message_and_recipient_rates(env):
    """Per-minute limits counted by tern-authd over every service: per
    client address (mynetworks exempt) and per authenticated user."""
    env.set_conf("connect_rate_window", "10m")     # no reset within the test
    env.set_conf("smtpd_client_message_rate_limit", "3")
    env.set_conf("smtpd_client_recipient_rate_limit", "5")
    c = env.smtp()
    for i in range(2):          # 2 messages, 4 recipients
        env.send(c, "a@example.org", ["bob@example.com", "ann@example.com"],
                 message(f"rate {i}"))
    code, _ = c.mail("a@example.org")
    assert code == 250          # the third message
    assert c.rcpt("bob@example.com")[0] == 250      # the fifth recipient
    code, text = c.rcpt("ann@example.com")
    assert code == 450 and b"4.7.1" in text and b"recipients" in text
    c.rset()
    code, text = c.mail("a@example.org")            # the fourth message
    assert code == 450 and b"4.7.1" in text and b"127.0.0.1" in text
    c.quit()
    env.log_has(r"reject: MAIL from unknown\[127\.0\.0\.1\]: 450 4\.7\.1 "
                r"Error: too much mail from 127\.0\.0\.1")
    # The count is per address over the services: submission too.
    c = env.submission("ann@example.com")
    code, _ = c.mail("ann@example.com")
    assert code == 450
    c.quit()
    # mynetworks are exempt; a user's own limit still applies to them.
    env.set_conf("mynetworks", "127.0.0.0/8")
    env.set_conf("smtpd_user_message_rate_limit", "2")
    c = env.submission("bob@example.com")
    for i in range(2):
        env.send(c, "bob@example.com", ["ann@example.com"],
                 message(f"user {i}"))
    code, text = c.mail("bob@example.com")
    assert code == 450 and b"bob@example.com" in text
    c.quit()
    c = env.submission("ann@example.com")       # another user: not counted
    env.send(c, "ann@example.com", ["bob@example.com"], message("ann"))
    c.quit()
    c = env.smtp()          # an unauthenticated mynetworks client
    env.send(c, "a@example.org", ["bob@example.com"], message("exempt"))
    c.quit()


def test_connection_limit(env):
    conns = [Raw(env.port) for _ in range(8)]
    r = Raw(env.port, greeting=False)
    code, text = r.reply()
    assert code == 421 and "too many connections" in text
    r.close()
    for c in conns:
        c.close()
    time.sleep(0.5)
    env.inst.wait_for(lambda: _greets(env), timeout=10,
                      what="a greeting after the others closed")


def _greets(env):
    try:
        r = Raw(env.port, greeting=False)
        ok = r.reply()[0] == 220
        r.close()
        return ok
    except (ConnectionError, OSError):
        return False


def test_early_talker(env):
    env.set_conf("smtpd_greet_delay", "1s")
    r = Raw(env.port, greeting=False)
    r.send(b"EHLO hasty.example.org\r\n")
    code, text = r.reply()
    assert code == 554 and "before the greeting" in text
    with pytest.raises(ConnectionError):
        r.reply()
    r.close()
    # a patient client is greeted after the delay; submission at once
    t = time.monotonic()
    r = Raw(env.port)
    assert time.monotonic() - t >= 0.9
    r.close()
    t = time.monotonic()
    Raw(env.sub_port).close()
    assert time.monotonic() - t < 0.9
    env.log_has(r"reject: early talker from 127.0.0.1")


def smtpd_pid(env, service="submission"):
    return env.inst.service(service)["pids"][0]


def test_kill_mid_data_leaves_no_file(env):
    before = set(os.listdir(env.incoming))
    pid = smtpd_pid(env)
    c = env.submission()
    assert c.mail("ann@example.com")[0] == 250
    assert c.rcpt("bob@example.com")[0] == 250
    assert c.docmd("DATA")[0] == 354
    c.send(b"Subject: killed\r\n\r\n" + b"partial line\r\n" * 5000)
    tmp = os.path.join(env.root, "queue", "tmp")
    env.inst.wait_for(lambda: os.listdir(tmp), timeout=10,
                      what="the temporary queue file")
    os.kill(pid, signal.SIGKILL)
    c.close()
    assert set(os.listdir(env.incoming)) == before

    def restarted():
        s = env.inst.service("submission")
        return s["state"] == "running" and s["pids"] and s["pids"][0] != pid
    env.inst.wait_for(restarted, timeout=20, what="submission restarted")
    # the new process removed the dead one's temporary file
    env.inst.wait_for(lambda: os.listdir(tmp) == [], timeout=10,
                      what="queue/tmp cleaned")
    c = env.submission()
    env.send(c, "ann@example.com", ["bob@example.com"], message("after"))
    c.quit()


def test_unwritable_queue_is_452(env):
    c = env.smtp()
    old = env.send(c, "a@example.org", ["bob@example.com"], message("old"))
    saved = env.incoming + ".saved"
    os.rename(env.incoming, saved)
    with open(env.incoming, "w") as f:     # not a folder: rename fails
        f.write("")
    try:
        assert c.mail("a@example.org")[0] == 250
        assert c.rcpt("bob@example.com")[0] == 250
        code, text = c.data(message("refused"))
        assert code == 452 and b"4.3.1" in text
    finally:
        os.unlink(env.incoming)
        os.rename(saved, env.incoming)
    # what was queued before is intact; the refused file goes (removed
    # in the background, right after the reply)
    env.queued(old)
    tmp = os.path.join(env.root, "queue", "tmp")
    env.inst.wait_for(lambda: os.listdir(tmp) == [], timeout=5,
                      what="the refused temporary file removed")
    env.send(c, "a@example.org", ["bob@example.com"], message("again"))
    c.quit()
    env.log_has(r"queue file: rename .*incoming")


def test_pipelined_transaction(env):
    r = Raw(env.port)
    r.cmd("EHLO client.example.org")
    r.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.com>\r\n"
           b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(4)]
    assert codes == [250, 550, 250, 354]
    r.send(b"Subject: p\r\n\r\n..dot\r\n.\r\nNOOP\r\n")
    code, text = r.reply()
    assert code == 250
    assert r.reply()[0] == 250
    _, _, msg = env.queued(QUEUE_ID.search(text).group(1))
    assert msg.endswith(b"\r\n.dot\r\n")
    r.close()


def test_smtputf8_and_vrfy_502(env):
    c = env.smtp()
    sender = "j\u00f6ran@example.org"
    c.command_encoding = "utf-8"
    code, _ = c.docmd(f"MAIL FROM:<{sender}> SMTPUTF8 BODY=8BITMIME")
    assert code == 250
    assert c.rcpt("bob@example.com")[0] == 250
    code, text = c.data(message("utf8", body="gr\u00fc\u00dfe\r\n")
                        .encode("utf-8"))
    assert code == 250
    envelope, _, msg = env.queued(QUEUE_ID.search(text.decode()).group(1))
    assert envelope["S"] == sender and envelope["U"] == "1"
    assert "gr\u00fc\u00dfe".encode("utf-8") in msg
    c.quit()
    env.set_conf("smtpd_vrfy_reply", "502")
    c = env.smtp()
    assert c.docmd("VRFY bob@example.com")[0] == 502
    c.quit()


def test_directory_down_is_temporary(env):
    c = env.submission()       # logged in while tern-authd runs
    env.set_services(authd=False)
    env.wait_state("authd", False)
    assert c.mail("ann@example.com")[0] == 250
    code, text = c.rcpt("bob@example.com")
    assert code == 451 and b"4.3.0" in text
    c.quit()
    c = env.submission(user=None)
    code, _ = c.docmd("AUTH PLAIN " + base64.b64encode(
        f"\0ann@example.com\0{PASSWORD}".encode()).decode())
    assert code == 454
    c.close()
    env.set_services(authd=True)
    env.wait_state("authd", True)


def test_idle_timeout(env):
    env.set_conf("smtpd_timeout", "1s")
    r = Raw(env.port)
    time.sleep(1.5)
    code, text = r.reply()
    assert code == 421 and "4.4.2" in text
    r.close()


def test_overrides_and_plaintext_auth(env):
    # -o tls=implicit on a service that is not a submission service
    c = smtplib.SMTP_SSL("127.0.0.1", env.port + 3, timeout=30,
                         context=tls_context())
    c.ehlo("client.example.org")
    qid = env.send(c, "alice@example.org", ["bob@example.com"],
                   message("implicit-mx"))
    assert env.queued(qid)[0]["P"] == "ESMTPS"
    c.quit()
    # smtpd_plaintext_auth = loopback: AUTH without TLS from 127.0.0.1
    env.set_conf("smtpd_plaintext_auth", "loopback")
    c = env.smtp()
    assert c.has_extn("auth")
    c.login("bob@example.com", PASSWORD)
    qid = env.send(c, "bob@example.com", ["x@elsewhere.example"],
                   message("plain-auth"))
    assert env.queued(qid)[0]["P"] == "ESMTPA"
    c.quit()


def test_mail_loop_is_refused(env):
    """A message carrying more Received fields than smtpd_hop_count_limit
    (ours counted) is refused with 554 5.4.6 and not queued; one under it
    is taken.  Folded and oddly spelt fields count; a field merely
    containing the word does not."""
    env.set_conf("smtpd_hop_count_limit", "5")

    def hops(n, extra=""):
        fields = "".join(f"{'Received:' if i % 2 else 'RECEIVED :'} "
                         f"from hop{i}.example\r\n\tby x; now\r\n"
                         for i in range(n))
        return fields + extra + message(f"hops{n}")

    c = env.smtp()
    qid = env.send(c, "a@example.org", ["bob@example.com"],
                   hops(4, "X-Received: not a hop\r\n"))
    assert c.mail("a@example.org")[0] == 250
    assert c.rcpt("bob@example.com")[0] == 250
    code, text = c.data(hops(5))
    assert code == 554 and b"5.4.6" in text, (code, text)
    # The session goes on, BDAT too.
    env.send(c, "a@example.org", ["bob@example.com"], message("after"))
    c.quit()
    replies = bdat_session(env, [hops(5).encode()])
    assert replies[-1][0] == 554
    env.log_has(r"reject: message from=<a@example.org>: too many hops "
                r"\(6 Received header fields, smtpd_hop_count_limit 5\)")
    queued = os.listdir(os.path.join(env.root, "queue", "incoming"))
    assert qid in queued and len(queued) == 2, queued
