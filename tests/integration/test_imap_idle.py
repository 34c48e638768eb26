"""tern-imapd: IDLE push (EXISTS after an LMTP delivery, FETCH FLAGS and
EXPUNGE after another session's STORE and EXPUNGE, each within 1 s),
NOOP seeing the same, two sessions on one folder (no EXPUNGE during
FETCH, STORE or SEARCH, announced at NOOP, sequence numbers consistent),
and concurrent APPENDs."""
import re
import threading
import time

import pytest

import imapenv
from imapenv import acct, flags_of, need_cap, simple_message, srv  # noqa

PUSH_WITHIN = 1.0


def start_idle(r):
    t = r.begin("IDLE")
    resp = r.response(timeout=10)
    assert resp.startswith(b"+"), resp
    return t


def stop_idle(r, t, got):
    r.send("DONE\r\n")
    while True:
        resp = r.response(timeout=10)
        if resp.startswith(t.encode() + b" "):
            assert resp.startswith(t.encode() + b" OK"), resp
            return
        got.append(resp)


def wait_for(r, rx, timeout, got):
    """Reads responses until one matches rx (bytes regex); returns the
    elapsed time, or None when none came within timeout."""
    t0 = time.monotonic()
    end = t0 + timeout
    while time.monotonic() < end:
        resp = r.maybe_response(max(0.01, end - time.monotonic()))
        if resp is None:
            break
        got.append(resp)
        if re.search(rx, resp):
            return time.monotonic() - t0
    return None


@pytest.fixture
def pair(srv, acct):
    for i in range(3):
        srv.deliver(acct, simple_message(f"idle{i}"))
    a = srv.raw(acct)
    need_cap(srv, a.capabilities(), "IDLE")
    a.select()
    b = srv.raw(acct)
    b.select()
    yield a, b, acct
    a.close()
    b.close()


def test_idle_push_delivery(srv, pair):
    a, b, acct = pair
    t = start_idle(a)
    got = []
    time.sleep(0.2)
    srv.deliver(acct, simple_message("pushed"), via="lmtp")
    took = wait_for(a, rb"^\* 4 EXISTS\r\n", PUSH_WITHIN, got)
    assert took is not None, got
    stop_idle(a, t, got)
    res = a.ok("FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"pushed" in str(res.fetches()).encode()


def test_idle_push_flags_and_expunge(srv, pair):
    a, b, acct = pair
    t = start_idle(a)
    got = []
    time.sleep(0.2)
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    took = wait_for(a, rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged", PUSH_WITHIN,
                    got)
    assert took is not None, got
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    took = wait_for(a, rb"^\* 2 EXPUNGE\r\n", PUSH_WITHIN, got)
    assert took is not None, got
    stop_idle(a, t, got)
    assert a.ok("SEARCH ALL").named("SEARCH")[0].split()[2:] == \
        [b"1", b"2"]


def test_idle_in_authenticated_state_and_errors(srv, acct):
    r = srv.raw(acct)
    t = start_idle(r)
    r.send("DONE\r\n")
    assert r.response(timeout=10).startswith(t.encode() + b" OK")
    t = start_idle(r)
    r.send("NOT-DONE\r\n")
    resp = r.response(timeout=10)
    assert resp.startswith(t.encode() + b" BAD"), resp
    r.ok("NOOP")
    r.close()


def test_noop_sees_delivery_and_flags(srv, pair):
    a, b, acct = pair
    srv.deliver(acct, simple_message("noop sees"), via="lmtp")
    t0 = time.monotonic()
    seen = False
    while time.monotonic() - t0 < PUSH_WITHIN:
        if a.ok("NOOP").numbered("EXISTS") == [4]:
            seen = True
            break
        time.sleep(0.05)
    assert seen, "no EXISTS at NOOP within 1 s of the delivery"
    b.ok("STORE 3 +FLAGS (\\Answered)")
    t0 = time.monotonic()
    seen = None
    while time.monotonic() - t0 < PUSH_WITHIN and seen is None:
        for seq, it in a.ok("NOOP").fetches():
            if seq == 3 and "\\answered" in flags_of(it):
                seen = it
        time.sleep(0.05)
    assert seen is not None


def test_expunge_not_announced_during_fetch_store_search(srv, pair):
    a, b, acct = pair
    uids = {seq: it["UID"] for seq, it in a.ok("FETCH 1:* UID").fetches()}
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    time.sleep(0.5)
    # FETCH, STORE and SEARCH (not UID) must not announce it: the client
    # could not tell which sequence numbers they speak of.
    for cmd in ("FETCH 1:* (UID FLAGS)", "STORE 3 +FLAGS (\\Seen)",
                "SEARCH ALL", "FETCH 3 (UID)"):
        res = a.cmd(cmd)
        assert not res.numbered("EXPUNGE"), (cmd, res)
        # and their sequence numbers are still those of before
        for seq, it in res.fetches():
            assert 1 <= seq <= 3
            if "UID" in it:
                assert it["UID"] == uids[seq], (seq, it, uids)
        if cmd.startswith("SEARCH") and res.status == "OK":
            nums = [int(x) for x in res.named("SEARCH")[0].split()[2:]]
            assert set(nums) <= {1, 2, 3}
    res = a.ok("NOOP")
    assert res.numbered("EXPUNGE") == [2], res
    got = {seq: it["UID"] for seq, it in a.ok("FETCH 1:* UID").fetches()}
    assert got == {1: uids[1], 2: uids[3]}


def test_two_sessions_store_and_append(srv, pair):
    a, b, acct = pair
    b.ok("STORE 1:3 +FLAGS (\\Seen)")
    b.ok("APPEND INBOX ", imapenv.Lit(simple_message("from b")))
    res = a.ok("NOOP")
    if not res.numbered("EXISTS"):
        time.sleep(PUSH_WITHIN)
        res2 = a.ok("NOOP")
        res.untagged += res2.untagged
    assert res.numbered("EXISTS")[-1] == 4, res
    fl = {seq: flags_of(it) for seq, it in a.ok("FETCH 1:4 FLAGS")
          .fetches()}
    assert fl == {1: ["\\seen"], 2: ["\\seen"], 3: ["\\seen"], 4: []}


def test_concurrent_appends(srv, acct):
    errors = []
    per, workers = 10, 4

    def worker(n):
        try:
            r = srv.raw(acct)
            for i in range(per):
                res = r.cmd("APPEND INBOX ", imapenv.Lit(
                    simple_message(f"w{n}-{i}")))
                assert res.status == "OK", res
            r.close()
        except Exception as e:      # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,))
               for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    r = srv.raw(acct)
    assert r.select().numbered("EXISTS") == [per * workers]
    res = r.ok("FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    uids = [it["UID"] for _, it in res.fetches()]
    assert len(set(uids)) == per * workers and uids == sorted(uids)
    subjects = set(re.findall(rb"Subject: (w\d+-\d+)", b"".join(
        res.untagged)))
    assert len(subjects) == per * workers
    r.close()


def test_push_after_many_folders(srv, acct):
    """A session that selected 80 folders one after the other (the server
    may keep watching what they were) still gets pushes for the folder it
    has selected now."""
    r = srv.raw(acct)
    for i in range(80):
        r.ok(f"CREATE F{i}")
    for i in range(80):
        r.select(f"F{i}")
    t = start_idle(r)
    got = []
    time.sleep(0.2)
    srv.deliver(acct, simple_message("to the last"), folder="F79")
    took = wait_for(r, rb"^\* 1 EXISTS\r\n", PUSH_WITHIN * 5, got)
    assert took is not None, got
    stop_idle(r, t, got)
    r.close()
    refused = [line for line in srv.log_text().splitlines()
               if "warning" in line and "watch" in line]
    assert refused == [], refused
