"""The fixture layer of the IMAP integration tests.

Every test_imap_*.py module gets one server (module scope) and a fresh
account per test through one interface, with two targets chosen by the
environment variable TERN_IMAP_TARGET:

  tern     (default) a real Tern instance: authd, stored, lmtp, imap
           (plaintext with STARTTLS) and imaps (implicit TLS);
  dovecot  a private Dovecot imapd on 127.0.0.1 with the same kind of
           accounts, used to check that the tests themselves are right.

The interface (class Server):
  srv.account(quota=None)        a new Account(user, password)
  srv.deliver(acct, data, folder="INBOX", flags=(), date=None, via="store")
                                 a message into a folder: via "store" keeps
                                 the bytes exactly; via "lmtp" is a real
                                 delivery (Tern adds trace headers)
  srv.imap(acct=None)            an imaplib.IMAP4 (logged in with acct)
  srv.imaps(acct=None)           the same over implicit TLS
  srv.raw(acct=None, tls=False)  a Raw client (below), logged in with acct
  srv.port, srv.tls_port, srv.target, srv.log_text(), srv.log_has(rx)
  make_server(option=value, ...) another server with Tern settings changed
                                 (module fixtures of the tests that need one)
  need_cap(srv, caps, name)      a capability the issue requires: fails on
                                 Tern when missing, skips on the reference
  tern_only(srv, why)            skips a Tern-only test on the reference

Fixtures: srv (module scope) and acct (a new account for each test).

Raw is a small IMAP client over a socket for what imaplib cannot express:
literals of either kind, pipelining, IDLE, COMPRESS, response order.
parse() turns IMAP data into Python values: atoms and numbers as str and
int, strings and literals as bytes, NIL as None, lists as lists.
"""
import base64
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import zlib
import imaplib

import pytest

import conftest
import ternipc
from conftest import build_path

TARGET = os.environ.get("TERN_IMAP_TARGET", "tern")
assert TARGET in ("tern", "dovecot"), TARGET
DOMAIN = "example.com"
PASSWORD = "Imap Secret 7"        # with a space: must be quoted
APPEND_LIMIT = 10 * 1024 * 1024
QUOTA = "10M"                      # the quota of account(quota=True)
QUOTA_KIB = 10 * 1024

TERN_LIBEXEC = ":".join(build_path(d) for d in
                        ("authd", "stored", "lmtpd", "imapd"))
TERN_CONF = {
    "imap_plaintext_auth": "yes",
    "imap_line_limit": "64k",
    "imap_append_limit": "10M",
    "imap_login_timeout": "60s",
    "imap_idle_timeout": "30m",
    "imap_store_timeout": "5s",
    "auth_failure_delay_max": "1s",
    # Tests fail logins on purpose; they must not lock each other out.
    "auth_lockout_threshold": "100",
    "restart_delay": "100ms",
}

FLAG_BITS = {"\\Seen": 1, "\\Answered": 2, "\\Flagged": 4, "\\Deleted": 8,
             "\\Draft": 16}

_counter = itertools.count(1)


def tern_only(srv, why):
    """Skips a test of a Tern-only thing against the reference server."""
    if srv.target != "tern":
        pytest.skip(f"Tern only: {why}")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Account:
    def __init__(self, user, password=PASSWORD):
        self.user = user
        self.password = password

    def __repr__(self):
        return f"Account({self.user})"


def wait_greeting(port, timeout=30.0, tls=False):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                if tls:
                    s = tls_context().wrap_socket(s)
                data = s.recv(512)
                if data.startswith(b"* OK"):
                    s.sendall(b"z LOGOUT\r\n")
                    return
                last = data
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"no IMAP greeting on 127.0.0.1:{port}: {last}")


# ---- parsing ----------------------------------------------------------------

class ParseError(ValueError):
    pass


def parse(data, pos=0):
    """All values of data (bytes) from pos: a list."""
    vals, pos = _parse_seq(data, pos, None)
    return vals


def _parse_seq(data, pos, close):
    out = []
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            sub, pos = _parse_seq(data, pos + 1, b")")
            out.append(sub)
        elif c == b")":
            if close != b")":
                raise ParseError(f"unexpected ) at {pos}: {data!r}")
            return out, pos + 1
        elif c == b'"':
            s = bytearray()
            pos += 1
            while True:
                if pos >= n:
                    raise ParseError(f"unterminated string: {data!r}")
                ch = data[pos]
                if ch == 0x5c:
                    s.append(data[pos + 1])
                    pos += 2
                elif ch == 0x22:
                    pos += 1
                    break
                else:
                    s.append(ch)
                    pos += 1
            out.append(bytes(s))
        elif c == b"{" or (c == b"~" and data[pos + 1:pos + 2] == b"{"):
            if c == b"~":
                pos += 1
            m = re.compile(rb"\{(\d+)\+?\}\r\n").match(data, pos)
            if not m:
                raise ParseError(f"bad literal at {pos}: {data!r}")
            size = int(m.group(1))
            out.append(data[m.end():m.end() + size])
            pos = m.end() + size
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = data[pos:pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                pos += 1
            atom = data[start:pos].decode("utf-8", "replace")
            if atom.upper() == "NIL":
                out.append(None)
            elif atom.isdigit():
                out.append(int(atom))
            else:
                out.append(atom)
    if close is not None:
        raise ParseError(f"missing ) in {data!r}")
    return out, pos


def fetch_items(resp):
    """(seq, {ITEM: value}) of one '* N FETCH (...)' response (bytes).
    Item names are upper case; section names keep their text."""
    m = re.match(rb"\* (\d+) FETCH ", resp)
    assert m, resp
    vals = parse(resp, m.end())
    assert len(vals) == 1 and isinstance(vals[0], list), resp
    lst = vals[0]
    assert len(lst) % 2 == 0, lst
    return int(m.group(1)), {str(lst[i]).upper(): lst[i + 1]
                             for i in range(0, len(lst), 2)}


def imaplib_join(data):
    """imaplib's FETCH data ('N (...)', tuples for literals) back into
    '* N FETCH (...)' responses."""
    out = []
    cur = b""
    for d in data:
        if d is None:
            continue
        if isinstance(d, tuple):
            cur += d[0] + b"\r\n" + d[1]
        else:
            cur += d
            out.append(cur)
            cur = b""
    if cur:
        out.append(cur)
    res = []
    for r in out:
        m = re.match(rb"(\d+) ", r)
        assert m, r
        res.append(b"* " + m.group(1) + b" FETCH " + r[m.end():])
    return res


def imaplib_fetch(c, seqset_, items, uid=False):
    """{seq: items} of an imaplib FETCH that must succeed."""
    if uid:
        typ, data = c.uid("FETCH", seqset_, items)
    else:
        typ, data = c.fetch(seqset_, items)
    assert typ == "OK", (typ, data)
    res = {}
    for r in imaplib_join(data):
        seq, it = fetch_items(r)
        res.setdefault(seq, {}).update(it)
    return res


def seqset(nums):
    return ",".join(str(n) for n in nums)


def expand_set(text):
    """The numbers of an IMAP set without '*' (e.g. '3:5,9')."""
    out = []
    for part in str(text).split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def flags_of(items):
    """The flags of a FETCH, lower case, without \\Recent (whether a server
    keeps \\Recent is its choice; IMAP4rev2 dropped it)."""
    return sorted(str(f).lower() for f in items["FLAGS"]
                  if str(f).lower() != "\\recent")


# ---- the raw client ---------------------------------------------------------

class Lit:
    """A literal in a Raw command: sync (waits for '+'), or non-sync
    (LITERAL+ '{n+}'), or literal8 ('~{n}')."""

    def __init__(self, data, sync=True, binary=False):
        self.data = data if isinstance(data, bytes) else data.encode()
        self.sync = sync
        self.binary = binary


class Tagged:
    def __init__(self, tag, status, text, untagged):
        self.tag, self.status, self.text = tag, status, text
        self.untagged = untagged

    def __repr__(self):
        return (f"Tagged({self.tag} {self.status} {self.text!r}, "
                f"untagged={self.untagged!r})")

    def code(self):
        m = re.match(r"\[([^\]]*)\]", self.text)
        return m.group(1) if m else None

    def fetches(self):
        return [fetch_items(u) for u in self.untagged
                if re.match(rb"\* \d+ FETCH ", u)]

    def named(self, word):
        """Untagged responses '* WORD ...' (case-insensitive)."""
        w = word.encode().upper()
        return [u for u in self.untagged
                if u[2:].upper().startswith(w + b" ") or
                u[2:].upper().rstrip(b"\r\n") == w]

    def numbered(self, word):
        """The N of each '* N WORD' response, in order."""
        rx = re.compile(rb"\* (\d+) " + word.encode() + rb"\r\n", re.I)
        return [int(m.group(1)) for m in (rx.match(u) for u in self.untagged)
                if m]


class Raw:
    """An IMAP connection on a socket, line and literal aware."""

    def __init__(self, port, tls=False, timeout=30.0, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock)
        self.buf = b""
        self.tags = itertools.count(1)
        self.inflate = None
        self.deflate = None
        self.greeting = self.response() if greeting else None

    # transport
    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        if self.inflate is not None:
            chunk = self.inflate.decompress(chunk)
        return chunk

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.deflate is not None:
            data = self.deflate.compress(data) + \
                self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def start_compress(self):
        assert self.buf == b"", self.buf
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def starttls(self):
        assert self.buf == b"", f"data after STARTTLS reply: {self.buf!r}"
        self.sock = tls_context().wrap_socket(self.sock)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self._recv()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _bytes(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, timeout=None):
        """One whole response (bytes, literals inline, ends in CRLF)."""
        old = self.sock.gettimeout()
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            out = b""
            while True:
                line = self._line()
                out += line
                m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
                if not m or line.startswith(b"+ "):
                    return out
                out += self._bytes(int(m.group(1)))
        finally:
            if timeout is not None:
                self.sock.settimeout(old)

    def maybe_response(self, timeout):
        """A response within timeout seconds, or None."""
        try:
            return self.response(timeout=timeout)
        except (socket.timeout, TimeoutError):
            return None

    def closed(self, timeout=5.0):
        """True when the server closes the connection within timeout
        (responses before the close are skipped)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self.response(timeout=max(0.05, end - time.monotonic()))
            except ConnectionError:
                return True
            except (socket.timeout, TimeoutError):
                return False
            except OSError:
                return True
        return False

    # commands
    def next_tag(self):
        return f"t{next(self.tags)}"

    def begin(self, *parts, tag=None):
        """Sends a command (parts: str, bytes or Lit); returns its tag, or
        a Tagged when the server refused a synchronising literal."""
        tag = tag or self.next_tag()
        cur = tag.encode() + b" "
        for p in parts:
            if isinstance(p, Lit):
                pre = b"~" if p.binary else b""
                if p.sync:
                    self.send(cur + pre + b"{%d}\r\n" % len(p.data))
                    untagged = []
                    while True:
                        r = self.response()
                        if r.startswith(b"+"):
                            break
                        if r.startswith(tag.encode() + b" "):
                            return self._tagged(tag, r, untagged)
                        untagged.append(r)
                    self.pending_untagged = untagged
                    cur = p.data
                else:
                    cur += pre + b"{%d+}\r\n" % len(p.data) + p.data
            else:
                cur += p.encode() if isinstance(p, str) else p
        self.send(cur + b"\r\n")
        return tag

    def _tagged(self, tag, line, untagged):
        m = re.match(rb"(\S+) (OK|NO|BAD)\b ?(.*)\r\n$", line, re.S | re.I)
        assert m, line
        return Tagged(tag, m.group(2).decode().upper(),
                      m.group(3).decode("utf-8", "replace"), untagged)

    def finish(self, tag, timeout=None):
        """Reads up to the tagged reply of tag; a Tagged."""
        untagged = getattr(self, "pending_untagged", [])
        self.pending_untagged = []
        while True:
            r = self.response(timeout=timeout)
            if r.startswith(tag.encode() + b" "):
                return self._tagged(tag, r, untagged)
            untagged.append(r)

    def cmd(self, *parts, timeout=None):
        t = self.begin(*parts)
        if isinstance(t, Tagged):
            return t
        return self.finish(t, timeout=timeout)

    def ok(self, *parts, timeout=None):
        r = self.cmd(*parts, timeout=timeout)
        assert r.status == "OK", r
        return r

    def not_ok(self, *parts, allowed=("NO", "BAD")):
        r = self.cmd(*parts)
        assert r.status in allowed, r
        return r

    def login(self, acct):
        return self.ok("LOGIN ", quote(acct.user), " ", quote(acct.password))

    def capabilities(self):
        r = self.ok("CAPABILITY")
        caps = r.named("CAPABILITY")
        assert len(caps) == 1, r
        return caps[0].decode().split()[2:]

    def select(self, box="INBOX", extra="", examine=False):
        return self.ok("EXAMINE " if examine else "SELECT ",
                       quote(box), extra)

    def exists(self, r):
        n = r.numbered("EXISTS")
        return n[-1] if n else None


def quote(s):
    if isinstance(s, bytes):
        s = s.decode()
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def caps_of(c):
    """Capabilities of an imaplib connection, upper case, fresh."""
    typ, data = c.capability()
    assert typ == "OK", data
    return data[0].decode().upper().split()


# ---- messages ---------------------------------------------------------------

def simple_message(subject="hello", body="Hello, world.\r\n", frm=None,
                   to=None, date="Mon, 02 Nov 2026 10:00:00 +0000",
                   extra=""):
    frm = frm or "Ann Sender <ann@example.org>"
    to = to or "Bob Rcpt <bob@example.com>"
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: <{subject.replace(' ', '.')}."
            f"{next(_counter)}@example.org>\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; "
            f"charset=us-ascii\r\n\r\n{body}").encode()


# ---- servers ----------------------------------------------------------------

class Server:
    target = "?"
    port = tls_port = None

    def _track(self, sock):
        """Client sockets are closed before the server stops, so that a
        failed test's leftovers do not hold up its drain."""
        if not hasattr(self, "_socks"):
            self._socks = []
        self._socks.append(sock)

    def close_clients(self):
        for s in getattr(self, "_socks", []):
            try:
                s.close()
            except OSError:
                pass
        self._socks = []

    def imap(self, acct=None):
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        self._track(c.sock)
        if acct is not None:
            c.login(acct.user, acct.password)
        return c

    def imaps(self, acct=None):
        c = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port,
                              ssl_context=tls_context(), timeout=30)
        self._track(c.sock)
        if acct is not None:
            c.login(acct.user, acct.password)
        return c

    def raw(self, acct=None, tls=False):
        r = Raw(self.tls_port if tls else self.port, tls=tls)
        self._track(r.sock)
        assert r.greeting.startswith(b"* OK"), r.greeting
        if acct is not None:
            r.login(acct)
        return r

    def log_text(self):
        return ""

    def log_has(self, pattern, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if re.search(pattern, self.log_text()):
                return True
            time.sleep(0.05)
        raise AssertionError(f"log has no {pattern!r}")


class TernServer(Server):
    target = "tern"

    def __init__(self, conf=None, services=None, libexec_extra=()):
        self.root = tempfile.mkdtemp(prefix="tern-imap-", dir="/tmp")
        os.chmod(self.root, 0o755)
        base = conftest.free_port_block()
        self.inst = conftest.Instance(self.root, base)
        self.inst.env["TERN_LIBEXECDIR"] = ":".join(
            [conftest.LIBEXEC, TERN_LIBEXEC] +
            [build_path(d) for d in libexec_extra])
        self.lmtp_port = base
        self.port = base + 1
        self.tls_port = base + 2
        self.ids = {}
        settings = dict(TERN_CONF)
        settings.update(conf or {})
        self.inst.ctl("setup", "--port-base", str(base + 10))
        self.inst.write_services((services or tern_services)(base))
        path = self.inst.conf("tern.conf")
        with open(path) as f:
            lines = [l for l in f
                     if l.split("=")[0].strip() not in settings]
        lines += [f"{k} = {v}\n" for k, v in settings.items()]
        with open(path, "w") as f:
            f.writelines(lines)
        self.inst.ctl("domain", "add", DOMAIN)
        try:
            self.inst.ctl("start")
            wait_greeting(self.port)
            wait_greeting(self.tls_port, tls=True)
        except AssertionError as e:
            tail = self.inst.log_tail(60)
            if not self.inst.stop_all():
                shutil.rmtree(self.root, ignore_errors=True)
            raise AssertionError(f"{e}\n{tail}") from None

    def close(self):
        self.close_clients()
        left = self.inst.stop_all()
        found, text = self.inst.problems_logged()
        if not found and not left:
            shutil.rmtree(self.root, ignore_errors=True)
        assert not found, f"{found} in the logs:\n{text[-6000:]}"
        assert not left, f"processes left after stop: {left}"

    def ctl(self, *args, **kw):
        return self.inst.ctl(*args, **kw)

    def log_text(self):
        return self.inst.log_text()

    def account(self, quota=None, name="u"):
        user = f"{name}{next(_counter)}@{DOMAIN}"
        args = ["account", "add", user]
        if quota:
            args += ["--quota", QUOTA]
        self.ctl(*args, input=PASSWORD + "\n")
        p = self.ctl("account", "show", user, "--json")
        self.ids[user] = json.loads(p.stdout)["id"]
        return Account(user)

    def deliver(self, acct, data, folder="INBOX", flags=(), date=None,
                via="store", keywords=()):
        if via == "lmtp":
            import smtplib
            assert folder == "INBOX" and not flags and date is None
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as c:
                c.ehlo("mta.example.org")
                c.sendmail("sender@example.org", [acct.user], data)
            return None
        path = os.path.join(self.root, "data", "store", "tmp",
                            f"imaptest.{time.monotonic_ns()}")
        with open(path, "wb") as f:
            f.write(data)
        fields = [("account", self.ids[acct.user]), ("address", acct.user),
                  ("folder", folder), ("file", path)]
        if date is not None:
            fields.append(("date", int(date)))
        bits = sum(FLAG_BITS[f] for f in flags if f in FLAG_BITS)
        if bits:
            fields.append(("flags", bits))
        for k in list(keywords) + [f for f in flags if f not in FLAG_BITS]:
            fields.append(("keyword", k))
        st = ternipc.Client(os.path.join(self.root, "run", "stored.sock"),
                            "tern-stored", 1, 30.0)
        try:
            _, ok = st.ok("append", fields)
            return ok.get("uid")
        finally:
            st.close()


def tern_services(base, extra=""):
    return (f"authd  unix run/authd.sock 1 yes tern-authd\n"
            f"stored unix run/stored.sock 1 yes tern-stored\n"
            f"lmtp   inet 127.0.0.1:{base} 1 yes tern-lmtpd\n"
            f"imap   inet 127.0.0.1:{base + 1} 2 yes tern-imapd\n"
            f"imaps  inet 127.0.0.1:{base + 2} 1 yes tern-imapd\n" + extra)


# ---- the reference: Dovecot -------------------------------------------------

DOVECOT = "/usr/sbin/dovecot"

DOVECOT_CONF = """\
# A private Dovecot imapd, the reference the IMAP tests are checked on.
base_dir = {d}/run
state_dir = {d}/state
instance_name = dovecot-imaptest-{tag}
log_path = {d}/log/dovecot.log
info_log_path = {d}/log/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = {noplain}
auth_mechanisms = plain login
auth_failure_delay = 1s
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX
mail_fsync = never
mail_max_userip_connections = 200
mail_plugins = quota zlib
protocol imap {{
  mail_plugins = $mail_plugins imap_quota imap_zlib
  imap_max_line_length = 64k
}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_max_mail_size = 10M
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def mail_owner():
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    for name in ("mail", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
    raise RuntimeError("no 'mail' or 'nobody' user")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return st[st.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def children_of(pid):
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            parent[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                found.append(c)
                todo.append(c)
    return found


class DovecotServer(Server):
    target = "dovecot"

    def __init__(self, conf=None, services=None):
        conf = conf or {}
        if not os.access("/usr/lib/dovecot/imap", os.X_OK):
            pytest.skip("dovecot-imapd is not installed")
        d = self.dir = tempfile.mkdtemp(prefix="dovecot-imap-", dir="/tmp")
        os.chmod(d, 0o755)
        self.uid, self.gid = mail_owner()
        for sub in ("run", "state", "log", "mail"):
            os.mkdir(os.path.join(d, sub))
        os.chown(os.path.join(d, "mail"), self.uid, self.gid)
        p = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days",
             "2", "-subj", "/CN=localhost"], capture_output=True)
        assert p.returncode == 0, p.stderr
        # Dovecot may not see a line added to its passwd-file within the
        # second it last read it: every account is written up front.
        self.pool = []
        with open(os.path.join(d, "users"), "w") as f:
            for i in range(1, 301):
                user = f"p{i}@{DOMAIN}"
                f.write(f"{user}:{{PLAIN}}{PASSWORD}:{self.uid}:{self.gid}"
                        f"::{self.home(user)}::"
                        f"{'userdb_quota_rule=*:storage=' + QUOTA}\n")
                self.pool.append(user)
        base = conftest.free_port_block(4)
        self.port, self.tls_port = base, base + 1
        noplain = "yes" if conf.get("imap_plaintext_auth") == "no" else "no"
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(d=d, tag=os.path.basename(d),
                                        uid=self.uid, gid=self.gid,
                                        port=self.port,
                                        tls_port=self.tls_port,
                                        noplain=noplain))
        p = subprocess.run(["doveconf", "-c", self.conf, "-n"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        self.errf = open(os.path.join(d, "log", "stderr.log"), "w")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdout=self.errf, stderr=self.errf,
                                     start_new_session=True)
        wait_greeting(self.port)
        wait_greeting(self.tls_port, tls=True)

    def close(self):
        self.close_clients()
        pid = self.proc.pid
        kids = children_of(pid)
        if self.proc.poll() is None:
            with open(f"/proc/{pid}/comm") as f:
                assert f.read().strip() == "dovecot"
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.errf.close()
        end = time.monotonic() + 2
        while time.monotonic() < end and any(pid_alive(k) for k in kids):
            time.sleep(0.1)
        for k in kids:
            if pid_alive(k):
                os.kill(k, signal.SIGKILL)
        if not os.environ.get("TERN_IMAP_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "log", "dovecot.log"),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def home(self, user):
        local, dom = user.split("@")
        return os.path.join(self.dir, "mail", dom, local)


    def account(self, quota=None, name="u"):
        return Account(self.pool.pop(0))

    def _mkdirs(self, path):
        parts = []
        while not os.path.isdir(path):
            parts.append(path)
            path = os.path.dirname(path)
        for p in reversed(parts):
            os.mkdir(p)
            os.chown(p, self.uid, self.gid)

    def deliver(self, acct, data, folder="INBOX", flags=(), date=None,
                via="store", keywords=()):
        if via == "lmtp":
            # A delivery: a new file in the maildir's new/ folder.
            box = os.path.join(self.home(acct.user), "Maildir", "INBOX")
            for sub in ("cur", "new", "tmp"):
                self._mkdirs(os.path.join(box, sub))
            name = f"{int(time.time())}.M{time.monotonic_ns()}P1.test"
            tmp = os.path.join(box, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(data)
            os.chown(tmp, self.uid, self.gid)
            os.rename(tmp, os.path.join(box, "new", name))
            return None
        # Otherwise APPEND as the user: exact bytes, flags and date.
        c = self.imap(acct)
        try:
            fl = "(" + " ".join(list(flags) + list(keywords)) + ")"
            when = imaplib.Time2Internaldate(date if date is not None
                                             else time.time())
            typ, resp = c.append(quote(folder), fl, when, data)
            assert typ == "OK", resp
            m = re.search(rb"APPENDUID \d+ (\d+)", resp[0])
            return int(m.group(1)) if m else None
        finally:
            c.logout()


def make_server(**conf):
    """A server of the selected target with settings changed (Tern option
    names; the reference maps what it can)."""
    if TARGET == "dovecot":
        return DovecotServer(conf)
    return TernServer(conf)


_start_failed = {}


@pytest.fixture(scope="module")
def srv(request):
    # A server that failed to start fails every test of the module at once
    # (pytest would otherwise retry the module fixture for each test).
    key = request.module.__name__
    if key in _start_failed:
        pytest.fail(_start_failed[key], pytrace=False)
    try:
        s = TernServer() if TARGET == "tern" else DovecotServer()
    except AssertionError as e:
        _start_failed[key] = f"the {TARGET} server did not start: {e}"
        raise
    yield s
    s.close()


@pytest.fixture
def acct(srv):
    return srv.account()


def need_cap(srv, caps, name):
    """A capability the issue requires: a failure on Tern when missing;
    skipped on the reference when it lacks it."""
    up = [c.upper() for c in caps]
    if name.upper() in up:
        return
    if srv.target != "tern":
        pytest.skip(f"{srv.target} does not offer {name}")
    raise AssertionError(f"{name} not in CAPABILITY {caps}")


def delimiter(r):
    """The hierarchy delimiter (LIST "" "")."""
    res = r.ok('LIST "" ""')
    lst = res.named("LIST")
    assert len(lst) == 1, res
    vals = parse(lst[0], 7)
    return vals[1].decode() if vals[1] is not None else None


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain_ir(user, password, authz=""):
    return b64(f"{authz}\0{user}\0{password}")
