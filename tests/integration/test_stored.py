"""tern-stored on a real instance: delivery, group commit, flags, expunge,
quota, folders, protocol errors and crash recovery.

The test speaks the store protocol with its own small codec of
docs/protocols/ipc.md, so the wire format is checked independently of the
C implementation.
"""
import os
import signal
import socket
import sqlite3
import struct
import threading
import time

import pytest

from conftest import build_path, echod_services

STORED = build_path("stored", "tern-stored")
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16


# ---- a minimal IPC codec ----

def encode(mtype, mid, fields):
    body = bytes([1, len(mtype)]) + mtype.encode() + struct.pack(">IH", mid,
                                                                len(fields))
    for name, value in fields:
        if isinstance(value, int):
            body += b"i" + bytes([len(name)]) + name.encode() + \
                struct.pack(">q", value)
        else:
            if isinstance(value, str):
                value = value.encode()
            body += b"s" + bytes([len(name)]) + name.encode() + \
                struct.pack(">I", len(value)) + value
    return struct.pack(">I", len(body)) + body


def decode(payload):
    assert payload[0] == 1
    tlen = payload[1]
    mtype = payload[2:2 + tlen].decode()
    pos = 2 + tlen
    mid, count = struct.unpack(">IH", payload[pos:pos + 6])
    pos += 6
    fields = []
    for _ in range(count):
        kind = payload[pos:pos + 1]
        nlen = payload[pos + 1]
        name = payload[pos + 2:pos + 2 + nlen].decode()
        pos += 2 + nlen
        if kind == b"i":
            fields.append((name, struct.unpack(">q", payload[pos:pos + 8])[0]))
            pos += 8
        else:
            (vlen,) = struct.unpack(">I", payload[pos:pos + 4])
            fields.append((name, payload[pos + 4:pos + 4 + vlen].decode()))
            pos += 4 + vlen
    assert pos == len(payload)
    return mtype, mid, fields


class Msg:
    def __init__(self, mtype, mid, fields):
        self.type, self.id, self.fields = mtype, mid, fields

    def get(self, name, default=None):
        for n, v in self.fields:
            if n == name:
                return v
        return default

    def all(self, name):
        return [v for n, v in self.fields if n == name]

    def __repr__(self):
        return f"Msg({self.type}, {self.id}, {self.fields})"


class Store:
    def __init__(self, root, timeout=30.0):
        self.root = root
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(os.path.join(root, "run", "stored.sock"))
        self.buf = b""
        self.next_id = 0
        hello = self.recv()
        assert hello.type == "hello", hello
        assert hello.get("proto") == "tern-stored"
        assert hello.get("version") == 1

    def close(self):
        self.sock.close()

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    payload = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return Msg(*decode(payload))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("store closed the connection")
            self.buf += chunk

    def send(self, mtype, fields):
        self.next_id += 1
        self.sock.sendall(encode(mtype, self.next_id, fields))
        return self.next_id

    def answer(self, mid):
        """Data frames and the final ok/error frame of request mid."""
        frames = []
        while True:
            m = self.recv()
            assert m.id == mid, m
            if m.type in ("ok", "error"):
                return frames, m
            frames.append(m)

    def call(self, mtype, fields):
        return self.answer(self.send(mtype, fields))

    def ok(self, mtype, fields):
        frames, final = self.call(mtype, fields)
        assert final.type == "ok", final
        return frames, final


def acct(n):
    return [("account", n), ("address", f"user{n}@example.com")]


def spool(root, data):
    tmp = os.path.join(root, "data", "store", "tmp")
    name = f"t{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def message(tag, body="hello"):
    return (f"From: a@example.org\r\nTo: b@example.com\r\n"
            f"Subject: {tag}\r\nX-Test-Id: {tag}\r\n\r\n{body}\r\n").encode()


def deliver_fields(path, rcpts):
    fields = [("file", path)]
    for n, folder, flags in rcpts:
        fields += [("rcpt_account", n),
                   ("rcpt_address", f"user{n}@example.com"),
                   ("rcpt_folder", folder), ("rcpt_flags", flags)]
    return fields


def blob_files(root):
    top = os.path.join(root, "data", "store")
    found = set()
    for a in os.listdir(top):
        if len(a) != 2:
            continue
        for b in os.listdir(os.path.join(top, a)):
            for h in os.listdir(os.path.join(top, a, b)):
                found.add(h)
    return found


def blob_rows(root):
    db = sqlite3.connect(os.path.join(root, "data", "mbox", "meta.db"),
                         timeout=30)
    try:
        return dict(db.execute("SELECT sha256, refcount FROM blobs"))
    finally:
        db.close()


def fetch_all(st, n, folder="INBOX"):
    msgs, first = [], 1
    while True:
        frames, final = st.ok("fetch", acct(n) + [("folder", folder),
                                                  ("first", first)])
        msgs += frames
        if final.get("next") == 0:
            return msgs
        first = final.get("next")


@pytest.fixture
def store(make_instance):
    def services(base):
        return echod_services(
            base, f"stored unix run/stored.sock 1 yes {STORED}\n")
    inst = make_instance(services=services, start=False)
    inst.env["TERN_LIBEXECDIR"] += ":" + build_path("stored")
    inst.ctl("start")
    inst.wait_for(lambda: inst.service("stored")["state"] == "running",
                  what="stored running")
    yield inst
    # a clean stop: no sanitizer report, no error exit of tern-stored
    inst.ctl("stop", check=False, timeout=90)
    text = inst.log_text()
    try:
        with open(os.path.join(inst.root, "log", "master.err"),
                  errors="replace") as f:
            text += f.read()
    except OSError:
        pass
    for bad in ("Sanitizer", "runtime error", "panic:", "batch failed"):
        assert bad not in text, text[-6000:]


def test_deliver_to_three_recipients_is_one_blob(store):
    st = Store(store.root)
    data = message("three")
    path = spool(store.root, data)
    _, ok = st.ok("deliver", deliver_fields(
        path, [(1, "", 0), (2, "INBOX", SEEN), (3, "", 0)]))
    assert ok.all("status") == ["ok", "ok", "ok"]
    assert ok.all("uid") == [1, 1, 1]
    assert ok.get("size") == len(data)
    assert not os.path.exists(path), "spool file not taken"
    assert len(blob_files(store.root)) == 1
    assert blob_rows(store.root) == {ok.get("blob"): 3}
    paths = set()
    for n in (1, 2, 3):
        (m,) = fetch_all(st, n)
        assert m.get("uid") == 1 and m.get("size") == len(data)
        assert m.get("flags") == (SEEN if n == 2 else 0)
        # cached at delivery by the MIME parser
        assert '"three"' in m.get("envelope"), m.get("envelope")
        assert m.get("bodystructure").lower().startswith('("text" "plain"')
        paths.add(m.get("blob"))
    (p,) = paths
    with open(p, "rb") as f:
        assert f.read() == data
    # the same content again is still the same blob
    _, ok = st.ok("deliver", deliver_fields(spool(store.root, data),
                                            [(1, "", 0)]))
    assert ok.all("uid") == [2]
    assert len(blob_files(store.root)) == 1
    st.close()


def test_default_folders_and_folder_ops(store):
    st = Store(store.root)
    frames, _ = st.ok("folder.list", acct(5))
    got = {f.get("name"): f.get("special_use") for f in frames}
    assert got == {"INBOX": "", "Sent": "\\Sent", "Drafts": "\\Drafts",
                   "Trash": "\\Trash", "Junk": "\\Junk",
                   "Archive": "\\Archive"}
    uidv = {f.get("name"): f.get("uidvalidity") for f in frames}
    assert len(set(uidv.values())) == 6
    st.ok("folder.create", acct(5) + [("folder", "Work")])
    st.ok("folder.create", acct(5) + [("folder", "Work/Ünïcode")])
    _, err = st.call("folder.create", acct(5) + [("folder", "Work")])
    assert err.type == "error" and err.get("code") == "exists"
    _, err = st.call("folder.create", acct(5) + [("folder", "a//b")])
    assert err.get("code") == "invalid"
    st.ok("folder.rename", acct(5) + [("folder", "Work"),
                                      ("new_name", "Job")])
    st.ok("folder.subscribe", acct(5) + [("folder", "Job/Ünïcode")])
    frames, _ = st.ok("folder.list", acct(5))
    names = {f.get("name"): f for f in frames}
    assert "Job" in names and "Job/Ünïcode" in names and "Work" not in names
    assert names["Job/Ünïcode"].get("subscribed") == 1
    _, err = st.call("folder.delete", acct(5) + [("folder", "Job")])
    assert err.get("code") == "notempty"
    st.ok("folder.delete", acct(5) + [("folder", "Job/Ünïcode")])
    st.ok("folder.delete", acct(5) + [("folder", "Job")])
    _, err = st.call("folder.delete", acct(5) + [("folder", "INBOX")])
    assert err.get("code") == "invalid"
    _, err = st.call("status", acct(5) + [("folder", "Job")])
    assert err.get("code") == "nofolder"
    st.close()


def test_flags_expunge_quota(store):
    st = Store(store.root)
    sizes = []
    for i in range(3):
        data = message(f"m{i}", "x" * (100 * (i + 1)))
        sizes.append(len(data))
        _, ok = st.ok("append", acct(7) + [
            ("folder", "INBOX"), ("file", spool(store.root, data)),
            ("flags", 0), ("keyword", "$Work"), ("date", 1700000000 + i)])
        assert ok.get("uid") == i + 1
    _, status = st.ok("status", acct(7) + [("folder", "INBOX")])
    assert status.get("exists") == 3 and status.get("unseen") == 3
    assert status.get("uidnext") == 4 and status.get("size") == sum(sizes)
    hms = status.get("highestmodseq")
    _, q = st.ok("quota.get", acct(7))
    assert q.get("used") == sum(sizes) and q.get("messages") == 3
    # +FLAGS \Seen on 1:2: both change, one new MODSEQ
    frames, ok = st.ok("store", acct(7) + [("folder", "INBOX"),
                                           ("uids", "1:2"), ("mode", "+"),
                                           ("flags", SEEN)])
    assert [f.get("uid") for f in frames] == [1, 2]
    assert all(f.get("modseq") > hms for f in frames)
    assert ok.get("highestmodseq") > hms
    _, status = st.ok("status", acct(7) + [("folder", "INBOX")])
    assert status.get("unseen") == 1
    # UNCHANGEDSINCE older than message 1's MODSEQ fails for 1 and 2
    frames, ok = st.ok("store", acct(7) + [
        ("folder", "INBOX"), ("uids", "1:*"), ("mode", "+"),
        ("flags", DELETED), ("unchangedsince", hms)])
    assert [f.get("uid") for f in frames if f.type == "message"] == [3]
    failed = [u for f in frames if f.type == "failed" for u in f.all("uid")]
    assert failed == [1, 2]
    # keywords: -$Work on 3, =\Deleted on 1
    frames, _ = st.ok("store", acct(7) + [
        ("folder", "INBOX"), ("uids", "3"), ("mode", "-"), ("flags", 0),
        ("keyword", "$Work")])
    assert frames[0].get("keywords") == ""
    st.ok("store", acct(7) + [("folder", "INBOX"), ("uids", "1"),
                              ("mode", "="), ("flags", DELETED)])
    # UID EXPUNGE 3 expunges only 3; EXPUNGE then takes 1
    frames, ok = st.ok("expunge", acct(7) + [("folder", "INBOX"),
                                             ("uids", "3")])
    assert [u for f in frames for u in f.all("uid")] == [3]
    exp_modseq = ok.get("highestmodseq")
    frames, ok = st.ok("expunge", acct(7) + [("folder", "INBOX")])
    assert [u for f in frames for u in f.all("uid")] == [1]
    frames, _ = st.ok("vanished", acct(7) + [("folder", "INBOX"),
                                             ("since", exp_modseq)])
    assert [u for f in frames for u in f.all("uid")] == [1]
    frames, _ = st.ok("vanished", acct(7) + [("folder", "INBOX"),
                                             ("since", 0)])
    assert [u for f in frames for u in f.all("uid")] == [1, 3]
    _, q = st.ok("quota.get", acct(7))
    assert q.get("used") == sizes[1] and q.get("messages") == 1
    # the expunged messages' blobs are reclaimed after the commit
    store.wait_for(lambda: len(blob_files(store.root)) == 1,
                   what="blob reclaim")
    # quota: a limit from quota.set and one passed with a delivery
    st.ok("quota.set", acct(7) + [("limit", sizes[1] + 10)])
    _, ok = st.ok("deliver", deliver_fields(
        spool(store.root, message("big", "y" * 500)), [(7, "", 0)]))
    assert ok.all("status") == ["overquota"]
    fields = deliver_fields(spool(store.root, message("small", "")),
                            [(7, "", 0), (8, "", 0)])
    fields += [("rcpt_quota", 0), ("rcpt_quota", 10)]
    _, ok = st.ok("deliver", fields)
    assert ok.all("status") == ["ok", "overquota"]
    _, q = st.ok("quota.get", acct(7))
    assert q.get("limit") == 0
    store.wait_for(lambda: set(blob_files(store.root)) ==
                   {h for h, r in blob_rows(store.root).items() if r > 0},
                   what="no orphaned blob")
    st.close()


def test_bad_requests(store):
    st = Store(store.root)
    other = Store(store.root)
    _, err = st.call("nosuch", [])
    assert err.type == "error" and err.get("code") == "unknown"
    _, err = st.call("status", acct(1) + [("folder", "INBOX"),
                                          ("extra", 1)])
    assert err.get("code") == "invalid" and "extra" in err.get("message")
    _, err = st.call("status", [("account", 1), ("folder", "INBOX")])
    assert err.get("code") == "invalid"
    _, err = st.call("deliver", [("file", "/etc/passwd"),
                                 ("rcpt_account", 1),
                                 ("rcpt_address", "u@example.com")])
    assert err.get("code") == "nofile"
    assert os.path.exists("/etc/passwd")
    _, err = st.call("fetch", acct(1) + [("folder", "INBOX"),
                                         ("first", 0)])
    assert err.get("code") == "invalid"
    _, err = st.call("store", acct(1) + [("folder", "INBOX"),
                                         ("uids", "1:x"), ("mode", "+")])
    assert err.get("code") == "invalid"
    # a broken frame closes that client only
    st.sock.sendall(b"\x00\x00\x00\x09\x02" + b"\x00" * 8)
    with pytest.raises((ConnectionError, OSError)):
        st.recv()
    other.ok("status", acct(1) + [("folder", "INBOX")])
    other.close()
    st.close()


def deliver_stream(root, account, tags, acked, errors, window=8,
                   deadline=None):
    """Delivers one message per tag over one connection, pipelined; stores
    (tag, uid) for each acknowledged one.  Reconnects after a drop."""
    pending = list(tags)
    while pending and (deadline is None or time.monotonic() < deadline):
        try:
            st = Store(root, timeout=20)
        except OSError:
            time.sleep(0.05)
            continue
        inflight = {}
        try:
            while pending or inflight:
                while pending and len(inflight) < window:
                    tag = pending.pop(0)
                    path = spool(root, message(tag))
                    mid = st.send("deliver", deliver_fields(
                        path, [(account, "", 0)]))
                    inflight[mid] = tag
                m = st.recv()
                tag = inflight.pop(m.id)
                if m.type == "ok" and m.all("status") == ["ok"]:
                    acked.append((tag, m.all("uid")[0]))
                else:
                    errors.append((tag, m))
        except (OSError, ConnectionError):
            pass    # unacknowledged ones are simply not counted
        finally:
            st.close()
    return acked


def test_concurrent_deliveries_group_commit(store):
    acked, errors, threads = [], [], []
    start = time.monotonic()
    for t in range(5):
        tags = [f"c{t}-{i}" for i in range(40)]
        th = threading.Thread(target=deliver_stream, args=(
            store.root, 20, tags, acked, errors))
        th.start()
        threads.append(th)
    for th in threads:
        th.join(timeout=120)
    assert time.monotonic() - start < 120
    assert errors == []
    assert len(acked) == 200
    uids = [u for _, u in acked]
    assert len(set(uids)) == 200
    st = Store(store.root)
    msgs = fetch_all(st, 20)
    got = [m.get("uid") for m in msgs]
    assert got == sorted(got) and len(got) == 200
    assert set(got) == set(uids)
    by_uid = {m.get("uid"): m for m in msgs}
    for tag, uid in acked[:20]:
        with open(by_uid[uid].get("blob"), "rb") as f:
            assert f"X-Test-Id: {tag}\r\n".encode() in f.read()
    st.close()


def test_kill9_during_deliveries_loses_nothing_acknowledged(store):
    acked, errors, threads = [], [], []
    deadline = time.monotonic() + 120
    old = store.service("stored")["pids"][0]
    for t in range(3):
        tags = [f"k{t}-{i}" for i in range(100)]
        th = threading.Thread(target=deliver_stream, args=(
            store.root, 30, tags, acked, errors, 8, deadline))
        th.start()
        threads.append(th)
    store.wait_for(lambda: len(acked) >= 60, timeout=60,
                   what="some deliveries acknowledged")
    os.kill(old, signal.SIGKILL)
    at_kill = len(acked)
    store.wait_for(lambda: (lambda s: s["state"] == "running" and s["pids"]
                            and s["pids"][0] != old)(
                                store.service("stored")),
                   timeout=30, what="stored restarted")
    for th in threads:
        th.join(timeout=150)
    assert not any(th.is_alive() for th in threads)
    assert at_kill < 300, "the kill came after the last delivery"
    st = Store(store.root)
    msgs = fetch_all(st, 30)
    print(f"acked at kill {at_kill}, acked {len(acked)}, "
          f"stored {len(msgs)}")
    seen = {}
    for m in msgs:
        with open(m.get("blob"), "rb") as f:
            text = f.read().decode()
        tag = text.split("X-Test-Id: ")[1].split("\r\n")[0]
        seen.setdefault(tag, []).append(m.get("uid"))
    for tag, uid in acked:
        assert seen.get(tag) == [uid], (tag, uid, seen.get(tag))
    assert all(len(v) == 1 for v in seen.values())
    uids = [m.get("uid") for m in msgs]
    assert uids == sorted(set(uids))
    # no orphaned blob: files on disk = referenced rows, counts agree
    rows = blob_rows(store.root)
    assert set(blob_files(store.root)) == set(rows)
    assert all(r == 1 for r in rows.values())
    assert len(rows) == len(msgs)
    _, q = st.ok("quota.get", acct(30))
    assert q.get("messages") == len(msgs)
    st.close()
