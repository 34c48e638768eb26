"""tern-stored on a real instance: delivery, group commit, flags, expunge,
quota, folders, protocol errors and crash recovery.

The test speaks the store protocol with the Python codec of
docs/protocols/ipc.md (ternipc.py), so the wire format is checked
independently of the C implementation.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

import ternipc
from conftest import TERNCTL, build_path, echod_services

STORED = build_path("stored", "tern-stored")
SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16


class Store(ternipc.Client):
    def __init__(self, root, timeout=30.0):
        self.root = root
        super().__init__(os.path.join(root, "run", "stored.sock"),
                         "tern-stored", 1, timeout)


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
    """The blob files of a store: DIR/ab/<hash>, or DIR/ab/cd/<hash> in
    a store of the nested layout."""
    top = os.path.join(root, "data", "store")
    found = set()
    for a in os.listdir(top):
        if len(a) != 2:
            continue
        for b in os.listdir(os.path.join(top, a)):
            if len(b) == 64:
                found.add(b)
                continue
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


def start_store(make_instance, conf="", prepare=None):
    def services(base):
        return echod_services(
            base, f"stored unix run/stored.sock 1 yes {STORED}\n")
    inst = make_instance(services=services, conf=conf, start=False)
    inst.env["TERN_LIBEXECDIR"] += ":" + build_path("stored")
    if prepare is not None:
        prepare(inst.root)
    inst.ctl("start")
    inst.wait_for(lambda: inst.service("stored")["state"] == "running",
                  what="stored running")
    return inst


def stop_and_check(inst):
    # a clean stop: no sanitizer report, no error exit of tern-stored
    inst.ctl("stop", check=False, timeout=90)
    found, text = inst.problems_logged(extra=("batch failed",))
    assert not found, text[-6000:]


@pytest.fixture
def store(make_instance):
    inst = start_store(make_instance)
    yield inst
    stop_and_check(inst)


@pytest.fixture
def small_backlog_store(make_instance):
    inst = start_store(make_instance,
                       conf="store_notify_backlog_max = 16k\n")
    yield inst
    stop_and_check(inst)


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
    assert status.get("deleted") == 0
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
    _, status = st.ok("status", acct(7) + [("folder", "INBOX")])
    assert status.get("deleted") == 1
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


def test_expunged_blob_delivered_again_keeps_its_file(store):
    """A blob losing its last reference (expunge) while the same content
    is delivered right behind it, maybe in the batch being filed while the
    expunge commits: the new message's blob file must stay."""
    st = Store(store.root)
    same = message("again", "same body every time")
    for rnd in range(30):
        if rnd == 0:
            st.ok("append", acct(70) + [
                ("folder", "INBOX"), ("file", spool(store.root, same)),
                ("flags", DELETED)])
        # other messages keep the filer busy, so that the expunge and the
        # new copy are likely taken in consecutive batches
        ids = [st.send("append", acct(71) + [
            ("folder", "INBOX"),
            ("file", spool(store.root, message(f"fill{rnd}.{i}"))),
            ("flags", 0)]) for i in range(6)]
        ids.append(st.send("expunge", acct(70) + [("folder", "INBOX")]))
        ids.append(st.send("append", acct(70) + [
            ("folder", "INBOX"), ("file", spool(store.root, same)),
            ("flags", DELETED)]))
        for mid in ids:
            _, final = st.answer(mid)
            assert final.type == "ok", final
        msgs = fetch_all(st, 70)
        assert len(msgs) == 1
        with open(msgs[0].get("blob"), "rb") as f:
            assert f.read() == same
    st.close()
    rows = blob_rows(store.root)
    files = blob_files(store.root)
    assert all(h in files for h, refs in rows.items() if refs > 0)


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


def test_concurrent_same_content_is_one_blob_each(store):
    """Identical messages taken by several helper threads at once (the
    shard directories created concurrently) end as one blob each, with
    every reference counted."""
    acked, errors, threads = [], [], []
    tags = [f"same-{i}" for i in range(12)]
    for t in range(4):
        th = threading.Thread(target=deliver_stream, args=(
            store.root, 21 + t, list(tags), acked, errors))
        th.start()
        threads.append(th)
    for th in threads:
        th.join(timeout=120)
    assert errors == []
    assert len(acked) == 4 * len(tags)
    rows = blob_rows(store.root)
    st = Store(store.root)
    blobs = {}
    for account in range(21, 25):
        for m in fetch_all(st, account):
            blobs.setdefault(m.get("blob"), 0)
            blobs[m.get("blob")] += 1
    st.close()
    assert len(blobs) == len(tags)
    for path, n in blobs.items():
        assert n == 4
        assert os.path.isfile(path)
        assert rows[os.path.basename(path)] == 4
    assert os.listdir(os.path.join(store.root, "data", "store", "tmp")) == []


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


# ---- copy and move (UIDPLUS) ----

def append_n(st, root, n, account, folder="INBOX", prefix="m"):
    """Appends n messages pipelined; returns their UIDs."""
    ids = [st.send("append", acct(account) + [
        ("folder", folder), ("file", spool(root, message(f"{prefix}{i}"))),
        ("flags", 0)]) for i in range(n)]
    uids = []
    for mid in ids:
        _, ok = st.answer(mid)
        assert ok.type == "ok", ok
        uids.append(ok.get("uid"))
    return uids


def pairs(frames):
    got = []
    for f in frames:
        assert f.type == "copied", f
        got += list(zip(f.all("uid"), f.all("new_uid")))
    return got


def folder_info(st, n):
    frames, _ = st.ok("folder.list", acct(n))
    return {f.get("name"): f for f in frames}


def test_copy_and_move_uidplus(store):
    st = Store(store.root)
    assert append_n(st, store.root, 3, 40) == [1, 2, 3]
    st.ok("store", acct(40) + [("folder", "INBOX"), ("uids", "2"),
                               ("mode", "+"), ("flags", FLAGGED)])
    info = folder_info(st, 40)
    # COPY 1:2 INBOX -> Archive: COPYUID <uidvalidity> 1:2 1:2
    frames, ok = st.ok("copy", acct(40) + [("folder", "INBOX"),
                                          ("uids", "2,1:2"),
                                          ("to", "Archive")])
    assert pairs(frames) == [(1, 1), (2, 2)]
    assert ok.get("count") == 2
    assert ok.get("uidvalidity") == info["Archive"].get("uidvalidity")
    assert ok.get("highestmodseq") > info["Archive"].get("highestmodseq")
    archived = fetch_all(st, 40, "Archive")
    assert [m.get("flags") for m in archived] == [0, FLAGGED]
    assert '"m1"' in archived[1].get("envelope")
    # copies share the blob: one more reference each, more quota used
    rows = blob_rows(store.root)
    assert sorted(rows.values()) == [1, 2, 2]
    _, q = st.ok("quota.get", acct(40))
    assert q.get("messages") == 5
    # MOVE 2:3 INBOX -> Trash, atomically expunged in the source
    _, before = st.ok("status", acct(40) + [("folder", "INBOX")])
    frames, ok = st.ok("move", acct(40) + [("folder", "INBOX"),
                                          ("uids", "2:*"), ("to", "Trash")])
    assert pairs(frames) == [(2, 1), (3, 2)]
    assert ok.get("uidvalidity") == info["Trash"].get("uidvalidity")
    assert ok.get("src_highestmodseq") > before.get("highestmodseq")
    assert [m.get("uid") for m in fetch_all(st, 40)] == [1]
    assert [m.get("flags") for m in fetch_all(st, 40, "Trash")] == \
        [FLAGGED, 0]
    frames, _ = st.ok("vanished", acct(40) + [
        ("folder", "INBOX"), ("since", before.get("highestmodseq"))])
    assert [u for f in frames for u in f.all("uid")] == [2, 3]
    assert sorted(blob_rows(store.root).values()) == [1, 2, 2]
    _, q = st.ok("quota.get", acct(40))
    assert q.get("messages") == 5
    # errors: no target (TRYCREATE), same folder, over quota, bad set
    _, err = st.call("move", acct(40) + [("folder", "Trash"),
                                         ("uids", "1"), ("to", "Nope")])
    assert err.get("code") == "notarget"
    _, err = st.call("move", acct(40) + [("folder", "Trash"),
                                         ("uids", "1"), ("to", "trash")])
    assert err.get("code") == "notarget"
    _, err = st.call("move", acct(40) + [("folder", "Trash"),
                                         ("uids", "1"), ("to", "Trash")])
    assert err.get("code") == "invalid"
    st.ok("quota.set", acct(40) + [("limit", q.get("used") + 10)])
    _, err = st.call("copy", acct(40) + [("folder", "Trash"),
                                         ("uids", "1:*"), ("to", "Junk")])
    assert err.get("code") == "overquota"
    assert fetch_all(st, 40, "Junk") == []
    _, err = st.call("copy", acct(40) + [("folder", "Trash"),
                                         ("uids", "x"), ("to", "Junk")])
    assert err.get("code") == "invalid"
    # nothing matched: ok, no pairs
    frames, ok = st.ok("copy", acct(40) + [("folder", "Trash"),
                                          ("uids", "99"), ("to", "Junk")])
    assert frames == [] and ok.get("count") == 0
    st.close()


# ---- change notifications ----

def events(client, n, timeout=10.0):
    """The next n unsolicited frames (id 0)."""
    client.sock.settimeout(timeout)
    got = []
    while len(got) < n:
        m = client.recv()
        assert m.id == 0, m
        got.append(m)
    return got


def test_notifications_between_connections(store):
    watcher, folder_watcher, actor = (Store(store.root) for _ in range(3))
    watcher.ok("watch", [("account", 41)])
    folder_watcher.ok("watch", [("account", 41), ("folder", "Trash")])
    _, err = watcher.call("watch", [("account", 41), ("folder", "a//b")])
    assert err.get("code") == "invalid"
    # a new message: the actor gets its answer, the watcher an event
    uids = append_n(actor, store.root, 1, 41)
    (ev,) = events(watcher, 1)
    assert ev.type == "notify.new"
    assert (ev.get("account"), ev.get("folder"), ev.get("uid")) == \
        (41, "INBOX", uids[0])
    assert ev.get("modseq") > 0
    # another account's change is not seen
    append_n(actor, store.root, 1, 99)
    # flags
    frames, ok = actor.ok("store", acct(41) + [
        ("folder", "INBOX"), ("uids", "1"), ("mode", "+"),
        ("flags", SEEN), ("keyword", "$Todo")])
    (ev,) = events(watcher, 1)
    assert ev.type == "notify.flags"
    assert (ev.get("folder"), ev.get("uid"), ev.get("flags"),
            ev.get("keywords")) == ("INBOX", 1, SEEN, "$Todo")
    assert ev.get("modseq") == frames[0].get("modseq")
    # a move: new in Trash and expunged from INBOX, in one commit
    frames, ok = actor.ok("move", acct(41) + [
        ("folder", "INBOX"), ("uids", "1"), ("to", "Trash")])
    evs = events(watcher, 2)
    assert [(e.type, e.get("folder"), e.get("uid")) for e in evs] == [
        ("notify.new", "Trash", 1), ("notify.expunge", "INBOX", 1)]
    assert evs[1].get("modseq") == ok.get("src_highestmodseq")
    (ev,) = events(folder_watcher, 1)
    assert (ev.type, ev.get("folder"), ev.get("uid")) == \
        ("notify.new", "Trash", 1)
    # expunge
    actor.ok("store", acct(41) + [("folder", "Trash"), ("uids", "1"),
                                  ("mode", "+"), ("flags", DELETED)])
    actor.ok("expunge", acct(41) + [("folder", "Trash")])
    evs = events(watcher, 2)
    assert [e.type for e in evs] == ["notify.flags", "notify.expunge"]
    evs = events(folder_watcher, 2)
    assert [e.type for e in evs] == ["notify.flags", "notify.expunge"]
    # a failed request announces nothing; neither does one's own change
    _, err = actor.call("append", acct(41) + [
        ("folder", "Nope"), ("file", spool(store.root, message("x")))])
    assert err.get("code") == "nofolder"
    watcher.ok("watch", [("account", 41)])      # the same watch again
    append_n(watcher, store.root, 1, 41)        # its own: no event
    watcher.ok("unwatch", [("account", 41)])
    append_n(actor, store.root, 1, 41)
    # the next frame on each is the answer to its own request
    watcher.ok("status", acct(41) + [("folder", "INBOX")])
    folder_watcher.ok("status", acct(41) + [("folder", "INBOX")])
    for c in (watcher, folder_watcher, actor):
        c.close()


def test_notifications_slow_reader_is_dropped(small_backlog_store):
    inst = small_backlog_store
    slow, actor = Store(inst.root), Store(inst.root)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.ok("watch", [("account", 42)])
    append_n(actor, inst.root, 100, 42)
    mode = "+"
    # Dropped once its backlog is over the limit and it has read nothing
    # for 5 s: events keep coming until then (bounded in time).
    end = time.monotonic() + 40
    while time.monotonic() < end:
        actor.ok("store", acct(42) + [("folder", "INBOX"), ("uids", "1:*"),
                                      ("mode", mode), ("flags", SEEN)])
        mode = "-" if mode == "+" else "+"
        if "does not read its notifications" in inst.log_text():
            break
        time.sleep(0.05)
    assert "does not read its notifications" in inst.log_text()
    # the store keeps serving the others
    actor.ok("status", acct(42) + [("folder", "INBOX")])
    # the slow reader finds its events, then the error, then the end
    slow.sock.settimeout(20)
    seen, last = 0, None
    with pytest.raises(ConnectionError):
        while True:
            last = slow.recv()
            if last.type != "error":
                assert last.type.startswith("notify.") and last.id == 0
                seen += 1
    assert seen > 0
    assert last.type == "error" and last.id == 0
    assert last.get("code") == "overflow"
    actor.close()
    slow.close()


def test_notifications_reader_that_keeps_reading_stays(small_backlog_store):
    """A client whose backlog stays over store_notify_backlog_max but
    which keeps reading (a busy tern-imapd working through answers and
    events) is not dropped."""
    inst = small_backlog_store
    slow, actor = Store(inst.root), Store(inst.root)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.ok("watch", [("account", 42)])
    append_n(actor, inst.root, 100, 42)
    got = {"bytes": 0, "eof": False}
    stop = threading.Event()

    def reader():
        # About 20 KB/s: much slower than the events come.
        slow.sock.settimeout(1)
        while not stop.is_set():
            try:
                chunk = slow.sock.recv(1024)
            except socket.timeout:
                continue
            if not chunk:
                got["eof"] = True
                return
            got["bytes"] += len(chunk)
            time.sleep(0.05)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    mode, end = "+", time.monotonic() + 8
    while time.monotonic() < end:
        actor.ok("store", acct(42) + [("folder", "INBOX"), ("uids", "1:*"),
                                      ("mode", mode), ("flags", SEEN)])
        mode = "-" if mode == "+" else "+"
        time.sleep(0.03)
    time.sleep(2)
    stop.set()
    t.join(timeout=10)
    assert "does not read its notifications" not in inst.log_text()
    assert not got["eof"] and got["bytes"] > 100000, got
    actor.close()
    slow.close()


# ---- ternctl store check ----

def meta_db(root):
    return os.path.join(root, "data", "mbox", "meta.db")


def give_back(root, *paths):
    """Files made by the test as root go to the store's owner."""
    st = os.stat(os.path.join(root, "data", "store"))
    for p in paths:
        os.chown(p, st.st_uid, st.st_gid)


def test_nested_layout_store_keeps_its_layout(make_instance):
    """A store of the nested layout (DIR/ab/cd/<hash>, before the flat
    one) is recognised and kept: its blobs are found, new ones go two
    levels deep too, and store check finds nothing wrong."""
    def nested(root):
        top = os.path.join(root, "data", "store")
        os.makedirs(os.path.join(top, "00", "00"))
        owner = os.stat(os.path.join(root, "data"))
        for p in (top, os.path.join(top, "00"),
                  os.path.join(top, "00", "00")):
            os.chown(p, owner.st_uid, owner.st_gid)
            os.chmod(p, 0o750)
    inst = start_store(make_instance, prepare=nested)
    try:
        st = Store(inst.root)
        append_n(st, inst.root, 3, 60)
        msgs = fetch_all(st, 60)
        st.close()
        assert len(msgs) == 3
        for m in msgs:
            path = m.get("blob")
            h = os.path.basename(path)
            assert path == os.path.join(inst.root, "data", "store", h[:2],
                                        h[2:4], h)
            with open(path, "rb") as f:
                assert f.read().startswith(b"From: a@example.org")
        assert blob_files(inst.root) == {os.path.basename(m.get("blob"))
                                         for m in msgs}
    finally:
        stop_and_check(inst)
    p = inst.ctl("store", "check")
    assert "no problems found" in p.stdout, p.stdout


def test_new_store_is_flat(store):
    top = os.path.join(store.root, "data", "store")
    assert all(os.path.isdir(os.path.join(top, f"{i:02x}"))
               for i in range(256))
    st = Store(store.root)
    append_n(st, store.root, 2, 61)
    msgs = fetch_all(st, 61)
    st.close()
    for m in msgs:
        h = os.path.basename(m.get("blob"))
        assert m.get("blob") == os.path.join(top, h[:2], h)


def test_store_check_finds_and_repairs(store):
    st = Store(store.root)
    append_n(st, store.root, 2, 50)
    append_n(st, store.root, 1, 51, prefix="other")
    st.close()
    # refused while tern-stored runs (it holds the store's lock)
    p = store.ctl("store", "check", check=False)
    assert p.returncode == 1
    assert "tern-stored is running" in p.stderr
    assert "ternctl stop" in p.stderr
    store.ctl("stop", timeout=90)
    p = store.ctl("store", "check")
    assert "no problems found" in p.stdout, p.stdout
    # plant: an orphan blob file, a broken quota, a stale spool file, a
    # message whose file is gone, a wrong reference count
    orphan = "ab" * 32
    shard = os.path.join(store.root, "data", "store", "ab")
    assert os.path.isdir(shard)     # all 256 shards exist from the start
    with open(os.path.join(shard, orphan), "wb") as f:
        f.write(b"nobody's message\r\n")
    give_back(store.root, os.path.join(shard, orphan))
    stale = os.path.join(store.root, "data", "store", "tmp", "left.1")
    with open(stale, "wb") as f:
        f.write(b"half a message")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    db = sqlite3.connect(meta_db(store.root))
    db.execute("UPDATE accounts SET quota_used = quota_used + 1000,"
               " quota_messages = 9 WHERE id = 50")
    (lost,) = db.execute("SELECT m.blob FROM messages m JOIN folders f"
                         " ON f.id = m.folder_id WHERE f.account_id = 51"
                         ).fetchone()
    (kept,) = db.execute("SELECT m.blob FROM messages m JOIN folders f"
                         " ON f.id = m.folder_id WHERE f.account_id = 50"
                         " AND m.uid = 1").fetchone()
    db.execute("UPDATE blobs SET refcount = 7 WHERE sha256 = ?", (kept,))
    db.commit()
    db.close()
    os.unlink(os.path.join(store.root, "data", "store", lost[:2], lost))
    p = store.ctl("store", "check", check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    out = p.stdout
    assert f"orphan blob file: {shard}/{orphan} (no metadata row)\n" in out
    assert "quota usage: user50@example.com (account 50) records" in out
    assert f"stale spool file: {stale}" in out
    assert "missing blob file: " in out and lost in out
    assert "user51@example.com (account 51) INBOX uid 1" in out
    assert f"bad reference count: blob {kept} counts 7, 1 message(s)" in out
    assert "5 problem(s) found" in out, out
    # an account limits the quota check only
    p = store.ctl("store", "check", "user51@example.com", check=False)
    assert "quota usage" not in p.stdout
    assert "no account nobody@example.com" in store.ctl(
        "store", "check", "nobody@example.com", check=False).stderr
    # nothing was changed by a check without --repair
    assert os.path.exists(stale)
    p = store.ctl("store", "check", "--repair")
    assert "5 problem(s) found and repaired" in p.stdout, p.stdout
    assert not os.path.exists(os.path.join(shard, orphan))
    assert not os.path.exists(stale)
    p = store.ctl("store", "check")
    assert "no problems found" in p.stdout, p.stdout
    # the store starts on the repaired files and agrees
    store.ctl("start")
    store.wait_for(lambda: store.service("stored")["state"] == "running",
                   what="stored running")
    st = Store(store.root)
    _, q = st.ok("quota.get", acct(50))
    assert q.get("messages") == 2
    assert fetch_all(st, 51) == []
    frames, _ = st.ok("vanished", acct(51) + [("folder", "INBOX"),
                                              ("since", 0)])
    assert [u for f in frames for u in f.all("uid")] == [1]
    st.close()


def test_stale_spool_removed_at_start(store):
    stale = os.path.join(store.root, "data", "store", "tmp", "old.1")
    fresh = os.path.join(store.root, "data", "store", "tmp", "new.1")
    for p in (stale, fresh):
        with open(p, "wb") as f:
            f.write(b"x")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    store.ctl("restart", timeout=90)
    store.wait_for(lambda: store.service("stored")["state"] == "running",
                   what="stored running")
    store.wait_for(lambda: not os.path.exists(stale), what="stale removed")
    assert os.path.exists(fresh)
    assert "removing stale spool file" in store.log_text()


# ---- ternctl mailbox ----

def test_mailbox_ls_cat(store):
    store.ctl("domain", "add", "example.com")
    store.ctl("account", "add", "ann@example.com", "--no-password")
    aid = json.loads(store.ctl("account", "show", "ann@example.com",
                               "--json").stdout)["id"]
    st = Store(store.root)
    data = message("Quarterly report", "figures")
    _, ok = st.ok("deliver", [("file", spool(store.root, data)),
                              ("rcpt_account", aid),
                              ("rcpt_address", "ann@example.com"),
                              ("rcpt_folder", ""), ("rcpt_flags", SEEN)])
    assert ok.all("status") == ["ok"]
    st.close()
    out = store.ctl("mailbox", "ls", "ann@example.com").stdout
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert set(lines) == {"INBOX", "Sent", "Drafts", "Trash", "Junk",
                          "Archive"}
    assert lines["INBOX"][2:5] == ["1", "0", str(len(data))]
    assert lines["Sent"][1] == "\\Sent"
    out = store.ctl("mailbox", "ls", "ann@example.com", "INBOX").stdout
    (line,) = out.splitlines()[1:]
    assert line.split()[0] == "1"
    assert str(len(data)) in line and "\\Seen" in line
    assert line.endswith("Quarterly report")
    p = subprocess.run([TERNCTL, "-r", store.root, "mailbox", "cat",
                        "ann@example.com", "INBOX", "1"], env=store.env,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data
    p = store.ctl("mailbox", "cat", "ann@example.com", "INBOX", "2",
                  check=False)
    assert p.returncode == 1 and "no message with UID 2" in p.stderr
    p = store.ctl("mailbox", "ls", "ghost@example.com", check=False)
    assert p.returncode == 1
    p = store.ctl("mailbox", "ls", check=False)
    assert p.returncode == 2
