"""tern-imapd: STORE (flags and keywords, .SILENT, UID STORE), EXPUNGE,
UID EXPUNGE, CLOSE; SEARCH with every key, CHARSET UTF-8 and ISO-8859-1,
ESEARCH, SEARCHRES, WITHIN; SORT and THREAD (ORDEREDSUBJECT,
REFERENCES)."""
import datetime
import time

import pytest

from imapenv import (Lit, acct, flags_of, need_cap, parse,  # noqa
                     simple_message, srv)

DAY = 86400
TODAY_NOON = (int(time.time()) // DAY) * DAY + 12 * 3600


def imap_date(epoch):
    return datetime.datetime.fromtimestamp(
        epoch, datetime.timezone.utc).strftime("%d-%b-%Y")


M1 = (b"From: Ann <ann@example.org>\r\nTo: bob@example.com\r\n"
      b"Cc: carol@example.net\r\nSubject: apple pie\r\n"
      b"Date: Thu, 01 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m1@example.org>\r\n"
      b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
      b"A fruit salad recipe.\r\n")
M2 = (b"From: Dave <dave@example.org>\r\nTo: bob@example.com\r\n"
      b"Bcc: eve@example.net\r\n"
      b"Subject: =?ISO-8859-1?Q?Caf=E9?= meeting\r\n"
      b"Date: Sun, 25 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m2@example.org>\r\nMIME-Version: 1.0\r\n"
      b"Content-Type: text/plain; charset=utf-8\r\n"
      b"Content-Transfer-Encoding: 8bit\r\n\r\n"
      + "A na\u00efve approach.\r\n".encode())
M3 = (b"From: Ann <ann@example.org>\r\nTo: bob@example.com\r\n"
      b"Subject: Re: apple pie\r\nX-Tag: blue\r\n"
      b"Date: Tue, 20 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m3@example.org>\r\nIn-Reply-To: <m1@example.org>\r\n"
      b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
      + b"Long text line.\r\n" * 300)


@pytest.fixture
def box(srv, acct):
    srv.deliver(acct, M1, date=TODAY_NOON - 20 * DAY,
                flags=("\\Seen", "\\Answered", "$Work"))
    srv.deliver(acct, M2, date=TODAY_NOON - 5 * DAY, flags=("\\Flagged",))
    srv.deliver(acct, M3, date=time.time() - 3600,
                flags=("\\Deleted", "\\Draft"))
    r = srv.raw(acct)
    r.account = acct
    r.select()
    yield r
    r.close()


def search(r, *parts):
    res = r.ok(*parts)
    s = res.named("SEARCH")
    assert len(s) == 1, res
    return sorted(int(x) for x in s[0].split()[2:] if x.isdigit())


def uids(r):
    return {seq: it["UID"] for seq, it in r.ok("FETCH 1:* UID").fetches()}


# ---- STORE, EXPUNGE, CLOSE --------------------------------------------------

def test_store_flags(srv, box):
    r = box
    res = r.ok("STORE 2 +FLAGS (\\Seen $Label1)")
    (seq, it), = [f for f in res.fetches() if f[0] == 2]
    assert flags_of(it) == ["$label1", "\\flagged", "\\seen"]
    res = r.ok("STORE 2 -FLAGS (\\Flagged)")
    (seq, it), = [f for f in res.fetches() if f[0] == 2]
    assert flags_of(it) == ["$label1", "\\seen"]
    res = r.ok("STORE 2 FLAGS (\\Answered)")
    (seq, it), = [f for f in res.fetches() if f[0] == 2]
    assert flags_of(it) == ["\\answered"]
    res = r.ok("STORE 1:2 +FLAGS.SILENT (\\Flagged)")
    assert not res.fetches(), res
    got = {s: flags_of(i) for s, i in r.ok("FETCH 1:2 FLAGS").fetches()}
    assert got == {1: ["$work", "\\answered", "\\flagged", "\\seen"],
                   2: ["\\answered", "\\flagged"]}
    res = r.ok("STORE 1 FLAGS.SILENT ()")
    assert not res.fetches(), res
    assert flags_of(r.ok("FETCH 1 FLAGS").fetches()[0][1]) == []
    # a keyword set here is permanent and seen by another session
    other = srv.raw(r.account)
    other.select()
    got = {s: flags_of(i) for s, i in other.ok("FETCH 2 FLAGS").fetches()}
    assert got == {2: ["\\answered", "\\flagged"]}
    other.close()
    r.not_ok("STORE 1 FROB (\\Seen)", allowed=("BAD",))


def test_uid_store_has_uid(srv, box):
    r = box
    u = uids(r)
    res = r.ok(f"UID STORE {u[3]} +FLAGS (\\Seen)")
    (seq, it), = res.fetches()
    assert seq == 3 and it["UID"] == u[3]
    assert "\\seen" in flags_of(it)
    res = r.ok(f"UID STORE {u[3] + 100}:{u[3] + 200} +FLAGS (\\Seen)")
    assert not res.fetches()


def test_store_read_only(srv, box):
    r = box
    r.select(examine=True)
    # Read-only: nothing changes (the server may refuse or ignore)
    r.not_ok("STORE 1 +FLAGS (\\Flagged)", allowed=("NO", "OK"))
    res = r.not_ok("EXPUNGE", allowed=("NO", "OK"))
    assert not res.numbered("EXPUNGE"), res
    assert r.select(examine=True).numbered("EXISTS") == [3]
    assert flags_of(r.ok("FETCH 1 FLAGS").fetches()[0][1]) == \
        ["$work", "\\answered", "\\seen"]


def test_expunge(srv, acct):
    for i in range(5):
        srv.deliver(acct, simple_message(f"e{i}"))
    r = srv.raw(acct)
    r.select()
    before = uids(r)
    order = [before[i] for i in range(1, 6)]
    r.ok("STORE 2,4:5 +FLAGS.SILENT (\\Deleted)")
    res = r.ok("EXPUNGE")
    for n in res.numbered("EXPUNGE"):
        assert 1 <= n <= len(order)
        del order[n - 1]
    assert order == [before[1], before[3]]
    assert list(uids(r).values()) == order
    res = r.ok("NOOP")
    assert not res.numbered("EXPUNGE")
    r.close()


def test_uid_expunge(srv, acct):
    for i in range(4):
        srv.deliver(acct, simple_message(f"ue{i}"), flags=("\\Deleted",))
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "UIDPLUS")
    r.select()
    u = uids(r)
    res = r.ok(f"UID EXPUNGE {u[2]}:{u[3]}")
    assert sorted(res.numbered("EXPUNGE")) in ([2, 2], [2, 3]), res
    assert list(uids(r).values()) == [u[1], u[4]]
    r.close()


def test_close_expunges_silently(srv, acct):
    for i in range(3):
        srv.deliver(acct, simple_message(f"c{i}"),
                    flags=("\\Deleted",) if i != 1 else ())
    r = srv.raw(acct)
    r.select(examine=True)
    res = r.ok("CLOSE")
    assert not res.numbered("EXPUNGE"), res
    r.not_ok("FETCH 1 UID")
    # CLOSE of a read-only mailbox expunged nothing
    assert r.select().numbered("EXISTS") == [3]
    res = r.ok("CLOSE")
    assert not res.numbered("EXPUNGE"), res
    assert r.select().numbered("EXISTS") == [1]
    r.close()


# ---- SEARCH -----------------------------------------------------------------

def test_search_flags(srv, box):
    r = box
    assert search(r, "SEARCH ALL") == [1, 2, 3]
    assert search(r, "SEARCH SEEN") == [1]
    assert search(r, "SEARCH UNSEEN") == [2, 3]
    assert search(r, "SEARCH ANSWERED") == [1]
    assert search(r, "SEARCH UNANSWERED") == [2, 3]
    assert search(r, "SEARCH FLAGGED") == [2]
    assert search(r, "SEARCH UNFLAGGED") == [1, 3]
    assert search(r, "SEARCH DELETED") == [3]
    assert search(r, "SEARCH UNDELETED") == [1, 2]
    assert search(r, "SEARCH DRAFT") == [3]
    assert search(r, "SEARCH UNDRAFT") == [1, 2]
    assert search(r, "SEARCH KEYWORD $Work") == [1]
    assert search(r, "SEARCH UNKEYWORD $Work") == [2, 3]
    assert search(r, "SEARCH KEYWORD $Nowhere") == []
    assert search(r, "SEARCH OLD") == search(r, "SEARCH NOT RECENT")


def test_search_headers_and_text(srv, box):
    r = box
    assert search(r, "SEARCH FROM ann") == [1, 3]
    assert search(r, "SEARCH FROM \"DAVE\"") == [2]
    assert search(r, "SEARCH TO bob@example.com") == [1, 2, 3]
    assert search(r, "SEARCH CC carol") == [1]
    assert search(r, "SEARCH BCC eve") == [2]
    assert search(r, "SEARCH SUBJECT apple") == [1, 3]
    assert search(r, "SEARCH SUBJECT \"APPLE PIE\"") == [1, 3]
    assert search(r, "SEARCH HEADER X-Tag blue") == [3]
    assert search(r, "SEARCH HEADER X-Tag \"\"") == [3]
    assert search(r, "SEARCH HEADER Message-ID m2@") == [2]
    assert search(r, "SEARCH BODY fruit") == [1]
    assert search(r, "SEARCH BODY apple") == []          # only in headers
    assert search(r, "SEARCH TEXT apple") == [1, 3]
    assert search(r, "SEARCH TEXT fruit") == [1]
    assert search(r, "SEARCH LARGER 3000") == [3]
    assert search(r, "SEARCH SMALLER 3000") == [1, 2]


def test_search_dates(srv, box):
    r = box
    assert search(r, "SEARCH SENTBEFORE 10-Oct-2026") == [1]
    assert search(r, "SEARCH SENTON 25-Oct-2026") == [2]
    assert search(r, "SEARCH SENTSINCE 20-Oct-2026") == [2, 3]
    d1 = imap_date(TODAY_NOON - 20 * DAY)
    d2 = imap_date(TODAY_NOON - 5 * DAY)
    assert search(r, f"SEARCH ON {d1}") == [1]
    assert search(r, f"SEARCH BEFORE {d2}") == [1]
    assert search(r, f"SEARCH SINCE {d2}") == [2, 3]
    assert search(r, "SEARCH SINCE 1-Jan-2100") == []


def test_search_logic_and_sets(srv, box):
    r = box
    u = uids(r)
    assert search(r, "SEARCH NOT SEEN") == [2, 3]
    assert search(r, "SEARCH OR SEEN FLAGGED") == [1, 2]
    assert search(r, "SEARCH (OR SEEN FLAGGED) FROM ann") == [1]
    assert search(r, "SEARCH NOT (SEEN ANSWERED)") == [2, 3]
    assert search(r, "SEARCH 2:*") == [2, 3]
    assert search(r, "SEARCH *") == [3]
    assert search(r, "SEARCH 3:2 UNDELETED") == [2]
    assert search(r, f"SEARCH UID {u[2]}:*") == [2, 3]
    assert search(r, f"SEARCH UID {u[3] + 10}:*") == [3]
    got = search(r, "UID SEARCH OR FLAGGED DELETED")
    assert got == sorted([u[2], u[3]])
    r.not_ok("SEARCH NOSUCHKEY", allowed=("BAD",))
    r.not_ok("SEARCH SINCE 99-Foo-2026", allowed=("BAD",))
    r.not_ok("SEARCH (SEEN", allowed=("BAD",))
    r.ok("NOOP")


def test_search_charsets(srv, box):
    r = box
    cafe = "Caf\u00e9"
    assert search(r, "SEARCH CHARSET UTF-8 SUBJECT ",
                  Lit(cafe.encode("utf-8"))) == [2]
    assert search(r, "SEARCH CHARSET ISO-8859-1 SUBJECT ",
                  Lit(cafe.encode("latin-1"))) == [2]
    assert search(r, "SEARCH CHARSET UTF-8 BODY ",
                  Lit("na\u00efve".encode("utf-8"))) == [2]
    assert search(r, "SEARCH CHARSET ISO-8859-1 BODY ",
                  Lit("na\u00efve".encode("latin-1"))) == [2]
    assert search(r, "SEARCH CHARSET US-ASCII SUBJECT meeting") == [2]
    assert search(r, "SEARCH CHARSET UTF-8 TEXT ",
                  Lit("caf\u00e9 MEETING".encode("utf-8"))) == [2]
    # NO, not BAD (RFC 3501 6.4.4; the BADCHARSET code is a SHOULD)
    r.not_ok("SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT x", allowed=("NO",))


def test_esearch(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "ESEARCH")
    u = uids(r)
    res = r.ok("SEARCH RETURN (MIN MAX COUNT) UNDELETED")
    (es,) = res.named("ESEARCH")
    tag = res.tag
    vals = parse(es, 10)
    assert vals[0] == ["TAG", tag.encode()], vals
    d = dict(zip(vals[1::2], vals[2::2]))
    assert d == {"MIN": 1, "MAX": 2, "COUNT": 2}, vals
    res = r.ok("SEARCH RETURN (ALL) ALL")
    vals = parse(res.named("ESEARCH")[0], 10)
    assert vals[1:] == ["ALL", "1:3"] or vals[1:] == ["ALL", "1,2,3"], vals
    res = r.ok("SEARCH RETURN () FLAGGED")
    vals = parse(res.named("ESEARCH")[0], 10)
    assert vals[1:] == ["ALL", 2], vals
    res = r.ok("UID SEARCH RETURN (COUNT MIN) DELETED")
    vals = parse(res.named("ESEARCH")[0], 10)
    assert vals[1] == "UID"
    d = dict(zip(vals[2::2], vals[3::2]))
    assert d == {"COUNT": 1, "MIN": u[3]}, vals
    res = r.ok("SEARCH RETURN (MIN MAX ALL) KEYWORD $Nowhere")
    vals = parse(res.named("ESEARCH")[0], 10)
    assert vals == [["TAG", tag.encode()[:0] + res.tag.encode()]], vals
    assert not res.named("SEARCH")


def test_searchres(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "SEARCHRES")
    res = r.ok("SEARCH RETURN (SAVE) OR FLAGGED DELETED")
    assert not res.named("SEARCH") and not res.named("ESEARCH"), res
    got = sorted(s for s, _ in r.ok("FETCH $ UID").fetches())
    assert got == [2, 3]
    assert search(r, "SEARCH $ UNDELETED") == [2]
    r.ok("UID SEARCH RETURN (SAVE MIN) SEEN")
    got = sorted(s for s, _ in r.ok("UID FETCH $ FLAGS").fetches())
    assert got == [1]
    r.ok("SEARCH RETURN (SAVE) KEYWORD $Nowhere")
    assert r.ok("FETCH $ UID").fetches() == []


def test_within(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "WITHIN")
    assert search(r, f"SEARCH YOUNGER {2 * DAY}") == [3]
    assert search(r, f"SEARCH OLDER {10 * DAY}") == [1]
    assert search(r, f"SEARCH YOUNGER {10 * DAY} OLDER {2 * DAY}") == [2]


# ---- SORT and THREAD --------------------------------------------------------

def sort(r, *parts):
    res = r.ok(*parts)
    s = res.named("SORT")
    assert len(s) == 1, res
    return [int(x) for x in s[0].split()[2:]]


def test_sort(srv, box):
    r = box
    need_cap(srv, r.capabilities(), "SORT")
    u = uids(r)
    # base subjects: "apple pie", "cafe meeting" (decoded), "apple pie"
    assert sort(r, "SORT (SUBJECT) UTF-8 ALL") == [1, 3, 2]
    assert sort(r, "SORT (REVERSE SUBJECT) UTF-8 ALL") == [2, 1, 3]
    assert sort(r, "SORT (DATE) UTF-8 ALL") == [1, 3, 2]
    assert sort(r, "SORT (REVERSE DATE) UTF-8 ALL") == [2, 3, 1]
    assert sort(r, "SORT (ARRIVAL) UTF-8 ALL") == [1, 2, 3]
    assert sort(r, "SORT (FROM) UTF-8 ALL") == [1, 3, 2]
    assert sort(r, "SORT (REVERSE FROM) US-ASCII ALL") == [2, 1, 3]
    assert sort(r, "SORT (REVERSE SIZE) UTF-8 ALL")[0] == 3
    assert sort(r, "SORT (SUBJECT) UTF-8 UNDELETED") == [1, 2]
    assert sort(r, "UID SORT (REVERSE ARRIVAL) UTF-8 ALL") == \
        [u[3], u[2], u[1]]
    r.not_ok("SORT (NOSUCHKEY) UTF-8 ALL", allowed=("BAD",))
    r.not_ok("SORT (SUBJECT) X-NO-SUCH-CHARSET ALL", allowed=("NO", "BAD"))


T1 = (b"From: a@example.org\r\nSubject: plan\r\n"
      b"Date: Thu, 01 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <t1@example.org>\r\n\r\nt1\r\n")
T2 = (b"From: b@example.org\r\nSubject: Re: plan\r\n"
      b"Date: Fri, 02 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <t2@example.org>\r\nIn-Reply-To: <t1@example.org>\r\n"
      b"References: <t1@example.org>\r\n\r\nt2\r\n")
T3 = (b"From: c@example.org\r\nSubject: other\r\n"
      b"Date: Sat, 03 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <t3@example.org>\r\n\r\nt3\r\n")
T4 = (b"From: d@example.org\r\nSubject: Re: Re: plan\r\n"
      b"Date: Sun, 04 Oct 2026 10:00:00 +0000\r\n"
      b"Message-ID: <t4@example.org>\r\nIn-Reply-To: <t2@example.org>\r\n"
      b"References: <t1@example.org> <t2@example.org>\r\n\r\nt4\r\n")


def thread(r, *parts):
    res = r.ok(*parts)
    t = res.named("THREAD")
    assert len(t) == 1, res
    return parse(t[0], 9)


def test_thread(srv, acct):
    for m in (T1, T2, T3, T4):
        srv.deliver(acct, m)
    r = srv.raw(acct)
    caps = r.capabilities()
    need_cap(srv, caps, "THREAD=ORDEREDSUBJECT")
    need_cap(srv, caps, "THREAD=REFERENCES")
    r.select()
    # ORDEREDSUBJECT: the first message of a subject is the parent of the
    # others; threads in order of their first message's date.
    assert thread(r, "THREAD ORDEREDSUBJECT UTF-8 ALL") == \
        [[1, [2], [4]], [3]]
    assert thread(r, "THREAD REFERENCES UTF-8 ALL") == [[1, 2, 4], [3]]
    assert thread(r, "THREAD REFERENCES UTF-8 NOT SUBJECT other") == \
        [[1, 2, 4]]
    u = uids(r)
    assert thread(r, "UID THREAD REFERENCES UTF-8 ALL") == \
        [[u[1], u[2], u[4]], [u[3]]]
    r.not_ok("THREAD NOSUCHALGORITHM UTF-8 ALL", allowed=("NO", "BAD"))
    r.close()
