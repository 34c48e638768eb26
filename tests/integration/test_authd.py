"""tern-authd on a real instance: the tern-authd protocol spoken from Python
with the shared codec of ternipc.py (docs/protocols/ipc.md), the directory
provisioned with ternctl, and common/authclient driven through
tests/authclient-probe."""
import os
import signal
import struct
import subprocess
import time

import pytest

import conftest
import ternipc
from conftest import build_path, echod_services

AUTHD_DIR = build_path("authd")
PROBE = build_path("tests", "authclient-probe")
PASSWORD = "correct-horse-1"

# Small numbers so that the anvil tests run in seconds.
CONF = ("auth_lockout_threshold = 4\n"
        "auth_failure_delay_max = 2s\n"
        "auth_lockout_time = 1h\n")


class Authd(ternipc.Client):
    """One client connection to run/authd.sock; messages as
    (type, id, {name: [values]})."""

    def __init__(self, inst, timeout=10.0):
        super().__init__(os.path.join(inst.root, "run", "authd.sock"),
                         "tern-authd", 1, timeout)

    def recv(self):
        m = super().recv()
        return m.type, m.id, m.dict()

    def send(self, mtype, **fields):
        return super().send(mtype, list(fields.items()))

    def call(self, mtype, **fields):
        mid = self.send(mtype, **fields)
        mtype, rid, f = self.recv()
        assert rid == mid
        return mtype, f

    def auth(self, user, password, service="imap", rip="192.0.2.10"):
        return self.call("authenticate", user=user, password=password,
                         service=service, rip=rip)


def authd_services(base):
    return echod_services(base, "authd unix run/authd.sock 1 yes "
                                "tern-authd\n")


@pytest.fixture
def authd_instance(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + AUTHD_DIR)
    inst = make_instance(services=authd_services, conf=CONF)
    inst.ctl("domain", "add", "example.com")
    inst.ctl("account", "add", "bob@example.com", "--mailhost",
             "mbox1.example.com", input=PASSWORD + "\n")
    inst.ctl("account", "add", "carol@example.com", input=PASSWORD + "\n")
    return inst


def authd_pid(inst):
    s = inst.service("authd")
    return s["pids"][0] if s["pids"] and s["state"] == "running" else None


# ---- tests -----------------------------------------------------------------

def test_lookup_resolve_domain(authd_instance):
    inst = authd_instance
    inst.ctl("alias", "add", "info@example.com", "bob@example.com")
    c = Authd(inst)
    mtype, f = c.call("lookup", address="Bob@EXAMPLE.com")
    assert mtype == "account"
    assert f["address"] == ["bob@example.com"]
    assert f["status"] == ["active"]
    assert f["mailhost"] == ["mbox1.example.com"]
    assert not any("hash" in k or "password" in k for k in f), f
    assert c.call("lookup", address="nobody@example.com")[0] == "notfound"
    assert c.call("lookup", address="not an address")[0] == "notfound"
    # resolve: target frames, then resolved
    mid = c.send("resolve", address="info+news@example.com")
    t, rid, f = c.recv()
    assert (t, rid) == ("target", mid)
    assert f["kind"] == ["account"] and f["address"] == ["bob@example.com"]
    t, rid, f = c.recv()
    assert (t, rid) == ("resolved", mid)
    assert f["local_domain"] == [1] and f["targets"] == [1]
    assert f["detail"] == ["news"]
    mid = c.send("resolve", address="someone@elsewhere.org")
    t, _, f = c.recv()
    assert t == "target" and f["kind"] == ["external"]
    t, _, f = c.recv()
    assert t == "resolved" and f["local_domain"] == [0]
    assert c.call("resolve", address="ghost@example.com")[0] == "notfound"
    assert c.call("resolve", address="@@")[0] == "invalid"
    assert c.call("domain", domain="EXAMPLE.COM") == ("domain",
                                                      {"exists": [1]})
    assert c.call("domain", domain="elsewhere.org") == ("domain",
                                                        {"exists": [0]})
    c.close()


def test_schema_and_unknown_requests(authd_instance):
    c = Authd(authd_instance)
    mtype, f = c.call("lookup", address="bob@example.com", extra="x")
    assert mtype == "error" and "extra" in f["message"][0]
    mtype, f = c.call("lookup")
    assert mtype == "error" and "address" in f["message"][0]
    mtype, f = c.call("lookup", address=5)
    assert mtype == "error"
    mtype, f = c.call("frobnicate", address="bob@example.com")
    assert mtype == "error"
    mtype, f = c.call("authenticate", user="bob@example.com",
                      password=PASSWORD, service="IMAP BAD", rip="x")
    assert mtype == "error"
    # the connection is still good
    assert c.call("lookup", address="bob@example.com")[0] == "account"
    c.close()


def test_garbage_frame_closes_only_that_client(authd_instance):
    good = Authd(authd_instance)
    bad = Authd(authd_instance)
    bad.sock.sendall(b"\x00\x00\x00\x10" + b"\x07" * 16)  # version 7
    with pytest.raises((EOFError, ConnectionResetError)):
        bad.recv()
    huge = Authd(authd_instance)
    huge.sock.sendall(struct.pack(">I", 512 << 20))  # past the frame limit
    with pytest.raises((EOFError, ConnectionResetError)):
        huge.recv()
    assert good.call("lookup", address="bob@example.com")[0] == "account"
    assert authd_pid(authd_instance) is not None
    assert "client closed" in authd_instance.log_text()
    for c in (good, bad, huge):
        c.close()


def test_authenticate_results_alike(authd_instance):
    inst = authd_instance
    c = Authd(inst)
    mtype, f = c.auth("bob@example.com", PASSWORD, rip="192.0.2.20")
    assert mtype == "auth" and f["result"] == ["ok"]
    assert f["address"] == ["bob@example.com"]
    # A wrong password and an unknown user look the same, each the first
    # failure of its IP (no delay).
    t0 = time.monotonic()
    wrong = c.auth("bob@example.com", "nope", rip="192.0.2.21")
    t_wrong = time.monotonic() - t0
    t0 = time.monotonic()
    unknown = c.auth("ghost@example.com", "nope", rip="192.0.2.22")
    t_unknown = time.monotonic() - t0
    malformed = c.auth("not-an-address", "nope", rip="192.0.2.23")
    assert wrong == unknown == malformed == ("auth", {"result": ["authfail"]})
    # the unknown user costs a password check too
    assert t_unknown > t_wrong * 0.3, (t_wrong, t_unknown)
    # a locked account with the right password is refused
    inst.ctl("account", "set", "carol@example.com", "--status", "locked")
    assert c.auth("carol@example.com", PASSWORD, rip="192.0.2.24") == \
        ("auth", {"result": ["refused"]})
    assert c.auth("carol@example.com", "nope", rip="192.0.2.25") == \
        ("auth", {"result": ["authfail"]})
    log = inst.log_text()
    assert ("authentication failed: service=imap rip=192.0.2.21 "
            "user=<bob@example.com> reason=password") in log
    assert ("authentication failed: service=imap rip=192.0.2.22 "
            "user=<ghost@example.com> reason=unknown") in log
    assert "authenticated: service=imap rip=192.0.2.20" in log
    c.close()


def test_log_values_escaped(authd_instance):
    c = Authd(authd_instance)
    evil = "x> rip=6.6.6.6 reason=ok\x01"
    assert c.auth(evil, "nope", rip="192.0.2.30")[1]["result"] == \
        ["authfail"]
    log = authd_instance.log_text()
    assert ("user=<x%3E%20rip%3D6.6.6.6%20reason%3Dok%01> "
            "reason=invalid") in log, log[-2000:]
    assert "rip=6.6.6.6" not in log
    c.close()


def test_delay_and_lockout_across_protocols(authd_instance):
    inst = authd_instance
    rip = "203.0.113.5"
    imap = Authd(inst)
    pop = Authd(inst)
    delays = []
    for i, (conn, service) in enumerate([(imap, "imap"), (pop, "pop3"),
                                         (imap, "imap"), (pop, "pop3")]):
        t0 = time.monotonic()
        r = conn.auth(f"user{i}@example.com", "wrong", service=service,
                      rip=rip)
        delays.append(time.monotonic() - t0)
        assert r == ("auth", {"result": ["authfail"]})
    # 0, 1, 2, then capped at auth_failure_delay_max = 2s
    assert delays[0] < 0.9, delays
    assert 0.9 <= delays[1] < 1.9, delays
    assert 1.9 <= delays[2] < 3.5, delays
    assert 1.9 <= delays[3] < 3.5, delays
    # the fourth failure locked the IP out, for every protocol, even with
    # the right password, at once
    t0 = time.monotonic()
    assert imap.auth("bob@example.com", PASSWORD, rip=rip) == \
        ("auth", {"result": ["lockedout"]})
    assert pop.auth("bob@example.com", PASSWORD, service="pop3",
                    rip=rip) == ("auth", {"result": ["lockedout"]})
    assert time.monotonic() - t0 < 0.5
    # another IP is not affected
    assert imap.auth("bob@example.com", PASSWORD, rip="203.0.113.6")[1][
        "result"] == ["ok"]
    log = inst.log_text()
    assert ("authentication failed: service=pop3 rip=203.0.113.5 "
            "user=<user1@example.com> reason=unknown") in log
    assert "authentication lockout: rip=203.0.113.5 failures=4" in log
    assert ("authentication refused: service=imap rip=203.0.113.5 "
            "user=<bob@example.com> reason=lockout") in log
    imap.close()
    pop.close()


def test_success_resets_and_replies_are_async(authd_instance):
    c = Authd(authd_instance)
    rip = "198.51.100.9"
    assert c.auth("bob@example.com", "bad", rip=rip)[1]["result"] == \
        ["authfail"]
    # second failure: delayed 1s; a lookup sent after it is answered first
    t0 = time.monotonic()
    aid = c.send("authenticate", user="bob@example.com", password="bad",
                 service="imap", rip=rip)
    lid = c.send("lookup", address="bob@example.com")
    t, rid, _ = c.recv()
    assert (t, rid) == ("account", lid)
    assert time.monotonic() - t0 < 0.8
    t, rid, f = c.recv()
    assert (t, rid, f["result"]) == ("auth", aid, ["authfail"])
    assert time.monotonic() - t0 >= 0.9
    # success clears the counters: the next failure has no delay again
    assert c.auth("bob@example.com", PASSWORD, rip=rip)[1]["result"] == \
        ["ok"]
    t0 = time.monotonic()
    assert c.auth("bob@example.com", "bad", rip=rip)[1]["result"] == \
        ["authfail"]
    assert time.monotonic() - t0 < 0.9
    c.close()


def test_cache_sees_ternctl_changes_within_1s(authd_instance):
    inst = authd_instance
    c = Authd(inst)
    for _ in range(3):  # the second and third come from the cache
        assert c.call("lookup", address="bob@example.com")[1]["status"] == \
            ["active"]
    assert c.call("lookup", address="dave@example.com")[0] == "notfound"

    def seen(pred, what):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            if pred():
                return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError(f"{what} not seen")

    inst.ctl("account", "set", "bob@example.com", "--status", "locked")
    took = seen(lambda: c.call("lookup", address="bob@example.com")[1][
        "status"] == ["locked"], "lock")
    assert took < 1.0, took
    # negative answers are invalidated too
    inst.ctl("account", "add", "dave@example.com", input=PASSWORD + "\n")
    took = seen(lambda: c.call("lookup", address="dave@example.com")[0] ==
                "account", "new account")
    assert took < 1.0, took
    c.close()


def test_connection_counters(authd_instance):
    a = Authd(authd_instance)
    b = Authd(authd_instance)
    rip = "192.0.2.77"
    assert a.call("connect", service="imap", rip=rip) == \
        ("connections", {"count": [1], "rate": [1]})
    assert b.call("connect", service="imap", rip=rip) == \
        ("connections", {"count": [2], "rate": [2]})
    assert b.call("connect", service="pop3", rip=rip)[1]["count"] == [1]
    assert a.call("disconnect", service="imap", rip=rip)[1]["count"] == [1]
    # a disconnect for a connection this client never registered is ignored
    assert a.call("disconnect", service="imap", rip=rip)[1]["count"] == [1]
    # a client that goes away releases its connections
    b.close()
    for _ in range(100):
        mtype, f = a.call("connections", service="imap", rip=rip)
        if f["count"] == [0]:
            break
        time.sleep(0.02)
    assert f == {"count": [0], "rate": [2]}
    a.close()


def probe(inst, script, timeout=60):
    p = subprocess.run([PROBE, os.path.join(inst.root, "run", "authd.sock"),
                        "5000"], input=script, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_authclient(authd_instance):
    out = probe(authd_instance,
                "lookup bob@example.com\n"
                "lookup nobody@example.com\n"
                "resolve bob+x@example.com\n"
                "resolve ghost@example.com\n"
                "domain example.com\n"
                "domain elsewhere.org\n"
                f"auth bob@example.com {PASSWORD} smtp 192.0.2.40\n"
                "auth bob@example.com wrong smtp 192.0.2.41\n"
                "connect smtp 192.0.2.42\n"
                "connect smtp 192.0.2.42\n"
                "disconnect smtp 192.0.2.42\n"
                "conns smtp 192.0.2.42\n"
                "quit\n")
    assert out == [
        "lookup ok bob@example.com active mbox1.example.com",
        "lookup notfound",
        "resolve ok 1 bob@example.com",
        "resolve notfound",
        "domain ok",
        "domain notfound",
        "auth ok bob@example.com",
        "auth authfail",
        "connect ok 1 1",
        "connect ok 2 2",
        "disconnect sent",
        "conns ok 1 2",
    ], out


def test_kill9_restarted_and_clients_recover(authd_instance):
    inst = authd_instance
    old = authd_pid(inst)
    p = subprocess.Popen([PROBE, os.path.join(inst.root, "run", "authd.sock"),
                          "10000"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        p.stdin.write("lookup bob@example.com\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith("lookup ok bob@example.com")
        py = Authd(inst)
        os.kill(old, signal.SIGKILL)
        inst.wait_for(lambda: authd_pid(inst) not in (None, old),
                      timeout=10, what="authd restart")
        # the old Python connection is gone; a new one works
        with pytest.raises((EOFError, ConnectionResetError, OSError)):
            py.call("lookup", address="bob@example.com")
        py.close()
        assert Authd(inst).call("lookup",
                                address="bob@example.com")[0] == "account"
        # authclient reconnects by itself
        t0 = time.monotonic()
        p.stdin.write("lookup bob@example.com\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith("lookup ok bob@example.com")
        assert time.monotonic() - t0 < 8
        p.stdin.write("quit\n")
        p.stdin.flush()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_authclient_tempfail_while_authd_down(make_instance, monkeypatch):
    """No authd at all: requests end in tempfail at the timeout."""
    inst = make_instance(services=echod_services)
    t0 = time.monotonic()
    p = subprocess.run([PROBE, os.path.join(inst.root, "run", "authd.sock"),
                        "1500"], input="lookup bob@example.com\nquit\n",
                       capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert p.returncode == 0
    assert p.stdout.startswith("lookup tempfail"), p.stdout
    assert 1.2 < took < 10, took
