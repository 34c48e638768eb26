"""tern-imapd: APPEND (flags, date, APPENDUID, TRYCREATE, LITERAL+,
APPENDLIMIT and TOOBIG before the literal is read), COPY and UID COPY
(COPYUID), MOVE and UID MOVE."""
import datetime
import re

import imapenv
from imapenv import (Lit, acct, expand_set, flags_of, need_cap,  # noqa
                     quote, simple_message, srv)

WHEN = "05-Nov-2026 14:20:30 +0200"
WHEN_EPOCH = int(datetime.datetime.strptime(
    WHEN, "%d-%b-%Y %H:%M:%S %z").timestamp())


def uids(r):
    return {seq: it["UID"] for seq, it in r.ok("FETCH 1:* UID").fetches()}


def uidvalidity(r, box):
    res = r.ok("STATUS ", quote(box), " (UIDVALIDITY)")
    return int(re.search(rb"UIDVALIDITY (\d+)", res.named("STATUS")[0])
               .group(1))


def test_append_with_flags_and_date(srv, acct):
    msg = simple_message("appended", "Body of an appended message.\r\n")
    r = srv.raw(acct)
    res = r.ok("APPEND INBOX (\\Seen $Custom) ", quote(WHEN), " ", Lit(msg))
    caps = r.capabilities()
    need_cap(srv, caps, "UIDPLUS")
    m = re.match(r"\[APPENDUID (\d+) (\d+)\]", res.text)
    assert m, res
    assert int(m.group(1)) == uidvalidity(r, "INBOX")
    uid = int(m.group(2))
    r.select()
    res = r.ok(f"UID FETCH {uid} (FLAGS INTERNALDATE BODY.PEEK[] "
               "RFC822.SIZE)")
    (seq, it), = res.fetches()
    assert it["BODY[]"] == msg and it["RFC822.SIZE"] == len(msg)
    assert flags_of(it) == ["$custom", "\\seen"]
    when = datetime.datetime.strptime(it["INTERNALDATE"].decode().strip(),
                                      "%d-%b-%Y %H:%M:%S %z")
    assert when.timestamp() == WHEN_EPOCH
    r.close()


def test_append_imaplib_and_selected_mailbox(srv, acct):
    c = srv.imap(acct)
    c.select("INBOX")
    msg = simple_message("via imaplib")
    typ, data = c.append("INBOX", None, None, msg)
    assert typ == "OK", data
    assert c.noop()[0] == "OK"
    typ, data = c.response("EXISTS")
    assert data[-1] == b"1", data        # the selected mailbox grew
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == msg
    c.logout()


def test_append_errors(srv, acct):
    r = srv.raw(acct)
    msg = simple_message("nowhere")
    res = r.not_ok("APPEND ", quote("No Such Box"), " ", Lit(msg),
                   allowed=("NO",))
    assert res.code() == "TRYCREATE", res
    r.not_ok("APPEND INBOX (\\Seen) ", quote("99-Foo-2026 00:00:00 +0000"),
             " ", Lit(msg), allowed=("BAD",))
    r.not_ok("APPEND INBOX (\\Seen", allowed=("BAD",))
    r.ok("NOOP")
    assert r.select().numbered("EXISTS") == [0]
    r.close()


def test_append_literal_plus(srv, acct):
    r = srv.raw(acct)
    caps = [c.upper() for c in r.capabilities()]
    need_cap(srv, caps, "LITERAL+")
    msgs = [simple_message(f"lp{i}") for i in range(3)]
    # three APPENDs with non-synchronising literals, pipelined
    tags = [r.begin("APPEND INBOX ", Lit(m, sync=False)) for m in msgs]
    for t in tags:
        assert r.finish(t).status == "OK"
    r.select()
    got = [it["BODY[]"] for _, it in
           r.ok("FETCH 1:* BODY.PEEK[]").fetches()]
    assert got == msgs
    # a literal in another command, non-synchronising too
    r.ok("SEARCH SUBJECT ", Lit(b"lp1", sync=False))
    r.close()


def test_appendlimit_toobig_before_the_literal(srv, acct):
    r = srv.raw(acct)
    caps = [c.upper() for c in r.capabilities()]
    lim = [c for c in caps if c.startswith("APPENDLIMIT")]
    if srv.target == "tern":
        assert lim == [f"APPENDLIMIT={imapenv.APPEND_LIMIT}"], caps
    # (Dovecot 2.3 refuses too, with its own [LIMIT] code, but does not
    # advertise APPENDLIMIT, so RFC 7889's TOOBIG is not required there.)
    size = imapenv.APPEND_LIMIT + 1
    t = r.tag = r.next_tag()
    r.send(f"{t} APPEND INBOX {{{size}}}\r\n")
    resp = r.response(timeout=10)
    # refused before the literal: no continuation request
    assert not resp.startswith(b"+"), resp
    m = re.match(rb"(\S+) (NO|BAD)\b(.*)", resp)
    assert m and m.group(1) == t.encode(), resp
    if m.group(2) == b"NO" and lim:
        assert b"[TOOBIG]" in resp, resp
    r.ok("NOOP")
    assert r.select().numbered("EXISTS") == [0]
    r.close()


def test_copy(srv, acct):
    for i in range(3):
        srv.deliver(acct, simple_message(f"cp{i}"), date=WHEN_EPOCH + i,
                    flags=("\\Flagged",) if i == 1 else ())
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "UIDPLUS")
    r.ok("CREATE Dest")
    r.select()
    src = uids(r)
    res = r.ok("COPY 2:3 Dest")
    m = re.match(r"\[COPYUID (\d+) (\S+) (\S+)\]", res.text)
    assert m, res
    assert int(m.group(1)) == uidvalidity(r, "Dest")
    assert expand_set(m.group(2)) == [src[2], src[3]]
    dst = expand_set(m.group(3))
    assert len(dst) == 2
    # the source is unchanged
    assert uids(r) == src
    res = r.not_ok("COPY 1 NoSuchBox", allowed=("NO",))
    assert res.code() == "TRYCREATE"
    res = r.ok(f"UID COPY {src[1]} Dest")
    m = re.match(r"\[COPYUID \d+ (\S+) (\S+)\]", res.text)
    assert m and expand_set(m.group(1)) == [src[1]]
    dst += expand_set(m.group(2))
    r.select("Dest")
    items = {it["UID"]: it for _, it in
             r.ok("FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
             .fetches()}
    assert sorted(items) == sorted(dst)
    # copies keep the bytes, flags and internal date
    for u, i in zip(dst, (1, 2, 0)):
        assert b"Subject: cp%d\r\n" % i in items[u]["BODY[]"]
        assert flags_of(items[u]) == (["\\flagged"] if i == 1 else [])
        when = datetime.datetime.strptime(
            items[u]["INTERNALDATE"].decode().strip(), "%d-%b-%Y %H:%M:%S %z")
        assert when.timestamp() == WHEN_EPOCH + i
    r.close()


def test_move(srv, acct):
    for i in range(4):
        srv.deliver(acct, simple_message(f"mv{i}"))
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "MOVE")
    r.ok("CREATE Moved")
    r.select()
    src = uids(r)
    res = r.ok("MOVE 2:3 Moved")
    text = b"".join(res.untagged) + res.text.encode()
    m = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", text)
    assert m, res
    assert int(m.group(1)) == uidvalidity(r, "Moved")
    assert expand_set(m.group(2).decode()) == [src[2], src[3]]
    exp = res.numbered("EXPUNGE")
    assert len(exp) == 2, res
    order = [src[i] for i in (1, 2, 3, 4)]
    for n in exp:
        del order[n - 1]
    assert order == [src[1], src[4]]
    assert list(uids(r).values()) == order
    res = r.ok(f"UID MOVE {src[4]} Moved")
    assert res.numbered("EXPUNGE") == [2], res
    res = r.not_ok("MOVE 1 NoSuchBox", allowed=("NO",))
    assert res.code() == "TRYCREATE"
    assert r.select("Moved").numbered("EXISTS") == [3]
    assert r.select().numbered("EXISTS") == [1]
    r.close()
