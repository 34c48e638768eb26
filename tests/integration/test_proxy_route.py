"""tern-proxyd's route cache in a real memcached, on real instances.

The two-server site of test_proxy.py (proxy and mailbox server A, second
mailbox server B) with A's proxy using a private memcached (Debian's
package, 127.0.0.1 on a free high port, -U 0, stopped by pid).  A second
login is served from the cache (memcached's get_hits rises and the stored
value is the mail host); user names made to smuggle memcached commands
(CRLF, spaces, flush_all, 300 bytes) never reach memcached as commands
(no flush, no foreign set, a sentinel key survives); `ternctl account
move` deletes the cached route and sends the next login to the other
server; with memcached down,
logins still work and come back to the cache when it returns; one that
never answers costs a login its timeout only; a stale
cached route loses to the directory's answer and is repaired; a client
address over proxy_client_connection_limit is refused; `ternctl setup
--memcached` makes tern-master run a bundled memcached that `ternctl
status` shows.
"""
import hashlib
import imaplib
import os
import poplib
import shutil
import socket
import subprocess
import threading
import time

import pytest

import conftest
from test_proxy import (LIBEXEC_EXTRA, PASSWORD, add_account, deliver,
                        start_two_servers)

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
CLIENT_LIMIT = 6

pytestmark = pytest.mark.skipif(not os.access(MEMCACHED, os.X_OK),
                                reason="memcached is not installed")


class Memcached:
    """A private memcached on 127.0.0.1:port, stopped by its pid."""

    def __init__(self, port):
        self.port = port
        self.proc = None

    def start(self):
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U",
                "0", "-m", "16", "-t", "1"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                self.command(b"version\r\n")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("memcached did not start")

    def stop(self):
        if self.proc is None:
            return
        # The pid is ours (Popen) and still memcached's until we wait.
        with open(f"/proc/{self.proc.pid}/cmdline", "rb") as f:
            assert b"memcached" in f.read()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def command(self, data, end=(b"END\r\n", b"VERSION", b"STORED\r\n",
                                 b"DELETED\r\n", b"NOT_FOUND\r\n",
                                 b"ERROR\r\n")):
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            s.sendall(data)
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if any(buf.endswith(e) or (e == b"VERSION" and
                                           buf.startswith(e) and
                                           buf.endswith(b"\r\n"))
                       for e in end):
                    break
            return buf

    def stats(self):
        out = {}
        for line in self.command(b"stats\r\n").decode().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return {k: int(v) for k, v in out.items() if v.isdigit()}

    def get(self, key):
        reply = self.command(b"get " + key.encode() + b"\r\n")
        lines = reply.split(b"\r\n")
        if lines[0].startswith(b"VALUE "):
            return lines[1].decode()
        return None


def route_key(address):
    return "tern:route:" + hashlib.sha256(
        address.lower().encode()).hexdigest()


@pytest.fixture(scope="module")
def site():
    saved = conftest.LIBEXEC
    conftest.LIBEXEC = saved + ":" + LIBEXEC_EXTRA
    made = []
    mc = Memcached(conftest.free_port_block(2))

    class Site:
        pass

    try:
        mc.start()
        a, b = start_two_servers(
            made, f"proxy_memcached_servers = 127.0.0.1:{mc.port}\n"
            "proxy_memcached_timeout = 300ms\n"
            "proxy_route_cache_ttl = 300s\n"
            "auth_lockout_threshold = 0\n"
            f"proxy_client_connection_limit = {CLIENT_LIMIT}\n")
        for user in ("dan", "carol", "erin"):
            add_account(a, f"{user}@example.com", "a.test")
            add_account(b, f"{user}@example.com", "b.test")
            deliver(a, f"{user}@example.com",
                    "Subject: here\r\n\r\nserver A\r\n")
            deliver(b, f"{user}@example.com",
                    "Subject: here\r\n\r\nserver B\r\n")
        s = Site()
        s.a, s.b, s.mc = a, b, mc
        s.imap = a.port_base + 1
        s.pop3 = a.port_base + 3
        yield s
    finally:
        conftest.LIBEXEC = saved
        try:
            conftest.finish_instances(made)
        finally:
            mc.stop()


def server_of(site, user):
    """Logs in through the proxy; 'A' or 'B', from the message there."""
    m = imaplib.IMAP4("127.0.0.1", site.imap, timeout=10)
    try:
        m.login(user, PASSWORD)
        typ, data = m.select("INBOX")
        assert typ == "OK"
        typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
        text = data[0][1]
        assert text.startswith(b"server ")
        return text[7:8].decode()
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_second_login_is_served_from_the_cache(site):
    key = route_key("dan@example.com")
    before = site.mc.stats()
    assert server_of(site, "dan@example.com") == "A"
    # The miss was filled with the directory's mail host.
    assert site.mc.get(key) == "a.test"
    mid = site.mc.stats()
    assert mid["get_misses"] >= before["get_misses"] + 1
    assert mid["cmd_set"] >= before["cmd_set"] + 1
    assert server_of(site, "Dan@Example.com") == "A"
    after = site.mc.stats()
    assert after["get_hits"] >= mid["get_hits"] + 1
    assert after["cmd_set"] == mid["cmd_set"]
    assert "mailhost=a.test, from cache" in site.a.log_text()


def imap_login_raw(port, user_bytes):
    """LOGIN with the user name as a literal (any bytes, CRLF too)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a1 LOGIN {%d+}\r\n" % len(user_bytes) + user_bytes +
                  b" \"" + PASSWORD.encode() + b"\"\r\n")
        while True:
            line = f.readline()
            assert line, "connection closed"
            if line.startswith(b"a1 "):
                return line


def pop3_user_raw(port, user_bytes):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER " + user_bytes + b"\r\nPASS " +
                  PASSWORD.encode() + b"\r\n")
        replies = [f.readline(), f.readline()]
        return replies


def test_user_names_never_become_memcached_commands(site):
    assert site.mc.command(b"set tern:sentinel 0 0 4\r\nkeep\r\n") == \
        b"STORED\r\n"
    # A route that exists must survive too.
    assert server_of(site, "erin@example.com") == "A"
    erin = route_key("erin@example.com")
    assert site.mc.get(erin) == "a.test"
    before = site.mc.stats()
    payloads = [
        b"x\r\nflush_all\r\n",
        b"\r\nflush_all\r\n",
        b"erin@example.com\r\nflush_all",
        b"a b@example.com flush_all",
        b"dan@example.com\r\nset tern:evil 0 0 1\r\nz",
        b"dan@example.com\r\ndelete tern:sentinel",
        b"delete " + erin.encode(),
        b"a" * 300,
        b"a" * 300 + b"@example.com",
    ]
    for p in payloads:
        line = imap_login_raw(site.imap, p)
        assert line.startswith(b"a1 NO") or line.startswith(b"a1 BAD"), p
    for p in (b"erin@example.com flush_all", b"x" * 300):
        replies = pop3_user_raw(site.pop3, p)
        assert replies[-1].startswith(b"-ERR"), p
    after = site.mc.stats()
    # Failed logins never ask memcached anything at all.
    assert after["cmd_get"] == before["cmd_get"]
    assert after["cmd_flush"] == before["cmd_flush"]
    assert after["cmd_set"] == before["cmd_set"]
    assert after.get("delete_hits", 0) == before.get("delete_hits", 0)
    assert site.mc.get("tern:sentinel") == "keep"
    assert site.mc.get("tern:evil") is None
    assert site.mc.get(erin) == "a.test"
    assert after["curr_items"] == before["curr_items"]
    # The proxy still routes from the cache.
    assert server_of(site, "erin@example.com") == "A"
    assert site.mc.stats()["get_hits"] > after["get_hits"]


def test_account_move_sends_the_next_login_to_the_other_server(site):
    user = "carol@example.com"
    key = route_key(user)
    assert server_of(site, user) == "A"
    assert site.mc.get(key) == "a.test"
    p = site.a.ctl("account", "move", user, "b.test")
    assert "mailbox data was not copied" in p.stdout
    assert "cached route deleted" in p.stdout
    assert site.mc.get(key) is None
    shown = site.a.ctl("account", "show", user).stdout
    assert "mailhost: b.test" in shown
    assert server_of(site, user) == "B"
    assert site.mc.get(key) == "b.test"
    # Moved again: nothing cached to delete is no error.
    site.mc.command(b"delete " + key.encode() + b"\r\n")
    p = site.a.ctl("account", "move", user, "a.test")
    assert "no cached route" in p.stdout
    assert server_of(site, user) == "A"
    # A bad server name is refused before anything changes.
    p = site.a.ctl("account", "move", user, "b.test\r\nflush_all",
                   check=False)
    assert p.returncode == 1 and "not a server name" in p.stderr
    assert server_of(site, user) == "A"
    help_text = site.a.ctl("account", check=False).stderr
    assert "move ADDRESS SERVER" in help_text
    assert "NOT copied" in help_text


def test_stale_cached_route_loses_to_the_directory(site):
    """A route changed without ternctl account move (account set, another
    tool, LDAP): the directory's answer wins and repairs the cache."""
    user = "carol@example.com"
    key = route_key(user)
    assert server_of(site, user) == "A"
    site.a.ctl("account", "set", user, "--mailhost", "b.test")
    assert site.mc.get(key) == "a.test"
    assert server_of(site, user) == "B"
    assert site.mc.get(key) == "b.test"
    assert "cached mail host differs from the directory's (b.test)" in \
        site.a.log_text()
    site.a.ctl("account", "move", user, "a.test")
    assert server_of(site, user) == "A"


def test_client_connection_limit(site):
    socks = []
    try:
        for _ in range(CLIENT_LIMIT):
            s = socket.create_connection(("127.0.0.1", site.imap),
                                         timeout=10)
            socks.append(s)
            assert s.makefile("rb").readline().startswith(b"* OK")
        extra = socket.create_connection(("127.0.0.1", site.imap),
                                         timeout=10)
        socks.append(extra)
        line = extra.makefile("rb").readline()
        assert line.startswith(b"* BYE [LIMIT] Too many connections"), line
    finally:
        for s in socks:
            s.close()
    # Closed connections are forgotten: logins work again.
    def accepted():
        try:
            imaplib.IMAP4("127.0.0.1", site.imap, timeout=10).logout()
            return True
        except imaplib.IMAP4.error:
            return False
    site.a.wait_for(accepted, what="a connection under the limit")
    assert "too many connections from 127.0.0.1" in site.a.log_text()


class SilentServer:
    """Accepts connections, reads requests, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen = b""
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        conns = []
        while not self.done:
            try:
                c, _ = self.sock.accept()
                c.settimeout(0.05)
                conns.append(c)
            except socket.timeout:
                pass
            for c in conns:
                try:
                    data = c.recv(4096)
                    self.seen += data
                except (socket.timeout, OSError):
                    pass
        for c in conns:
            c.close()
        self.sock.close()

    def stop(self):
        self.done = True
        self.thread.join(timeout=5)


def test_memcached_slow(site):
    """A memcached that never answers costs a login the timeout, no more."""
    silent = SilentServer()
    try:
        site.a.append_conf(
            f"proxy_memcached_servers = 127.0.0.1:{silent.port}\n")
        site.a.ctl("reload")

        def asked():
            assert server_of(site, "dan@example.com") == "A"
            return b"get tern:route:" in silent.seen
        site.a.wait_for(asked, timeout=20, interval=0.2,
                        what="the proxy asking the silent memcached")
        t0 = time.monotonic()
        assert server_of(site, "carol@example.com") == "A"
        took = time.monotonic() - t0
        # proxy_memcached_timeout is 300ms; the backoff skips the cache
        # for the next logins anyway.
        assert took < 3, took
    finally:
        site.a.append_conf(
            f"proxy_memcached_servers = 127.0.0.1:{site.mc.port}\n")
        site.a.ctl("reload")
        silent.stop()
    assert b"flush" not in silent.seen and b"set " not in silent.seen


def test_memcached_down_then_back(site):
    site.mc.stop()
    t0 = time.monotonic()
    for user in ("dan@example.com", "carol@example.com"):
        assert server_of(site, user) == "A"
    m = poplib.POP3("127.0.0.1", site.pop3, timeout=10)
    m.user("erin@example.com")
    m.pass_(PASSWORD)
    assert m.stat()[0] >= 1
    m.quit()
    assert time.monotonic() - t0 < 10
    p = site.a.ctl("account", "move", "carol@example.com", "a.test",
                   check=False)
    assert p.returncode == 1
    assert "route cache: failed" in p.stderr
    # memcached back on its port: the proxy reconnects (backoff <= 5 s).
    site.mc.start()

    def hit():
        server_of(site, "dan@example.com")
        return site.mc.stats().get("get_hits", 0) > 0
    site.a.wait_for(hit, timeout=20, interval=0.5,
                    what="route cache hits after memcached came back")


def test_setup_bundled_memcached(site):
    inst = conftest.new_instance(setup_args=("--memcached",), start=False)
    made = [inst]
    try:
        with open(inst.conf("services.conf")) as f:
            lines = [ln for ln in f.read().splitlines()
                     if ln.startswith("memcached ")]
        assert len(lines) == 1, lines
        line = lines[0]
        assert "-U 0" in line and "external=yes" in line
        sock = os.path.join(inst.root, "run", "memcached", "memcached.sock")
        assert f"-s {sock}" in line
        with open(inst.conf("tern.conf")) as f:
            assert f"proxy_memcached_servers = {sock}" in f.read()
        inst.write_services(
            "authd unix run/authd.sock 1 yes tern-authd\n" + line + "\n")
        inst.ctl("start")
        inst.wait_for(lambda: inst.service("memcached")["state"] ==
                      "running", what="memcached running")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock)
            s.sendall(b"version\r\n")
            assert s.recv(100).startswith(b"VERSION ")
        out = inst.ctl("status").stdout
        assert "memcached" in out
    finally:
        conftest.finish_instances(made)
