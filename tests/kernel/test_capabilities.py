"""Capabilities: docker's set arithmetic, and the sets a process really ends up with."""

import os

import pytest

from minirt.errors import SpecError
from minirt.kernel import capabilities, security
from minirt.kernel.capabilities import DEFAULT, capability_set, expected_status_mask

BUSYBOX = "/bin/busybox"
DOCKER_DEFAULT_MASK = "00000000a80425fb"   # what `docker run busybox grep Cap /proc/self/status` shows


# -- the arithmetic (no privileges) -----------------------------------------------

def test_default_is_dockers_fourteen():
    assert len(DEFAULT) == 14
    assert capability_set() == DEFAULT
    assert expected_status_mask(DEFAULT) == DOCKER_DEFAULT_MASK


def test_add_and_drop_accept_any_spelling():
    caps = capability_set(cap_add=["net_admin", "CAP_SYS_TIME", "Sys_Ptrace"], cap_drop=["chown", "cap_kill"])
    assert caps == (DEFAULT - {"CAP_CHOWN", "CAP_KILL"}) | {"CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE"}


def test_drop_all_keeps_only_the_added():
    assert capability_set(cap_add=["chown"], cap_drop=["ALL"]) == {"CAP_CHOWN"}
    assert capability_set(cap_drop=["all"]) == frozenset()


def test_add_all_gives_everything_but_the_dropped():
    caps = capability_set(cap_add=["ALL"], cap_drop=["sys_admin"])
    assert caps == capabilities.known() - {"CAP_SYS_ADMIN"}
    assert capability_set(cap_add=["all"], cap_drop=["all"]) == capabilities.known()  # docker: add wins


def test_privileged_gets_all_the_kernel_knows_and_ignores_the_lists():
    caps = capability_set(cap_drop=["ALL"], privileged=True)
    assert caps == capabilities.known()
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert len(caps) == min(int(f.read()), max(capabilities.NUMBERS.values())) + 1


@pytest.mark.parametrize("add, drop, flag", [(["CAP_FLY"], [], "--cap-add"), ([], ["bogus"], "--cap-drop"),
                                             (["CAP_ALL"], [], "--cap-add")])
def test_unknown_names_are_refused(add, drop, flag):
    with pytest.raises(SpecError, match=f'{flag}: unknown capability: "'):
        capability_set(cap_add=add, cap_drop=drop)


def test_status_mask_is_sixteen_hex_digits():
    assert expected_status_mask([]) == "0" * 16
    assert expected_status_mask(["CAP_CHECKPOINT_RESTORE", "CAP_CHOWN"]) == "0000010000000001"


# -- the real thing: in a child, as root ---------------------------------------------

def _status(text):
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    return {k: fields[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                                           "Uid", "Gid", "Groups")}


def _host_bounding():
    return {name for name, n in capabilities.NUMBERS.items() if n in capabilities.bounding_set()}


@pytest.mark.privileged
def test_root_container_has_dockers_sets_after_exec(exec_in_child):
    status, out = exec_in_child(lambda: security.apply(caps=DEFAULT), [BUSYBOX, "cat", "/proc/self/status"])
    assert os.waitstatus_to_exitcode(status) == 0, out
    fields = _status(out)
    assert {k: fields[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")} == {
        "CapInh": "0" * 16, "CapPrm": DOCKER_DEFAULT_MASK, "CapEff": DOCKER_DEFAULT_MASK,
        "CapBnd": DOCKER_DEFAULT_MASK, "CapAmb": "0" * 16, "NoNewPrivs": "1", "Seccomp": "0"}


@pytest.mark.privileged
def test_non_root_user_keeps_only_the_bounding_set(exec_in_child):
    def become():
        security.apply(caps=DEFAULT, uid=1000, gid=1000, groups=[1000, 10])

    status, out = exec_in_child(become, [BUSYBOX, "cat", "/proc/self/status"])
    assert os.waitstatus_to_exitcode(status) == 0, out
    fields = _status(out)
    assert (fields["CapEff"], fields["CapPrm"], fields["CapInh"]) == ("0" * 16,) * 3
    assert fields["CapBnd"] == DOCKER_DEFAULT_MASK
    assert (fields["Uid"].split(), fields["Gid"].split()) == (["1000"] * 4, ["1000"] * 4)
    assert sorted(fields["Groups"].split()) == ["10", "1000"]


@pytest.mark.privileged
def test_added_and_dropped_caps_show_up(exec_in_child):
    caps = capability_set(cap_add=["NET_ADMIN"], cap_drop=["CHOWN", "NET_RAW"])
    status, out = exec_in_child(lambda: security.apply(caps=caps), [BUSYBOX, "cat", "/proc/self/status"])
    fields = _status(out)
    assert fields["CapEff"] == fields["CapBnd"] == expected_status_mask(caps)


@pytest.mark.privileged
def test_privileged_keeps_what_the_host_allows(exec_in_child):
    caps = capability_set(privileged=True)
    status, out = exec_in_child(lambda: security.apply(caps=caps, no_new_privs=False),
                                [BUSYBOX, "cat", "/proc/self/status"])
    fields = _status(out)
    expected = expected_status_mask(caps & _host_bounding())
    assert fields["CapEff"] == fields["CapBnd"] == expected
    assert fields["NoNewPrivs"] == "0"


@pytest.mark.privileged
def test_drop_capabilities_alone(in_child):
    def drop():
        capabilities.drop_capabilities({"CAP_KILL", "CAP_CHOWN"})
        return capabilities.status()

    status, fields = in_child(drop)
    mask = expected_status_mask({"CAP_KILL", "CAP_CHOWN"})
    assert (fields["CapEff"], fields["CapPrm"], fields["CapBnd"], fields["CapInh"]) == (mask, mask, mask, "0" * 16)


@pytest.mark.privileged
def test_dropped_capability_is_really_gone(in_child):
    def try_chown(tmp=f"/tmp/minirt-cap-test-{os.getpid()}"):
        open(tmp, "w").close()
        try:
            security.apply(caps=DEFAULT - {"CAP_CHOWN"})
            os.chown(tmp, 1234, 1234)
            return "chown worked"
        except PermissionError:
            return "EPERM"
        finally:
            os.unlink(tmp)

    assert in_child(try_chown)[1] == "EPERM"
