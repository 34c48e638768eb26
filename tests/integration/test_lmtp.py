"""tern-lmtpd on a real instance (authd, stored, lmtp on TCP and
lmtp-local on run/lmtp.sock): delivery into the store, pipelined
transactions with one reply per recipient, every refusal code of
docs/lmtp.md, expansions into one blob, plus-address folders, the bare-LF
smuggling defence, and deliveries while tern-stored is killed.

Deliveries are checked through the store protocol (ternipc.py): a fetch
gives each message's blob path, and the blob is read back.
"""
import json
import os
import random
import re
import signal
import smtplib
import socket
import threading
import time

import pytest

import conftest
import ternipc
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in ("authd", "stored", "lmtpd"))

# Short waits so that the unavailable-peer cases take seconds.
CONF = ("authd_timeout = 2s\n"
        "lmtp_store_timeout = 3s\n"
        "lmtp_message_size_limit = 20k\n"
        "lmtp_recipient_limit = 20\n"
        "restart_delay = 100ms\n")


def services(base, stored=True, authd=True):
    yn = {True: "yes", False: "no"}
    return (f"authd      unix run/authd.sock 1 {yn[authd]} tern-authd\n"
            f"stored     unix run/stored.sock 1 {yn[stored]} tern-stored\n"
            f"lmtp       inet 127.0.0.1:{base} 1 yes tern-lmtpd\n"
            f"lmtp-local unix run/lmtp.sock 1 yes tern-lmtpd\n")


class Store(ternipc.Client):
    def __init__(self, root, timeout=30.0):
        super().__init__(os.path.join(root, "run", "stored.sock"),
                         "tern-stored", 1, timeout)


class Lmtp:
    """A raw LMTP client: replies as (code, text) with the last line's
    text; multi-line replies keep all lines in .lines."""

    def __init__(self, port=None, path=None, timeout=30.0):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port),
                                                 timeout=timeout)
        self.f = self.sock.makefile("rb")
        self.lines = []
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
                raise ConnectionError("lmtpd closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), line[4:]

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def lhlo(self, name="mta.example.org"):
        code, _ = self.cmd(f"LHLO {name}")
        assert code == 250, self.lines
        return self.lines

    def transaction(self, sender, rcpts, body, pipelined=True):
        """MAIL, RCPTs, DATA (pipelined in one write when asked), then the
        message.  Returns (mail, [rcpt replies], data reply, [final
        replies]) with the final replies only when DATA got 354."""
        cmds = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts]
        cmds.append("DATA")
        if pipelined:
            self.send("".join(c + "\r\n" for c in cmds))
            got = [self.reply() for _ in cmds]
        else:
            got = [self.cmd(c) for c in cmds]
        mail, rcpt_replies, data = got[0], got[1:-1], got[-1]
        finals = []
        if data[0] == 354:
            self.send(stuff(body))
            nok = sum(1 for c, _ in rcpt_replies if c == 250)
            finals = [self.reply() for _ in range(nok)]
        return mail, rcpt_replies, data, finals


def stuff(body):
    """Dot-stuffed message with the end marker."""
    if isinstance(body, str):
        body = body.encode()
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                   for l in lines)
    return out + b".\r\n"


def message(tag, size=0, extra=""):
    line = f"line of {tag} ".ljust(48, "x") + "\r\n"
    body = line * (size // 50 + 1) if size else "hello\r\n"
    return (f"From: sender@example.org\r\nTo: someone@example.com\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n{extra}\r\n"
            f"{body}END-{tag}\r\n")


class Env:
    def __init__(self, inst):
        self.inst = inst
        self.root = inst.root
        self.port = inst.port_base
        self.sock = os.path.join(inst.root, "run", "lmtp.sock")
        self.ids = {}

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def account(self, address, *args):
        self.ctl("account", "add", address, "--no-password", *args)
        p = self.ctl("account", "show", address, "--json")
        self.ids[address] = json.loads(p.stdout)["id"]

    def lmtp(self, **kw):
        return Lmtp(port=self.port, **kw)

    def messages(self, address, folder="INBOX"):
        """[(uid, bytes)] of the messages in a folder."""
        st = Store(self.root)
        out, first = [], 1
        try:
            while True:
                frames, final = st.ok("fetch", [
                    ("account", self.ids[address]), ("address", address),
                    ("folder", folder), ("first", first)])
                for m in frames:
                    with open(m.get("blob"), "rb") as f:
                        out.append((m.get("uid"), m.get("blob"), f.read()))
                if final.get("next") == 0:
                    return out
                first = final.get("next")
        finally:
            st.close()

    def set_services(self, **kw):
        self.inst.write_services(services(self.port, **kw))
        self.ctl("reload")

    def set_conf(self, key, value):
        path = self.inst.conf("tern.conf")
        with open(path) as f:
            lines = [l for l in f if not l.startswith(key + " ")]
        lines.append(f"{key} = {value}\n")
        with open(path, "w") as f:
            f.writelines(lines)
        self.ctl("reload")

    def wait_state(self, name, running):
        self.inst.wait_service(name, running)

    def log_text(self):
        """tern.log and master.err (the daemons' stderr, where lines go
        when tern.log cannot be reopened after a reload)."""
        text = self.inst.log_text()
        try:
            with open(os.path.join(self.root, "log", "master.err"),
                      errors="replace") as f:
                text += f.read()
        except OSError:
            pass
        return text

    def log_has(self, pattern, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.log_text()):
                return True
            time.sleep(0.05)
        raise AssertionError(f"log has no {pattern!r}:\n"
                             f"{self.inst.log_tail(60)}")


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=lambda base: services(base), conf=CONF,
                         start=False)
    e = Env(inst)
    e.ctl("domain", "add", "example.com")
    for a in ("ann", "bob", "carol", "fred"):
        e.account(f"{a}@example.com")
    e.account("dave@example.com", "--status", "locked")
    e.account("erin@example.com", "--status", "closed")
    e.account("gina@example.com", "--mailhost", "mbox9.example.net")
    e.ctl("alias", "add", "info@example.com", "carol@example.com")
    e.ctl("alias", "add", "fwd@example.com", "someone@elsewhere.example")
    e.ctl("list", "add", "team@example.com")
    e.ctl("list", "member", "add", "team@example.com", "ann@example.com")
    e.ctl("list", "member", "add", "team@example.com", "bob@example.com")
    inst.ctl("start")
    for name in ("authd", "stored", "lmtp", "lmtp-local"):
        e.wait_state(name, True)
    yield e
    print(inst.log_tail(80))     # shown when the test failed
    inst.ctl("stop", check=False, timeout=90)
    found, text = inst.problems_logged()
    assert not found, text[-6000:]


def headers_of(blob):
    return blob.split(b"\r\n\r\n", 1)[0].decode()


# ---- tests -----------------------------------------------------------------

def test_smtplib_delivery_tcp_and_unix(env):
    for kw in ({"host": "127.0.0.1", "port": env.port},
               {"host": env.sock}):
        with smtplib.LMTP(**kw) as c:
            code, _ = c.ehlo("mta.example.org")     # LHLO for LMTP
            assert code == 250
            for ext in ("pipelining", "8bitmime", "enhancedstatuscodes"):
                assert c.has_extn(ext), ext
            assert c.esmtp_features["size"] == "20480"
            tag = "tcp" if "port" in kw else "unix"
            refused = c.sendmail("sender@example.org", ["ann@example.com"],
                                 message(tag))
            assert refused == {}
    msgs = env.messages("ann@example.com")
    assert [uid for uid, _, _ in msgs] == [1, 2]
    tcp, unix = msgs[0][2], msgs[1][2]
    h = headers_of(tcp)
    assert h.startswith("Return-Path: <sender@example.org>\r\nReceived: "
                        "from mta.example.org ([127.0.0.1])\r\n"), h
    assert re.search(r"\tby \S+ \(Tern\) with LMTP id [0-9A-F]{10}\r\n"
                     r"\tfor <ann@example.com>; \w{3}, \d\d \w{3} \d{4} "
                     r"\d\d:\d\d:\d\d [+-]\d{4}\r\n", h), h
    assert tcp.endswith(b"END-tcp\r\n")
    assert "from mta.example.org (local socket)" in headers_of(unix)
    env.log_has(r"from=<sender@example.org>, size=\d+, nrcpt=1")
    env.log_has(r"to=<ann@example.com>, relay=stored, status=sent \(uid 2\)")


def test_protocol_basics(env):
    c = env.lmtp()
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 503
    assert c.cmd("EHLO x")[0] == 500
    assert c.cmd("HELO x")[0] == 500
    lines = c.lhlo()
    assert "250-PIPELINING" in lines and "250 8BITMIME" in lines
    assert c.cmd("VRFY ann@example.com")[0] == 252
    assert c.cmd("HELP")[0] == 214
    assert c.cmd("NOOP") == (250, "2.0.0 Ok")
    assert c.cmd("RCPT TO:<ann@example.com>")[0] == 503
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("STARTTLS")[0] == 502
    assert c.cmd("MAIL FROM:<a@example.org> FOO=1")[0] == 555
    assert c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME")[0] == 250
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 503     # nested
    assert c.cmd("DATA") == (503, "5.5.1 Error: no valid recipients")
    assert c.cmd("RSET")[0] == 250
    code, text = c.cmd("X" * 5000)
    assert (code, text) == (500, "5.5.2 Error: line too long")
    assert c.cmd("NOOP")[0] == 250
    # lmtp_recipient_limit = 20
    assert c.cmd("MAIL FROM:<>")[0] == 250
    for i in range(20):
        assert c.cmd("RCPT TO:<ann@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<ann@example.com>")[:1] == (452,)
    assert c.lines[-1].startswith("452 4.5.3")
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("QUIT")[0] == 221
    c.close()


def test_pipelined_mixed_results(env):
    c = env.lmtp()
    c.lhlo()
    rcpts = ["ann@example.com", "nobody@example.com", "bob@example.com",
             "dave@example.com", "erin@example.com", "gina@example.com",
             "fwd@example.com", "x@elsewhere.example", "Bob@Example.COM"]
    t0 = time.monotonic()
    mail, rr, data, finals = c.transaction("s@example.org", rcpts,
                                           message("mixed"))
    assert mail[0] == 250
    got = [f"{code} {text}" for code, text in rr]
    assert got[0] == "250 2.1.5 <ann@example.com> OK"
    assert got[1].startswith("550 5.1.1 <nobody@example.com>")
    assert got[2].startswith("250 2.1.5")
    assert got[3].startswith("550 5.2.1 <dave@example.com>")
    assert got[4].startswith("550 5.2.1 <erin@example.com>")
    assert got[5] == ("451 4.3.0 <gina@example.com>: mailbox is on "
                      "mbox9.example.net")
    assert got[6].startswith("550 5.3.3 <fwd@example.com>: expands to "
                             "<someone@elsewhere.example>")
    assert got[7].startswith("550 5.3.3 <x@elsewhere.example>")
    assert got[8].startswith("250 2.1.5 <Bob@Example.COM>")
    assert data[0] == 354
    # one reply per accepted RCPT, in order; bob twice is one mailbox
    assert [f"{c_} {t}"[:40] for c_, t in finals] == [
        "250 2.0.0 <ann@example.com> delivered (u",
        "250 2.0.0 <bob@example.com> delivered (u",
        "250 2.0.0 <Bob@Example.COM> delivered (u"]
    assert time.monotonic() - t0 < 10
    (a,) = env.messages("ann@example.com")
    (b,) = env.messages("bob@example.com")
    assert a[1] == b[1], "not one blob"
    assert "\tfor" not in headers_of(a[2]) and "\t; " in headers_of(a[2])
    assert c.cmd("NOOP")[0] == 250
    c.close()
    env.log_has(r"reject: RCPT from 127.0.0.1: 550 5.1.1 <nobody@")


def test_alias_and_list_expansion_one_blob(env):
    c = env.lmtp(path=None)
    c.lhlo()
    _, rr, _, finals = c.transaction("s@example.org",
                                     ["team@example.com",
                                      "info@example.com"],
                                     message("expand"))
    assert [r[0] for r in rr] == [250, 250]
    assert finals[0] == (250, "2.0.0 <team@example.com> delivered to 2 "
                              "mailboxes")
    assert finals[1][0] == 250
    blobs = {env.messages(a)[0][1] for a in
             ("ann@example.com", "bob@example.com", "carol@example.com")}
    assert len(blobs) == 1
    # Return-Path and a Received without "for" (two recipients)
    h = headers_of(env.messages("carol@example.com")[0][2])
    assert "for <" not in h
    env.log_has(r"to=<ann@example.com>, orig_to=<team@example.com>, "
                r"relay=stored, status=sent \(uid 1\)")
    c.close()


def test_plus_address_folder(env):
    st = Store(env.root)
    st.ok("folder.create", [("account", env.ids["ann@example.com"]),
                            ("address", "ann@example.com"),
                            ("folder", "Work")])
    st.close()
    c = env.lmtp()
    c.lhlo()
    for rcpt, tag in (("ann+Work@example.com", "plus"),
                      ("ann+nosuch@example.com", "plusinbox")):
        _, rr, _, finals = c.transaction("s@example.org", [rcpt],
                                         message(tag))
        assert rr[0][0] == 250 and finals[0][0] == 250, (rr, finals)
    c.close()
    (w,) = env.messages("ann@example.com", "Work")
    assert w[2].endswith(b"END-plus\r\n")
    assert "for <ann+Work@example.com>" in headers_of(w[2])
    (i,) = env.messages("ann@example.com")
    assert i[2].endswith(b"END-plusinbox\r\n")
    # with lmtp_plus_folder = no, INBOX
    env.set_conf("lmtp_plus_folder", "no")
    time.sleep(0.5)
    c = env.lmtp()
    c.lhlo()
    _, _, _, finals = c.transaction("s@example.org", ["ann+Work@example.com"],
                                    message("plusoff"))
    assert finals[0][0] == 250
    c.close()
    assert len(env.messages("ann@example.com", "Work")) == 1
    assert len(env.messages("ann@example.com")) == 2


def test_over_quota(env):
    env.ctl("account", "set", "fred@example.com", "--quota", "4k")
    c = env.lmtp()
    c.lhlo()
    # fits
    _, _, _, finals = c.transaction("s@example.org", ["fred@example.com"],
                                    message("q1", 1000))
    assert finals[0][0] == 250, finals
    # too big for what is left: the store says so after DATA
    _, rr, _, finals = c.transaction("s@example.org", ["fred@example.com",
                                                       "ann@example.com"],
                                     message("q2", 3500))
    assert [r[0] for r in rr] == [250, 250]
    assert finals[0] == (452, "4.2.2 <fred@example.com>: mailbox full, "
                              "try again later")
    assert finals[1][0] == 250
    # announced with SIZE: refused at RCPT
    c.send("MAIL FROM:<s@example.org> SIZE=3500\r\n"
           "RCPT TO:<fred@example.com>\r\nRSET\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 452 and "4.2.2" in c.lines[-1]
    assert c.reply()[0] == 250
    c.close()
    env.log_has(r"to=<fred@example.com>, relay=stored, status=deferred "
                r"\(quota exceeded\)")
    # lmtp_quota_permanent = yes: 552 5.2.2
    env.set_conf("lmtp_quota_permanent", "yes")
    time.sleep(0.5)
    c = env.lmtp()
    c.lhlo()
    c.send("MAIL FROM:<s@example.org> SIZE=3500\r\n"
           "RCPT TO:<fred@example.com>\r\nRSET\r\n")
    assert c.reply()[0] == 250
    assert c.reply() == (552, "5.2.2 <fred@example.com>: mailbox full")
    assert c.reply()[0] == 250
    _, _, _, finals = c.transaction("s@example.org", ["fred@example.com"],
                                    message("q3", 3500))
    assert finals[0] == (552, "5.2.2 <fred@example.com>: mailbox full")
    c.close()
    assert len(env.messages("fred@example.com")) == 1


def test_too_big(env):
    c = env.lmtp()
    c.lhlo()
    code, text = c.cmd("MAIL FROM:<s@example.org> SIZE=30000")
    assert (code, text[:5]) == (552, "5.3.4")
    _, rr, _, finals = c.transaction("s@example.org", ["ann@example.com",
                                                       "bob@example.com"],
                                     message("big", 40000))
    assert [r[0] for r in rr] == [250, 250]
    assert [f[0] for f in finals] == [552, 552]
    assert all(f[1].startswith("5.3.4") for f in finals)
    assert c.cmd("NOOP")[0] == 250          # still in step
    c.close()
    assert env.messages("ann@example.com") == []
    tmp = os.path.join(env.root, "data", "store", "tmp")
    env.inst.wait_for(lambda: os.listdir(tmp) == [], timeout=5,
                      what="spool file removed")


def test_spool_file_made_at_mail_goes_without_message(env):
    """The spool file is created at MAIL (ahead of the message); it is
    removed again when no message follows: RSET, rejected recipients, a
    dropped connection."""
    tmp = os.path.join(env.root, "data", "store", "tmp")
    c = env.lmtp()
    c.lhlo()
    assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
    env.inst.wait_for(lambda: len(os.listdir(tmp)) == 1, timeout=5,
                      what="spool file created at MAIL")
    assert c.cmd("RSET")[0] == 250
    env.inst.wait_for(lambda: os.listdir(tmp) == [], timeout=5,
                      what="spool file removed at RSET")
    assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<nobody@example.com>")[0] == 550
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("MAIL FROM:<s@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<ann@example.com>")[0] == 250
    c.close()
    env.inst.wait_for(lambda: os.listdir(tmp) == [], timeout=5,
                      what="spool file removed after the disconnect")
    assert env.messages("ann@example.com") == []


def test_bare_lf_smuggling_is_one_message(env):
    c = env.lmtp()
    c.lhlo()
    c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<ann@example.com>\r\n"
           "DATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    c.send("Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\n"
           "RCPT TO:<bob@example.com>\nDATA\nSubject: smuggled\n\nx\n.\n"
           "more\r\n.\r\n")
    code, text = c.reply()
    assert code == 550 and text.startswith("5.6.0 <ann@example.com>"), text
    assert c.cmd("NOOP") == (250, "2.0.0 Ok")
    c.close()
    assert env.messages("ann@example.com") == []
    assert env.messages("bob@example.com") == []


def test_store_down_is_451(env):
    env.set_services(stored=False)
    env.wait_state("stored", False)
    c = env.lmtp()
    c.lhlo()
    t0 = time.monotonic()
    _, rr, _, finals = c.transaction("s@example.org", ["ann@example.com"],
                                     message("down"))
    assert rr[0][0] == 250
    assert finals == [(451, "4.3.0 <ann@example.com>: mail store "
                            "unavailable, try again later")]
    assert time.monotonic() - t0 < 10
    # a recipient with a quota asks the store at RCPT time
    env.ctl("account", "set", "fred@example.com", "--quota", "1m")
    time.sleep(1.2)     # authd's cache
    _, rr, data, _ = c.transaction("s@example.org", ["fred@example.com"],
                                   message("down2"))
    assert rr[0][0] == 451 and "mail store unavailable" in rr[0][1]
    assert data[0] == 503
    c.cmd("RSET")
    env.set_services(stored=True)
    env.wait_state("stored", True)
    _, _, _, finals = c.transaction("s@example.org", ["ann@example.com"],
                                    message("up"))
    assert finals[0][0] == 250, finals
    c.close()
    (m,) = env.messages("ann@example.com")
    assert m[2].endswith(b"END-up\r\n")
    env.log_has(r"to=<ann@example.com>, relay=stored, status=deferred")


def test_authd_down_is_451(env):
    env.set_services(authd=False)
    env.wait_state("authd", False)
    c = env.lmtp()
    c.lhlo()
    _, rr, data, _ = c.transaction("s@example.org", ["ann@example.com"],
                                   message("noauth"))
    assert rr == [(451, "4.3.0 <ann@example.com>: directory unavailable, "
                        "try again later")]
    assert data[0] == 503
    c.close()


def test_crash_store_during_2000_deliveries(env):
    """Four clients deliver 2,000 messages while tern-stored is killed
    three times; every 250 is in the store exactly once, and nothing that
    is there is partial."""
    total, nclients = 2000, 4
    rcpts = ["ann@example.com", "bob@example.com", "carol@example.com"]
    acked, tempfailed, lock = set(), set(), threading.Lock()
    progress = [0]
    errors = []

    def client(k):
        try:
            c = env.lmtp(timeout=60)
            c.lhlo()
            for n in range(k, total, nclients):
                tag = f"crash{n}"
                _, rr, data, finals = c.transaction(
                    "s@example.org", [rcpts[n % 3]], message(tag, 200))
                codes = [f[0] for f in finals] or [r[0] for r in rr]
                with lock:
                    progress[0] += 1
                    if codes == [250]:
                        acked.add(tag)
                    else:
                        assert codes[0] in (451,), (tag, rr, data, finals)
                        tempfailed.add(tag)
                if data[0] != 354:
                    c.cmd("RSET")
            c.close()
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(repr(e))

    kill_at = sorted(random.sample(range(200, total - 200), 3))
    threads = [threading.Thread(target=client, args=(k,))
               for k in range(nclients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    kills = 0
    for point in kill_at:
        while progress[0] < point and time.monotonic() - t0 < 100:
            time.sleep(0.005)
        pid = env.inst.service("stored")["pids"][0]
        os.kill(pid, signal.SIGKILL)
        kills += 1

        def restarted():
            s = env.inst.service("stored")
            return s["state"] == "running" and s["pids"] and \
                s["pids"][0] != pid
        env.inst.wait_for(restarted, timeout=20, what="stored restarted")
    for t in threads:
        t.join(timeout=max(1, 120 - (time.monotonic() - t0)))
    elapsed = time.monotonic() - t0
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    assert elapsed < 120, elapsed
    assert kills == 3
    assert len(acked) + len(tempfailed) == total
    seen = {}
    for a in rcpts:
        for _, _, blob in env.messages(a):
            m = re.search(rb"Message-ID: <(crash\d+)@test>", blob)
            assert m, blob[:300]
            tag = m.group(1).decode()
            assert blob.endswith(f"END-{tag}\r\n".encode()), "partial"
            seen[tag] = seen.get(tag, 0) + 1
    missing = [t for t in acked if seen.get(t) != 1]
    assert not missing, (len(missing), missing[:10])
    assert all(v == 1 for v in seen.values())
    assert set(seen) <= acked | tempfailed
    print(f"crash test: {total} deliveries in {elapsed:.1f}s, "
          f"{len(acked)} acknowledged, {len(tempfailed)} deferred, "
          f"{len(set(seen) - acked)} deferred but stored, kills at "
          f"{kill_at}")
