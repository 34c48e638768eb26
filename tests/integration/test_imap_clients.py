"""tern-imapd with real IMAP clients from Debian, on a real instance
(authd, stored, lmtpd, and tern-imapd on two services: imap with two
processes, and imaps with implicit TLS and the instance's self-signed
certificate).

- mbsync (isync): 2,000 messages of varied sizes (some MIME multiparts,
  some with 8-bit bodies) delivered through tern-lmtpd are synchronised
  to a local Maildir over imaps; flags changed in the Maildir, messages
  deleted there, new messages and new folders are pushed back; a repeated
  run in either direction changes nothing; changes made on the server by
  another client come back; a folder is copied again over STARTTLS.  The
  server side is checked with imaplib.
- curl's imap:// and imaps:// URLs: folder list, messages by UID and by
  number, sections, STATUS, UID SEARCH, an upload, and whole-folder STORE
  and COPY on a folder whose UIDs have many gaps, compared with what was
  delivered.

The clients are not installed by the tests (scripts/install-deps does
that); a test whose client is missing is skipped.
"""
import base64
import email
import imaplib
import os
import pty
import random
import re
import shutil
import smtplib
import subprocess
import threading
import time

import pytest

import conftest
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in
                         ("authd", "stored", "lmtpd", "imapd"))
PASSWORD = "Imap-Secret 42"

CONF = ("authd_timeout = 5s\n"
        "imap_store_timeout = 20s\n"
        "imap_plaintext_auth = yes\n"
        "auth_failure_delay_max = 1s\n"
        "restart_delay = 100ms\n")

DEFAULT_FOLDERS = {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}


def services(base):
    return (f"authd  unix run/authd.sock 1 yes tern-authd\n"
            f"stored unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp   inet 127.0.0.1:{base} 1 yes tern-lmtpd\n"
            f"imap   inet 127.0.0.1:{base + 1} 2 yes tern-imapd\n"
            f"imaps  inet 127.0.0.1:{base + 2} 1 yes tern-imapd\n")


class Env:
    def __init__(self, inst):
        self.inst = inst
        self.root = inst.root
        self.lmtp_port = inst.port_base
        self.port = inst.port_base + 1
        self.ssl_port = inst.port_base + 2
        self.cert = inst.conf(os.path.join("ssl", "tern.crt"))

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def deliver(self, rcpt, msgs, connections=1):
        """Delivers each message (bytes) through tern-lmtpd; with one
        connection the UIDs follow the list's order."""
        errors = []

        def worker(part):
            try:
                with smtplib.LMTP("127.0.0.1", self.lmtp_port,
                                  timeout=60) as c:
                    c.ehlo("mta.example.org")
                    assert c.has_extn("8bitmime")
                    for m in part:
                        c.sendmail("sender@example.org", [rcpt], m,
                                   mail_options=["BODY=8BITMIME"])
            except Exception as e:      # noqa: BLE001 (reported below)
                errors.append(e)
        parts = [msgs[i::connections] for i in range(connections)]
        threads = [threading.Thread(target=worker, args=(p,))
                   for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "delivery hangs"
        assert not errors, errors

    def imap(self, user):
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        c.login(user, PASSWORD)
        return c

    def wait_running(self, names):
        self.inst.wait_running(names)


@pytest.fixture
def env(make_instance, monkeypatch):
    monkeypatch.setattr(conftest, "LIBEXEC",
                        conftest.LIBEXEC + ":" + LIBEXEC_EXTRA)
    inst = make_instance(services=services, conf=CONF, start=False)
    e = Env(inst)
    e.ctl("domain", "add", "example.com")
    for a in ("ann", "bob"):
        e.ctl("account", "add", f"{a}@example.com", input=PASSWORD + "\n")
    inst.ctl("start")
    e.wait_running(["authd", "stored", "lmtp", "imap", "imaps"])
    yield e
    print(inst.log_tail(80))     # shown when the test failed
    inst.ctl("stop", check=False, timeout=90)
    found, text = inst.problems_logged()
    assert not found, text[-6000:]


# ---- messages -------------------------------------------------------------

UTF8_TEXT = ("Gr\u00fc\u00dfe aus K\u00f6ln, d\u00e9j\u00e0 vu, "
             "\u65e5\u672c\u8a9e, na\u00efve caf\u00e9 \u2014 "
             "eightbit-needle\r\n")


TEXT_TABLE = bytes(b"abcdefghij klmnopqrstuvwxyz.,0123456789 "[i % 40]
                   for i in range(256))


def _lines(rnd, size):
    """Printable ASCII text of about size bytes, in CRLF lines."""
    out, n = [], 0
    while n < size:
        width = rnd.randrange(20, 990)
        line = "x" + rnd.randbytes(width).translate(TEXT_TABLE).decode()
        out.append(line)
        n += len(line) + 2
    return "\r\n".join(out) + "\r\n"


def message(i, rnd):
    """Message number i (bytes): its Message-ID is <m{i}@isync.test>; the
    Subject names the message and its batch (i % 7)."""
    head = (f"From: Sender {i} <sender@example.org>\r\n"
            f"To: someone@example.com\r\n"
            f"Subject: msg {i} batch-{i % 7}\r\n"
            f"Date: Sun, 29 Nov 2026 04:{i % 60:02d}:00 +0000\r\n"
            f"Message-ID: <m{i}@isync.test>\r\n"
            f"MIME-Version: 1.0\r\n")
    kind = i % 50
    if kind == 7:
        blob = bytes(rnd.randrange(256) for _ in
                     range(rnd.randrange(2000, 30000)))
        b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
        body = (f"Content-Type: multipart/mixed; boundary=\"b{i}-outer\"\r\n"
                f"\r\n"
                f"preamble\r\n"
                f"--b{i}-outer\r\n"
                f"Content-Type: multipart/alternative; "
                f"boundary=\"b{i}-alt\"\r\n"
                f"\r\n"
                f"--b{i}-alt\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n"
                f"\r\n"
                f"{UTF8_TEXT}"
                f"--b{i}-alt\r\n"
                f"Content-Type: text/html; charset=us-ascii\r\n"
                f"\r\n"
                f"<p>part {i}</p>\r\n"
                f"--b{i}-alt--\r\n"
                f"--b{i}-outer\r\n"
                f"Content-Type: application/octet-stream; "
                f"name=\"a{i}.bin\"\r\n"
                f"Content-Disposition: attachment; filename=\"a{i}.bin\"\r\n"
                f"Content-Transfer-Encoding: base64\r\n"
                f"\r\n"
                f"{b64}"
                f"--b{i}-outer--\r\n"
                f"epilogue {i}\r\n")
    elif kind in (13, 29):
        body = ("Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
                + UTF8_TEXT * rnd.randrange(1, 40))
    else:
        if i % 400 == 11:
            size = 300_000
        else:
            size = rnd.choice((40, 300, 1500, 6000, 20000))
        body = "Content-Type: text/plain\r\n\r\n" + _lines(rnd, size)
    return (head + body + f"END-{i}\r\n").encode("utf-8")


def make_messages(count, seed):
    rnd = random.Random(seed)
    return [message(i, rnd) for i in range(count)]


def mid_of(data):
    m = re.search(rb"(?im)^Message-ID: *(<[^>\r\n]*>)", data)
    return m.group(1).decode() if m else None


# ---- server-side views -----------------------------------------------------

def server_messages(c, folder):
    """{Message-ID: (uid, set of flags)} of a folder, and the number of
    messages it holds; fails on a Message-ID seen twice."""
    typ, data = c.select(f'"{folder}"', readonly=True)
    assert typ == "OK", data
    count = int(data[0])
    out, seen = {}, 0
    if count == 0:
        return out, 0
    typ, data = c.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS "
                        "(MESSAGE-ID)])")
    assert typ == "OK", data
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta, header = item
        uid = int(re.search(rb"UID (\d+)", meta).group(1))
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1)
                    .decode().split())
        mid = mid_of(header)
        assert mid is not None, (meta, header)
        assert mid not in out, f"duplicate {mid} in {folder}"
        out[mid] = (uid, flags)
        seen += 1
    assert seen == count, (seen, count)
    return out, count


def server_state(env, user):
    """STATUS of every folder: a view that changes when anything is
    stored, expunged or appended (HIGHESTMODSEQ, UIDNEXT, MESSAGES)."""
    c = env.imap(user)
    try:
        typ, data = c.list('""', "*")
        assert typ == "OK", data
        names = sorted(_list_name(l) for l in data)
        state = {}
        for n in names:
            typ, st = c.status(f'"{n}"', "(MESSAGES UIDNEXT UIDVALIDITY "
                               "UNSEEN HIGHESTMODSEQ)")
            assert typ == "OK", st
            state[n] = re.sub(rb"^.*\(", b"(", st[0]).decode()
        return state
    finally:
        c.logout()


def _list_name(line):
    m = re.match(rb'\([^)]*\) "/" (.*)$', line)
    assert m, line
    name = m.group(1)
    return name.strip(b'"').decode()


# ---- mbsync -----------------------------------------------------------------

def write_mbsyncrc(env, tmp, port, ssl_type, patterns="*"):
    """An mbsync configuration in tmp for ann's account (checking the
    server's certificate against the instance's own), with the Maildirs
    tmp/inbox and tmp/mail/FOLDER."""
    rc = os.path.join(tmp, "mbsyncrc")
    os.makedirs(os.path.join(tmp, "mail"))
    with open(rc, "w") as f:
        f.write(f"IMAPAccount tern\n"
                f"Host 127.0.0.1\n"
                f"Port {port}\n"
                f"User ann@example.com\n"
                f"Pass \"{PASSWORD}\"\n"
                f"SSLType {ssl_type}\n"
                f"CertificateFile {env.cert}\n"
                f"Timeout 60\n"
                f"\n"
                f"IMAPStore far\n"
                f"Account tern\n"
                f"\n"
                f"MaildirStore near\n"
                f"Path {tmp}/mail/\n"
                f"Inbox {tmp}/inbox\n"
                f"SubFolders Verbatim\n"
                f"\n"
                f"Channel tern\n"
                f"Far :far:\n"
                f"Near :near:\n"
                f"Patterns {patterns}\n"
                f"Create Both\n"
                f"Expunge Both\n"
                f"SyncState *\n"
                f"Sync All\n")
    return rc


# mbsync prints its progress counters only to a terminal: "C: 1/1  B: 7/7
# F: +3/3 *250/250 #0/0  N: +0/0 *0/0 #0/0", added, flag-changed and
# trashed messages, done/total, on the far (server) and near side.
STATS_RE = re.compile(r"F: \+(\d+)/(\d+) \*(\d+)/(\d+) #(\d+)/(\d+)\s+"
                      r"N: \+(\d+)/(\d+) \*(\d+)/(\d+) #(\d+)/(\d+)")


def mbsync(tmp, rc, *args):
    """Runs mbsync on a terminal; returns its output and its final totals
    (far +, *, #, near +, *, #)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(["mbsync", "-c", rc, *args, "tern"],
                         stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=subprocess.PIPE,
                         env=dict(os.environ, HOME=tmp, TERM="dumb"))
    os.close(slave)
    chunks = []
    reader = threading.Thread(target=_drain, args=(master, chunks))
    reader.start()
    try:
        err = p.communicate(timeout=300)[1].decode(errors="replace")
    finally:
        p.kill()
        reader.join(timeout=10)
        os.close(master)
    # Only the last state of each counter line is kept.
    out = "\n".join(l.rsplit("\r", 1)[-1] for l in
                    b"".join(chunks).decode(errors="replace").split("\r\n"))
    out = (out + err)[-4000:]
    assert p.returncode == 0, out
    assert "rror" not in out and "arning" not in out, out
    found = STATS_RE.findall(out)
    assert found, out
    last = [int(x) for x in found[-1]]
    done, total = last[0::2], last[1::2]
    assert done == total, out
    return out, tuple(total)


def _drain(fd, chunks):
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:         # EIO once mbsync has gone
            return
        if not data:
            return
        chunks.append(data)


def maildir_files(path):
    """{file name: bytes} of a Maildir's cur/ and new/."""
    out = {}
    for sub in ("cur", "new"):
        d = os.path.join(path, sub)
        for n in os.listdir(d):
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.join(sub, n)] = f.read()
    return out


def tree_listing(tmp):
    """Every file under the Maildirs with its size (the .mbsyncstate files
    are left out: mbsync may rewrite them without a change)."""
    out = []
    for top in ("inbox", "mail"):
        for d, _, files in os.walk(os.path.join(tmp, top)):
            for n in files:
                if n.startswith(".mbsync") or n.startswith(".uidvalidity"):
                    continue
                p = os.path.join(d, n)
                out.append((os.path.relpath(p, tmp), os.path.getsize(p)))
    return sorted(out)


def set_maildir_flags(box, name, flags):
    """Renames a Maildir message (found by its relative name under box)
    into cur/ with the given flag letters; returns the new relative
    name."""
    base = os.path.basename(name).split(":2,")[0]
    new = os.path.join("cur", base + ":2," + "".join(sorted(flags)))
    os.rename(os.path.join(box, name), os.path.join(box, new))
    return new


def maildir_flag_letters(name):
    return set(name.split(":2,")[1]) if ":2," in name else set()


def add_maildir_message(box, tag, data, sub="new", flags=""):
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(box, d), exist_ok=True)
    name = f"{int(time.time())}.{tag}.isynctest"
    if sub == "cur":
        name += ":2," + flags
    with open(os.path.join(box, sub, name), "wb") as f:
        f.write(data)


def lf(data):
    return data.replace(b"\r\n", b"\n")


def without_tuid(data):
    """A Maildir message without the X-TUID header mbsync adds to the
    header of each message it copies (its own bookkeeping)."""
    head, sep, body = data.partition(b"\n\n")
    head = re.sub(rb"(?m)^X-TUID: [^\n]*\n?", b"", head + b"\n")[:-1]
    return head + sep + body


@pytest.mark.skipif(shutil.which("mbsync") is None,
                    reason="mbsync not installed (Debian package isync; "
                    "scripts/install-deps installs it)")
def test_mbsync_2000(env, tmp_path):
    user = "ann@example.com"
    tmp = str(tmp_path)
    count = 2000
    msgs = make_messages(count, seed=2026)
    by_mid = {mid_of(m): m for m in msgs}
    assert len(by_mid) == count
    started = time.monotonic()
    env.deliver(user, msgs, connections=4)
    t_deliver = time.monotonic() - started
    rc = write_mbsyncrc(env, tmp, env.ssl_port, "IMAPS")

    # 1. Everything to the Maildir.
    t = time.monotonic()
    out, stats = mbsync(tmp, rc)
    t_pull = time.monotonic() - t
    assert stats[3] == count, out           # near: +2000
    assert stats[:3] == (0, 0, 0), out      # nothing sent to the server
    inbox = os.path.join(tmp, "inbox")
    files = maildir_files(inbox)
    assert len(files) == count
    local_mids = {}
    for name, data in files.items():
        mid = mid_of(data)
        assert mid in by_mid, name
        assert mid not in local_mids, f"duplicate {mid}"
        local_mids[mid] = name
        # tern-lmtpd adds its trace headers in front; the rest is what was
        # delivered, 8-bit bytes included (mbsync stores LF line ends).
        assert without_tuid(data).endswith(lf(by_mid[mid])), name
        assert maildir_flag_letters(name) == set(), name
    for f in DEFAULT_FOLDERS - {"INBOX"}:
        assert os.path.isdir(os.path.join(tmp, "mail", f, "cur")), f
    multipart = files[local_mids["<m7@isync.test>"]]
    parsed = email.message_from_bytes(multipart)
    parts = [p.get_content_type() for p in parsed.walk()]
    assert parts == ["multipart/mixed", "multipart/alternative",
                     "text/plain", "text/html",
                     "application/octet-stream"], parts
    assert UTF8_TEXT.encode().rstrip() in multipart

    # 2. A second pull does nothing, on either side.
    listing, state = tree_listing(tmp), server_state(env, user)
    out, stats = mbsync(tmp, rc, "--pull")
    assert stats == (0,) * 6, out
    assert tree_listing(tmp) == listing
    assert server_state(env, user) == state

    # 3. Changes in the Maildir: flags, deletions, new messages, a folder.
    seen = {f"<m{i}@isync.test>" for i in range(3, count, 10)}
    flagged = {f"<m{i}@isync.test>" for i in range(1, count, 40)}
    flagged |= {"<m3@isync.test>", "<m13@isync.test>"}    # both flags
    deleted = {f"<m{i}@isync.test>" for i in (0, 17, 444, 1001, 1999)}
    for mid in seen | flagged | deleted:
        letters = set()
        if mid in seen:
            letters.add("S")
        if mid in flagged:
            letters.add("F")
        if mid in deleted:
            letters.add("T")
        set_maildir_flags(inbox, local_mids[mid], letters)
    rnd = random.Random(7)
    new_msgs = {f"<new{i}@isync.test>": message(10_000 + i, rnd).replace(
        f"<m{10_000 + i}@isync.test>".encode(), f"<new{i}@isync.test>"
        .encode()) for i in range(3)}
    for i, (mid, data) in enumerate(new_msgs.items()):
        if i == 0:
            add_maildir_message(inbox, f"n{i}", lf(data), "cur", "S")
        else:
            add_maildir_message(inbox, f"n{i}", lf(data))
    project_msgs = {f"<proj{i}@isync.test>": (
        f"From: ann@example.com\nTo: bob@example.com\n"
        f"Subject: project {i}\nMessage-ID: <proj{i}@isync.test>\n\n"
        f"Plan {i}: caf\u00e9\n").encode() for i in range(2)}
    projects = os.path.join(tmp, "mail", "Projects")
    for i, data in enumerate(project_msgs.values()):
        add_maildir_message(projects, f"p{i}", data, "cur", "F")
    sub_msg = (b"From: ann@example.com\nSubject: nested\n"
               b"Message-ID: <nested@isync.test>\n\nin a subfolder\n")
    add_maildir_message(os.path.join(projects, "2026"), "s", sub_msg)

    # 4. Pushed to the server.
    before = server_state(env, user)
    out, stats = mbsync(tmp, rc, "--push")
    assert server_state(env, user)["INBOX"] != before["INBOX"]
    assert stats[0] == len(new_msgs) + len(project_msgs) + 1, out   # far +
    assert stats[1] == len(seen | flagged | deleted), out       # far *
    assert stats[2] == 0, out                                   # far #
    c = env.imap(user)
    got, n = server_messages(c, "INBOX")
    expect_mids = (set(by_mid) - deleted) | set(new_msgs)
    assert n == count - len(deleted) + len(new_msgs)
    assert set(got) == expect_mids
    for mid, (uid, flags) in got.items():
        want = set()
        if mid in seen or mid == "<new0@isync.test>":
            want.add("\\Seen")
        if mid in flagged:
            want.add("\\Flagged")
        assert flags == want, (mid, uid, flags)
    newest = max(uid for uid, _ in got.values())
    assert {got[m][0] for m in new_msgs} == set(
        range(newest - len(new_msgs) + 1, newest + 1))
    for mid, data in new_msgs.items():
        typ, body = c.uid("FETCH", str(got[mid][0]), "(BODY.PEEK[])")
        assert typ == "OK", body
        # mbsync sends CRLF lines, and may add its X-TUID header.
        assert without_tuid(lf(body[0][1])) == lf(data), (mid, body)
    typ, data = c.list('""', "*")
    names = {_list_name(l) for l in data}
    assert names == DEFAULT_FOLDERS | {"Projects", "Projects/2026"}, \
        names
    got, n = server_messages(c, "Projects")
    assert n == 2 and set(got) == set(project_msgs)
    assert all(flags == {"\\Flagged"} for _, flags in got.values())
    got, n = server_messages(c, "Projects/2026")
    assert n == 1 and set(got) == {"<nested@isync.test>"}
    assert got["<nested@isync.test>"][1] == set()
    c.logout()

    # 5. A second push does nothing; nor does a full run both ways.
    listing, state = tree_listing(tmp), server_state(env, user)
    out, stats = mbsync(tmp, rc, "--push")
    assert stats == (0,) * 6, out
    assert tree_listing(tmp) == listing
    assert server_state(env, user) == state
    out, stats = mbsync(tmp, rc)
    assert stats == (0,) * 6, out
    assert tree_listing(tmp) == listing
    assert server_state(env, user) == state
    files = maildir_files(inbox)
    assert len(files) == count - len(deleted) + len(new_msgs)
    assert not any("T" in maildir_flag_letters(n) for n in files)

    # 6. Changes made on the server by another client come back.
    c = env.imap(user)
    c.select("INBOX")
    got, _ = server_messages(c, "INBOX")
    c.select("INBOX")
    answer, gone = got["<m2@isync.test>"][0], got["<m4@isync.test>"][0]
    typ, _ = c.uid("STORE", str(answer), "+FLAGS", "(\\Answered)")
    assert typ == "OK"
    typ, _ = c.uid("STORE", str(gone), "+FLAGS", "(\\Deleted)")
    assert typ == "OK"
    typ, _ = c.expunge()
    assert typ == "OK"
    c.logout()
    state = server_state(env, user)
    out, stats = mbsync(tmp, rc, "--pull")
    assert stats == (0, 0, 0, 0, 2, 0), out     # near: *2 (R, and T)
    assert server_state(env, user) == state
    files = maildir_files(inbox)
    names = {mid_of(d): n for n, d in files.items()}
    assert len(files) == count - len(deleted) + len(new_msgs) - 1
    assert "<m4@isync.test>" not in names
    assert maildir_flag_letters(names["<m2@isync.test>"]) == {"R"}

    # 7. A fresh copy of the Projects folders over STARTTLS on the
    # plaintext port.
    top = os.path.join(tmp, "starttls")
    rc = write_mbsyncrc(env, top, env.port, "STARTTLS", "Projects*")
    out, stats = mbsync(top, rc, "--pull")
    assert stats == (0, 0, 0, len(project_msgs) + 1, 0, 0), out
    copy = maildir_files(os.path.join(top, "mail", "Projects"))
    assert sorted(mid_of(d) for d in copy.values()) == sorted(project_msgs)
    assert all(maildir_flag_letters(n) == {"F"} for n in copy)
    copy = maildir_files(os.path.join(top, "mail", "Projects", "2026"))
    assert [without_tuid(d) for d in copy.values()] == [sub_msg]
    total = time.monotonic() - started
    print(f"mbsync: delivery {t_deliver:.1f}s, first sync {t_pull:.1f}s, "
          f"total {total:.1f}s")
    assert total < 240


# ---- curl -------------------------------------------------------------------

def curl(*args, check=True):
    p = subprocess.run(["curl", "-sS", "--max-time", "30", *args],
                       capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stderr)
    return p


def search_lines(out):
    """The UIDs of the '* SEARCH' lines of curl's output."""
    uids = []
    lines = [l for l in out.decode().splitlines() if l.startswith("* SEARCH")]
    assert len(lines) == 1, out
    for l in lines:
        uids += [int(x) for x in l.split()[2:]]
    return sorted(uids)


@pytest.mark.skipif(shutil.which("curl") is None,
                    reason="curl not installed (scripts/install-deps)")
def test_curl(env, tmp_path):
    user = "bob@example.com"
    msgs = make_messages(60, seed=99)
    env.deliver(user, msgs)          # one connection: message i has UID i+1
    auth = ["-u", f"{user}:{PASSWORD}"]
    plain = f"imap://127.0.0.1:{env.port}"
    tls = f"imaps://127.0.0.1:{env.ssl_port}"

    # Folder list, plaintext and TLS.
    for base, extra in ((plain, []), (tls, ["-k"])):
        p = curl(*auth, *extra, base + "/")
        names = {_list_name(l.split(b" ", 2)[2])
                 for l in p.stdout.splitlines() if l.startswith(b"* LIST ")}
        assert names == DEFAULT_FOLDERS, p.stdout

    # Messages by UID, over both.
    for uid in (1, 8, 14, 60):
        for base, extra in ((plain, []), (tls, ["-k"])):
            p = curl(*auth, *extra, f"{base}/INBOX;UID={uid}")
            assert p.stdout.endswith(msgs[uid - 1]), (uid, p.stdout[-200:])
            assert p.stdout.startswith(b"Return-Path: <sender@example.org>")
    # A section, and the header fields of one.
    p = curl(*auth, f"{plain}/INBOX;UID=14;SECTION=TEXT")
    assert p.stdout == msgs[13].split(b"\r\n\r\n", 1)[1]
    # Message 8 is multipart/mixed: (multipart/alternative: (text/plain,
    # text/html), application/octet-stream); the CRLF before a boundary
    # belongs to the boundary.
    p = curl(*auth, f"{plain}/INBOX;UID=8;SECTION=1.1")
    assert p.stdout == UTF8_TEXT.encode()[:-2], p.stdout
    p = curl(*auth, f"{plain}/INBOX;UID=8;SECTION=1.2")
    assert p.stdout == b"<p>part 7</p>", p.stdout
    attachment = [part for part in email.message_from_bytes(msgs[7]).walk()
                  if part.get_filename() == "a7.bin"][0]
    p = curl(*auth, f"{plain}/INBOX;UID=8;SECTION=2")
    assert base64.b64decode(p.stdout) == attachment.get_payload(
        decode=True)
    assert len(p.stdout) > 2000
    p = curl(*auth, f"{plain}/INBOX;UID=8;SECTION=HEADER.FIELDS%20(SUBJECT)")
    assert p.stdout == b"Subject: msg 7 batch-0\r\n\r\n", p.stdout
    # With the right UIDVALIDITY, and a UID that does not exist.
    p = curl(*auth, plain + "/INBOX", "-X", "STATUS INBOX (MESSAGES UIDNEXT "
             "UIDVALIDITY)")
    m = re.search(rb"\* STATUS \"?INBOX\"? \(MESSAGES (\d+) UIDNEXT (\d+) "
                  rb"UIDVALIDITY (\d+)\)", p.stdout)
    assert m, p.stdout
    assert (int(m.group(1)), int(m.group(2))) == (len(msgs), len(msgs) + 1)
    validity = int(m.group(3))
    p = curl(*auth, f"{plain}/INBOX;UIDVALIDITY={validity}/;UID=2")
    assert p.stdout.endswith(msgs[1])
    p = curl(*auth, f"{plain}/INBOX;UIDVALIDITY={validity + 1}/;UID=2",
             check=False)
    assert p.returncode != 0 and p.stdout == b"", p
    p = curl(*auth, f"{plain}/INBOX;UID=999", check=False)
    assert p.returncode != 0 and p.stdout == b"", p
    p = curl("-u", f"{user}:wrong", f"{plain}/INBOX;UID=1", check=False)
    assert p.returncode == 67, p            # CURLE_LOGIN_DENIED

    # UID SEARCH, compared with what was delivered.
    def want(pred):
        return sorted(i + 1 for i, m in enumerate(msgs) if pred(i, m))
    cases = [
        ("UID SEARCH SUBJECT batch-3",
         want(lambda i, m: b"batch-3\r\n" in m)),
        ("UID SEARCH BODY eightbit-needle",
         want(lambda i, m: b"eightbit-needle" in m)),
        ("UID SEARCH LARGER 15000",
         want(lambda i, m: len(m) > 15000)),
        ("UID SEARCH HEADER Message-ID <m41@isync.test>", [42]),
        ("UID SEARCH UID 50:* NOT SUBJECT batch-1",
         want(lambda i, m: i + 1 >= 50 and b"batch-1\r\n" not in m)),
        ("UID SEARCH SUBJECT no-such-thing", []),
    ]
    for cmd, expect in cases:
        assert expect or cmd.endswith("no-such-thing")
        for base, extra in ((plain, []), (tls, ["-k"])):
            p = curl(*auth, *extra, base + "/INBOX", "-X", cmd)
            assert search_lines(p.stdout) == expect, (cmd, p.stdout)
    # The LARGER case sits between sizes: none is within the trace headers'
    # few hundred bytes of the threshold.
    assert not any(14000 < len(m) < 15000 for m in msgs)
    # A search in the URL (by sequence number; no expunges, so the same
    # numbers) and a message by sequence number.
    p = curl(*auth, plain + "/INBOX?SUBJECT%20batch-5")
    assert search_lines(p.stdout) == want(
        lambda i, m: b"batch-5\r\n" in m), p.stdout
    p = curl(*auth, plain + "/INBOX;MAILINDEX=33")
    assert p.stdout.endswith(msgs[32])
    # An upload (APPEND) over TLS, read back with imaplib.
    upload = (b"From: bob@example.com\r\nSubject: uploaded by curl\r\n"
              b"Message-ID: <curl-upload@isync.test>\r\n\r\n"
              b"8-bit: \xc3\xa9t\xc3\xa9\r\n")
    path = os.path.join(str(tmp_path), "upload.eml")
    with open(path, "wb") as f:
        f.write(upload)
    curl("-k", *auth, "-T", path, tls + "/Drafts")
    c = env.imap(user)
    got, n = server_messages(c, "Drafts")
    assert n == 1 and list(got) == ["<curl-upload@isync.test>"]
    typ, data = c.uid("FETCH", str(got["<curl-upload@isync.test>"][0]),
                      "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == upload, data
    c.logout()
    # curl's STORE leaves the flags seen by another client.
    curl(*auth, plain + "/INBOX", "-X", "UID STORE 5 +FLAGS (\\Flagged)")
    c = env.imap(user)
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "FLAGGED")
    assert data == [b"5"], data
    c.logout()


@pytest.mark.skipif(shutil.which("curl") is None,
                    reason="curl not installed (scripts/install-deps)")
def test_curl_whole_folder_with_gaps(env):
    """Whole-folder commands on a folder whose UIDs have many gaps (every
    other message deleted, as in a long-used INBOX): more disjoint UID
    ranges than one request to tern-stored may carry."""
    user = "bob@example.com"
    count = 700
    msgs = [(f"Subject: gap {i}\r\nMessage-ID: <gap{i}@isync.test>\r\n"
             f"\r\nbody {i}\r\n").encode() for i in range(count)]
    env.deliver(user, msgs)
    c = env.imap(user)
    c.select("INBOX")
    odd = list(range(1, count + 1, 2))
    for k in range(0, len(odd), 100):      # 100 ranges a command
        typ, data = c.uid("STORE", ",".join(map(str, odd[k:k + 100])),
                          "+FLAGS.SILENT", "(\\Deleted)")
        assert typ == "OK", data
    typ, data = c.expunge()
    assert typ == "OK" and len(data) == len(odd), (typ, len(data))
    c.logout()
    left = count - len(odd)                  # UIDs 2, 4, 6, ...: 350 ranges
    auth = ["-u", f"{user}:{PASSWORD}"]
    plain = f"imap://127.0.0.1:{env.port}"
    # "Mark all as read", then copy everything to Archive.  (.SILENT:
    # Debian 12's curl 7.88.1 fails a custom command whose untagged
    # responses are 350 short FETCH lines with "Too large response
    # headers", a client limit.)
    p = curl(*auth, plain + "/INBOX", "-X",
             "STORE 1:* +FLAGS.SILENT (\\Seen)", check=False)
    assert p.returncode == 0, (p.returncode, p.stderr)
    p = curl(*auth, plain + "/INBOX", "-X", "COPY 1:* Archive", check=False)
    assert p.returncode == 0, (p.returncode, p.stderr)
    c = env.imap(user)
    got, n = server_messages(c, "INBOX")
    assert n == left
    assert all(flags == {"\\Seen"} for _, flags in got.values())
    assert sorted(uid for uid, _ in got.values()) == list(
        range(2, count + 1, 2))
    got, n = server_messages(c, "Archive")
    assert n == left and set(got) == {f"<gap{i}@isync.test>" for i in
                                      range(1, count, 2)}
    c.logout()
