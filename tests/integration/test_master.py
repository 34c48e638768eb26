"""tern-master supervision and ternctl service control, on real processes."""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import connect, echod_services, ECHOD, pids_of_root


def process_alive(pid):
    """True unless pid is gone or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def echo_roundtrip(port, text="hello"):
    with connect(port) as s:
        f = s.makefile("rb")
        greeting = f.readline()
        assert greeting.startswith(b"+OK"), greeting
        s.sendall(text.encode() + b"\r\n")
        return f.readline().decode().rstrip("\r\n")


def test_setup_layout_and_idempotent(make_instance):
    inst = make_instance(start=False)
    for d in ("conf", "conf/ssl", "data", "log", "run", "backup",
              "queue/incoming", "queue/active", "queue/deferred",
              "queue/hold", "queue/corrupt"):
        assert os.path.isdir(os.path.join(inst.root, d)), d
    crt = inst.conf("ssl/tern.crt")
    key = inst.conf("ssl/tern.key")
    assert os.path.isfile(crt) and os.path.isfile(key)
    assert os.stat(key).st_mode & 0o007 == 0, "key readable by others"
    with open(crt, "rb") as f:
        cert_before = f.read()
    inst.append_conf("log_level = debug\n")
    with open(inst.conf("tern.conf")) as f:
        conf_before = f.read()
    inst.ctl("setup", "--port-base", str(inst.port_base + 10))
    with open(crt, "rb") as f:
        assert f.read() == cert_before, "setup replaced an existing cert"
    with open(inst.conf("tern.conf")) as f:
        assert f.read() == conf_before, "setup rewrote an existing tern.conf"


def test_start_status_stop(instance):
    st = instance.status()
    names = {s["name"]: s for s in st["services"]}
    assert set(names) >= {"echo", "echotls", "echounix"}
    for n in ("echo", "echotls", "echounix"):
        s = names[n]
        assert s["state"] == "running", s
        assert len(s["pids"]) == 1
        assert s["restarts"] == 0
    assert names["echo"]["listen"] == [f"127.0.0.1:{instance.port_base}"]
    assert names["echounix"]["listen"][0].endswith("run/echo.sock")
    assert instance.ctl("status").returncode == 0
    text = instance.ctl("status").stdout
    assert "echo" in text and "running" in text
    assert echo_roundtrip(instance.port_base) == "ECHO hello"
    # the unix listener works too
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(instance.root, "run", "echo.sock"))
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"hi\r\n")
    assert f.readline() == b"ECHO hi\r\n"
    s.close()


def test_start_twice_is_harmless(instance):
    pid = instance.master_pid()
    p = instance.ctl("start", check=False)
    assert p.returncode == 0, p.stderr
    assert "already running" in (p.stdout + p.stderr)
    assert instance.master_pid() == pid


def test_kill9_child_restarted_within_1s(instance):
    old = instance.service("echo")["pids"][0]
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)

    def restarted():
        s = instance.service("echo")
        return s if s["pids"] and s["pids"][0] != old and \
            s["state"] == "running" else None
    s = instance.wait_for(restarted, timeout=5, interval=0.02,
                          what="echo restart")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"restart took {elapsed:.2f}s"
    assert s["restarts"] == 1
    assert echo_roundtrip(instance.port_base) == "ECHO hello"
    assert "killed by signal 9" in instance.log_text()


def test_crash_loop_backed_off_others_unaffected(make_instance):
    extra = f"crasher inet 127.0.0.1:{{}} 1 yes {ECHOD} -X\n"

    def services(base):
        return echod_services(base, extra.format(base + 2))
    inst = make_instance(services=services, start=False)
    p = inst.ctl("start", check=False)
    assert p.returncode != 0, "start succeeded with a crashing service"
    assert "crasher" in p.stdout + p.stderr

    def backed_off():
        s = inst.service("crasher")
        return s if s["state"] == "backoff" else None
    s = inst.wait_for(backed_off, timeout=15, what="crasher backoff")
    assert s["restarts"] >= 4
    assert "crash" in s.get("message", "")
    assert inst.service("echo")["state"] == "running"
    assert echo_roundtrip(inst.port_base) == "ECHO hello"
    assert inst.ctl("status", check=False).returncode != 0
    assert "crash-looping" in inst.log_text()


def test_reload_changed_and_unchanged(instance):
    echo_pid = instance.service("echo")["pids"][0]
    tls_pid = instance.service("echotls")["pids"][0]
    stop = threading.Event()
    failures = []
    attempts = [0]

    def hammer(port):
        while not stop.is_set() and attempts[0] < 20000:
            attempts[0] += 1
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=5):
                    pass
            except OSError as e:
                failures.append((port, repr(e)))
    threads = [threading.Thread(target=hammer, args=(instance.port_base,)),
               threading.Thread(target=hammer,
                                args=(instance.port_base + 1,))]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        base = instance.port_base
        instance.write_services(
            f"echo     inet 127.0.0.1:{base}      1 yes {ECHOD}\n"
            f"echotls  inet 127.0.0.1:{base + 1}  2 yes {ECHOD} -T\n"
            f"echounix unix run/echo.sock         1 yes {ECHOD}\n")
        instance.ctl("reload")

        def reloaded():
            s = instance.service("echotls")
            return s if len(s["pids"]) == 2 and tls_pid not in s["pids"] \
                and s["state"] == "running" else None
        instance.wait_for(reloaded, timeout=10, what="echotls restarted")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert attempts[0] > 10
    assert failures == [], failures[:5]
    assert instance.service("echo")["pids"] == [echo_pid]
    assert echo_roundtrip(instance.port_base) == "ECHO hello"


def test_reload_with_bad_services_keeps_running(instance):
    pid = instance.service("echo")["pids"][0]
    instance.write_services("echo inet nonsense 1 yes\n")
    p = instance.ctl("reload", check=False)
    assert p.returncode != 0
    assert "services.conf:1" in p.stdout + p.stderr
    assert instance.service("echo")["pids"] == [pid]


def test_sighup_reloads(instance):
    base = instance.port_base
    instance.write_services(
        f"echo     inet 127.0.0.1:{base}      1 yes {ECHOD}\n"
        f"echounix unix run/echo.sock         1 yes {ECHOD}\n")
    os.kill(instance.master_pid(), signal.SIGHUP)
    instance.wait_for(
        lambda: "echotls" not in {s["name"] for s in
                                  instance.status()["services"]},
        what="echotls removed")
    with pytest.raises(OSError):
        connect(base + 1, timeout=1).close()


def test_stop_drains_and_leaves_no_process(make_instance):
    inst = make_instance(services=echod_services,
                         conf="drain_timeout = 2s\n")
    master = inst.master_pid()
    idle = connect(inst.port_base)
    assert idle.makefile("rb").readline().startswith(b"+OK")
    t0 = time.monotonic()
    p = inst.ctl("stop", timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 0
    assert pids_of_root(inst.root) == []
    assert not process_alive(master)
    assert took < 15, took
    assert not os.path.exists(os.path.join(inst.root, "run", "master.pid"))
    idle.close()
    assert inst.ctl("status", check=False).returncode != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_daemons_drop_privileges(instance):
    pid = instance.service("echo")["pids"][0]
    with open(f"/proc/{pid}/status") as f:
        uid = [l for l in f if l.startswith("Uid:")][0].split()[1:]
    import pwd
    tern = pwd.getpwnam("tern").pw_uid
    assert all(int(u) == tern for u in uid), uid
    # Unix sockets belong to the daemon account, so daemons reach them.
    st = os.stat(os.path.join(instance.root, "run", "echo.sock"))
    assert st.st_uid == tern and st.st_mode & 0o777 == 0o660
    # The control socket stays root's.
    st = os.stat(os.path.join(instance.root, "run", "master.sock"))
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600


def test_two_instances_side_by_side(make_instance):
    a = make_instance(services=echod_services)
    b = make_instance(services=echod_services)
    assert a.master_pid() != b.master_pid()
    assert echo_roundtrip(a.port_base) == "ECHO hello"
    assert echo_roundtrip(b.port_base) == "ECHO hello"
    a.ctl("stop")
    assert b.service("echo")["state"] == "running"


def test_children_stop_when_master_dies(instance):
    pids = [instance.service(n)["pids"][0]
            for n in ("echo", "echotls", "echounix")]
    os.kill(instance.master_pid(), signal.SIGKILL)
    instance.wait_for(lambda: not any(process_alive(p) for p in pids),
                      timeout=10, what="children to stop")
    # The stale pid file and sockets do not prevent a new start.
    instance.ctl("start")
    assert echo_roundtrip(instance.port_base) == "ECHO hello"


def test_external_program_supervised(make_instance):
    """An external server (here Python's http.server) as a service: ready
    when its port answers, restarted when killed, stopped last."""
    def services(base):
        return echod_services(base) + (
            f"web proc - 1 yes ready=tcp:127.0.0.1:{base + 3} external=yes "
            f"/usr/bin/python3 -m http.server --bind 127.0.0.1 {base + 3}\n")
    inst = make_instance(services=services)
    web = inst.service("web")
    assert web["state"] == "running" and web["external"]
    with connect(inst.port_base + 3) as s:
        s.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200")
    old = web["pids"][0]
    os.kill(old, signal.SIGKILL)
    inst.wait_for(lambda: inst.service("web")["pids"] not in ([], [old])
                  and inst.service("web")["state"] == "running",
                  what="web restarted")
    assert inst.service("web")["restarts"] == 1
    new = inst.service("web")["pids"][0]
    inst.ctl("stop")
    assert not process_alive(new)
    log = inst.log_text()
    # Tern's daemons stop before the external server does.
    assert log.rindex("service echo: pid") < log.rindex("service web: pid")


def test_ldap_ready_probe_wants_an_ldap_answer(make_instance):
    """ready=ldap:... is not met by a server that merely accepts
    connections (here an HTTP server): the service never becomes ready
    and is killed after service_ready_timeout.  (A real slapd passing the
    same probe: test_ldap.py.)"""
    def services(base):
        return echod_services(base) + (
            f"dir proc - 1 yes ready=ldap:127.0.0.1:{base + 4} "
            f"external=yes /usr/bin/python3 -m http.server "
            f"--bind 127.0.0.1 {base + 4}\n")
    inst = make_instance(services=services, conf="service_ready_timeout "
                         "= 2s\n", start=False)
    inst.ctl("start", check=False)
    inst.wait_for(lambda: re.search(r"service dir: pid \d+ not ready "
                                    r"after 2000 ms; killing it",
                                    inst.log_text()),
                  timeout=20, what="the probe to give up")
    assert inst.service("dir")["state"] != "running"
    # The port did accept connections all along.
    assert "service dir ready" not in inst.log_text()


def test_restart_and_status_when_stopped(instance):
    old = instance.master_pid()
    p = instance.ctl("restart")
    assert "stopped" in p.stdout
    new = instance.master_pid()
    assert new is not None and new != old
    assert instance.service("echo")["state"] == "running"
    instance.ctl("stop")
    p = instance.ctl("status", "--json", check=False)
    assert p.returncode == 1
    import json
    data = json.loads(p.stdout)
    assert data["master"]["running"] is False and data["services"] == []
    p = instance.ctl("stop")
    assert "not running" in p.stdout


def test_setup_reports_services_missing_from_kept_table(make_instance):
    from conftest import build_path
    inst = make_instance(start=False)
    inst.env["TERN_LIBEXECDIR"] += ":" + build_path("stored")
    p = inst.ctl("setup", "--port-base", str(inst.port_base + 10))
    assert "no service 'stored' for the installed tern-stored" in p.stdout
    assert "run/stored.sock" in p.stdout
