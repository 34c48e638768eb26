"""tern-qmgr on a real instance (authd, stored, lmtp, lmtp-local, qmgr):
queue files written with common/queue's writer (tests/tern-qinject) into
queue/incoming are delivered over LMTP into the store; an unknown local
recipient gets a multipart/report DSN in the sender's mailbox; with
tern-lmtpd down a message is deferred, then delivered once it is back;
past the queue lifetime it bounces; aliases and lists expand; and
`ternctl queue list/delete/hold/release/flush` work on the queue.

Deliveries are checked through the store protocol (ternipc.py).
"""
import email
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

import conftest
import ternipc
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in
                         ("authd", "stored", "lmtpd", "qmgr"))
QINJECT = build_path("tests", "tern-qinject")

CONF = ("authd_timeout = 2s\n"
        "restart_delay = 100ms\n"
        "qmgr_retry_min = 1s\n"
        "qmgr_retry_max = 2s\n"
        "qmgr_rescan_interval = 2s\n"
        "qmgr_postmaster = pm@example.com\n")


def services(base, lmtp=True, authd=True):
    yn = "yes" if lmtp else "no"
    ya = "yes" if authd else "no"
    return (f"authd      unix run/authd.sock 1 {ya} tern-authd\n"
            "stored     unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp       inet 127.0.0.1:{base} 1 {yn} tern-lmtpd\n"
            f"lmtp-local unix run/lmtp.sock 1 {yn} tern-lmtpd\n"
            "qmgr       proc - 1 yes tern-qmgr\n")


def message(tag, body="hello\r\n"):
    return (f"From: sender@example.com\r\nTo: someone@example.com\r\n"
            f"Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\n"
            f"{body}END-{tag}\r\n")


class Env:
    def __init__(self, inst):
        self.inst = inst
        self.root = inst.root
        self.port = inst.port_base
        self.ids = {}

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def account(self, address):
        self.ctl("account", "add", address, "--no-password")
        p = self.ctl("account", "show", address, "--json")
        self.ids[address] = json.loads(p.stdout)["id"]

    def inject(self, sender, rcpts, msg, opts=(), folder=None):
        args = [QINJECT, *opts]
        if folder:
            args += ["-d", folder]
        p = subprocess.run(args + [self.root, sender, *rcpts],
                           input=msg.encode(), capture_output=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        qid = p.stdout.decode().strip()
        assert re.fullmatch(r"[0-9A-Z]{16}", qid), qid
        return qid

    def messages(self, address, folder="INBOX"):
        st = ternipc.Client(os.path.join(self.root, "run", "stored.sock"),
                            "tern-stored", 1, 30.0)
        out = []
        try:
            frames, _ = st.ok("fetch", [
                ("account", self.ids[address]), ("address", address),
                ("folder", folder)])
            for m in frames:
                with open(m.get("blob"), "rb") as f:
                    out.append(f.read())
        finally:
            st.close()
        return out

    def wait_messages(self, address, count, timeout=20.0):
        end = time.monotonic() + timeout
        got = []
        while time.monotonic() < end:
            got = self.messages(address)
            if len(got) >= count:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{address}: {len(got)} of {count} messages\n"
                             f"{self.inst.log_tail(60)}")

    def log_has(self, pattern, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pattern, self.inst.log_text())
            if m:
                return m
            time.sleep(0.1)
        raise AssertionError(f"log has no {pattern!r}:\n"
                             f"{self.inst.log_tail(60)}")

    def queue_files(self, folder):
        d = os.path.join(self.root, "queue", folder)
        return sorted(n for n in os.listdir(d) if len(n) == 16)

    def wait_state(self, name, running):
        self.inst.wait_service(name, running)

    def set_lmtp(self, up):
        self.inst.write_services(services(self.port, lmtp=up))
        self.ctl("reload")
        self.wait_state("lmtp-local", up)

    def queue_list(self):
        return json.loads(self.ctl("queue", "list", "--json").stdout)

    def listed(self, qid):
        """The queue list entry of qid (a retry may move the file between
        folders while the list is read: ask again then)."""
        found = []

        def ok():
            found[:] = [m for m in self.queue_list() if m["id"] == qid]
            return bool(found)
        self.inst.wait_for(ok, timeout=10, what=f"{qid} listed")
        return found[0]

    def wait_file(self, folder, name):
        path = os.path.join(self.root, "queue", folder, name)
        self.inst.wait_for(lambda: os.path.exists(path), timeout=10,
                           what=f"{folder}/{name}")


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=lambda base: services(base), conf=CONF,
                         start=False)
    e = Env(inst)
    e.ctl("domain", "add", "example.com")
    for a in ("ann", "bob", "carol", "sender", "pm"):
        e.account(f"{a}@example.com")
    e.ctl("alias", "add", "info@example.com", "carol@example.com")
    e.ctl("alias", "add", "fwd@example.com", "far@elsewhere.example")
    e.ctl("list", "add", "team@example.com")
    e.ctl("list", "member", "add", "team@example.com", "ann@example.com")
    e.ctl("list", "member", "add", "team@example.com", "bob@example.com")
    inst.ctl("start")
    for name in ("authd", "stored", "lmtp-local", "qmgr"):
        e.wait_state(name, True)
    yield e
    print(inst.log_tail(80))     # shown when the test failed
    inst.ctl("stop", check=False, timeout=90)


def dsn_parts(blob):
    msg = email.message_from_bytes(blob)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    return msg, msg.get_payload()


# ---- tests -----------------------------------------------------------------

def test_delivery_and_log(env):
    qid = env.inject("sender@example.com", ["ann@example.com"],
                     message("one"))
    got = env.wait_messages("ann@example.com", 1)
    assert b"END-one" in got[0]
    env.log_has(qid + r": to=<ann@example.com>, relay=lmtp-local, "
                r"delay=[0-9.]+, dsn=2\.0\.0, status=sent \(250 ")
    env.log_has(qid + r": removed")
    assert env.queue_files("incoming") == []
    assert env.queue_files("active") == []
    assert not os.listdir(os.path.join(env.root, "queue", "active"))


def test_many_messages_reuse_connections(env):
    ids = [env.inject("sender@example.com", ["bob@example.com"],
                      message(f"m{i}")) for i in range(30)]
    got = env.wait_messages("bob@example.com", 30, timeout=40)
    assert len(got) == 30
    for qid in ids:
        env.log_has(qid + r": removed")


def test_unknown_recipient_bounces(env):
    qid = env.inject("sender@example.com",
                     ["ann@example.com;;rfc822;nobody+2Bx@example.com",
                      "nobody@example.com"],
                     message("bad"), opts=["-e", "ENV+2B1"])
    env.wait_messages("ann@example.com", 1)
    env.log_has(qid + r": to=<nobody@example.com>, relay=none, "
                r"delay=[0-9.]+, dsn=5\.1\.1, status=bounced")
    got = env.wait_messages("sender@example.com", 1)
    msg, parts = dsn_parts(got[0])
    assert msg["To"] == "<sender@example.com>"
    assert "MAILER-DAEMON@" in msg["From"]
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    status = parts[1].get_payload()
    fields = {}
    for block in status:
        for k, v in block.items():
            fields.setdefault(k, []).append(v)
    assert fields["Original-Envelope-Id"] == ["ENV+1"]
    assert fields["Final-Recipient"] == ["rfc822; nobody@example.com"]
    assert fields["Action"] == ["failed"]
    assert fields["Status"] == ["5.1.1"]
    assert b"END-bad" in got[0]
    env.log_has(qid + r": sender non-delivery notification: [0-9A-Z]{16}")
    # The bounce itself has the null sender and is delivered.
    env.log_has(r"from=<>, size=\d+, nrcpt=1")


def test_notify_never_and_hdrs(env):
    env.inject("sender@example.com", ["nobody1@example.com;NEVER"],
               message("never"))
    qid = env.inject("sender@example.com", ["nobody2@example.com"],
                     message("hdrs"), opts=["-r", "HDRS"])
    env.log_has(qid + r": sender non-delivery notification")
    got = env.wait_messages("sender@example.com", 1)
    time.sleep(1)
    got = env.messages("sender@example.com")
    assert len(got) == 1                # none for NOTIFY=NEVER
    _, parts = dsn_parts(got[0])
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"END-hdrs" not in got[0]
    assert b"Subject: hdrs" in got[0]


def test_success_notice(env):
    qid = env.inject("sender@example.com",
                     ["carol@example.com;SUCCESS"], message("yay"))
    env.wait_messages("carol@example.com", 1)
    env.log_has(qid + r": sender delivery notification")
    got = env.wait_messages("sender@example.com", 1)
    _, parts = dsn_parts(got[0])
    assert b"Action: delivered" in got[0]


def test_bounce_of_bounce_goes_to_postmaster_once(env):
    qid = env.inject("", ["nobody@example.com"], message("dbl"))
    env.log_has(qid + r": sender is empty")
    got = env.wait_messages("pm@example.com", 1)
    _, parts = dsn_parts(got[0])
    assert b"END-dbl" in got[0]
    # With a postmaster address that fails too, the double bounce is
    # dropped: never a third notice, never a loop.
    env.inst.append_conf("qmgr_postmaster = ghost@example.com\n")
    env.ctl("reload")
    time.sleep(0.5)
    qid2 = env.inject("", ["nobody@example.com"], message("dbl2"))
    m = env.log_has(qid2 + r": sender non-delivery notification: "
                    r"([0-9A-Z]{16})")
    notice = m.group(1)
    env.log_has(notice + r": to=<ghost@example.com>.*status=bounced")
    env.log_has(notice + r": undeliverable notice to the postmaster")
    env.log_has(notice + r": removed")
    time.sleep(1)
    assert env.queue_files("incoming") == []
    assert env.queue_files("deferred") == []
    assert len(env.messages("pm@example.com")) == 1
    text = env.inst.log_text()
    assert text.count("sender non-delivery notification") == 2


def test_alias_and_list(env):
    qid = env.inject("sender@example.com",
                     ["info@example.com", "team@example.com",
                      "ann@example.com"], message("exp"))
    env.wait_messages("carol@example.com", 1)
    env.wait_messages("bob@example.com", 1)
    env.wait_messages("ann@example.com", 1)
    env.log_has(qid + r": to=<carol@example.com>, "
                r"orig_to=<info@example.com>, relay=lmtp-local")
    env.log_has(qid + r": to=<bob@example.com>, orig_to=<team@example.com>")
    env.log_has(qid + r": removed")
    time.sleep(0.5)
    # ann is in the list and named herself: one copy.
    assert len(env.messages("ann@example.com")) == 1


def test_remote_deferred(env):
    # No name server answers (a closed port): deferred, never bounced.
    env.inst.append_conf("dns_resolvers = 127.0.0.1:9\n")
    env.ctl("reload")
    time.sleep(0.5)
    qid = env.inject("sender@example.com", ["x@elsewhere.example"],
                     message("far"))
    env.log_has(qid + r": to=<x@elsewhere.example>, relay=none, "
                r"delay=[0-9.]+, dsn=4\.4\.3, status=deferred "
                r"\(451 4\.4\.3 elsewhere\.example: ")
    env.wait_file("deferred", qid)
    ent = env.listed(qid)
    assert ent["folder"] in ("deferred", "active")
    assert ent["recipients"][0]["error"].startswith(
        "451 4.4.3 elsewhere.example: ")
    env.ctl("queue", "delete", qid, check=False)


def test_lmtp_down_then_back(env):
    env.set_lmtp(False)
    qid = env.inject("sender@example.com", ["ann@example.com"],
                     message("later"))
    env.log_has(qid + r": to=<ann@example.com>, relay=lmtp-local, "
                r"delay=[0-9.]+, dsn=4\.4\.1, status=deferred")
    env.wait_file("deferred", qid + ".state")
    m = env.listed(qid)
    assert m["recipients"][0]["done"] is False
    env.set_lmtp(True)
    got = env.wait_messages("ann@example.com", 1, timeout=30)
    assert b"END-later" in got[0]
    env.log_has(qid + r": removed", timeout=10)


def test_directory_down_defers(env):
    env.inst.write_services(services(env.port, authd=False))
    env.ctl("reload")
    env.wait_state("authd", False)
    qid = env.inject("sender@example.com", ["bob@example.com"],
                     message("nodir"))
    env.log_has(qid + r": to=<bob@example.com>, relay=none, "
                r"delay=[0-9.]+, dsn=4\.3\.0, status=deferred "
                r"\(451 4\.3\.0 directory unavailable", timeout=20)
    assert env.messages("bob@example.com") == []
    env.inst.write_services(services(env.port))
    env.ctl("reload")
    env.wait_state("authd", True)
    env.wait_messages("bob@example.com", 1, timeout=30)
    env.log_has(qid + r": removed")


def test_lifetime_exceeded_bounces(env):
    env.inst.append_conf("qmgr_queue_lifetime = 3s\n")
    env.ctl("reload")
    env.set_lmtp(False)
    qid = env.inject("sender@example.com", ["ann@example.com"],
                     message("old"))
    env.log_has(qid + r": to=<ann@example.com>.*status=bounced "
                r"\(message expired", timeout=20)
    env.set_lmtp(True)
    got = env.wait_messages("sender@example.com", 1, timeout=30)
    assert b"Action: failed" in got[0]
    assert b"END-old" in got[0]
    assert env.messages("ann@example.com") == []


def test_delay_notice_once(env):
    env.inst.append_conf("qmgr_delay_warning = 1s\n")
    env.ctl("reload")
    env.set_lmtp(False)
    qid = env.inject("sender@example.com",
                     ["ann@example.com;DELAY,FAILURE",
                      "bob@example.com;FAILURE"], message("slow"))
    env.log_has(qid + r": sender delay notification: ", timeout=15)
    env.log_has(qid + r": to=<ann@example.com>.*status=deferred")
    time.sleep(2.5)             # more retries: still one notice
    env.set_lmtp(True)
    env.wait_messages("ann@example.com", 1, timeout=30)
    env.wait_messages("bob@example.com", 1, timeout=30)
    env.log_has(qid + r": removed")
    got = env.wait_messages("sender@example.com", 1)
    time.sleep(0.5)
    got = env.messages("sender@example.com")
    assert len(got) == 1
    msg, parts = dsn_parts(got[0])
    assert msg["Subject"].startswith("Delayed Mail")
    assert b"Action: delayed" in got[0]
    assert b"Final-Recipient: rfc822; ann@example.com" in got[0]
    assert b"Final-Recipient: rfc822; bob@example.com" not in got[0]
    assert env.inst.log_text().count(qid + ": sender delay notification") \
        == 1


def test_ternctl_queue(env):
    env.set_lmtp(False)
    qid = env.inject("sender@example.com", ["bob@example.com"],
                     message("ctl"))
    env.log_has(qid + r": to=<bob@example.com>.*status=deferred")
    env.listed(qid)
    out = env.ctl("queue", "list").stdout
    assert "<sender@example.com>" in out
    # hold: not retried; list shows it in hold.
    # A retry may have it in active/ for a moment: hold refuses then.
    env.inst.wait_for(lambda: env.ctl("queue", "hold", qid,
                                      check=False).returncode == 0,
                      timeout=10, what="held")
    assert qid in env.queue_files("hold")
    assert [m["folder"] for m in env.queue_list()
            if m["id"] == qid] == ["hold"]
    env.set_lmtp(True)
    env.ctl("queue", "flush")
    time.sleep(1.5)
    assert env.messages("bob@example.com") == []
    # release: delivered at once.
    env.ctl("queue", "release", qid)
    env.wait_messages("bob@example.com", 1)
    env.log_has(qid + r": removed")
    # delete: one message, then ALL.
    env.set_lmtp(False)
    a = env.inject("sender@example.com", ["bob@example.com"], message("a"),
                   folder="hold")
    b = env.inject("sender@example.com", ["bob@example.com"], message("b"),
                   folder="hold")
    env.ctl("queue", "delete", a)
    assert env.queue_files("hold") == [b]
    p = env.ctl("queue", "delete", "ZZZZZZZZZZZZZZZZ", check=False)
    assert p.returncode != 0
    env.ctl("queue", "delete", "ALL")
    assert env.queue_list() == []
    assert "queue is empty" in env.ctl("queue", "list").stdout


def test_flush_retries_now(env):
    env.inst.append_conf("qmgr_retry_min = 1h\nqmgr_retry_max = 4h\n")
    env.ctl("reload")
    env.set_lmtp(False)
    qid = env.inject("sender@example.com", ["carol@example.com"],
                     message("fl"))
    env.log_has(qid + r": to=<carol@example.com>.*status=deferred")
    env.set_lmtp(True)
    time.sleep(2)
    assert env.messages("carol@example.com") == []
    env.ctl("queue", "flush")
    env.wait_messages("carol@example.com", 1, timeout=10)
    env.log_has(qid + r": removed")


def test_queue_show_flush_one_and_requeue(env):
    env.inst.append_conf("qmgr_retry_min = 1h\nqmgr_retry_max = 4h\n")
    env.ctl("reload")
    env.set_lmtp(False)
    qid = env.inject("sender@example.com", ["carol@example.com"],
                     message("shown"))
    other = env.inject("sender@example.com", ["bob@example.com"],
                       message("left"))
    for q in (qid, other):
        env.log_has(q + r": to=<.*status=deferred")
    env.inst.wait_for(lambda: qid in env.queue_files("deferred"),
                      timeout=10, what="deferred")
    # show: the envelope, the state and the message.
    out = env.ctl("queue", "show", qid).stdout
    assert f"id:         {qid} (deferred)" in out, out
    assert "sender:     <sender@example.com>" in out, out
    assert "attempts:   1, next try" in out, out
    assert "recipient:  <carol@example.com>" in out and "(deferred: " in out
    assert "Subject: shown" in out, out
    shown = json.loads(env.ctl("queue", "show", qid, "--json").stdout)
    assert shown["id"] == qid and shown["attempts"] == 1
    assert shown["recipients"][0]["address"] == "carol@example.com"
    assert shown["recipients"][0]["done"] is False
    assert "Subject: shown" in shown["message"]
    assert shown["size"] == len(shown["message"].encode())
    p = env.ctl("queue", "show", "ZZZZZZZZZZZZZZZZ", check=False)
    assert p.returncode != 0 and "no such message" in p.stderr
    # flush ID: this one only, at once; the other waits its hour.
    env.set_lmtp(True)
    env.ctl("queue", "flush", qid)
    env.wait_messages("carol@example.com", 1, timeout=10)
    env.log_has(qid + r": removed")
    time.sleep(1)
    assert env.messages("bob@example.com") == []
    p = env.ctl("queue", "flush", qid, check=False)
    assert p.returncode != 0
    # requeue: retries start afresh (attempts 0), delivered at once.
    env.ctl("queue", "hold", other)
    before = json.loads(env.ctl("queue", "show", other, "--json").stdout)
    assert before["folder"] == "hold" and before["attempts"] == 1
    env.ctl("queue", "requeue", other)
    env.wait_messages("bob@example.com", 1, timeout=10)
    env.log_has(other + r": removed")


def test_corrupt_file_moved(env):
    path = os.path.join(env.root, "queue", "incoming", "0F9K3T2M7Q0AB3K7")
    with open(path + ".tmp", "wb") as f:
        f.write(b"V12:tern-queue 1\nI16:0F9K3T2M7Q0AB3K7\n")
    os.rename(path + ".tmp", path)
    env.log_has(r"0F9K3T2M7Q0AB3K7: unreadable queue file, moved to "
                r"corrupt/")
    assert env.queue_files("corrupt") == ["0F9K3T2M7Q0AB3K7"]


# ---- the relay host: a small SMTP server written for these tests --------

class FakeSmtp:
    """An SMTP server on 127.0.0.1 that records every transaction.  RCPT
    to reject... gets 550 5.1.1, to temp... 451 4.2.0; the rest 250."""

    def __init__(self, dsn=True, tls=None):
        self.dsn = dsn
        self.tls = tls              # (cert, key): offer STARTTLS
        self.tls_sessions = 0
        self.transactions = []
        self.connections = 0
        self.open_now = 0
        self.open_max = 0
        self.delay = 0.0            # seconds before each DATA reply
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                with outer.lock:
                    outer.connections += 1
                    outer.open_now += 1
                    outer.open_max = max(outer.open_max, outer.open_now)
                try:
                    outer.session(self.request)
                finally:
                    with outer.lock:
                        outer.open_now -= 1

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def session(self, sock):
        rf, wf = sock.makefile("rb"), sock.makefile("wb")
        in_tls = False

        def send(line):
            wf.write(line.encode() + b"\r\n")
            wf.flush()
        send("220 relay.test ESMTP")
        txn = None
        while True:
            raw = rf.readline(4096)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                exts = ["PIPELINING", "SIZE 1000000", "8BITMIME",
                        "ENHANCEDSTATUSCODES"]
                if self.dsn:
                    exts.append("DSN")
                if self.tls and not in_tls:
                    exts.append("STARTTLS")
                send("250-relay.test")
                for i, e in enumerate(exts):
                    send(("250 " if i == len(exts) - 1 else "250-") + e)
            elif verb == "MAIL" and self.tls and not in_tls:
                send("530 5.7.0 STARTTLS first")
            elif verb == "MAIL":
                txn = {"mail": line, "rcpts": [], "data": None}
                send("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = line.split("<", 1)[1].split(">", 1)[0]
                if addr.startswith("reject"):
                    send("550 5.1.1 no such user here")
                elif addr.startswith("temp"):
                    send("451 4.2.0 try later")
                else:
                    txn["rcpts"].append(line)
                    send("250 2.1.5 Ok")
            elif verb == "DATA":
                if not txn or not txn["rcpts"]:
                    send("554 5.5.1 no valid recipients")
                    continue
                send("354 go ahead")
                body = []
                while True:
                    l = rf.readline(100000)
                    if not l or l == b".\r\n":
                        break
                    body.append(l[1:] if l.startswith(b".") else l)
                txn["data"] = b"".join(body)
                time.sleep(self.delay)
                with self.lock:
                    self.transactions.append(txn)
                send("250 2.0.0 Ok: queued")
                txn = None
            elif verb == "STARTTLS" and self.tls and not in_tls:
                send("220 2.0.0 ready")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*self.tls)
                sock = ctx.wrap_socket(sock, server_side=True)
                rf, wf = sock.makefile("rb"), sock.makefile("wb")
                in_tls = True
                with self.lock:
                    self.tls_sessions += 1
            elif verb == "RSET":
                txn = None
                send("250 2.0.0 Ok")
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                return
            else:
                send("502 5.5.2 unknown command")


@pytest.fixture
def relay(env):
    srv = FakeSmtp()
    env.inst.append_conf(f"relayhost = 127.0.0.1:{srv.port}\n")
    env.ctl("reload")
    time.sleep(0.5)
    yield srv
    srv.close()


def test_relayhost_delivery_with_dsn_parameters(env, relay):
    qid = env.inject("sender@example.com",
                     ["far@elsewhere.example;SUCCESS,FAILURE;"
                      "rfc822;far+2Bx@elsewhere.example",
                      "reject@elsewhere.example", "ann@example.com"],
                     message("relay", body=".dot line\r\nhello\r\n"),
                     opts=["-r", "HDRS", "-e", "E1"])
    env.log_has(qid + r": to=<far@elsewhere.example>, "
                r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                r"delay=[0-9.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok")
    env.log_has(qid + r": to=<reject@elsewhere.example>, .*dsn=5\.1\.1, "
                r"status=bounced \(550 5\.1\.1 no such user here\)")
    env.log_has(qid + r": removed")
    env.wait_messages("ann@example.com", 1)
    assert len(relay.transactions) == 1
    t = relay.transactions[0]
    assert t["mail"].startswith("MAIL FROM:<sender@example.com>")
    assert re.search(r" SIZE=\d+", t["mail"])
    assert " RET=HDRS" in t["mail"] and " ENVID=E1" in t["mail"]
    assert t["rcpts"] == ["RCPT TO:<far@elsewhere.example> "
                          "NOTIFY=SUCCESS,FAILURE "
                          "ORCPT=rfc822;far+2Bx@elsewhere.example"]
    assert b"\r\n.dot line\r\nhello\r\nEND-relay\r\n" in t["data"]
    # The refused recipient bounced to the sender (whatever other notice
    # the sender gets, in whichever order).
    bounce = b"Final-Recipient: rfc822; reject@elsewhere.example"
    env.inst.wait_for(lambda: any(bounce in m for m in
                                  env.messages("sender@example.com")),
                      timeout=20, what="the bounce of reject@")


def test_relayhost_alias_temp_and_reuse(env, relay):
    qid = env.inject("sender@example.com",
                     ["fwd@example.com", "temp@elsewhere.example"],
                     message("fwd"))
    env.log_has(qid + r": to=<far@elsewhere.example>, "
                r"orig_to=<fwd@example.com>, relay=127.*status=sent")
    env.log_has(qid + r": to=<temp@elsewhere.example>, .*dsn=4\.2\.0, "
                r"status=deferred \(451 4\.2\.0 try later\)")
    env.wait_file("deferred", qid + ".state")
    m = env.listed(qid)
    assert [r["done"] for r in m["recipients"]] == [True, False]
    env.ctl("queue", "delete", qid, check=False)
    before = relay.connections
    ids = [env.inject("sender@example.com", ["far@elsewhere.example"],
                      message(f"r{i}")) for i in range(10)]
    for qid in ids:
        env.log_has(qid + r": removed")
    ok = [t for t in relay.transactions if b"END-r" in (t["data"] or b"")]
    assert len(ok) == 10
    # Connections are reused: fewer connections than messages.
    assert relay.connections - before < 10


def test_relayhost_concurrency_limit(env, relay):
    env.inst.append_conf("qmgr_destination_concurrency = 2\n")
    env.ctl("reload")
    time.sleep(0.5)
    relay.delay = 0.2
    ids = [env.inject("sender@example.com", ["far@elsewhere.example"],
                      message(f"c{i}")) for i in range(12)]
    for qid in ids:
        env.log_has(qid + r": removed", timeout=30)
    assert len(relay.transactions) == 12
    assert relay.open_max == 2
    assert relay.connections == 2


def test_active_bytes_limit(env, relay):
    """Messages being delivered are held in memory: no more than
    qmgr_active_bytes_limit of queue files at once (here 1 MiB: three
    messages of 300 KB), the rest wait their turn and go after."""
    env.inst.append_conf("qmgr_active_bytes_limit = 1M\n")
    env.ctl("reload")
    time.sleep(0.5)
    relay.delay = 1.0
    body = ("x" * 998 + "\r\n") * 300
    ids = [env.inject("sender@example.com", ["far@elsewhere.example"],
                      message(f"big{i}", body=body)) for i in range(9)]
    for qid in ids:
        env.log_has(qid + r": removed", timeout=60)
    assert len(relay.transactions) == 9
    assert 2 <= relay.open_max <= 3, relay.open_max
    env.log_has(r"messages of \d+ bytes in delivery: the next waits "
                r"\(qmgr_active_bytes_limit 1048576\)")


def test_relayhost_starttls(env):
    ssl_dir = os.path.join(env.root, "conf", "ssl")
    srv = FakeSmtp(tls=(os.path.join(ssl_dir, "tern.crt"),
                        os.path.join(ssl_dir, "tern.key")))
    plain = FakeSmtp()
    try:
        env.inst.append_conf(f"relayhost = [127.0.0.1]:{srv.port}\n"
                             "qmgr_smtp_tls = encrypt\n")
        env.ctl("reload")
        time.sleep(0.5)
        qid = env.inject("sender@example.com", ["far@elsewhere.example"],
                         message("tls"))
        env.log_has(qid + r": to=<far@elsewhere.example>.*status=sent")
        assert srv.tls_sessions >= 1
        assert b"END-tls" in srv.transactions[0]["data"]
        # encrypt and a server without STARTTLS: deferred, not sent.
        env.inst.append_conf(f"relayhost = 127.0.0.1:{plain.port}\n")
        env.ctl("reload")
        time.sleep(0.5)
        qid = env.inject("sender@example.com", ["far@elsewhere.example"],
                         message("notls"))
        env.log_has(qid + r": to=<far@elsewhere.example>.*dsn=4\.7\.4, "
                    r"status=deferred")
        assert plain.transactions == []
        env.ctl("queue", "delete", qid, check=False)
    finally:
        srv.close()
        plain.close()


def test_restart_resumes_active_and_kill_loses_nothing(env):
    # A file a killed tern-qmgr left in active/ is delivered at start.
    env.ctl("stop", check=False, timeout=90)
    qid = env.inject("sender@example.com", ["carol@example.com"],
                     message("left"), folder="active")
    env.ctl("start")
    for name in ("authd", "stored", "lmtp-local", "qmgr"):
        env.wait_state(name, True)
    env.wait_messages("carol@example.com", 1)
    env.log_has(qid + r": removed")
    # kill -9 while 40 messages are on their way: none is lost.
    tags = [f"k{i}" for i in range(40)]
    for t in tags:
        env.inject("sender@example.com", ["ann@example.com"], message(t))
    pid = env.inst.service("qmgr")["pids"][0]
    os.kill(pid, 9)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        blobs = env.messages("ann@example.com")
        if all(any(f"END-{t}\r\n".encode() in b for b in blobs)
               for t in tags):
            break
        time.sleep(0.2)
    blobs = env.messages("ann@example.com")
    missing = [t for t in tags
               if not any(f"END-{t}\r\n".encode() in b for b in blobs)]
    assert missing == []
    env.inst.wait_for(lambda: all(env.queue_files(f) == [] for f in
                                  ("incoming", "active", "deferred")),
                      timeout=30, what="queue empty")


def test_relayhost_auth(env, make_instance, monkeypatch):
    """The relay host is a second Tern instance's submission service
    (STARTTLS, then AUTH required): with relayhost_auth_file tern-qmgr
    authenticates and the mail is relayed; a wrong password or no TLS
    defers it (never a bounce, never credentials in clear)."""
    monkeypatch.setattr(conftest, "LIBEXEC", conftest.LIBEXEC + ":" +
                        conftest.build_path("smtpd"))
    port = conftest.free_port_block(1)
    peer = make_instance(
        services=lambda base: services(base) +
        f"submission inet 127.0.0.1:{port} 1 yes tern-smtpd\n",
        conf="smtpd_greet_delay = 0\nauthd_timeout = 5s\n"
        "smtpd_sender_login_check = no\n", start=False)
    penv = Env(peer)
    penv.ctl("domain", "add", "elsewhere.example")
    penv.account("far@elsewhere.example")
    peer.ctl("account", "add", "relay@elsewhere.example",
             input="Relay-Pass 7\n")
    peer.ctl("start")
    for name in ("authd", "stored", "lmtp-local", "qmgr", "submission"):
        penv.wait_state(name, True)
    secret = os.path.join(env.root, "conf", "relay.auth")

    def attempt(tag, credentials, conf):
        """Writes the credentials, reloads; the log line of the try."""
        with open(secret, "w") as f:
            f.write(credentials + "\n")
        os.chmod(secret, 0o640)
        shutil.chown(secret, group="tern")      # as ternctl setup does
        env.inst.append_conf(conf)
        env.ctl("reload")
        time.sleep(0.5)
        qid = env.inject("sender@example.com", ["far@elsewhere.example"],
                         message(tag))
        return qid, env.log_has(qid + r": to=<far@elsewhere.example>.*"
                                r"status=(sent|deferred).*")

    qid, line = attempt("authed", "relay@elsewhere.example Relay-Pass 7",
                        f"relayhost = [127.0.0.1]:{port}\n"
                        "qmgr_smtp_tls = may\n"
                        f"relayhost_auth_file = {secret}\n")
    assert "status=sent" in line.group(0), line.group(0)
    got = penv.wait_messages("far@elsewhere.example", 1)
    assert b"END-authed" in got[0]
    assert b"with ESMTPSA" in got[0]
    assert "sasl_username=relay@elsewhere.example" in peer.log_text(), \
        peer.log_tail(30)
    # A wrong password: deferred with the relay's refusal, not bounced.
    qid, line = attempt("refused", "relay@elsewhere.example wrong", "")
    assert re.search(r"dsn=4\.7\.0, status=deferred \(.*authentication "
                     r"refused", line.group(0)), line.group(0)
    env.ctl("queue", "delete", qid, check=False)
    # No TLS: the credentials are not sent at all.
    qid, line = attempt("clear", "relay@elsewhere.example Relay-Pass 7",
                        "qmgr_smtp_tls = none\n")
    assert re.search(r"dsn=4\.7\.0, status=deferred \(.*not sent in clear",
                     line.group(0)), line.group(0)
    env.ctl("queue", "delete", qid, check=False)
    assert len(penv.messages("far@elsewhere.example")) == 1
