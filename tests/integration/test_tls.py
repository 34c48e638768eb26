"""The common TLS layer, checked from outside with openssl s_client."""
import socket
import ssl
import subprocess

import pytest

from conftest import connect


def s_client(port, *args):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
           "-servername", "localhost", "-ign_eof"] + list(args)
    return subprocess.run(cmd, input=b"QUIT\r\n", capture_output=True,
                          timeout=20)


def negotiated(p):
    out = p.stdout.decode(errors="replace")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Protocol") and ":" in line:
            return line.split(":", 1)[1].strip()
        if line.startswith("New, TLSv"):
            return line.split(",")[1].strip()
    return None


def test_tls13_accepted(instance):
    p = s_client(instance.port_base + 1, "-tls1_3")
    assert p.returncode == 0, p.stderr
    assert negotiated(p) == "TLSv1.3"
    assert b"+OK" in p.stdout


def test_tls12_accepted(instance):
    p = s_client(instance.port_base + 1, "-tls1_2")
    assert p.returncode == 0, p.stderr
    assert negotiated(p) == "TLSv1.2"
    assert b"+OK" in p.stdout


def test_tls11_refused(instance):
    # SECLEVEL=0 lets the client offer TLS 1.1: the refusal must be ours.
    p = s_client(instance.port_base + 1, "-tls1_1", "-cipher",
                 "DEFAULT@SECLEVEL=0")
    assert p.returncode != 0
    # The server answers the ClientHello with a protocol_version alert.
    assert b"alert protocol version" in p.stderr, p.stderr
    assert b"Cipher is (NONE)" in p.stdout or b"+OK" not in p.stdout
    assert b"+OK" not in p.stdout


def test_tls10_refused(instance):
    p = s_client(instance.port_base + 1, "-tls1", "-cipher",
                 "DEFAULT@SECLEVEL=0")
    assert p.returncode != 0
    assert b"alert protocol version" in p.stderr, p.stderr
    assert b"+OK" not in p.stdout


def test_starttls_plaintext_injection_discarded(instance):
    raw = connect(instance.port_base)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    # The injected command rides in the same packet as STARTTLS.
    raw.sendall(b"STARTTLS\r\nINJECTED\r\n")
    assert f.readline() == b"+OK begin TLS\r\n"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"PING\r\n")
    line = tf.readline()
    assert line == b"ECHO PING\r\n", line
    tls.sendall(b"QUIT\r\n")
    rest = tf.read()
    assert b"INJECTED" not in rest
    tls.close()


def test_starttls_over_starttls_refused(instance):
    raw = connect(instance.port_base)
    f = raw.makefile("rb")
    f.readline()
    raw.sendall(b"STARTTLS\r\n")
    assert f.readline() == b"+OK begin TLS\r\n"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"STARTTLS\r\n")
    assert tf.readline().startswith(b"-ERR")
    tls.close()
