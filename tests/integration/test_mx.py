"""tern-qmgr delivering to other domains by their MX hosts, with real
peers: a private dnsmasq serves the MX and address records of *.test, and
Postfix's smtp-sink answers SMTP on loopback addresses 127.0.0.2,
127.0.0.3, ... (one port for all, qmgr_smtp_port).  Each sink writes every
transaction it takes into a dump folder, and can be told to refuse a
command with 4xx (-r) or 5xx (-f) or not to offer 8BITMIME (-8).

Covered: the lower preference is used first; a host that refuses the
connection, does not answer it within qmgr_smtp_connect_timeout or greets
with 4xx or 5xx is skipped for the next MX; a 4xx to RCPT
defers and `ternctl queue flush` delivers once the host takes it; a 5xx
bounces with an RFC 3464 DSN in the sender's mailbox; no MX -> the
domain's own address; null MX -> 5.1.10; no such domain -> 5.1.2; no name
server -> deferred (4.4.3), never bounced; MX answers kept for their TTL
(at most dns_cache_ttl_max, 0 = not kept); address literals delivered
without the DNS; an 8-bit message to a host
without 8BITMIME bounces (5.6.3); recipients are grouped by domain; and
a second Tern instance as the MX host takes the mail over STARTTLS.

The queue-side helpers (instance, injection, store reads, DSN parsing)
are those of test_qmgr.
"""
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

import conftest
import test_qmgr as tq

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

pytestmark = pytest.mark.skipif(
    not (os.access(DNSMASQ, os.X_OK) and os.access(SMTP_SINK, os.X_OK)),
    reason="dnsmasq and smtp-sink (packages dnsmasq-base, postfix) needed")

# The records: name -> [(preference, host)], and host -> address.
MX = {
    "pref.test": [(20, "b.test"), (10, "a.test")],
    "two.test": [(10, "a.test"), (20, "b.test")],
    "one.test": [(10, "a.test")],
    "nobit.test": [(10, "c.test")],
    "xn--bcher-kva.test": [(10, "b.test")],
}
HOSTS = {
    "a.test": "127.0.0.2",
    "b.test": "127.0.0.3",
    "c.test": "127.0.0.5",
    "nomx.test": "127.0.0.4",   # no MX: its own address
}


def udp_port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def dns_query(port, name, qtype=15):
    """The rcode of one query to 127.0.0.1:port, or None on no answer."""
    tid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p.encode()
                     for p in name.split(".") if p) + b"\0"
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + qname + \
        struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    return struct.unpack(">H", data[2:4])[0] & 15


def pid_is(pid, program):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return os.path.basename(f.read().split(b"\0")[0]) == \
                program.encode()
    except OSError:
        return False


def stop_pid(proc, program):
    """Stops a server we started, by its pid, after checking the pid is
    still that program."""
    if proc.poll() is None and pid_is(proc.pid, program):
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Dns:
    """A private dnsmasq on 127.0.0.1:port answering for *.test only."""

    def __init__(self, workdir):
        for _ in range(100):
            port = random.randrange(20000, 60000)
            if udp_port_free(port) and conftest.port_free(port):
                break
        self.port = port
        args = [DNSMASQ, "--no-resolv", "--no-hosts", "--no-daemon",
                "--conf-file=/dev/null", f"--port={port}",
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--local=/test/", "--log-facility=-", "--local-ttl=60",
                f"--pid-file={workdir}/dnsmasq.pid",
                "--mx-host=nullmx.test,.,0"]
        for name, recs in MX.items():
            for pref, host in recs:
                args.append(f"--mx-host={name},{host},{pref}")
        for host, addr in HOSTS.items():
            args.append(f"--host-record={host},{addr}")
        self.log = open(os.path.join(workdir, "dnsmasq.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while dns_query(port, "pref.test") != 0:
            assert self.proc.poll() is None, "dnsmasq exited"
            assert time.monotonic() < end, "dnsmasq does not answer"
            time.sleep(0.05)

    def stop(self):
        stop_pid(self.proc, "dnsmasq")
        self.log.close()


class Sink:
    """smtp-sink on addr:port dumping each transaction into its folder."""

    def __init__(self, workdir, addr, port, opts=()):
        self.addr = addr
        self.port = port
        self.dir = tempfile.mkdtemp(prefix=f"sink-{addr}-", dir=workdir)
        os.chmod(self.dir, 0o777)
        args = [SMTP_SINK, *opts]
        if os.getuid() == 0:
            args += ["-u", "nobody"]
        args += ["-d", os.path.join(self.dir, "%H%M%S."),
                 f"{addr}:{port}", "50"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, "smtp-sink exited"
            try:
                socket.create_connection((addr, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < end, "smtp-sink not listening"
                time.sleep(0.05)

    def transactions(self):
        out = []
        for n in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, n), "rb") as f:
                out.append(f.read())
        return out

    def stop(self):
        stop_pid(self.proc, "smtp-sink")


class MxEnv:
    def __init__(self, env, dns, port, workdir):
        self.env = env
        self.dns = dns
        self.port = port
        self.workdir = workdir
        self.sinks = []

    def sink(self, host, opts=()):
        s = Sink(self.workdir, HOSTS[host], self.port, opts)
        self.sinks.append(s)
        return s

    def stop_sink(self, s):
        s.stop()
        self.sinks.remove(s)

    def sent(self, qid, rcpt, host):
        return self.env.log_has(
            qid + rf": to=<{rcpt}>, relay={host}\[{HOSTS[host]}\]:"
            rf"{self.port}, delay=[0-9.]+, dsn=2\.0\.0, status=sent "
            rf"\(250 ", timeout=20)


@pytest.fixture
def mx(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + tq.LIBEXEC_EXTRA)
    workdir = tempfile.mkdtemp(prefix="tern-mx-", dir="/tmp")
    os.chmod(workdir, 0o755)
    dns = Dns(workdir)
    port = None
    for _ in range(100):
        p = random.randrange(20000, 60000)
        if all(_tcp_free(a, p) for a in HOSTS.values()):
            port = p
            break
    assert port is not None
    conf = (tq.CONF + "qmgr_retry_min = 1h\nqmgr_retry_max = 4h\n"
            f"dns_resolvers = 127.0.0.1:{dns.port}\n"
            f"qmgr_smtp_port = {port}\n"
            "dns_timeout = 1s\n"
            "qmgr_smtp_connect_timeout = 2s\n"
            "qmgr_smtp_timeout = 10s\n")
    inst = make_instance(services=lambda base: tq.services(base), conf=conf,
                         start=False)
    env = tq.Env(inst)
    env.ctl("domain", "add", "example.com")
    env.account("sender@example.com")
    env.account("pm@example.com")
    inst.ctl("start")
    for name in ("authd", "stored", "lmtp-local", "qmgr"):
        env.wait_state(name, True)
    m = MxEnv(env, dns, port, workdir)
    try:
        yield m
    finally:
        print(inst.log_tail(80))
        inst.ctl("stop", check=False, timeout=90)
        for s in list(m.sinks):
            s.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _tcp_free(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def dsn_fields(blob):
    msg, parts = tq.dsn_parts(blob)
    fields = {}
    for block in parts[1].get_payload():
        for k, v in block.items():
            fields.setdefault(k, []).append(v)
    return msg, parts, fields


def bounced(mx, qid, rcpt, status):
    """The log line, then the DSN in the sender's mailbox."""
    mx.env.log_has(qid + rf": to=<{re.escape(rcpt)}>, relay=[^,]+, "
                   r"delay=[0-9.]+, "
                   rf"dsn={status.replace('.', '[.]')}, status=bounced",
                   timeout=20)
    got = mx.env.wait_messages("sender@example.com", 1)
    msg, parts, fields = dsn_fields(got[0])
    assert msg["To"] == "<sender@example.com>"
    assert fields["Final-Recipient"] == [f"rfc822; {rcpt}"]
    assert fields["Action"] == ["failed"]
    assert fields["Status"] == [status]
    return got[0], fields


# ---- tests -----------------------------------------------------------------

def test_lower_preference_first(mx):
    a = mx.sink("a.test")
    b = mx.sink("b.test")
    ids = [mx.env.inject("sender@example.com", ["u@pref.test"],
                         tq.message(f"p{i}")) for i in range(3)]
    for qid in ids:
        mx.sent(qid, "u@pref.test", "a.test")
        mx.env.log_has(qid + r": removed")
    got = a.transactions()
    assert len(got) == 3
    assert all(b"X-Rcpt-Args: <u@pref.test>" in t for t in got)
    assert b.transactions() == []


def test_first_mx_down_second_gets_it(mx):
    b = mx.sink("b.test")          # a.test (preference 10) has no server
    qid = mx.env.inject("sender@example.com", ["u@two.test"],
                        tq.message("down"))
    mx.sent(qid, "u@two.test", "b.test")
    mx.env.log_has(r"a\.test\[127\.0\.0\.2\]:\d+: 421 4\.4\.1 cannot "
                   r"connect")
    got = b.transactions()
    assert len(got) == 1 and b"END-down" in got[0]


@pytest.mark.parametrize("refuse", ["-r", "-f"])     # 4xx, 5xx greeting
def test_refused_greeting_next_mx(mx, refuse):
    mx.sink("a.test", opts=[refuse, "CONNECT"])
    b = mx.sink("b.test")
    qid = mx.env.inject("sender@example.com", ["u@two.test"],
                        tq.message("greet"))
    mx.sent(qid, "u@two.test", "b.test")
    assert len(b.transactions()) == 1


def test_connect_timeout_next_mx(mx):
    # a.test takes no connection: its one-slot backlog is full, so SYNs
    # go unanswered (a host that drops packets).
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind((HOSTS["a.test"], mx.port))
        hole.listen(0)
        filler.connect((HOSTS["a.test"], mx.port))
        b = mx.sink("b.test")
        t0 = time.monotonic()
        qid = mx.env.inject("sender@example.com", ["u@two.test"],
                            tq.message("slow"))
        mx.sent(qid, "u@two.test", "b.test")
        assert time.monotonic() - t0 >= 1.5
        mx.env.log_has(r"a\.test\[127\.0\.0\.2\]:\d+: connect: timed out")
        assert len(b.transactions()) == 1
    finally:
        filler.close()
        hole.close()


def test_all_mx_down_deferred(mx):
    qid = mx.env.inject("sender@example.com", ["u@two.test"],
                        tq.message("none"))
    mx.env.log_has(qid + r": to=<u@two\.test>, relay=none, "
                   r"delay=[0-9.]+, dsn=4\.4\.1, status=deferred "
                   r"\(421 4\.4\.1 cannot connect to b\.test")
    mx.env.wait_file("deferred", qid)


def test_4xx_then_success_after_flush(mx):
    a = mx.sink("a.test", opts=["-r", "RCPT"])
    qid = mx.env.inject("sender@example.com", ["u@one.test"],
                        tq.message("soft"))
    mx.env.log_has(qid + r": to=<u@one\.test>, relay=a\.test\[127\.0\.0"
                   rf"\.2\]:{mx.port}, delay=[0-9.]+, dsn=4\.3\.0, "
                   r"status=deferred \(450 4\.3\.0 ")
    mx.env.wait_file("deferred", qid + ".state")
    assert a.transactions() == []
    mx.stop_sink(a)
    a = mx.sink("a.test")
    mx.env.ctl("queue", "flush")
    mx.sent(qid, "u@one.test", "a.test")
    mx.env.log_has(qid + r": removed")
    got = a.transactions()
    assert len(got) == 1 and b"END-soft" in got[0]
    assert mx.env.messages("sender@example.com") == []


def test_5xx_bounces_with_dsn(mx):
    mx.sink("a.test", opts=["-f", "RCPT"])
    qid = mx.env.inject("sender@example.com",
                        ["u@one.test;;rfc822;u+2Bo@one.test"],
                        tq.message("hard"), opts=["-e", "ENV5"])
    blob, fields = bounced(mx, qid, "u@one.test", "5.3.0")
    assert fields["Original-Envelope-Id"] == ["ENV5"]
    assert fields["Original-Recipient"] == ["rfc822; u+o@one.test"]
    assert fields["Remote-MTA"] == ["dns; a.test"]
    assert fields["Diagnostic-Code"][0].startswith("smtp; 500 5.3.0")
    assert b"END-hard" in blob
    mx.env.log_has(qid + r": removed")


def test_no_mx_uses_address(mx):
    s = mx.sink("nomx.test")
    qid = mx.env.inject("sender@example.com", ["u@nomx.test"],
                        tq.message("implicit"))
    mx.sent(qid, "u@nomx.test", "nomx.test")
    assert len(s.transactions()) == 1


def test_null_mx_bounces(mx):
    qid = mx.env.inject("sender@example.com", ["u@nullmx.test"],
                        tq.message("nullmx"))
    blob, fields = bounced(mx, qid, "u@nullmx.test", "5.1.10")
    assert "null MX" in fields["Diagnostic-Code"][0]
    mx.env.log_has(qid + r": removed")


def test_nxdomain_bounces(mx):
    qid = mx.env.inject("sender@example.com", ["u@nx.test"],
                        tq.message("nx"))
    blob, fields = bounced(mx, qid, "u@nx.test", "5.1.2")
    assert "no such domain" in fields["Diagnostic-Code"][0]


def test_dns_down_defers(mx):
    mx.dns.stop()
    qid = mx.env.inject("sender@example.com", ["u@one.test"],
                        tq.message("nodns"))
    mx.env.log_has(qid + r": to=<u@one\.test>, relay=none, "
                   r"delay=[0-9.]+, dsn=4\.4\.3, status=deferred",
                   timeout=20)
    mx.env.wait_file("deferred", qid + ".state")
    time.sleep(1)
    assert mx.env.messages("sender@example.com") == []
    assert "status=bounced" not in mx.env.inst.log_text()


def set_conf(mx, **settings):
    """Sets tern.conf keys and reloads."""
    path = mx.env.inst.conf("tern.conf")
    with open(path) as f:
        lines = [l for l in f if l.split(" ")[0] not in settings]
    lines += [f"{k} = {v}\n" for k, v in settings.items()]
    with open(path, "w") as f:
        f.writelines(lines)
    mx.env.ctl("reload")
    time.sleep(0.5)


def asked_then_dns_gone(mx, ttl_max):
    """Every message on a new connection, answers kept at most ttl_max:
    one message to one.test delivered, then the name server stopped.
    Returns the sink of a.test."""
    set_conf(mx, qmgr_connection_idle="0", dns_cache_ttl_max=ttl_max)
    a = mx.sink("a.test")
    first = mx.env.inject("sender@example.com", ["u@one.test"],
                          tq.message("asked"))
    mx.sent(first, "u@one.test", "a.test")
    mx.dns.stop()
    return a


def deferred_for_dns(mx, domain, tag):
    qid = mx.env.inject("sender@example.com", [f"u@{domain}"],
                        tq.message(tag))
    mx.env.log_has(qid + rf": to=<u@{re.escape(domain)}>, relay=none, "
                   r"delay=[0-9.]+, dsn=4\.4\.3, status=deferred",
                   timeout=20)


def test_mx_answers_are_kept(mx):
    """The MX answer is kept for its TTL (60 s here) but no longer than
    dns_cache_ttl_max: with the name server gone, mail still goes until
    then, and is deferred after it."""
    a = asked_then_dns_gone(mx, "6s")
    kept = mx.env.inject("sender@example.com", ["u@one.test"],
                         tq.message("kept"))
    mx.sent(kept, "u@one.test", "a.test")
    # Not a domain asked before: the name server is needed.
    deferred_for_dns(mx, "two.test", "other")
    time.sleep(6.5)
    deferred_for_dns(mx, "one.test", "late")
    assert len(a.transactions()) == 2


def test_no_mx_cache(mx):
    asked_then_dns_gone(mx, "0")
    deferred_for_dns(mx, "one.test", "again")


def test_address_literal(mx):
    """u@[127.0.0.2] goes to that address without the DNS; another kind
    of address literal bounces."""
    a = mx.sink("a.test")
    mx.dns.stop()
    qid = mx.env.inject("sender@example.com", ["u@[127.0.0.2]"],
                        tq.message("literal"))
    mx.env.log_has(qid + r": to=<u@\[127\.0\.0\.2\]>, "
                   rf"relay=127\.0\.0\.2\[127\.0\.0\.2\]:{mx.port}, "
                   r"delay=[0-9.]+, dsn=2\.0\.0, status=sent", timeout=20)
    got = a.transactions()
    assert len(got) == 1 and b"X-Rcpt-Args: <u@[127.0.0.2]>" in got[0]
    qid = mx.env.inject("sender@example.com", ["u@[x-tag:abc]"],
                        tq.message("general"))
    blob, fields = bounced(mx, qid, "u@[x-tag:abc]", "5.1.3")
    assert "bad recipient address syntax" in fields["Diagnostic-Code"][0]


def test_idn_domain_goes_by_its_a_label(mx):
    """The MX of bücher.test is asked for as xn--bcher-kva.test (only
    that name has one) and its host is reached; the address is not
    rewritten, so the SMTPUTF8 message cannot go to smtp-sink, which does
    not offer SMTPUTF8: 5.6.7, never a downgrade."""
    b = mx.sink("b.test")
    qid = mx.env.inject("sender@example.com", ["u@b\u00fccher.test"],
                        tq.message("idn"), opts=["-U"])
    # Log lines show bytes outside ASCII as \xNN.
    mx.env.log_has(qid + r": to=<u@b\\xc3\\xbccher\.test>, "
                   r"relay=b\.test\[127\.0\.0\.3\]:\d+, delay=[0-9.]+, "
                   r"dsn=5\.6\.7, status=bounced", timeout=20)
    assert b.transactions() == []


def test_8bit_needs_8bitmime(mx):
    mx.sink("c.test", opts=["-8"])
    a = mx.sink("a.test")
    body = "caf\u00e9\r\n"
    qid = mx.env.inject("sender@example.com",
                        ["u@nobit.test", "v@one.test"],
                        tq.message("eight", body=body), opts=["-8"])
    mx.sent(qid, "v@one.test", "a.test")
    got = a.transactions()
    assert len(got) == 1 and b"BODY=8BITMIME" in got[0]
    bounced(mx, qid, "u@nobit.test", "5.6.3")
    # 8-bit bytes without BODY=8BITMIME are 8-bit all the same.
    qid = mx.env.inject("sender@example.com", ["w@nobit.test"],
                        tq.message("eight2", body=body))
    mx.env.log_has(qid + r": to=<w@nobit\.test>, relay=c\.test.*"
                   r"dsn=5\.6\.3, status=bounced", timeout=20)


def test_recipients_grouped_by_domain(mx):
    a = mx.sink("a.test")
    s = mx.sink("nomx.test")
    mx.env.account("ann@example.com")
    qid = mx.env.inject("sender@example.com",
                        ["x@one.test", "u@nomx.test", "ann@example.com",
                         "y@ONE.test"], tq.message("group"))
    for r in ("x@one.test", "y@ONE.test"):
        mx.sent(qid, r, "a.test")
    mx.sent(qid, "u@nomx.test", "nomx.test")
    mx.env.wait_messages("ann@example.com", 1)
    mx.env.log_has(qid + r": removed")
    got = a.transactions()
    assert len(got) == 1
    assert b"X-Rcpt-Args: <x@one.test>" in got[0]
    assert b"X-Rcpt-Args: <y@ONE.test>" in got[0]
    assert len(s.transactions()) == 1


def test_tern_peer_over_starttls(mx, make_instance, monkeypatch):
    """A second Tern instance is one.test's MX host (tern-smtpd on
    127.0.0.2): the mail reaches its mailbox over STARTTLS."""
    monkeypatch.setattr(conftest, "LIBEXEC", conftest.LIBEXEC + ":" +
                        conftest.build_path("smtpd"))
    addr = HOSTS["a.test"]
    peer = make_instance(
        services=lambda base: tq.services(base) +
        f"smtp       inet {addr}:{mx.port} 1 yes tern-smtpd\n",
        conf="smtpd_greet_delay = 0\nauthd_timeout = 5s\n", start=False)
    penv = tq.Env(peer)
    penv.ctl("domain", "add", "one.test")
    penv.account("u@one.test")
    peer.ctl("start")
    for name in ("authd", "stored", "lmtp-local", "qmgr", "smtp"):
        penv.wait_state(name, True)
    qid = mx.env.inject("sender@example.com", ["u@one.test"],
                        tq.message("peer"))
    mx.sent(qid, "u@one.test", "a.test")
    got = penv.wait_messages("u@one.test", 1)
    assert b"END-peer" in got[0]
    assert b"with ESMTPS" in got[0]
