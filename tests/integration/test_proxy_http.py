"""tern-proxyd's HTTP and HTTPS front end, on real instances.

Instance A runs tern-authd and tern-proxyd on http and https; instance B
is a second mailbox server (tern-authd only: A's directory decides the
routes).  In place of each server's tern-webd, a small Python HTTP server
listens on the instance's http-backend port and answers every request
with its server name, the forwarding fields it saw and a digest of the
body.  Through the proxy: Basic authentication, DAV paths and the signed
session cookie route each request to the right server; forged X-Tern-*
fields never arrive; one client connection reaches both servers; bodies
pass intact both ways; request smuggling attempts are refused before
anything reaches a backend; a stopped backend gives 503 to its users only;
HTTPS terminates at the proxy.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

import conftest
from conftest import build_path

LIBEXEC_EXTRA = ":".join(build_path(d) for d in ("authd", "proxyd"))
PASSWORD = "Http-Secret 9"

BACKEND = r'''
import hashlib, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, NAME, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def answer(self):
        if getattr(self, "drop_next", False):
            # As a server closing a kept connection just as the next
            # request comes: read nothing more, answer nothing.
            with open(LOG, "a") as f:
                f.write(f"DROPPED {self.command} {self.path}\n")
            self.close_connection = True
            return
        self.drop_next = self.path == "/drop-next"
        data = self.body()
        with open(LOG, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        out = json.dumps({
            "server": NAME, "path": self.path,
            "user": self.headers.get("X-Tern-User", ""),
            "tern": sorted(k for k in self.headers.keys()
                           if k.lower().startswith("x-tern-")),
            "xff": self.headers.get_all("X-Forwarded-For", []),
            "proto": self.headers.get("X-Forwarded-Proto", ""),
            "forwarded": self.headers.get("Forwarded", ""),
            "auth": self.headers.get("Authorization", ""),
            "len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_PROPFIND = answer

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
'''


def backend_port(setup_base, std):
    """tern_port(): the port of a standard port under a port base."""
    return setup_base + (std if std < 1000 else 1000 + std % 1000)


CONF = ("authd_timeout = 5s\n"
        "auth_failure_delay_max = 1s\n"
        "proxy_connect_timeout = 3s\n"
        "proxy_backend_retry = 2s\n"
        "restart_delay = 100ms\n")


class Backend:
    """The stand-in for a server's tern-webd."""

    def __init__(self, workdir, port, name):
        self.port, self.name = port, name
        self.script = os.path.join(workdir, "backend.py")
        self.log = os.path.join(workdir, f"backend-{name}.log")
        with open(self.script, "w") as f:
            f.write(BACKEND)
        self.proc = None

    def start(self):
        open(self.log, "a").close()
        self.proc = subprocess.Popen([sys.executable, self.script,
                                      str(self.port), self.name, self.log])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, "backend exited"
                assert time.monotonic() < deadline, "backend not up"
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def requests(self):
        with open(self.log) as f:
            return f.read().splitlines()


def add_account(inst, address, mailhost):
    inst.ctl("account", "add", address, input=PASSWORD + "\n")
    inst.ctl("account", "set", address, "--mailhost", mailhost)


@pytest.fixture(scope="module")
def site():
    saved = conftest.LIBEXEC
    conftest.LIBEXEC = saved + ":" + LIBEXEC_EXTRA
    made, backends = [], []
    workdir = tempfile.mkdtemp(prefix="tern-http-", dir="/tmp")

    class Site:
        pass

    try:
        b = conftest.new_instance(
            services=lambda base: "authd unix run/authd.sock 1 yes "
                                  "tern-authd\n",
            start=False, conf=CONF + "myhostname = b.test\n")
        made.append(b)

        def services_a(base):
            web = backend_port(base + 10, 8080)
            return ("authd unix run/authd.sock 1 yes tern-authd\n"
                    f"http  inet 127.0.0.1:{base + 1} 2 yes tern-proxyd\n"
                    f"https inet 127.0.0.1:{base + 2} 1 yes tern-proxyd\n"
                    # known to the proxy, run by no program here
                    f"http-backend inet 127.0.0.1:{web} 1 no tern-webd\n")
        a = conftest.new_instance(
            services=services_a, start=False,
            conf=CONF + "myhostname = a.test\n"
            "proxy_http_idle_timeout = 2s\n"
            f"proxy_servers = b.test=127.0.0.1:{b.port_base + 10}\n")
        made.append(a)
        ports = [backend_port(i.port_base + 10, 8080) for i in (a, b)]
        for port in ports:
            if not conftest.port_free(port):
                pytest.skip(f"port {port} is in use")
        a.ctl("start")
        b.ctl("start")
        a.ctl("domain", "add", "example.com")
        add_account(a, "ann@example.com", "a.test")
        add_account(a, "bob@example.com", "b.test")
        s = Site()
        s.a, s.b = a, b
        s.web_a = Backend(workdir, ports[0], "A")
        s.web_b = Backend(workdir, ports[1], "B")
        backends += [s.web_a, s.web_b]
        s.web_a.start()
        s.web_b.start()
        s.http = a.port_base + 1
        s.https = a.port_base + 2
        with open(a.conf("proxy.secret")) as f:
            s.secret = f.read().splitlines()[0].encode()
        a.wait_for(lambda: "http proxy ready: service https" in
                   a.log_text(), what="the https service")
        yield s
    finally:
        for w in backends:
            w.stop()
        conftest.LIBEXEC = saved
        conftest.finish_instances(made)


def basic(user, password=PASSWORD):
    tok = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {tok}"}


def request(site, method, path, headers=None, body=None, conn=None):
    """One request; returns (status, headers, decoded JSON or bytes)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", site.http,
                                          timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    if own:
        conn.close()
    if r.getheader("Content-Type") == "application/json":
        data = json.loads(data)
    return r.status, r, data


def raw(port, data, timeout=10):
    """Sends bytes, returns all the proxy answers until it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def cookie(site, user, expiry, key=None):
    msg = f"{user}|{expiry}".encode()
    mac = hmac.new(key or site.secret, msg, hashlib.sha256).hexdigest()
    return {"Cookie": f"lang=en; TERN_SESSION={user}|{expiry}|{mac}"}


def test_basic_auth_routes_to_each_server(site):
    st, _, d = request(site, "GET", "/mail/?q=1", basic("ann@example.com"))
    assert st == 200
    assert d["server"] == "A" and d["user"] == "ann@example.com"
    assert d["xff"] == ["127.0.0.1"] and d["proto"] == "http"
    assert d["forwarded"] == "for=127.0.0.1;proto=http"
    assert d["auth"] == ""          # the password goes no further
    assert d["path"] == "/mail/?q=1"
    st, _, d = request(site, "GET", "/mail/", basic("bob@example.com"))
    assert st == 200
    assert d["server"] == "B" and d["user"] == "bob@example.com"


def test_wrong_password(site):
    before = len(site.web_a.requests()) + len(site.web_b.requests())
    st, r, _ = request(site, "GET", "/", basic("ann@example.com", "nope"))
    assert st == 401
    assert r.getheader("WWW-Authenticate").startswith("Basic realm=")
    st, _, _ = request(site, "GET", "/", {"Authorization": "Basic !!!"})
    assert st == 401
    assert len(site.web_a.requests()) + len(site.web_b.requests()) == before


def test_dav_paths(site):
    st, _, d = request(site, "PROPFIND", "/dav/bob@example.com/cal/",
                       {"Depth": "1"})
    assert st == 200 and d["server"] == "B" and d["user"] == ""
    st, _, d = request(site, "GET", "/dav/bob%40example.com/x")
    assert st == 200 and d["server"] == "B"
    st, _, d = request(site, "GET", "/dav/ann@example.com/")
    assert st == 200 and d["server"] == "A"
    # well-known and unknown users: the default upstream (here: A)
    st, _, d = request(site, "GET", "/.well-known/caldav")
    assert st == 200 and d["server"] == "A" and d["user"] == ""
    st, _, d = request(site, "GET", "/dav/nobody@example.com/")
    assert st == 200 and d["server"] == "A"


def test_session_cookie(site):
    later = int(time.time()) + 3600
    st, _, d = request(site, "GET", "/", cookie(site, "bob@example.com",
                                                later))
    assert st == 200 and d["server"] == "B"
    assert d["user"] == "bob@example.com"
    # a wrong key, an expired cookie, a changed address: not signed in
    for h in (cookie(site, "bob@example.com", later, key=b"other"),
              cookie(site, "bob@example.com", int(time.time()) - 1)):
        st, _, d = request(site, "GET", "/", h)
        assert st == 200 and d["server"] == "A" and d["user"] == ""
    good = cookie(site, "bob@example.com", later)["Cookie"]
    st, _, d = request(site, "GET", "/", {
        "Cookie": good.replace("bob@", "ann@")})
    assert st == 200 and d["server"] == "A" and d["user"] == ""


def test_forged_tern_fields_removed(site):
    forged = {"X-Tern-User": "admin@example.com", "X-Tern-Other": "1",
              "X-Forwarded-For": "192.0.2.1"}
    st, _, d = request(site, "GET", "/", forged)
    assert st == 200 and d["user"] == "" and d["tern"] == []
    assert d["xff"] == ["127.0.0.1"]
    st, _, d = request(site, "GET", "/", {**forged,
                                          **basic("ann@example.com")})
    assert st == 200 and d["user"] == "ann@example.com"
    assert d["tern"] == ["X-Tern-User"]


def test_keepalive_two_backends(site):
    conn = http.client.HTTPConnection("127.0.0.1", site.http, timeout=20)
    seen = []
    for user in ("ann@example.com", "bob@example.com", "ann@example.com"):
        st, _, d = request(site, "GET", "/k", basic(user), conn=conn)
        assert st == 200
        seen.append(d["server"])
        sock = conn.sock
        assert sock is not None     # still open: keep-alive
    st, _, d = request(site, "GET", "/dav/bob@example.com/", conn=conn)
    assert conn.sock is sock and d["server"] == "B"
    conn.close()
    assert seen == ["A", "B", "A"]


def test_pipelined_requests(site):
    auth = basic("bob@example.com")["Authorization"]
    one = (f"GET /p1 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
           "GET /dav/ann@example.com/p2 HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw(site.http, one.encode())
    assert out.count(b"HTTP/1.1 200 ") == 3
    i1, i2, i3 = (out.index(p) for p in (b'"/p1"', b'"/dav/ann@example.com'
                                          b'/p2"', b'"/p3"'))
    assert i1 < i2 < i3
    assert b'"server": "B", "path": "/p1"' in out
    assert b'"server": "A", "path": "/dav/ann@example.com/p2"' in out


def test_big_bodies_intact(site):
    data = os.urandom(5 * 1024 * 1024)
    want = hashlib.sha256(data).hexdigest()

    def chunks():
        for i in range(0, len(data), 100000):
            yield data[i:i + 100000]
    conn = http.client.HTTPConnection("127.0.0.1", site.http, timeout=60)
    conn.request("POST", "/upload", body=chunks(),
                 headers=basic("bob@example.com"), encode_chunked=True)
    r = conn.getresponse()
    d = json.loads(r.read())
    assert r.status == 200 and d["server"] == "B"
    assert d["len"] == len(data) and d["sha256"] == want
    # then a Content-Length body on the same connection, to A
    st, _, d = request(site, "PUT", "/upload", basic("ann@example.com"),
                       body=data, conn=conn)
    conn.close()
    assert st == 200 and d["server"] == "A" and d["sha256"] == want


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
    b"Host: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 40\r\n\r\nabcdeGET /smuggled HTTP/1.1\r\nHost: x\r\n"
    b"\r\n",
    b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n"
    b"\r\n0\r\n\r\n",
], ids=["cl-te", "two-cl", "bare-lf", "folding", "te-not-chunked"])
def test_smuggling_refused(site, head):
    before = len(site.web_a.requests()) + len(site.web_b.requests())
    out = raw(site.http, head)
    assert out.startswith(b"HTTP/1.1 400 ")
    assert out.count(b"HTTP/1.1") == 1     # then closed
    time.sleep(0.2)
    assert len(site.web_a.requests()) + len(site.web_b.requests()) == before


def test_head_limits(site):
    out = raw(site.http, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " +
              b"a" * (70 * 1024) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    many = b"".join(b"X-%d: v\r\n" % i for i in range(150))
    out = raw(site.http, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_backend_down(site):
    site.web_b.stop()
    try:
        st, r, _ = request(site, "GET", "/", basic("bob@example.com"))
        assert st == 503 and int(r.getheader("Retry-After")) >= 1
        # marked down: refused at once
        t = time.monotonic()
        st, _, _ = request(site, "GET", "/", basic("bob@example.com"))
        assert st == 503 and time.monotonic() - t < 2.5
        st, _, d = request(site, "GET", "/", basic("ann@example.com"))
        assert st == 200 and d["server"] == "A"
    finally:
        site.web_b.start()
    deadline = time.monotonic() + 15
    while True:
        st, _, d = request(site, "GET", "/", basic("bob@example.com"))
        if st == 200:
            assert d["server"] == "B"
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # Each tern-proxyd process keeps its own mark (proxy_backend_retry,
    # 2 s here): the others may still refuse B for a moment; the tests
    # after this one need B from every process.
    time.sleep(2.5)


def test_kept_backend_connection_closed(site):
    """The backend closes a kept connection as the next request comes:
    a GET goes again on a new connection (the client sees nothing), a
    POST does not (502: it may have been carried out)."""
    conn = http.client.HTTPConnection("127.0.0.1", site.http, timeout=20)
    try:
        auth = basic("ann@example.com")
        assert request(site, "GET", "/drop-next", auth, conn=conn)[0] == 200
        st, _, d = request(site, "GET", "/after-drop", auth, conn=conn)
        assert st == 200 and d["path"] == "/after-drop"
        assert request(site, "GET", "/drop-next", auth, conn=conn)[0] == 200
        st, _, _ = request(site, "POST", "/post-after-drop", auth,
                           body=b"x" * 10, conn=conn)
        assert st == 502
    finally:
        conn.close()
    log = site.web_a.requests()
    assert "DROPPED GET /after-drop" in log and "GET /after-drop" in log
    assert "DROPPED POST /post-after-drop" in log
    assert "POST /post-after-drop" not in log
    site.a.wait_for(lambda: "closed a kept connection unanswered: "
                    "sending GET again" in site.a.log_text(),
                    what="the retry's log line")


def test_https(site):
    ctx = ssl.create_default_context(cafile=site.a.conf("ssl/tern.crt"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection("127.0.0.1", site.https, timeout=20,
                                       context=ctx)
    # the certificate names localhost: connect to 127.0.0.1, check that
    sock = socket.create_connection(("127.0.0.1", site.https), timeout=20)
    conn.sock = ctx.wrap_socket(sock, server_hostname="localhost")
    for user, server in (("bob@example.com", "B"), ("ann@example.com", "A")):
        st, _, d = request(site, "GET", "/s", basic(user), conn=conn)
        assert st == 200 and d["server"] == server
        assert d["proto"] == "https" and d["user"] == user
    conn.close()


def test_one_log_line_per_request(site):
    request(site, "GET", "/logged/path?secret=1", basic("bob@example.com"))
    site.a.wait_for(lambda: "user=bob@example.com, method=GET, "
                    "path=/logged/path, backend=127.0.0.1:" in
                    site.a.log_text(), what="the request log line")
    line = [ln for ln in site.a.log_text().splitlines()
            if "path=/logged/path" in ln][-1]
    assert "secret" not in line
    assert "status=200" in line and "client=127.0.0.1" in line


def test_http10_head_and_expect(site):
    auth = basic("ann@example.com")["Authorization"]
    # HTTP/1.0: one request, then the close
    out = raw(site.http, f"GET /old HTTP/1.0\r\nAuthorization: {auth}\r\n"
              "\r\n".encode())
    assert out.startswith(b"HTTP/1.1 200 ") and b'"server": "A"' in out
    # HEAD: the length of the body that a GET would get, no body
    out = raw(site.http, f"HEAD /h HTTP/1.1\r\nHost: x\r\nAuthorization: "
              f"{auth}\r\nConnection: close\r\n\r\n".encode())
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest == b""
    assert b"Content-Length: " in head and b"Connection: close" in head
    # Expect: 100-continue: the backend's 100 comes through first
    s = socket.create_connection(("127.0.0.1", site.http), timeout=10)
    s.sendall(f"PUT /e HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
              "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        assert chunk
        got += chunk
    assert got.startswith(b"HTTP/1.1 100 ")
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    assert b"HTTP/1.1 200 " in got
    assert hashlib.sha256(b"hello").hexdigest().encode() in got


def test_idle_client_closed(site):
    s = socket.create_connection(("127.0.0.1", site.http), timeout=10)
    t = time.monotonic()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")    # a head, unfinished
    assert s.recv(100) == b""                          # closed, no answer
    assert 1.5 < time.monotonic() - t < 8
    s.close()
