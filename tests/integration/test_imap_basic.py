"""tern-imapd: greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN (with and
without SASL-IR), ID, NOOP, LOGOUT, ENABLE, the IMAP4rev2 differences
after ENABLE IMAP4rev2, and the authentication failure delay and lockout
shared with POP3.  TERN_IMAP_TARGET selects the server (imapenv.py)."""
import imaplib
import poplib
import re
import time

import pytest

import imapenv
from imapenv import (PASSWORD, Lit, acct, need_cap, plain_ir,  # noqa
                     quote, srv)

# What the issue asks tern-imapd to list once authenticated.
EXTENSIONS = ["IMAP4rev1", "IMAP4rev2", "IDLE", "NAMESPACE", "UIDPLUS",
              "MOVE", "LITERAL+", "SPECIAL-USE", "CREATE-SPECIAL-USE",
              "LIST-EXTENDED", "LIST-STATUS", "ENABLE", "CONDSTORE",
              "QRESYNC", "ESEARCH", "SEARCHRES", "SORT",
              "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ID", "UNSELECT",
              "QUOTA", "STATUS=SIZE", "COMPRESS=DEFLATE", "CHILDREN",
              "WITHIN", "UTF8=ACCEPT"]


DOVECOT_23_LACKS = {"IMAP4rev2", "CREATE-SPECIAL-USE", "UTF8=ACCEPT"}


def test_greeting_and_capability_before_login(srv):
    r = srv.raw()
    assert re.match(rb"\* OK[ \r]", r.greeting), r.greeting
    caps = [c.upper() for c in r.capabilities()]
    assert "IMAP4REV1" in caps
    for c in ("STARTTLS", "AUTH=PLAIN", "SASL-IR"):
        assert c in caps, caps
    assert "LOGINDISABLED" not in caps     # plaintext login allowed here
    r.ok("LOGOUT")
    r.close()


def test_capability_after_login(srv, acct):
    r = srv.raw(acct)
    caps = r.capabilities()
    up = [c.upper() for c in caps]
    missing = {e for e in EXTENSIONS if e.upper() not in up}
    if srv.target == "tern":
        assert not missing, caps
    else:
        # what Dovecot 2.3 lacks; the others are spelled as it lists them
        assert missing <= DOVECOT_23_LACKS, (missing, caps)
    assert "LOGINDISABLED" not in up
    if srv.target == "tern":
        assert "LITERAL-" not in up or "LITERAL+" not in up
        lim = [c for c in up if c.startswith("APPENDLIMIT")]
        assert lim == [f"APPENDLIMIT={imapenv.APPEND_LIMIT}"], caps
    r.close()


def test_login_good_and_bad(srv, acct):
    c = srv.imap()
    with pytest.raises(imaplib.IMAP4.error):
        c.login(acct.user, "wrong password")
    assert c.state == "NONAUTH"
    with pytest.raises(imaplib.IMAP4.error):
        c.login("nobody-here@" + imapenv.DOMAIN, PASSWORD)
    typ, _ = c.login(acct.user, acct.password)
    assert typ == "OK"
    assert c.noop()[0] == "OK"
    typ, data = c.logout()
    assert typ == "BYE"


def test_login_with_literals_and_wrong_arguments(srv, acct):
    r = srv.raw()
    t = r.not_ok("LOGIN ", quote(acct.user))
    assert t.status == "BAD"
    r.ok("LOGIN ", Lit(acct.user), " ", Lit(acct.password))
    r.close()
    r = srv.raw()
    r.ok("LOGIN ", quote(acct.user), " ", Lit(acct.password, sync=False))
    r.ok("NOOP")
    r.close()


def test_logout_says_bye_and_closes(srv, acct):
    r = srv.raw(acct)
    res = r.ok("LOGOUT")
    assert res.named("BYE"), res
    assert r.closed(5)


def test_authenticate_plain(srv, acct):
    r = srv.raw()
    t = r.begin("AUTHENTICATE PLAIN")
    cont = r.response()
    assert cont.startswith(b"+"), cont
    r.send(plain_ir(acct.user, acct.password) + "\r\n")
    res = r.finish(t)
    assert res.status == "OK", res
    r.ok("SELECT INBOX")
    r.close()


def test_authenticate_sasl_ir_and_authzid(srv, acct):
    r = srv.raw()
    r.ok("AUTHENTICATE PLAIN ",
         plain_ir(acct.user, acct.password, authz=acct.user))
    r.ok("NOOP")
    r.close()
    other = srv.account()
    r = srv.raw()
    # authenticating as one user to act as another: refused
    r.not_ok("AUTHENTICATE PLAIN ",
             plain_ir(acct.user, acct.password, authz=other.user),
             allowed=("NO",))
    r.not_ok("AUTHENTICATE PLAIN ", plain_ir(acct.user, "nope"),
             allowed=("NO",))
    r.ok("AUTHENTICATE PLAIN ", plain_ir(other.user, other.password))
    r.close()


def test_authenticate_cancel_and_errors(srv, acct):
    r = srv.raw()
    t = r.begin("AUTHENTICATE PLAIN")
    assert r.response().startswith(b"+")
    r.send("*\r\n")
    assert r.finish(t).status == "BAD"
    r.not_ok("AUTHENTICATE X-NO-SUCH-MECHANISM")
    r.not_ok("AUTHENTICATE PLAIN !!not-base64!!")
    # still usable, still not authenticated
    r.not_ok("SELECT INBOX")
    r.ok("AUTHENTICATE PLAIN ", plain_ir(acct.user, acct.password))
    r.not_ok("AUTHENTICATE PLAIN ", plain_ir(acct.user, acct.password))
    r.close()


def test_noop_capability_in_every_state(srv, acct):
    r = srv.raw()
    r.ok("NOOP")
    r.ok("CAPABILITY")
    r.login(acct)
    r.ok("NOOP")
    r.select()
    r.ok("NOOP")
    r.ok("CAPABILITY")
    r.ok("CHECK")
    r.close()


def test_id(srv, acct):
    r = srv.raw()
    need_cap(srv, r.capabilities(), "ID")
    res = r.ok("ID NIL")
    ids = res.named("ID")
    assert len(ids) == 1, res
    vals = imapenv.parse(ids[0], 5)
    assert vals[0] is None or (isinstance(vals[0], list) and
                               len(vals[0]) % 2 == 0), vals
    res = r.ok('ID ("name" "imaptest" "version" "1.0")')
    assert len(res.named("ID")) == 1
    r.login(acct)
    r.ok("ID NIL")
    r.close()


def test_enable(srv, acct):
    r = srv.raw()
    # ENABLE is valid only once authenticated: nothing is enabled before
    res = r.cmd("ENABLE CONDSTORE")
    assert not any(b"CONDSTORE" in u.upper() for u in res.named("ENABLED"))
    r.login(acct)
    need_cap(srv, r.capabilities(), "ENABLE")
    res = r.ok("ENABLE CONDSTORE X-UNKNOWN-EXTENSION")
    en = res.named("ENABLED")
    assert len(en) == 1, res
    words = en[0].decode().upper().split()[2:]
    assert "CONDSTORE" in words and "X-UNKNOWN-EXTENSION" not in words
    r.close()


def test_imap4rev2_after_enable(srv, acct):
    for i in range(3):
        srv.deliver(acct, imapenv.simple_message(f"rev2 {i}"),
                    flags=("\\Seen",) if i == 0 else ())
    r = srv.raw(acct)
    need_cap(srv, r.capabilities(), "IMAP4rev2")
    res = r.ok("ENABLE IMAP4rev2")
    assert b"IMAP4REV2" in res.named("ENABLED")[0].upper()
    sel = r.select()
    # IMAP4rev2: no RECENT and no UNSEEN response code on SELECT, but a
    # LIST response with the mailbox name
    assert not sel.numbered("RECENT"), sel
    assert not any(b"[UNSEEN " in u for u in sel.untagged), sel
    lst = sel.named("LIST")
    assert len(lst) == 1 and imapenv.parse(lst[0], 7)[2] in (
        "INBOX", b"INBOX"), sel
    assert not any(b"\\RECENT" in u.upper() for u in sel.untagged), sel
    assert sel.numbered("EXISTS") == [3]
    assert any(b"[UIDNEXT " in u for u in sel.untagged)
    # SEARCH answers with ESEARCH
    res = r.ok("SEARCH UNSEEN")
    assert not res.named("SEARCH"), res
    es = res.named("ESEARCH")
    assert len(es) == 1 and re.search(rb"ALL (2:3|2,3)\r", es[0]), res
    # LIST answers with the same mailboxes; LSUB is gone from rev2 but a
    # rev1 client-compatible server may keep it, so it is not tested.
    res = r.ok('LIST "" "INBOX"')
    assert len(res.named("LIST")) == 1
    # STATUS has DELETED in rev2
    res = r.ok("STATUS INBOX (MESSAGES DELETED)")
    st = imapenv.parse(res.named("STATUS")[0], 9)
    d = dict(zip(st[1][::2], st[1][1::2]))
    assert d.get("MESSAGES") == 3 and d.get("DELETED") == 0, st
    # FETCH of a message that has no BINARY encoding problem
    res = r.ok("FETCH 2 (BINARY.SIZE[1] UID)")
    (seq, items), = res.fetches()
    assert seq == 2
    r.close()


def test_failure_delay(srv):
    # (the reference runs with auth_failure_delay = 1s too)
    a = srv.account()
    c = srv.imap()
    times = []
    for _ in range(2):
        t = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error):
            c.login(a.user, "wrong")
        times.append(time.monotonic() - t)
    assert max(times) >= 0.8, times
    assert max(times) < 5, times
    c.logout()
    if srv.target != "tern":
        return
    srv.log_has(r"authentication failed: service=imap rip=127\.0\.0\.1 "
                rf"user=<{re.escape(a.user)}>")


LOCKOUT_SERVICES_POP3 = ("pop3   inet 127.0.0.1:{p} 1 yes tern-popd\n")


@pytest.fixture(scope="module")
def lockout_srv():
    if imapenv.TARGET != "tern":
        pytest.skip("Tern only: the lockout counters shared with tern-popd")
    s = imapenv.TernServer(
        conf={"auth_lockout_threshold": "3", "auth_lockout_time": "1m",
              "auth_failure_delay_max": "0", "pop3_plaintext_auth": "yes"},
        services=lambda b: imapenv.tern_services(
            b, LOCKOUT_SERVICES_POP3.format(p=b + 3)),
        libexec_extra=("popd",))
    yield s
    s.close()


def test_lockout_shared_with_pop3(lockout_srv):
    s = lockout_srv
    a = s.account()
    p = poplib.POP3("127.0.0.1", s.lmtp_port + 3, timeout=30)
    for _ in range(3):
        p.user(a.user)
        try:
            p.pass_("wrong")
        except poplib.error_proto:
            pass
        else:
            raise AssertionError("a wrong POP3 password was accepted")
    try:
        p.quit()
    except (poplib.error_proto, OSError, EOFError):
        pass
    # The client address is now locked out for IMAP too, even with the
    # right password.
    c = s.imap()
    with pytest.raises(imaplib.IMAP4.error):
        c.login(a.user, a.password)
    c.logout()
