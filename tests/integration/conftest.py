"""Fixtures that run real Tern instances in temporary roots.

Every instance gets its own root under /tmp (traversable, so daemons that
drop privileges can reach it) and its own port range, runs `ternctl setup`
and `ternctl start`, and is always stopped, with a check that no process of
it is left behind.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

SRC = os.environ.get("TERN_TOP_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TERN_TOP_BUILDDIR") or SRC


def build_path(*parts):
    return os.path.join(BUILD, *parts)


TERNCTL = build_path("tools", "ternctl")
ECHOD = build_path("tests", "tern-echod")
LIBEXEC = ":".join([build_path("master"), build_path("tests")])


def port_free(port):
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
        except OSError as e:
            if fam == socket.AF_INET6 and e.errno == 99:
                continue  # no ::1 on this host
            return False
        finally:
            s.close()
    return True


def free_port_block(count=20):
    """A block of consecutive free ports in a high range."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port block found")


def pids_of_root(root):
    """Processes whose command line or environment names this root."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        key = b"TERN_ROOT=" + root.encode()
        if key in env or root.encode() in cmd:
            found.append(int(d))
    return found


class Instance:
    def __init__(self, root, port_base):
        self.root = root
        self.port_base = port_base
        self.env = dict(os.environ)
        self.env["TERN_LIBEXECDIR"] = LIBEXEC
        self.env.pop("TERN_ROOT", None)

    def ctl(self, *args, check=True, timeout=60, input=None):
        cmd = [TERNCTL, "-r", self.root] + list(args)
        p = subprocess.run(cmd, env=self.env, capture_output=True,
                           text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\n"
                f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}\n"
                f"log:\n{self.log_tail()}")
        return p

    def status(self):
        p = self.ctl("status", "--json", check=False)
        return json.loads(p.stdout)

    def service(self, name):
        for s in self.status()["services"]:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def conf(self, name):
        return os.path.join(self.root, "conf", name)

    def write_services(self, text):
        with open(self.conf("services.conf"), "w") as f:
            f.write(text)

    def append_conf(self, text):
        with open(self.conf("tern.conf"), "a") as f:
            f.write(text)

    def log_path(self):
        return os.path.join(self.root, "log", "tern.log")

    def log_tail(self, n=40):
        try:
            with open(self.log_path(), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def log_text(self):
        try:
            with open(self.log_path(), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def master_pid(self):
        try:
            with open(os.path.join(self.root, "run", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def wait_service(self, name, running=True, timeout=20):
        """Waits until service name runs (running False: until it does
        not, or is gone from the table)."""
        def ok():
            try:
                s = self.service(name)
            except KeyError:
                return not running
            return (s["state"] == "running") == running
        self.wait_for(ok, timeout=timeout, what=f"{name} running={running}")

    def wait_running(self, names, timeout=20):
        """Waits until every service of names runs."""
        def ok():
            st = {s["name"]: s["state"] for s in self.status()["services"]}
            return all(st.get(n) == "running" for n in names)
        self.wait_for(ok, timeout=timeout, what=f"{names} running")

    def wait_for(self, pred, timeout=10.0, interval=0.05, what="condition"):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = pred()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; log:\n"
                             f"{self.log_tail()}")

    SANITIZER_MARKS = ("Sanitizer", "runtime error", "panic:")

    def problems_logged(self, extra=()):
        """Sanitizer reports, UBSan errors and panics in the instance's log
        and in master.err (the daemons' stderr)."""
        text = self.log_text()
        try:
            with open(os.path.join(self.root, "log", "master.err"),
                      errors="replace") as f:
                text += f.read()
        except OSError:
            pass
        marks = self.SANITIZER_MARKS + tuple(extra)
        return [m for m in marks if m in text], text

    def stop_all(self):
        """Stops the instance; returns the pids still alive afterwards."""
        self.ctl("stop", check=False, timeout=90)
        left = pids_of_root(self.root)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


def echod_services(port_base, extra=""):
    """A services.conf with the test echo daemon on plain, TLS and unix."""
    return (
        f"echo     inet 127.0.0.1:{port_base}      1 yes {ECHOD}\n"
        f"echotls  inet 127.0.0.1:{port_base + 1}  1 yes {ECHOD} -T\n"
        f"echounix unix run/echo.sock              1 yes {ECHOD}\n"
        + extra)


def new_instance(setup_args=(), services=None, conf="", start=True):
    """An instance in a new temporary root with a free port block."""
    root = tempfile.mkdtemp(prefix="tern-test-", dir="/tmp")
    os.chmod(root, 0o755)
    base = free_port_block()
    inst = Instance(root, base)
    inst.ctl("setup", "--port-base", str(base + 10), *setup_args)
    if services is not None:
        inst.write_services(services(base) if callable(services)
                            else services)
    if conf:
        inst.append_conf(conf)
    if start:
        inst.ctl("start")
    return inst


def finish_instances(made):
    """Stops the instances; fails the test on processes left behind or on
    sanitizer reports and panics in their logs (their roots are kept
    then)."""
    problems = []
    for inst in made:
        left = inst.stop_all()
        found, text = inst.problems_logged()
        if found:
            problems.append(f"{inst.root}: {found} in the logs:\n"
                            f"{text[-6000:]}")
        if left:
            problems.append(f"{inst.root}: processes left after stop: {left}")
        if not left and not found:
            shutil.rmtree(inst.root, ignore_errors=True)
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def make_instance():
    made = []

    def factory(setup_args=(), services=None, conf="", start=True):
        inst = new_instance(setup_args, services, conf, start)
        made.append(inst)
        return inst

    yield factory
    finish_instances(made)


@pytest.fixture
def instance(make_instance):
    return make_instance(services=echod_services)


def connect(port, host="127.0.0.1", timeout=5.0):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def read_line(sock_file):
    line = sock_file.readline()
    return line.decode("utf-8", "replace").rstrip("\r\n")
