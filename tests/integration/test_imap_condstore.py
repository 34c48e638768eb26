"""tern-imapd: CONDSTORE (MODSEQ, HIGHESTMODSEQ, CHANGEDSINCE,
UNCHANGEDSINCE with MODIFIED, SEARCH MODSEQ) and QRESYNC (SELECT with
QRESYNC parameters after changes by another session, VANISHED (EARLIER),
VANISHED instead of EXPUNGE, CLOSED)."""
import re

import pytest

from imapenv import (acct, expand_set, flags_of, need_cap, parse,  # noqa
                     simple_message, srv)


def highest(res):
    m = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"".join(res.untagged) +
                  res.text.encode())
    assert m, res
    return int(m.group(1))


def modseqs(r, cmd="FETCH 1:* (UID MODSEQ)"):
    out = {}
    for seq, it in r.ok(cmd).fetches():
        assert isinstance(it["MODSEQ"], list) and len(it["MODSEQ"]) == 1
        out[it["UID"]] = it["MODSEQ"][0]
    return out


def vanished(res, earlier):
    out = []
    for u in res.named("VANISHED"):
        text = u.decode().rstrip("\r\n").split(" ", 2)[2]
        is_earlier = text.upper().startswith("(EARLIER)")
        if is_earlier == earlier:
            out += expand_set(text.split()[-1])
    return sorted(out)


@pytest.fixture
def box(srv, acct):
    for i in range(5):
        srv.deliver(acct, simple_message(f"cs{i}"))
    r = srv.raw(acct)
    r.acct = acct
    need_cap(srv, r.capabilities(), "CONDSTORE")
    yield r
    r.close()


def test_enable_and_select_condstore(srv, box):
    r = box
    res = r.select(extra=" (CONDSTORE)")
    hm = highest(res)
    assert hm > 0
    ms = modseqs(r)
    assert len(ms) == 5 and max(ms.values()) <= hm
    res = r.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    vals = parse(res.named("STATUS")[0], 9)
    assert dict(zip(vals[1][::2], vals[1][1::2]))["HIGHESTMODSEQ"] == hm
    r2 = srv.raw(r.acct)
    res = r2.ok("ENABLE CONDSTORE")
    assert b"CONDSTORE" in res.named("ENABLED")[0].upper()
    assert highest(r2.select()) == hm
    r2.close()


def test_store_raises_modseq(srv, box):
    r = box
    hm = highest(r.select(extra=" (CONDSTORE)"))
    before = modseqs(r)
    uids = sorted(before)
    res = r.ok("STORE 2 +FLAGS (\\Seen)")
    (seq, it), = [f for f in res.fetches() if f[0] == 2]
    # with CONDSTORE on, FETCH after STORE carries the new MODSEQ
    assert it["MODSEQ"][0] > hm
    after = modseqs(r)
    assert after[uids[1]] > hm
    assert all(after[u] == before[u] for u in uids if u != uids[1])
    res = r.ok("STATUS INBOX (HIGHESTMODSEQ)")
    assert str(after[uids[1]]).encode() in res.named("STATUS")[0]
    # a STORE that changes nothing does not raise MODSEQ
    r.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    assert modseqs(r)[uids[1]] == after[uids[1]]


def test_changedsince(srv, box):
    r = box
    hm = highest(r.select(extra=" (CONDSTORE)"))
    r.ok("STORE 3,5 +FLAGS.SILENT (\\Flagged)")
    res = r.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {hm})")
    got = {seq: it for seq, it in res.fetches()}
    assert sorted(got) == [3, 5], res
    for it in got.values():
        assert "\\flagged" in flags_of(it)
        assert it["MODSEQ"][0] > hm
    res = r.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 9999999999)")
    assert res.fetches() == []


def test_unchangedsince_modified(srv, box):
    r = box
    hm = highest(r.select(extra=" (CONDSTORE)"))
    uids = sorted(modseqs(r))
    # another session changes message 1 after we read hm
    other = srv.raw(r.acct)
    other.select()
    other.ok("STORE 1 +FLAGS (\\Answered)")
    other.close()
    res = r.ok(f"STORE 1:2 (UNCHANGEDSINCE {hm}) +FLAGS (\\Flagged)")
    m = re.search(r"\[MODIFIED (\S+)\]", res.text)
    assert m and expand_set(m.group(1)) == [1], res
    fl = {seq: flags_of(it) for seq, it in r.ok("FETCH 1:2 FLAGS").fetches()}
    assert "\\flagged" not in fl[1] and "\\answered" in fl[1]
    assert "\\flagged" in fl[2]
    ms = modseqs(r)
    res = r.ok(f"UID STORE {uids[2]} (UNCHANGEDSINCE {ms[uids[2]]}) "
               "+FLAGS (\\Seen)")
    assert "MODIFIED" not in res.text
    res = r.ok(f"UID STORE {uids[2]} (UNCHANGEDSINCE {ms[uids[2]]}) "
               "+FLAGS (\\Draft)")
    m = re.search(r"\[MODIFIED (\S+)\]", res.text)
    assert m and expand_set(m.group(1)) == [uids[2]], res


def test_search_modseq(srv, box):
    r = box
    hm = highest(r.select(extra=" (CONDSTORE)"))
    r.ok("STORE 4 +FLAGS (\\Seen)")
    res = r.ok(f"SEARCH MODSEQ {hm + 1}")
    (s,) = res.named("SEARCH")
    m = re.match(rb"\* SEARCH 4 \(MODSEQ (\d+)\)\r\n", s)
    assert m and int(m.group(1)) > hm, s
    res = r.ok("SEARCH MODSEQ 99999999999")
    assert res.named("SEARCH")[0].rstrip() == b"* SEARCH"


def test_qresync_select_after_changes(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "QRESYNC")
    res = r.ok("ENABLE QRESYNC")
    assert b"QRESYNC" in res.named("ENABLED")[0].upper()
    sel = r.select()
    hm = highest(sel)
    uidv = int(re.search(rb"\[UIDVALIDITY (\d+)\]",
                         b"".join(sel.untagged)).group(1))
    uids = sorted(modseqs(r))
    r.ok("UNSELECT")
    # while we are away: one expunged, one flagged, one new message
    other = srv.raw(r.acct)
    other.select()
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("STORE 4 +FLAGS.SILENT (\\Flagged)")
    other.ok("EXPUNGE")
    other.close()
    srv.deliver(r.acct, simple_message("new one"))
    res = r.select(extra=f" (QRESYNC ({uidv} {hm}))")
    assert vanished(res, earlier=True) == [uids[1]], res
    changed = {it["UID"]: it for _, it in res.fetches()}
    assert uids[3] in changed and "\\flagged" in flags_of(changed[uids[3]])
    assert uids[0] not in changed and uids[2] not in changed
    assert res.numbered("EXISTS") == [5]
    # with the known UIDs given, the answer is the same
    r.ok("UNSELECT")
    res = r.select(extra=f" (QRESYNC ({uidv} {hm} {uids[0]}:{uids[4]}))")
    assert vanished(res, earlier=True) == [uids[1]], res
    # a wrong UIDVALIDITY: no VANISHED and no FETCH from QRESYNC
    r.ok("UNSELECT")
    res = r.select(extra=f" (QRESYNC ({uidv + 1} {hm}))")
    assert not res.named("VANISHED"), res
    assert not res.fetches(), res


def test_qresync_vanished_instead_of_expunge(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "QRESYNC")
    r.ok("ENABLE QRESYNC")
    sel = r.select()
    hm = highest(sel)
    uids = sorted(modseqs(r))
    r.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    res = r.ok("EXPUNGE")
    assert not res.numbered("EXPUNGE"), res
    assert vanished(res, earlier=False) == [uids[0], uids[2]], res
    res = r.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hm} VANISHED)")
    assert vanished(res, earlier=True) == [uids[0], uids[2]], res
    # another session's expunge is announced as VANISHED at NOOP
    other = srv.raw(r.acct)
    other.select()
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.close()
    res = r.ok("NOOP")
    assert vanished(res, earlier=False) == [uids[1]], res
    assert not res.numbered("EXPUNGE")


def test_qresync_closed_and_errors(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "QRESYNC")
    # QRESYNC parameters without ENABLE QRESYNC: BAD
    r.not_ok("SELECT INBOX (QRESYNC (1 1))", allowed=("BAD",))
    r.ok("ENABLE QRESYNC")
    r.select()
    res = r.select("Sent")
    assert any(b"[CLOSED]" in u for u in res.untagged), res
    # VANISHED without CHANGEDSINCE is an error
    r.select()
    r.not_ok("UID FETCH 1:* (FLAGS) (VANISHED)", allowed=("BAD",))
    # and VANISHED with FETCH (not UID FETCH) too
    r.not_ok("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
             allowed=("BAD",))
