"""tern.conf handling as the administrator sees it through ternctl."""
import json


def test_bad_value_fails_with_file_line(make_instance):
    inst = make_instance(start=False)
    with open(inst.conf("tern.conf")) as f:
        n = len(f.readlines())
    inst.append_conf("drain_timeout = banana\n")
    p = inst.ctl("start", check=False)
    assert p.returncode == 1
    out = p.stdout + p.stderr
    assert f"tern.conf:{n + 1}" in out, out
    assert "drain_timeout" in out
    assert inst.master_pid() is None
    p = inst.ctl("config", "show", check=False)
    assert p.returncode == 1
    assert f"tern.conf:{n + 1}" in p.stdout + p.stderr


def test_unknown_key_warns_with_file_line(make_instance):
    inst = make_instance(start=False)
    with open(inst.conf("tern.conf")) as f:
        n = len(f.readlines())
    inst.append_conf("no_such_option = 1\n")
    p = inst.ctl("config", "show")
    assert f"tern.conf:{n + 1}" in p.stderr
    assert "no_such_option" in p.stderr


def test_config_show_sources(make_instance):
    inst = make_instance(start=False)
    p = inst.ctl("config", "show", "drain_timeout")
    assert "default" in p.stdout
    with open(inst.conf("tern.conf")) as f:
        n = len(f.readlines())
    inst.append_conf("drain_timeout = 7s\n")
    p = inst.ctl("config", "show", "drain_timeout")
    assert "7s" in p.stdout
    assert f"tern.conf:{n + 1}" in p.stdout
    p = inst.ctl("config", "show", "--json")
    data = json.loads(p.stdout)
    opt = [o for o in data if o["name"] == "drain_timeout"][0]
    assert opt["value"] == "7s"
    p = inst.ctl("config", "show", "no_such_key", check=False)
    assert p.returncode != 0
