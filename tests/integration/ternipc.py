"""Tern's internal IPC codec (docs/protocols/ipc.md) in Python, for tests.

One implementation for every integration test that speaks a daemon's
protocol directly (tern-authd, tern-stored, ...), written from the protocol
document, so the C codec is checked against an independent reading of it.

    encode(type, id, fields) -> bytes of one frame
    decode(payload)          -> Msg (payload = the frame without its length)
    Client(path, proto, version)  one connection: checks the hello, then
                             send/recv/answer/call by request id.

Fields are (name, value) pairs in wire order; an int value is kind 'i', a
str (UTF-8) or bytes value is kind 's'.  Decoded 's' values are str when
they are valid UTF-8, else bytes.
"""
import socket
import struct

CODEC_VERSION = 1


class PeerClosed(ConnectionError, EOFError):
    """The peer closed the connection (between or inside a frame)."""


def encode(mtype, mid, fields=()):
    t = mtype.encode()
    fields = list(fields)
    body = bytes([CODEC_VERSION, len(t)]) + t + struct.pack(">IH", mid,
                                                           len(fields))
    for name, value in fields:
        n = name.encode()
        if isinstance(value, bool) or isinstance(value, int):
            body += b"i" + bytes([len(n)]) + n + struct.pack(">q", int(value))
        else:
            v = value.encode() if isinstance(value, str) else bytes(value)
            body += b"s" + bytes([len(n)]) + n + struct.pack(">I", len(v)) + v
    return struct.pack(">I", len(body)) + body


class Msg:
    """One decoded message: type, id and the ordered list of fields."""

    def __init__(self, mtype, mid, fields):
        self.type, self.id, self.fields = mtype, mid, fields

    def get(self, name, default=None):
        for n, v in self.fields:
            if n == name:
                return v
        return default

    def all(self, name):
        return [v for n, v in self.fields if n == name]

    def dict(self):
        """{name: [values]} (the order of repeated names is kept)."""
        d = {}
        for n, v in self.fields:
            d.setdefault(n, []).append(v)
        return d

    def __repr__(self):
        return f"Msg({self.type}, {self.id}, {self.fields})"


def _text(raw):
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def decode(payload):
    """The Msg of one frame's payload; asserts it is well-formed."""
    assert payload[0] == CODEC_VERSION, payload[:1]
    tlen = payload[1]
    mtype = payload[2:2 + tlen].decode()
    pos = 2 + tlen
    mid, count = struct.unpack(">IH", payload[pos:pos + 6])
    pos += 6
    fields = []
    for _ in range(count):
        kind, nlen = payload[pos], payload[pos + 1]
        name = payload[pos + 2:pos + 2 + nlen].decode()
        pos += 2 + nlen
        if kind == ord("i"):
            fields.append((name, struct.unpack(">q",
                                               payload[pos:pos + 8])[0]))
            pos += 8
        else:
            assert kind == ord("s"), kind
            (vlen,) = struct.unpack(">I", payload[pos:pos + 4])
            fields.append((name, _text(payload[pos + 4:pos + 4 + vlen])))
            pos += 4 + vlen
    assert pos == len(payload), "trailing bytes"
    return Msg(mtype, mid, fields)


class Client:
    """One connection to a daemon's unix socket.  The constructor reads and
    checks the hello (id 0, exactly the fields proto and version)."""

    def __init__(self, path, proto, version, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 0
        self.unsolicited = []
        hello = self.recv_msg()
        assert (hello.type, hello.id) == ("hello", 0), hello
        assert hello.fields == [("proto", proto), ("version", version)], \
            hello

    def close(self):
        self.sock.close()

    def recv(self):
        """The next message, whatever its id (subclasses may reshape it)."""
        return self.recv_msg()

    def recv_msg(self):
        """The next Msg, whatever its id."""
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    payload = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return decode(payload)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PeerClosed("the peer closed the connection")
            self.buf += chunk

    def send(self, mtype, fields=()):
        """Sends a request with the next id; returns the id."""
        self.next_id += 1
        self.sock.sendall(encode(mtype, self.next_id, fields))
        return self.next_id

    def answer(self, mid, final=("ok", "error"), skip_zero=False):
        """(data frames, final frame) of request mid: frames up to the first
        one whose type is in final.  With skip_zero, messages with id 0
        (unsolicited ones) are collected in self.unsolicited instead."""
        frames = []
        while True:
            m = self.recv_msg()
            if skip_zero and m.id == 0:
                self.unsolicited.append(m)
                continue
            assert m.id == mid, m
            if m.type in final:
                return frames, m
            frames.append(m)

    def call(self, mtype, fields=()):
        return self.answer(self.send(mtype, fields))

    def ok(self, mtype, fields=()):
        frames, last = self.call(mtype, fields)
        assert last.type == "ok", last
        return frames, last
