"""tern-imapd: SELECT, EXAMINE, UNSELECT, CHECK and FETCH: every FETCH
item (BODY[section]<partial> of nested multiparts, BODY.PEEK and \\Seen,
BINARY and BINARY.SIZE, RFC822*, ENVELOPE, BODYSTRUCTURE exactness,
INTERNALDATE, FLAGS, UID), the macros, and sequence sets with '*' and
ranges in either order."""
import datetime
import re

import pytest

from imapenv import (acct, flags_of, imaplib_fetch, need_cap,  # noqa
                     parse, quote, simple_message, srv)

DATE = 1793698200          # 2026-11-03 08:50:00 UTC

PART1 = b"Part one text.\r\n"
P21_HEAD = (b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
P21 = b"Caf=C3=A9 inner plain.\r\n"
P22_HEAD = b"Content-Type: text/html; charset=utf-8\r\n\r\n"
P22 = b"<p>inner html</p>\r\n"
PART2 = (b"--inner\r\n" + P21_HEAD + P21 + b"\r\n--inner\r\n" + P22_HEAD +
         P22 + b"\r\n--inner--\r\n")
P3_HEAD = (b'Content-Type: application/octet-stream; name="data.bin"\r\n'
           b"Content-Transfer-Encoding: base64\r\n"
           b'Content-Disposition: attachment; filename="data.bin"\r\n\r\n')
PART3 = b"AAECAwQFBgcICQ==\r\n"
INNER_HEAD = (b"From: inner@example.org\r\nSubject: attached\r\n"
              b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
INNER_BODY = b"Attached body.\r\n"
P1_HEAD = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
P2_HEAD = b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
P4_HEAD = b"Content-Type: message/rfc822\r\n\r\n"
TOP_HEAD = (b'From: "Ann Example" <ann@example.org>\r\n'
            b'To: bob@example.com, "Carol C." <carol@example.net>\r\n'
            b"Cc: undisclosed-recipients:;\r\n"
            b"Subject: =?ISO-8859-1?Q?Caf=E9?= structure\r\n"
            b"Date: Tue, 03 Nov 2026 09:30:00 +0100\r\n"
            b"Message-ID: <multi.1@example.org>\r\n"
            b"In-Reply-To: <parent.1@example.org>\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n')
TOP_BODY = (b"This is the preamble.\r\n"
            b"--outer\r\n" + P1_HEAD + PART1 +
            b"\r\n--outer\r\n" + P2_HEAD + PART2 +
            b"\r\n--outer\r\n" + P3_HEAD + PART3 +
            b"\r\n--outer\r\n" + P4_HEAD + INNER_HEAD + INNER_BODY +
            b"\r\n--outer--\r\n")
MULTI = TOP_HEAD + TOP_BODY


def lines(b):
    return b.count(b"\n")


def norm(v):
    """Case-folded structure for comparisons (types and parameter names are
    case-insensitive; sizes stay numbers)."""
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").lower()
    if isinstance(v, str):
        return v.lower()
    return v


def check_part(actual, expected):
    """Compares a body structure with the expected one: every field the
    expected structure lists (extension data beyond it is not required)."""
    assert isinstance(actual, list), actual
    if isinstance(expected[0], list):      # multipart
        def count(v):
            n = 0
            while n < len(v) and isinstance(v[n], list):
                n += 1
            return n
        nparts = count(expected)
        assert count(actual) == nparts, (actual, expected)
        aparts = actual[:nparts]
        for a, e in zip(aparts, expected[:nparts]):
            check_part(a, e)
        rest_e = expected[nparts:]
        rest_a = actual[nparts:]
        assert norm(rest_a[0]) == norm(rest_e[0]), (actual, expected)
        if len(rest_a) > 1 and len(rest_e) > 1:
            assert norm(rest_a[1]) == norm(rest_e[1]), (actual, expected)
        return
    # fields after "ext" are extension data: compared when the server
    # sends them (RFC 3501 makes them optional)
    n = expected.index("ext") if "ext" in expected else len(expected)
    fields = [x for x in expected if not (isinstance(x, str) and
                                          x == "ext")]
    assert len(actual) >= n, (actual, expected)
    for i in range(min(len(actual), len(fields))):
        e = fields[i]
        if isinstance(e, list) and e and e[0] == "envelope":
            assert norm(actual[i][1]) == norm(e[1]), actual[i]
            continue
        if isinstance(e, list) and e and e[0] == "struct":
            check_part(actual[i], e[1])
            continue
        assert norm(actual[i]) == norm(e), (i, actual, expected)


def expected_structure(extension):
    inner = [b"TEXT", b"PLAIN", [b"CHARSET", b"us-ascii"], None, None,
             b"7BIT", len(INNER_BODY), lines(INNER_BODY)]
    p3 = [b"APPLICATION", b"OCTET-STREAM", [b"NAME", b"data.bin"], None,
          None, b"BASE64", len(PART3)]
    if extension:
        p3 += ["ext", None, [b"ATTACHMENT", [b"FILENAME", b"data.bin"]]]
    alt = [[b"TEXT", b"PLAIN", [b"CHARSET", b"utf-8"], None, None,
            b"QUOTED-PRINTABLE", len(P21), lines(P21)],
           [b"TEXT", b"HTML", [b"CHARSET", b"utf-8"], None, None, b"7BIT",
            len(P22), lines(P22)],
           b"ALTERNATIVE"]
    if extension:
        alt.append([b"BOUNDARY", b"inner"])
    top = [[b"TEXT", b"PLAIN", [b"CHARSET", b"us-ascii"], None, None,
            b"7BIT", len(PART1), lines(PART1)],
           alt, p3,
           [b"MESSAGE", b"RFC822", None, None, None, b"7BIT",
            len(INNER_HEAD + INNER_BODY), ["envelope", b"attached"],
            ["struct", inner], lines(INNER_HEAD + INNER_BODY)],
           b"MIXED"]
    if extension:
        top.append([b"BOUNDARY", b"outer"])
    return top


@pytest.fixture
def box(srv, acct):
    """An account with 3 messages: a simple one, the nested multipart, and
    a second simple one; and a Raw session on its INBOX."""
    srv.deliver(acct, simple_message("first", "First body.\r\n"), date=DATE)
    srv.deliver(acct, MULTI, date=DATE + 60)
    srv.deliver(acct, simple_message("third", "Third body.\r\n"),
                date=DATE + 120, flags=("\\Flagged",))
    r = srv.raw(acct)
    r.select()
    yield r
    r.close()


def one_fetch(r, *cmd):
    res = r.ok(*cmd)
    f = res.fetches()
    assert len(f) >= 1, res
    merged = {}
    for seq, items in f:
        merged.update(items)
    return merged


def test_select_and_examine(srv, acct):
    for i in range(3):
        srv.deliver(acct, simple_message(f"s{i}"),
                    flags=("\\Seen",) if i == 0 else ())
    r = srv.raw(acct)
    res = r.select()
    assert res.code() != "READ-ONLY", res      # READ-WRITE is a SHOULD
    assert res.numbered("EXISTS") == [3]
    flags = res.named("FLAGS")
    assert len(flags) == 1
    fl = [f.lower() for f in parse(flags[0], 8)[0]]
    for f in ("\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"):
        assert f in fl, fl
    text = b"".join(res.untagged)
    m = re.search(rb"\[UIDVALIDITY (\d+)\]", text)
    assert m and int(m.group(1)) > 0, res
    m = re.search(rb"\[UIDNEXT (\d+)\]", text)
    assert m, res
    uidnext = int(m.group(1))
    assert re.search(rb"\[PERMANENTFLAGS \(", text), res
    uids = [it["UID"] for _, it in r.ok("FETCH 1:* UID").fetches()]
    assert len(uids) == 3 and max(uids) < uidnext and uids == sorted(uids)
    res = r.select(examine=True)
    assert res.code() == "READ-ONLY", res
    assert res.numbered("EXISTS") == [3]
    r.close()


def test_select_missing_mailbox_deselects(srv, acct):
    srv.deliver(acct, simple_message("x"))
    r = srv.raw(acct)
    r.select()
    r.not_ok("SELECT ", quote("No Such Folder"), allowed=("NO",))
    # A failed SELECT leaves no mailbox selected.
    r.not_ok("FETCH 1 UID")
    r.not_ok("FETCH 1 UID")
    r.select()
    r.ok("FETCH 1 UID")
    r.close()


def test_check_and_unselect(srv, acct):
    srv.deliver(acct, simple_message("keep me"), flags=("\\Deleted",))
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "UNSELECT")
    r.select()
    r.ok("CHECK")
    res = r.ok("UNSELECT")
    assert not res.numbered("EXPUNGE"), res
    r.not_ok("FETCH 1 UID")
    r.not_ok("UNSELECT")
    # UNSELECT does not expunge
    res = r.select()
    assert res.numbered("EXISTS") == [1]
    r.close()


def test_simple_items(srv, box):
    r = box
    res = r.ok("FETCH 1 (FLAGS UID RFC822.SIZE INTERNALDATE)")
    (seq, it), = res.fetches()
    msg = simple_message("first", "First body.\r\n")
    assert seq == 1
    assert it["RFC822.SIZE"] == len(msg)
    assert isinstance(it["UID"], int) and it["UID"] > 0
    assert flags_of(it) == []
    when = datetime.datetime.strptime(it["INTERNALDATE"].decode().strip(),
                                      "%d-%b-%Y %H:%M:%S %z")
    assert when.timestamp() == DATE
    it = one_fetch(r, "FETCH 3 (FLAGS INTERNALDATE)")
    assert flags_of(it) == ["\\flagged"]
    when = datetime.datetime.strptime(it["INTERNALDATE"].decode().strip(),
                                      "%d-%b-%Y %H:%M:%S %z")
    assert when.timestamp() == DATE + 120


def test_whole_message_header_and_text(srv, box):
    r = box
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[] BODY.PEEK[HEADER] "
                      "BODY.PEEK[TEXT] RFC822.SIZE)")
    assert it["BODY[]"] == MULTI
    assert it["BODY[HEADER]"] == TOP_HEAD
    assert it["BODY[TEXT]"] == TOP_BODY
    assert it["RFC822.SIZE"] == len(MULTI)
    it = one_fetch(r, "FETCH 2 (RFC822.HEADER)")
    assert it["RFC822.HEADER"] == TOP_HEAD
    it = one_fetch(r, "FETCH 2 (RFC822.TEXT)")
    assert it["RFC822.TEXT"] == TOP_BODY
    it = one_fetch(r, "FETCH 2 RFC822")
    assert it["RFC822"] == MULTI


def test_header_fields(srv, box):
    r = box
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[HEADER.FIELDS (Subject "
                      "MESSAGE-ID X-Absent)])")
    (key, val), = [(k, v) for k, v in it.items()
                   if k.startswith("BODY[HEADER.FIELDS")]
    assert val == (b"Subject: =?ISO-8859-1?Q?Caf=E9?= structure\r\n"
                   b"Message-ID: <multi.1@example.org>\r\n\r\n"), val
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[HEADER.FIELDS.NOT (Subject "
                      "Content-Type Date From To Cc Message-ID "
                      "In-Reply-To)])")
    (val,) = [v for k, v in it.items()
              if k.startswith("BODY[HEADER.FIELDS.NOT")]
    assert val == b"MIME-Version: 1.0\r\n\r\n", val


def test_partial(srv, box):
    r = box
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[]<0.10>)")
    assert it["BODY[]<0>"] == MULTI[:10]
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[TEXT]<5.7>)")
    assert it["BODY[TEXT]<5>"] == TOP_BODY[5:12]
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[1]<2.4>)")
    assert it["BODY[1]<2>"] == PART1[2:6]
    # a range past the end gives what is there; an origin past it nothing
    it = one_fetch(r, f"FETCH 2 (BODY.PEEK[]<{len(MULTI) - 3}.100>)")
    assert it[f"BODY[]<{len(MULTI) - 3}>"] == MULTI[-3:]
    it = one_fetch(r, f"FETCH 2 (BODY.PEEK[]<{len(MULTI) + 10}.5>)")
    assert it[f"BODY[]<{len(MULTI) + 10}>"] == b""


def test_nested_sections(srv, box):
    r = box
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] "
                      "BODY.PEEK[2] BODY.PEEK[2.1] BODY.PEEK[2.1.MIME] "
                      "BODY.PEEK[2.2] BODY.PEEK[3] BODY.PEEK[3.MIME])")
    assert it["BODY[1]"] == PART1
    assert it["BODY[1.MIME]"] == P1_HEAD
    assert it["BODY[2]"] == PART2
    assert it["BODY[2.1]"] == P21
    assert it["BODY[2.1.MIME]"] == P21_HEAD
    assert it["BODY[2.2]"] == P22
    assert it["BODY[3]"] == PART3
    assert it["BODY[3.MIME]"] == P3_HEAD
    it = one_fetch(r, "FETCH 2 (BODY.PEEK[4] BODY.PEEK[4.HEADER] "
                      "BODY.PEEK[4.TEXT] BODY.PEEK[4.1] "
                      "BODY.PEEK[4.HEADER.FIELDS (Subject)])")
    assert it["BODY[4]"] == INNER_HEAD + INNER_BODY
    assert it["BODY[4.HEADER]"] == INNER_HEAD
    assert it["BODY[4.TEXT]"] == INNER_BODY
    assert it["BODY[4.1]"] == INNER_BODY
    (val,) = [v for k, v in it.items() if k.startswith("BODY[4.HEADER.F")]
    assert val == b"Subject: attached\r\n\r\n"
    # a part of a single-part message: 1 is its body
    it = one_fetch(r, "FETCH 1 (BODY.PEEK[1])")
    assert it["BODY[1]"] == b"First body.\r\n"
    # a part that does not exist is empty (or refused)
    res = r.cmd("FETCH 2 (BODY.PEEK[9])")
    if res.status == "OK":
        for _, items in res.fetches():
            assert items.get("BODY[9]") in (b"", None), items


def test_bodystructure_and_body(srv, box):
    r = box
    it = one_fetch(r, "FETCH 2 (BODYSTRUCTURE BODY)")
    check_part(it["BODYSTRUCTURE"], expected_structure(True))
    check_part(it["BODY"], expected_structure(False))
    # BODY carries no extension data: a multipart ends with its subtype
    assert isinstance(it["BODY"][-1], (str, bytes)), it["BODY"]
    msg = simple_message("first", "First body.\r\n")
    body = msg.split(b"\r\n\r\n", 1)[1]
    it = one_fetch(r, "FETCH 1 BODYSTRUCTURE")
    check_part(it["BODYSTRUCTURE"],
               [b"TEXT", b"PLAIN", [b"CHARSET", b"us-ascii"], None, None,
                b"7BIT", len(body), lines(body)])


def test_envelope(srv, box):
    r = box
    env = one_fetch(r, "FETCH 2 ENVELOPE")["ENVELOPE"]
    ann = [[b"Ann Example", None, b"ann", b"example.org"]]
    assert env[0] == b"Tue, 03 Nov 2026 09:30:00 +0100"
    assert env[1] == b"=?ISO-8859-1?Q?Caf=E9?= structure"
    assert env[2] == ann
    assert env[3] == ann            # Sender defaults to From
    assert env[4] == ann            # Reply-To defaults to From
    assert env[5] == [[None, None, b"bob", b"example.com"],
                      [b"Carol C.", None, b"carol", b"example.net"]]
    assert env[6] == [[None, None, b"undisclosed-recipients", None],
                      [None, None, None, None]]
    assert env[7] is None
    assert env[8] == b"<parent.1@example.org>"
    assert env[9] == b"<multi.1@example.org>"
    env = one_fetch(r, "FETCH 1 ENVELOPE")["ENVELOPE"]
    assert env[1] == b"first" and env[7] is None and env[8] is None


def test_peek_and_seen(srv, box):
    r = box
    one_fetch(r, "FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] RFC822.HEADER "
                 "RFC822.SIZE ENVELOPE BODYSTRUCTURE)")
    assert flags_of(one_fetch(r, "FETCH 1 FLAGS")) == []
    one_fetch(r, "FETCH 1 BODY[TEXT]")
    assert flags_of(one_fetch(r, "FETCH 1 FLAGS")) == ["\\seen"]
    one_fetch(r, "FETCH 3 RFC822.TEXT")
    assert "\\seen" in flags_of(one_fetch(r, "FETCH 3 FLAGS"))
    # Read-only: BODY[] does not set \Seen
    r.select(examine=True)
    one_fetch(r, "FETCH 2 BODY[]")
    assert flags_of(one_fetch(r, "FETCH 2 FLAGS")) == []
    r.select()
    assert flags_of(one_fetch(r, "FETCH 2 FLAGS")) == []


def test_binary(srv, box):
    r = box
    need = r.capabilities()
    if "BINARY" not in [c.upper() for c in need]:
        pytest.skip("BINARY is not offered (the issue asks it only where "
                    "offered)")
    it = one_fetch(r, "FETCH 2 (BINARY.PEEK[3] BINARY.SIZE[3] "
                      "BINARY.PEEK[2.1] BINARY.SIZE[2.1] BINARY.PEEK[1])")
    assert it["BINARY[3]"] == bytes(range(10))
    assert it["BINARY.SIZE[3]"] == 10
    assert it["BINARY[2.1]"] == "Café inner plain.\r\n".encode()
    assert it["BINARY.SIZE[2.1]"] == len("Café inner plain.\r\n".encode())
    assert it["BINARY[1]"] == PART1
    it = one_fetch(r, "FETCH 2 (BINARY.PEEK[3]<1.3>)")
    assert it["BINARY[3]<1>"] == bytes([1, 2, 3])
    assert flags_of(one_fetch(r, "FETCH 2 FLAGS")) == []
    one_fetch(r, "FETCH 2 BINARY[3]")
    assert flags_of(one_fetch(r, "FETCH 2 FLAGS")) == ["\\seen"]


def test_macros(srv, box):
    r = box
    it = one_fetch(r, "FETCH 1 FAST")
    assert {"FLAGS", "INTERNALDATE", "RFC822.SIZE"} <= set(it)
    it = one_fetch(r, "FETCH 1 ALL")
    assert {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"} <= set(it)
    it = one_fetch(r, "FETCH 1 FULL")
    assert {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
            "BODY"} <= set(it)


def uids_by_seq(res):
    return {seq: it["UID"] for seq, it in res.fetches() if "UID" in it}


def test_sequence_sets(srv, box):
    r = box
    all_ = uids_by_seq(r.ok("FETCH 1:* UID"))
    assert sorted(all_) == [1, 2, 3]
    u1, u2, u3 = all_[1], all_[2], all_[3]
    assert sorted(uids_by_seq(r.ok("FETCH *:2 UID"))) == [2, 3]
    assert sorted(uids_by_seq(r.ok("FETCH 3:1 UID"))) == [1, 2, 3]
    assert sorted(uids_by_seq(r.ok("FETCH * UID"))) == [3]
    assert sorted(uids_by_seq(r.ok("FETCH 3,1 UID"))) == [1, 3]
    assert sorted(uids_by_seq(r.ok("FETCH 1,1:2,2 UID"))) == [1, 2]
    # UIDs: '*' is the highest UID, so N:* with N past it is that message
    res = r.ok(f"UID FETCH {u3 + 100}:* FLAGS")
    assert uids_by_seq(res) == {3: u3}
    res = r.ok(f"UID FETCH {u3}:{u1} FLAGS")
    assert uids_by_seq(res) == {1: u1, 2: u2, 3: u3}
    res = r.ok(f"UID FETCH {u3 + 50}:{u3 + 60} FLAGS")
    assert uids_by_seq(res) == {}
    res = r.ok(f"UID FETCH {u1},{u3} (FLAGS)")
    assert uids_by_seq(res) == {1: u1, 3: u3}       # UID always returned
    # sequence numbers past EXISTS, zero and junk are errors
    r.not_ok("FETCH 4 UID")
    r.not_ok("FETCH 0 UID")
    r.not_ok("FETCH 1:x UID", allowed=("BAD",))
    r.not_ok("FETCH 1 (NOSUCHITEM)", allowed=("BAD",))
    r.ok("NOOP")


def test_imaplib_fetch(srv, acct):
    """The same data through imaplib, as clients use it."""
    srv.deliver(acct, MULTI)
    c = srv.imap(acct)
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    res = imaplib_fetch(c, "1", "(BODY.PEEK[2.1] RFC822.SIZE)")
    assert res[1]["BODY[2.1]"] == P21
    assert res[1]["RFC822.SIZE"] == len(MULTI)
    c.logout()


def flag_map(r):
    """UID -> lower-cased flags of every message of the selected folder."""
    out = {}
    for _, it in r.ok("FETCH 1:* (UID FLAGS)").fetches():
        out[it["UID"]] = sorted(f.lower() for f in flags_of(it))
    return out


def test_reselect_sees_every_change(srv, acct):
    """Selecting a folder again, in a new session or the same one, shows
    what changed since it was last selected: deliveries, flags and keywords
    set by other sessions, expunges (the server may reuse what it knew of
    the folder only while nothing changed)."""
    for i in range(3):
        srv.deliver(acct, simple_message(f"r{i}"))
    a = srv.raw(acct)
    a.select()
    first = flag_map(a)
    assert len(first) == 3
    a.ok("LOGOUT")
    a.close()
    # A delivery while no session has the folder.
    srv.deliver(acct, simple_message("r3"))
    b = srv.raw(acct)
    assert b.select().numbered("EXISTS") == [4]
    uids = sorted(flag_map(b))
    assert len(uids) == 4 and uids[:3] == sorted(first)
    b.ok(f"UID STORE {uids[0]} +FLAGS (\\Flagged $Work)")
    b.ok("UNSELECT")
    # Flags set in the closed session, seen by a new one.
    c = srv.raw(acct)
    c.select()
    fm = flag_map(c)
    assert fm[uids[0]] == ["$work", "\\flagged"], fm
    # Another session changes and expunges while this one is selected and
    # after the folder was selected and closed by a third one.
    d = srv.raw(acct)
    d.select()
    d.ok("CLOSE")
    c.ok(f"UID STORE {uids[1]} +FLAGS (\\Deleted)")
    c.ok("EXPUNGE")
    c.ok(f"UID STORE {uids[2]} +FLAGS (\\Seen)")
    res = d.select()
    assert res.numbered("EXISTS") == [3], res
    fm = flag_map(d)
    assert sorted(fm) == [uids[0], uids[2], uids[3]], fm
    assert fm[uids[2]] == ["\\seen"] and fm[uids[3]] == [], fm
    # The same session again, after a change made elsewhere meanwhile.
    d.ok("UNSELECT")
    c.ok(f"UID STORE {uids[0]} -FLAGS ($Work)")
    d.select(examine=True)
    assert flag_map(d)[uids[0]] == ["\\flagged"]
    # A folder selected again after it was deleted and made anew.
    c.ok("CREATE ", quote("Again"))
    srv.deliver(acct, simple_message("in again"), folder="Again")
    d.select("Again")
    d.ok("UNSELECT")
    c.ok("UNSELECT")
    c.ok("DELETE ", quote("Again"))
    c.ok("CREATE ", quote("Again"))
    assert d.select("Again").numbered("EXISTS") == [0]
    for r in (c, d):
        r.ok("LOGOUT")
        r.close()
