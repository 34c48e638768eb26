"""tern-imapd: mailboxes: CREATE, DELETE, RENAME (INBOX too), SUBSCRIBE,
UNSUBSCRIBE, LIST and LSUB, STATUS (SIZE), NAMESPACE, CHILDREN,
SPECIAL-USE and CREATE-SPECIAL-USE, LIST-EXTENDED, LIST-STATUS, modified
UTF-7 names and UTF8=ACCEPT, QUOTA."""
import re

import pytest

import imapenv
from imapenv import (acct, delimiter, need_cap, parse, quote,  # noqa
                     simple_message, srv)

SPECIAL = {"Sent": "\\sent", "Drafts": "\\drafts", "Trash": "\\trash",
           "Junk": "\\junk", "Archive": "\\archive"}


def listing(res, word="LIST"):
    """{name: (attributes lower case, delimiter)} of LIST/LSUB lines."""
    out = {}
    for u in res.named(word):
        vals = parse(u, 2 + len(word) + 1)
        attrs, delim, name = vals[0], vals[1], vals[2]
        name = name.decode() if isinstance(name, bytes) else str(name)
        out[name] = ([a.lower() for a in attrs],
                     delim.decode() if delim else None)
    return out


def names(r, *cmd):
    return set(listing(r.ok(*cmd)))


@pytest.fixture
def sess(srv, acct):
    r = srv.raw(acct)
    r.sep = delimiter(r)
    assert r.sep, "a flat namespace"
    yield r
    r.close()


def test_list_defaults(srv, sess):
    r = sess
    lst = listing(r.ok('LIST "" "*"'))
    for n in ["INBOX"] + list(SPECIAL):
        assert n in lst, lst
        assert lst[n][1] == r.sep
    top = names(r, 'LIST "" "%"')
    assert "INBOX" in top
    assert names(r, 'LIST "" "inbox"') == {"INBOX"}
    assert names(r, 'LIST "" "Dr*"') == {"Drafts"}
    assert names(r, 'LIST "" "NoSuch*"') == set()


def test_create_rename_delete(srv, sess):
    r, s = sess, sess.sep
    r.ok("STATUS INBOX (MESSAGES)")
    r.ok("CREATE Work")
    r.ok("CREATE ", quote(f"Work{s}Projects"))
    r.ok("CREATE ", quote(f"Trail{s}"))
    assert {"Work", f"Work{s}Projects", "Trail"} <= names(r, 'LIST "" "*"')
    r.not_ok("CREATE Work", allowed=("NO",))
    r.not_ok("CREATE INBOX", allowed=("NO",))
    assert names(r, 'LIST "" ', quote(f"Work{s}%")) == {f"Work{s}Projects"}
    assert names(r, 'LIST ', quote(f"Work{s}"), ' "%"') == \
        {f"Work{s}Projects"}
    r.ok("RENAME Work Job")
    got = names(r, 'LIST "" "*"')
    assert {"Job", f"Job{s}Projects"} <= got
    assert "Work" not in got and f"Work{s}Projects" not in got
    r.not_ok("RENAME Job Trail", allowed=("NO",))
    r.not_ok("RENAME NoSuchBox Other", allowed=("NO",))
    r.ok("DELETE ", quote(f"Job{s}Projects"))
    r.ok("DELETE Trail")
    r.not_ok("DELETE Trail", allowed=("NO",))
    r.not_ok("DELETE INBOX", allowed=("NO",))
    got = names(r, 'LIST "" "*"')
    assert "Trail" not in got and f"Job{s}Projects" not in got
    assert "Job" in got


def test_rename_inbox(srv, acct):
    for i in range(2):
        srv.deliver(acct, simple_message(f"inbox{i}"))
    r = srv.raw(acct)
    r.ok("RENAME INBOX Saved")
    # INBOX's messages moved to the new name; INBOX is there and empty
    assert r.select("Saved").numbered("EXISTS") == [2]
    assert r.select("INBOX").numbered("EXISTS") == [0]
    assert "INBOX" in names(r, 'LIST "" "*"')
    r.close()


def test_rename_and_delete_under_other_sessions(srv, acct):
    """Sessions with a folder selected follow its RENAME (by themselves
    or another session), children included; a session whose selected
    folder is deleted elsewhere is ended with BYE."""
    a, b, c = srv.raw(acct), srv.raw(acct), srv.raw(acct)
    b.ok("CREATE Work")
    b.ok("CREATE Work/2026")
    b.ok("CREATE Tmp")
    for i in range(2):
        srv.deliver(acct, simple_message(f"work{i}"), folder="Work")
    srv.deliver(acct, simple_message("child"), folder="Work/2026")
    assert a.select("Work").numbered("EXISTS") == [2]
    assert c.select("Work/2026").numbered("EXISTS") == [1]
    b.ok("RENAME Work Job")
    # a's folder is now Job: it works on, and its changes land there.
    a.ok("STORE 1 +FLAGS (\\Flagged)")
    assert len(a.ok("FETCH 1:* (UID FLAGS)").fetches()) == 2
    srv.deliver(acct, simple_message("after the rename"), folder="Job")
    seen = a.ok("NOOP")
    for _ in range(20):
        if 3 in seen.numbered("EXISTS"):
            break
        seen = a.ok("NOOP")
    assert 3 in seen.numbered("EXISTS"), seen
    fl = b.select("Job").fetches()
    fl = b.ok("FETCH 1 FLAGS").fetches()
    assert "\\Flagged" in str(fl), fl
    # The child went with it.
    assert len(c.ok("FETCH 1:* UID").fetches()) == 1
    c.ok("STORE 1 +FLAGS (\\Seen)")
    st = b.ok("STATUS ", quote("Job/2026"), " (MESSAGES UNSEEN)")
    assert b"MESSAGES 1" in st.untagged[0] and b"UNSEEN 0" in st.untagged[0]
    # A session renames its own selected folder.
    a.ok("RENAME Job Work")
    a.ok("STORE 2 +FLAGS (\\Answered)")
    assert len(a.ok("FETCH 1:* UID").fetches()) == 3
    st = b.ok("STATUS Work (MESSAGES)")
    assert b"MESSAGES 3" in st.untagged[0], st
    # DELETE of a folder selected elsewhere ends that session.
    c.ok("SELECT Tmp")
    b.ok("UNSELECT")
    b.ok("DELETE Tmp")
    assert c.closed(timeout=10), "the session on the deleted folder stayed"
    for r in (a, b):
        r.ok("LOGOUT")
        r.close()
    c.close()


def test_delete_keeps_inferiors(srv, sess):
    r, s = sess, sess.sep
    r.ok("CREATE ", quote(f"Top{s}Child"))
    res = r.cmd("DELETE Top")
    assert res.status in ("OK", "NO"), res
    got = listing(r.ok('LIST "" "*"'))
    assert f"Top{s}Child" in got
    if res.status == "OK" and "Top" in got:
        assert "\\noselect" in got["Top"][0], got


def test_children(srv, sess):
    r, s = sess, sess.sep
    need_cap(srv, r.capabilities(), "CHILDREN")
    r.ok("CREATE ", quote(f"Par{s}Kid"))
    got = listing(r.ok('LIST "" "Par*"'))
    assert "\\haschildren" in got["Par"][0]
    assert "\\hasnochildren" in got[f"Par{s}Kid"][0]
    assert "\\haschildren" not in got[f"Par{s}Kid"][0]


def test_subscribe_lsub(srv, sess):
    r, s = sess, sess.sep
    r.ok("CREATE Sub1")
    r.ok("CREATE ", quote(f"Sub2{s}Leaf"))
    # (whether CREATE subscribes is the server's choice)
    r.cmd("UNSUBSCRIBE Sub2")
    r.ok("SUBSCRIBE Sub1")
    r.ok("SUBSCRIBE ", quote(f"Sub2{s}Leaf"))
    got = listing(r.ok('LSUB "" "Sub*"'), "LSUB")
    assert "Sub1" in got and f"Sub2{s}Leaf" in got
    r.ok("UNSUBSCRIBE Sub1")
    got = listing(r.ok('LSUB "" "Sub*"'), "LSUB")
    assert "Sub1" not in got
    # LSUB with % shows an unsubscribed parent of a subscribed child
    # as \Noselect
    got = listing(r.ok('LSUB "" "Sub%"'), "LSUB")
    assert "Sub1" not in got
    if "Sub2" in got:
        assert "\\noselect" in got["Sub2"][0]


def test_list_extended(srv, sess):
    r, s = sess, sess.sep
    need_cap(srv, r.capabilities(), "LIST-EXTENDED")
    r.ok("CREATE ", quote(f"Ext{s}In"))
    r.ok("CREATE Ext2")
    r.ok("SUBSCRIBE ", quote(f"Ext{s}In"))
    r.cmd("UNSUBSCRIBE Ext")
    r.cmd("UNSUBSCRIBE Ext2")
    got = listing(r.ok('LIST (SUBSCRIBED) "" "Ext*"'))
    assert f"Ext{s}In" in got and "\\subscribed" in got[f"Ext{s}In"][0]
    assert "Ext" not in got and "Ext2" not in got
    # RECURSIVEMATCH: the parent is listed for its subscribed child
    res = r.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "Ext%"')
    got = listing(res)
    assert set(got) == {"Ext"}, res
    # ("CHILDINFO" ("SUBSCRIBED")): the tag is an astring, quoted or not
    assert re.search(rb'"?CHILDINFO"? \("SUBSCRIBED"\)',
                     b"".join(res.untagged)), res
    # several patterns
    assert names(r, 'LIST "" ("Ext2" "INBOX")') == {"Ext2", "INBOX"}
    # RETURN (CHILDREN)
    got = listing(r.ok('LIST "" "Ext%" RETURN (CHILDREN)'))
    assert "\\haschildren" in got["Ext"][0]
    assert "\\hasnochildren" in got["Ext2"][0]
    # RETURN (SUBSCRIBED)
    got = listing(r.ok('LIST "" "*" RETURN (SUBSCRIBED)'))
    assert "\\subscribed" in got[f"Ext{s}In"][0]
    assert "\\subscribed" not in got["Ext2"][0]


def test_list_status(srv, acct):
    srv.deliver(acct, simple_message("ls1"), flags=("\\Seen",))
    srv.deliver(acct, simple_message("ls2"))
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "LIST-STATUS")
    res = r.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    lst = listing(res)
    st = {}
    for u in res.named("STATUS"):
        vals = parse(u, 9)
        name = vals[0].decode() if isinstance(vals[0], bytes) else vals[0]
        st[name] = dict(zip(vals[1][::2], vals[1][1::2]))
    assert st["INBOX"] == {"MESSAGES": 2, "UNSEEN": 1}, res
    for n in SPECIAL:
        assert st[n] == {"MESSAGES": 0, "UNSEEN": 0}
    assert set(st) <= set(lst)
    r.close()


def test_status(srv, acct):
    m1, m2 = simple_message("st1"), simple_message("st2", "x" * 500)
    srv.deliver(acct, m1, flags=("\\Seen",))
    srv.deliver(acct, m2)
    r = srv.raw(acct)
    caps = r.capabilities()
    items = "MESSAGES UIDNEXT UIDVALIDITY UNSEEN"
    if "STATUS=SIZE" in [c.upper() for c in caps] or srv.target == "tern":
        items += " SIZE"
    res = r.ok(f"STATUS INBOX ({items})")
    vals = parse(res.named("STATUS")[0], 9)
    d = dict(zip(vals[1][::2], vals[1][1::2]))
    assert d["MESSAGES"] == 2 and d["UNSEEN"] == 1
    assert d["UIDVALIDITY"] > 0
    sel = r.select()
    uids = [it["UID"] for _, it in r.ok("FETCH 1:* UID").fetches()]
    assert d["UIDNEXT"] > max(uids)
    assert re.search(rb"UIDVALIDITY %d\]" % d["UIDVALIDITY"],
                     b"".join(sel.untagged))
    if "SIZE" in items:
        need_cap(srv, caps, "STATUS=SIZE")
        assert d["SIZE"] == len(m1) + len(m2)
    r.not_ok("STATUS NoSuchBox (MESSAGES)", allowed=("NO",))
    r.not_ok("STATUS INBOX (NOSUCHITEM)", allowed=("BAD",))
    r.close()


def test_special_use(srv, sess):
    r = sess
    need_cap(srv, r.capabilities(), "SPECIAL-USE")
    got = listing(r.ok('LIST "" "*"'))
    for n, use in SPECIAL.items():
        assert use in got[n][0], got
    got = listing(r.ok('LIST (SPECIAL-USE) "" "*"'))
    assert set(got) == set(SPECIAL), got
    got = listing(r.ok('LIST "" "*" RETURN (SPECIAL-USE)'))
    assert "\\sent" in got["Sent"][0]


def test_create_special_use(srv, sess):
    r = sess
    need_cap(srv, r.capabilities(), "CREATE-SPECIAL-USE")
    r.ok("CREATE Starred (USE (\\Flagged))")
    got = listing(r.ok('LIST (SPECIAL-USE) "" "*"'))
    assert "\\flagged" in got["Starred"][0]
    res = r.not_ok("CREATE Odd (USE (\\NoSuchUse))")
    assert res.status == "BAD" or (res.code() or "").startswith("USEATTR")
    assert "Odd" not in names(r, 'LIST "" "*"')


def test_namespace(srv, sess):
    r = sess
    need_cap(srv, r.capabilities(), "NAMESPACE")
    res = r.ok("NAMESPACE")
    (ns,) = res.named("NAMESPACE")
    vals = parse(ns, 12)
    assert len(vals) == 3, vals
    personal = vals[0]
    assert isinstance(personal, list) and personal, vals
    assert personal[0][1].decode() == r.sep


def test_modified_utf7_names(srv, sess):
    r = sess
    r.ok('CREATE "Entw&APw-rfe"')
    r.ok('CREATE "A&-B"')
    got = names(r, 'LIST "" "*"')
    assert {"Entw&APw-rfe", "A&-B"} <= got
    r.ok('SELECT "Entw&APw-rfe"')
    r.ok('STATUS "A&-B" (MESSAGES)')
    # not modified UTF-7: refused
    r.not_ok("CREATE ", quote("Entw\u00fcrfe2"))
    r.not_ok('CREATE "Bad&Jjo"')
    r.not_ok('CREATE "Bad&AGE-"')           # 'a' must not be encoded
    assert not any(n.startswith("Bad") or n.startswith("Entw\u00fc")
                   for n in names(r, 'LIST "" "*"'))


def test_utf8_accept(srv, acct):
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "UTF8=ACCEPT")
    res = r.ok("ENABLE UTF8=ACCEPT")
    assert b"UTF8=ACCEPT" in res.named("ENABLED")[0].upper()
    r.ok("CREATE ", quote("Entw\u00fcrfe"))
    assert "Entw\u00fcrfe" in names(r, 'LIST "" "*"')
    r.ok("SELECT ", quote("Entw\u00fcrfe"))
    other = srv.raw(acct)
    assert "Entw&APw-rfe" in names(other, 'LIST "" "*"')
    other.close()
    r.close()


def test_quota(srv):
    a = srv.account(quota=True)
    r = srv.raw(a)
    need_cap(srv, r.capabilities(), "QUOTA")

    def usage():
        res = r.ok("GETQUOTAROOT INBOX")
        (qr,) = res.named("QUOTAROOT")
        vals = parse(qr, 12)
        assert vals[0] in ("INBOX", b"INBOX"), vals
        roots = vals[1:]
        assert len(roots) >= 1, vals
        quotas = {}
        for q in res.named("QUOTA"):
            v = parse(q, 8)
            quotas[v[0]] = {v[1][i]: (v[1][i + 1], v[1][i + 2])
                            for i in range(0, len(v[1]), 3)}
        assert roots[0] in quotas, res
        res2 = r.ok("GETQUOTA ", quote(roots[0]))
        v = parse(res2.named("QUOTA")[0], 8)
        assert {v[1][i]: (v[1][i + 1], v[1][i + 2])
                for i in range(0, len(v[1]), 3)} == quotas[roots[0]]
        return quotas[roots[0]]["STORAGE"]

    used, limit = usage()
    assert limit == imapenv.QUOTA_KIB
    srv.deliver(a, simple_message("big", "y" * 76 + "\r\n") * 1,
                via="lmtp")
    srv.deliver(a, simple_message("big2", ("z" * 78 + "\r\n") * 300),
                via="lmtp")
    r.select()      # lets the reference see the new files
    used2, limit2 = usage()
    assert limit2 == limit
    assert used2 - used >= 23, (used, used2)
    r.not_ok('GETQUOTA "no-such-root"', allowed=("NO", "BAD"))
    r.close()
