"""The MTA path under kill -9: a client sends messages through tern-smtpd
while tern-smtpd, tern-qmgr, tern-lmtpd and tern-stored are killed at
random moments (tern-master restarts them); once the queue has drained,
every message that got 250 is in the store exactly once per recipient with
its body intact, and one that never got 250 is there at most once.

Each send attempt is its own message (X-Test-Id "m<n>.<attempt>", a
Message-ID, and X-Test-Sum, the SHA-256 of the body); a message is sent
again, as a new attempt, only when it did not get 250.  The store is read
with the store protocol (test_lmtp's Env); the services and the accounts
come from test_mta.  bench/run-mta-crash runs the same with more messages
and kills (run_crash below is shared).

It also checks the XQUEUEID extension of tern-lmtpd (docs/protocols/lmtp.md)
directly: offered on the unix socket only, a repeated queue id delivers
once, and a TCP client outside lmtp_trusted_networks cannot use it.
"""
import hashlib
import os
import random
import re
import signal
import smtplib
import sqlite3
import threading
import time

import pytest

import conftest
import test_lmtp
import test_mta

DAEMONS = ("smtp", "qmgr", "lmtp-local", "stored")
USERS = ("ann", "bob", "carol", "dave")
DOMAIN = "example.com"

# Fast retries and restarts, and no crash-loop backoff: the test kills on
# purpose, many times.
CONF = ("authd_timeout = 5s\n"
        "smtpd_greet_delay = 0\n"
        "restart_delay = 100ms\n"
        "restart_backoff_max = 1s\n"
        "crash_loop_limit = 1000\n"
        "qmgr_retry_min = 1s\n"
        "qmgr_retry_max = 2s\n"
        "qmgr_rescan_interval = 2s\n"
        "qmgr_lmtp_timeout = 20s\n"
        "lmtp_store_timeout = 10s\n"
        "qmgr_postmaster = ann@example.com\n")


def make_env(make, conf=CONF):
    """An instance with the MTA path and the accounts; make is
    conftest.new_instance or the make_instance fixture."""
    inst = make(services=test_mta.services, conf=conf, start=False)
    env = test_lmtp.Env(inst)
    env.ctl("domain", "add", DOMAIN)
    for u in USERS:
        env.account(f"{u}@{DOMAIN}")
    inst.ctl("start")
    for name in ("authd",) + DAEMONS:
        env.wait_state(name, True)
    return env


def body_of(n, attempt, rng):
    lines = [f"line {i} of m{n}.{attempt} {rng.getrandbits(64):016x}"
             for i in range(rng.randrange(3, 40))]
    return "".join(line + "\r\n" for line in lines)


def compose(n, attempt, rcpts, rng):
    body = body_of(n, attempt, rng)
    tid = f"m{n}.{attempt}"
    head = (f"From: sender@example.org\r\nTo: {', '.join(rcpts)}\r\n"
            f"Subject: crash test {tid}\r\n"
            f"Message-ID: <{tid}@crash.test>\r\nX-Test-Id: {tid}\r\n"
            f"X-Test-Sum: {hashlib.sha256(body.encode()).hexdigest()}\r\n")
    return tid, head + "\r\n" + body


class Sender:
    """Clients sending `total` messages through tern-smtpd; a message is
    sent again (a new attempt) only for the recipients that got no 250."""

    def __init__(self, port, total, nclients, deadline, seed):
        self.port = port
        self.total = total
        self.nclients = nclients
        self.deadline = deadline
        self.seed = seed
        self.lock = threading.Lock()
        self.acked = {}       # test id -> recipients that got 250
        self.unacked = {}     # test id -> recipients without 250
        self.given_up = []    # messages never acknowledged in time
        self.progress = 0
        self.errors = []

    def client(self, k):
        rng = random.Random(self.seed * 100 + k)
        conn = None
        try:
            for n in range(k, self.total, self.nclients):
                rcpts = [f"{u}@{DOMAIN}" for u in
                         rng.sample(USERS, rng.choice((1, 1, 2, 3)))]
                attempt = 0
                while rcpts:
                    if time.monotonic() > self.deadline:
                        with self.lock:
                            self.given_up.append(n)
                        break
                    attempt += 1
                    tid, msg = compose(n, attempt, rcpts, rng)
                    conn, ok = self.send_one(conn, tid, rcpts, msg)
                    rcpts = [r for r in rcpts if r not in ok]
                    if rcpts:
                        time.sleep(0.05)
                with self.lock:
                    self.progress += 1
        except Exception as e:     # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass

    def send_one(self, conn, tid, rcpts, msg):
        """One attempt; returns (connection or None, recipients with
        250)."""
        ok = []
        try:
            if conn is None:
                conn = smtplib.SMTP("127.0.0.1", self.port, timeout=15)
                conn.ehlo("client.example.org")
            refused = conn.sendmail("sender@example.org", rcpts, msg)
            ok = [r for r in rcpts if r not in refused]
        except smtplib.SMTPResponseException as e:
            # a refusal of MAIL or DATA: nothing was acknowledged
            if e.smtp_code >= 500 and e.smtp_code != 554:
                self.errors.append(f"{tid}: {e.smtp_code} {e.smtp_error}")
            conn = self.drop(conn)
        except smtplib.SMTPRecipientsRefused:
            conn = self.drop(conn)
        except (smtplib.SMTPException, OSError):
            conn = self.drop(conn)
        with self.lock:
            if ok:
                self.acked[tid] = set(ok)
            rest = set(rcpts) - set(ok)
            if rest:
                self.unacked[tid] = rest
        return conn, ok

    @staticmethod
    def drop(conn):
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
        return None


class Killer:
    """Kills the daemons with SIGKILL as the sending progresses (at
    `kills` points spread over it), each in turn in a shuffled order, and
    times how long tern-master takes to have a new process running."""

    def __init__(self, env, sender, kills, seed):
        self.env = env
        self.sender = sender
        rng = random.Random(seed)
        order = []
        while len(order) < kills:
            round_ = list(DAEMONS)
            rng.shuffle(round_)
            order += round_
        self.order = order[:kills]
        lo, hi = sender.total // 50, sender.total - sender.total // 20
        self.points = sorted(rng.sample(range(lo, hi), kills))
        self.done = []          # (daemon, seconds until running again)
        self.failures = []
        self.rng = rng

    def pid_of(self, name):
        s = self.env.inst.service(name)
        if s["state"] == "running" and s["pids"]:
            return s["pids"][0]
        return None

    def kill_one(self, name):
        end = time.monotonic() + 20
        pid = None
        while pid is None and time.monotonic() < end:
            pid = self.pid_of(name)
            if pid is None:
                time.sleep(0.05)
        if pid is None:
            self.failures.append(f"{name} not running before the kill")
            return
        # a little random delay, so kills fall anywhere in a transaction
        time.sleep(self.rng.random() * 0.05)
        t0 = time.monotonic()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while time.monotonic() - t0 < 20:
            new = self.pid_of(name)
            if new is not None and new != pid:
                self.done.append((name, time.monotonic() - t0))
                return
            time.sleep(0.02)
        self.failures.append(f"{name} did not come back within 20 s")

    def run(self):
        for name, point in zip(self.order, self.points):
            while (self.sender.progress < point and
                   time.monotonic() < self.sender.deadline and
                   not self.sender_done()):
                time.sleep(0.01)
            self.kill_one(name)

    def sender_done(self):
        return self.sender.progress >= self.sender.total


def queue_empty(root):
    for folder in ("incoming", "active", "deferred"):
        d = os.path.join(root, "queue", folder)
        if any(len(n) == 16 for n in os.listdir(d)):
            return False
    return True


HDR_ID = re.compile(rb"^X-Test-Id: (m\d+\.\d+)\r$", re.M)
HDR_SUM = re.compile(rb"^X-Test-Sum: ([0-9a-f]{64})\r$", re.M)


def read_store(env):
    """{(test id, address): count}, and the corrupt messages."""
    seen, corrupt = {}, []
    for u in USERS:
        addr = f"{u}@{DOMAIN}"
        for _, blob_path, blob in env.messages(addr):
            head, sep, body = blob.partition(b"\r\n\r\n")
            head += b"\r\n"
            m, s = HDR_ID.search(head), HDR_SUM.search(head)
            if not sep or m is None or s is None or \
                    hashlib.sha256(body).hexdigest() != s.group(1).decode():
                corrupt.append((addr, blob_path))
                continue
            key = (m.group(1).decode(), addr)
            seen[key] = seen.get(key, 0) + 1
    return seen, corrupt


def run_crash(env, total, kills, time_limit, nclients=4, seed=None,
              drain_limit=None):
    """Sends, kills, drains and checks; returns a dict of figures and the
    list of problems (empty when all is well)."""
    seed = random.randrange(1 << 30) if seed is None else seed
    t0 = time.monotonic()
    sender = Sender(env.port, total, nclients, t0 + time_limit, seed)
    killer = Killer(env, sender, kills, seed)
    threads = [threading.Thread(target=sender.client, args=(k,))
               for k in range(nclients)]
    for t in threads:
        t.start()
    killer.run()
    for t in threads:
        t.join(timeout=max(1.0, t0 + time_limit + 30 - time.monotonic()))
    sent_at = time.monotonic()
    problems = []
    if any(t.is_alive() for t in threads):
        problems.append("a client did not finish")
    problems += sender.errors + killer.failures
    if sender.given_up:
        problems.append(f"{len(sender.given_up)} messages never got 250 "
                        f"within the time limit")
    # every daemon up, and the queue drained (bounded)
    drain_limit = drain_limit or max(30.0, time_limit / 2)
    end = time.monotonic() + drain_limit
    while time.monotonic() < end and not queue_empty(env.root):
        time.sleep(0.2)
    drained = queue_empty(env.root)
    if not drained:
        problems.append(f"the queue did not drain within {drain_limit:.0f}"
                        f" s")
    for name in DAEMONS:
        try:
            env.wait_state(name, True)
        except AssertionError:
            problems.append(f"{name} is not running at the end")
    corrupt_q = [n for n in os.listdir(os.path.join(env.root, "queue",
                                                    "corrupt"))
                 if not n.startswith(".")]
    if corrupt_q:
        problems.append(f"queue files moved to corrupt/: {corrupt_q[:5]}")
    seen, corrupt = read_store(env)
    lost = [(tid, a) for tid, rs in sender.acked.items() for a in rs
            if seen.get((tid, a), 0) == 0]
    doubled = [(k, n) for k, n in seen.items() if n > 1]
    known = {(tid, a) for tid, rs in sender.acked.items() for a in rs} | \
            {(tid, a) for tid, rs in sender.unacked.items() for a in rs}
    strays = [k for k in seen if k not in known]
    if lost:
        problems.append(f"{len(lost)} lost: {lost[:5]}")
    if doubled:
        problems.append(f"{len(doubled)} duplicated: {doubled[:5]}")
    if corrupt:
        problems.append(f"{len(corrupt)} corrupt: {corrupt[:5]}")
    if strays:
        problems.append(f"{len(strays)} in the wrong mailbox or unknown: "
                        f"{strays[:5]}")
    per = {d: [t for n, t in killer.done if n == d] for d in DAEMONS}
    acked_n = sum(len(r) for r in sender.acked.values())
    unacked_stored = sum(1 for tid, rs in sender.unacked.items()
                         for a in rs if seen.get((tid, a)))
    figures = {
        "seed": seed,
        "messages": total,
        "attempts": len(set(sender.acked) | set(sender.unacked)),
        "acked deliveries": acked_n,
        "unacked but stored": unacked_stored,
        "kills": len(killer.done),
        "kills per daemon": {d: len(v) for d, v in per.items()},
        "restart seconds (max per daemon)":
            {d: round(max(v), 2) if v else None for d, v in per.items()},
        "restart seconds (mean)":
            round(sum(t for _, t in killer.done) / len(killer.done), 2)
            if killer.done else None,
        "send seconds": round(sent_at - t0, 1),
        "total seconds": round(time.monotonic() - t0, 1),
        "lost": len(lost), "duplicated": len(doubled),
        "corrupt": len(corrupt),
        "repeats recognised by the store":
            env.log_text().count("not stored again"),
    }
    return figures, problems


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + test_mta.LIBEXEC_EXTRA)
    e = make_env(make_instance)
    yield e
    print(e.inst.log_tail(60))     # shown when the test failed


def test_crash_1000_messages_24_kills(env):
    figures, problems = run_crash(env, total=1000, kills=24, time_limit=70)
    print("mta crash test:", figures)
    assert not problems, (problems, figures)
    assert figures["kills"] == 24
    assert all(n >= 5 for n in figures["kills per daemon"].values())
    assert figures["acked deliveries"] > 0


def test_qmgr_passes_the_queue_id(env):
    """A message through tern-smtpd reaches the store with the key
    LHLO-NAME/QUEUE-ID (tern-qmgr named it with XQUEUEID)."""
    with smtplib.SMTP("127.0.0.1", env.port, timeout=15) as s:
        s.ehlo("client.example.org")
        s.mail("sender@example.org")
        assert s.rcpt(f"carol@{DOMAIN}")[0] == 250
        code, text = s.data(b"Subject: keyed\r\n\r\nkeyed\r\n")
    assert code == 250
    qid = re.search(rb"queued as ([0-9A-Z]{16})", text).group(1).decode()
    db = os.path.join(env.root, "data", "mbox", "meta.db")

    def keyed():
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return c.execute("SELECT key, account_id, folder FROM"
                             " deliveries WHERE key LIKE ?",
                             (f"%/{qid}",)).fetchall()
        finally:
            c.close()
    rows = env.inst.wait_for(keyed, timeout=15, what="the delivery key")
    assert rows == [(rows[0][0], env.ids[f"carol@{DOMAIN}"], "INBOX")]
    assert rows[0][0].endswith("/" + qid) and len(rows[0][0]) > 17


def test_queue_id_once_and_trusted_only(env):
    addr = f"bob@{DOMAIN}"
    c = test_lmtp.Lmtp(path=os.path.join(env.root, "run", "lmtp.sock"))
    lines = c.lhlo()
    assert "250-XQUEUEID" in lines
    body = "Subject: q\r\nX-Test-Id: q1\r\n\r\nonce\r\n"
    for _ in range(3):
        code, _ = c.cmd("MAIL FROM:<s@example.org> XQUEUEID=ABCDEF0123456789")
        assert code == 250
        assert c.cmd(f"RCPT TO:<{addr}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(test_lmtp.stuff(body))
        code, text = c.reply()
        assert code == 250, text
    # bad values are refused with a clear reply
    for bad in ("", "A-B", "X" * 65):
        code, text = c.cmd(f"MAIL FROM:<s@example.org> XQUEUEID={bad}")
        assert code == 501, (bad, code, text)
    code, _ = c.cmd("MAIL FROM:<s@example.org> XQUEUEID")
    assert code == 501
    c.close()
    got = [b for _, _, b in env.messages(addr) if b"X-Test-Id: q1" in b]
    assert len(got) == 1
    assert env.log_text().count("not stored again") >= 2
    # TCP (lmtp is not a service here: start a TCP listener for it)
    env.inst.write_services(test_mta.services(env.port) +
                            f"lmtp inet 127.0.0.1:{env.port + 3} 1 yes "
                            f"tern-lmtpd\n")
    env.ctl("reload")
    env.wait_state("lmtp", True)
    t = test_lmtp.Lmtp(port=env.port + 3)
    assert "250-XQUEUEID" not in t.lhlo()
    code, _ = t.cmd("MAIL FROM:<s@example.org> XQUEUEID=ABCDEF0123456789")
    assert code == 555
    t.close()
    env.inst.append_conf("lmtp_trusted_networks = 127.0.0.0/8\n")
    env.ctl("reload")
    time.sleep(0.5)
    t = test_lmtp.Lmtp(port=env.port + 3)
    assert "250-XQUEUEID" in t.lhlo()
    t.close()
