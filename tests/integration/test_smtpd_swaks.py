"""tern-smtpd driven by swaks (Debian's Swiss Army Knife SMTP), a client
that is not ours, on the three services: the extensions it announces,
PIPELINING, STARTTLS, implicit TLS, AUTH PLAIN and LOGIN, and the policy
refusals seen through swaks' exit codes (23 MAIL refused, 24 no recipient
accepted, 26 message refused after DATA, 28 AUTH failed); and Postfix's
smtp-source as a sending MTA."""
import os
import re
import shutil
import subprocess

import pytest

from test_smtpd import PASSWORD, QUEUE_ID, env  # noqa: F401 (fixture)

SWAKS = shutil.which("swaks")

pytestmark = pytest.mark.skipif(SWAKS is None, reason="swaks not installed")


def swaks(port, *args, body=None, timeout=60):
    cmd = [SWAKS, "--server", "127.0.0.1", "--port", str(port),
           "--helo", "client.example.org", "--timeout", "30",
           "--from", "someone@example.org", "--to", "bob@example.com"]
    cmd += list(args)
    if body is not None:
        cmd += ["--body", body]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def queued(env, out, body=None, rcpts=("bob@example.com",)):  # noqa: F811
    """The queue file named by the 250 of DATA: complete, with the
    recipients and the body swaks sent."""
    m = QUEUE_ID.search(out)
    assert m, out
    path = os.path.join(env.incoming, m.group(1))
    assert os.path.exists(path), out
    envelope, rcpt_list, msg = env.queued(m.group(1))
    got = [r["address"] for r in rcpt_list]
    assert sorted(got) == sorted(rcpts), (got, rcpt_list)
    if body is not None:
        assert body.encode() in msg, msg[-500:]
    return envelope


def test_mx_extensions_and_pipelining(env):  # noqa: F811
    rc, out = swaks(env.port, "--pipeline", body="piped through swaks")
    assert rc == 0, out
    for ext in ("PIPELINING", "SIZE 204800", "8BITMIME", "SMTPUTF8",
                "ENHANCEDSTATUSCODES", "STARTTLS", "DSN", "CHUNKING"):
        assert re.search(rf"<[-~] +250[ -]{ext}\b", out), (ext, out)
    # No AUTH before TLS on the MX service.
    assert not re.search(r"<[-~] +250[ -]AUTH", out), out
    queued(env, out, body="piped through swaks")


def test_mx_starttls(env):  # noqa: F811
    rc, out = swaks(env.port, "-tls", body="over TLS")
    assert rc == 0, out
    assert re.search(r"TLS started with cipher TLSv1\.[23]", out), out
    envelope = queued(env, out, body="over TLS")
    assert envelope["L"].startswith("TLSv1."), envelope
    assert envelope["P"] == "ESMTPS", envelope


def test_mx_refusals(env):  # noqa: F811
    rc, out = swaks(env.port, "--to", "nobody@example.com")
    assert rc == 24 and "550 5.1.1" in out, out
    rc, out = swaks(env.port, "--to", "someone@elsewhere.example.net")
    assert rc == 24 and "554 5.7.1" in out, out
    # One good recipient out of two: the message goes to that one.
    rc, out = swaks(env.port, "--pipeline", "--to",
                    "nobody@example.com,ann@example.com")
    assert rc == 0 and "550 5.1.1" in out, out
    queued(env, out, rcpts=("ann@example.com",))
    big = os.path.join(env.root, "big-body.txt")
    with open(big, "w") as f:
        f.write(("x" * 76 + "\r\n") * 4000)     # over message_size_limit
    rc, out = swaks(env.port, "--suppress-data", body=big)
    assert rc == 26 and "552 5.3.4" in out, out


def test_submission_needs_tls_and_auth(env):  # noqa: F811
    rc, out = swaks(env.sub_port)
    assert rc == 23 and "530 5.7.0" in out, out
    rc, out = swaks(env.sub_port, "-tls")
    assert rc == 23 and "530 5.7.0 Authentication required" in out, out
    for mech in ("PLAIN", "LOGIN"):
        rc, out = swaks(env.sub_port, "-tls", "--auth", mech,
                        "--auth-user", "ann@example.com", "--auth-password",
                        PASSWORD, "--from", "ann@example.com",
                        body=f"submitted with {mech}")
        assert rc == 0, out
        assert re.search(r"<[-~] +235 2\.7\.0", out), out
        envelope = queued(env, out, body=f"submitted with {mech}")
        assert envelope["A"] == "ann@example.com", envelope
        assert envelope["P"] == "ESMTPSA", envelope
    rc, out = swaks(env.sub_port, "-tls", "--auth", "PLAIN", "--auth-user",
                    "ann@example.com", "--auth-password", "wrong",
                    "--from", "ann@example.com")
    assert rc == 28 and "535 5.7.8" in out, out
    # The sender must be the user's own.
    rc, out = swaks(env.sub_port, "-tls", "--auth", "LOGIN", "--auth-user",
                    "ann@example.com", "--auth-password", PASSWORD,
                    "--from", "bob@example.com")
    assert rc == 23 and "553 5.7.1" in out, out


def test_submissions_implicit_tls(env):  # noqa: F811
    rc, out = swaks(env.ssl_port, "--tls-on-connect", "--auth", "LOGIN",
                    "--auth-user", "bob@example.com", "--auth-password",
                    PASSWORD, "--from", "bob@example.com",
                    "--to", "someone@elsewhere.example.net",
                    body="relayed for an authenticated user")
    assert rc == 0, out
    queued(env, out, body="relayed for an authenticated user",
           rcpts=("someone@elsewhere.example.net",))


SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


@pytest.mark.skipif(not os.path.exists(SMTP_SOURCE),
                    reason="smtp-source (package postfix) not installed")
def test_postfix_smtp_source_sends_in(env):  # noqa: F811
    """Postfix's smtp-source as a sending MTA: 40 messages over 4
    parallel sessions, connections reused (-d), all queued complete."""
    before = set(os.listdir(env.incoming))
    p = subprocess.run([SMTP_SOURCE, "-d", "-s", "4", "-m", "40", "-l",
                        "2000", "-M", "peer.example.org", "-f",
                        "someone@example.org", "-t", "bob@example.com",
                        f"127.0.0.1:{env.port}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    new = set(os.listdir(env.incoming)) - before
    ids = [n for n in new if QUEUE_ID.fullmatch(f"queued as {n}")]
    assert len(ids) == 40, sorted(new)
    for qid in ids:
        envelope, rcpts, msg = env.queued(qid)
        assert envelope["S"] == "someone@example.org"
        assert [r["address"] for r in rcpts] == ["bob@example.com"]
        assert envelope["H"] == "peer.example.org"
        assert len(msg) >= 2000
