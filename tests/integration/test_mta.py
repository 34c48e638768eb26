"""The MTA end to end on a real instance: a message submitted to tern-smtpd
(on the MX port, and on submission with AUTH) is queued, picked up by
tern-qmgr, delivered over LMTP into the store and read back with IMAP; an
unknown local recipient is refused at RCPT, <postmaster> without a domain
is taken and reaches the configured postmaster, and mail to another
domain from an authenticated user stays queued (no name server answers
here) with its queue id in the log.
"""
import imaplib
import smtplib
import ssl

import pytest

import conftest
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in
                         ("authd", "stored", "lmtpd", "smtpd", "qmgr",
                          "imapd"))
PASSWORD = "Mta-Secret 3"


def services(base):
    return (f"authd      unix run/authd.sock 1 yes tern-authd\n"
            f"stored     unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp-local unix run/lmtp.sock 1 yes tern-lmtpd\n"
            f"smtp       inet 127.0.0.1:{base} 1 yes tern-smtpd\n"
            f"submission inet 127.0.0.1:{base + 1} 1 yes tern-smtpd\n"
            f"qmgr       proc - 1 yes tern-qmgr\n"
            f"imap       inet 127.0.0.1:{base + 2} 1 yes tern-imapd\n")


CONF = ("authd_timeout = 5s\n"
        "dns_resolvers = 127.0.0.1:9\n"     # no name server: mail stays
        "qmgr_postmaster = ann@example.com\n"
        "imap_plaintext_auth = yes\n"
        "smtpd_greet_delay = 0\n"
        "auth_failure_delay_max = 1s\n")


@pytest.fixture
def mta(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=services, conf=CONF)
    inst.ctl("domain", "add", "example.com")
    for user in ("ann", "bob"):
        inst.ctl("account", "add", f"{user}@example.com",
                 input=PASSWORD + "\n")
    return inst


def inbox_subjects(inst, user):
    m = imaplib.IMAP4("127.0.0.1", inst.port_base + 2)
    try:
        m.login(user, PASSWORD)
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [d[1].decode().strip() for d in data
                if isinstance(d, tuple)]
    except imaplib.IMAP4.error:
        return []
    finally:
        m.logout()


def test_mx_to_mailbox(mta):
    with smtplib.SMTP("127.0.0.1", mta.port_base) as s:
        s.ehlo("mx.example.org")
        refused = s.sendmail("someone@example.org",
                             ["ann@example.com", "bob@example.com"],
                             "Subject: over smtp\r\n\r\nhello\r\n")
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("someone@example.org", ["nobody@example.com"],
                       "Subject: x\r\n\r\nx\r\n")
        assert e.value.recipients["nobody@example.com"][0] == 550
    for user in ("ann@example.com", "bob@example.com"):
        mta.wait_for(lambda: "Subject: over smtp" in
                     inbox_subjects(mta, user),
                     timeout=15, what=f"the message in {user}'s INBOX")
    log = mta.log_text()
    assert "status=sent" in log and "relay=lmtp-local" in log


def test_submission_with_auth(mta):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", mta.port_base + 1) as s:
        s.ehlo("client")
        s.starttls(context=ctx)
        s.ehlo("client")
        s.login("ann@example.com", PASSWORD)
        s.sendmail("ann@example.com", ["bob@example.com"],
                   "Subject: submitted\r\n\r\nfrom ann\r\n")
        # another domain: accepted for an authenticated user, queued
        s.sendmail("ann@example.com", ["someone@example.org"],
                   "Subject: outward\r\n\r\nto the world\r\n")
    mta.wait_for(lambda: "Subject: submitted" in
                 inbox_subjects(mta, "bob@example.com"),
                 timeout=15, what="the submitted message")
    mta.wait_for(lambda: "to=<someone@example.org>" in mta.log_text() and
                 "status=deferred" in mta.log_text(),
                 timeout=15, what="the remote recipient deferred")
    listing = mta.ctl("queue", "list").stdout
    assert "someone@example.org" in listing


def test_rcpt_postmaster_without_domain(mta):
    # RFC 5321 4.5.1: <postmaster> is taken from anyone, unauthenticated,
    # and goes to the configured postmaster.
    with smtplib.SMTP("127.0.0.1", mta.port_base) as s:
        s.ehlo("mx.example.org")
        code, _ = s.mail("someone@example.org")
        assert code == 250
        code, msg = s.rcpt("<postmaster>")
        assert code == 250, msg
        code, _ = s.data(b"Subject: to the postmaster\r\n\r\nhi\r\n")
        assert code == 250
    mta.wait_for(lambda: "Subject: to the postmaster" in
                 inbox_subjects(mta, "ann@example.com"),
                 timeout=15, what="the postmaster's message")
