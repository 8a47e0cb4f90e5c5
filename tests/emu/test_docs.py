"""The emu half of docs/tour.md and the README's emu section, run as
written: the commands are parsed out of the docs, so a doc that drifts from
the code fails here, and what a step's **Check** says it shows is checked."""

import os
import re
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUEST = os.path.join(REPO, "emu", "guest")

# What each step shows (from its **Check**), looked for in its output.
SHOWS = {
    "1.": [re.compile(r"^0000[0-9a-f]{4}  [0-9a-f]{8}  \w", re.M)],
    "2.": ["typed on the host"],
    "3.": ["tick 1", "tick 5"],
    "4.": ["kernel ", "Welcome to toyos", "Hello from user space", "PID\tSTATE\tNAME"],
    "5.": ["killed: page fault on store", "killed: page fault on load",
           "killed: page fault on instruction fetch", "Hello from user space"],
    "6.": ["[2]", "[3]", "[4]", "\tloop\n", "\tcounter\n"],
    "7.": ["mine.txt", "$ my own file"],
    "8.": ["toyos booting", "Hello from user space", "sysreg write", "killed: page fault",
           re.compile(r"^guest fault +[1-9]", re.M), re.compile(r"^shadow fill +[1-9]", re.M),
           re.compile(r"shadow page tables: \d+ entries filled, [1-9]\d* flushes"),
           re.compile(r"^sysreg write +0 +\d+$", re.M), re.compile(r"^2nd-level fill +[1-9]", re.M),
           "kernel trap: cause 5", re.compile(r"^translated +[1-9]", re.M)],
    "9.": ["kernel ", "restored"],
    "10.": ["Hello from user space"],
    "11.": [re.compile(r"^t0 +running.*\n^t1 +running.*\n(^t\d +running.*\n){7}^t9 +running", re.M),
            "allocated clusters: 0 of 1", "backing file: ../../images/toyos.img (raw)",
            re.compile(r"guest memory: 10240K defined, \d{3,4}K touched"),
            lambda out: saved(out) > 500, "Hello from user space! I am process 2"],
    "12.": ["overcommitted 2:1", lambda out: 2.7 < shares(out, "three") / shares(out, "one") < 3.3],
    "13.": [re.compile(r"^crash +poweroff.*\n^t +running", re.M),
            "reason:      unhandled trap: illegal instruction at pc 0x00000000",
            "Hello from user space! I am process 2"],
    "14.": [re.compile(r"^big +saved +65536K", re.M), re.compile(r"^6[45]M\t.*saved.snap$", re.M),
            re.compile(r"^\d{1,3}K\t.*saved.snap$", re.M)],
    "15.": [re.compile(r"^db +aborted.*\n^web +aborted", re.M),
            re.compile(r"^db +running.*\n^web +running", re.M), "Hello from user space! I am process 3",
            lambda out: out.count("toyos booting") == 1],
    "16.": [re.compile(r"migrated in \d+ rounds? \(pages [\d/]+\), .* downtime [\d.]+ ms"),
            re.compile(r"^m +poweroff", re.M), re.compile(r"^m +running +2048K", re.M),
            "Hello from user space! I am process 3"],
    "README": ["Hello", "tick 5", "hi", "_start:", "kernel ", "shadow fill", "2nd-level fill"],
}
# Commands a test cannot run as written, and why that is all right.
DONE_ELSEWHERE = {
    "make bench": "the benchmarks are `make bench` itself",
    "make images && ": "the session's toyos fixture is that image",
}


def shares(out, vm):
    """How many instructions `vm` ran between the last two `emu vm stats`."""
    counts = [int(line.split()[2]) for line in out.splitlines() if line.split()[:2] == [vm, "running"]]
    return counts[-1] - counts[-2]


def saved(out):
    """The memory page sharing saved, in K, as the first `emu vm stats` says."""
    return int(re.search(r"guest pages map \d+ stable ones: (\d+)K saved", out)[1])


def blocks(text):
    """(language, lines) of every fenced code block."""
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        yield lang, body.splitlines()


def script(lang, lines):
    """A block as bash: `$ X` lines are typed at toyos's shell (what follows
    two spaces is a comment), python blocks run in python."""
    if lang == "python":
        return "python - <<'PY'\n" + "\n".join(lines) + "\nPY\n"
    out, typed = [], []
    for line in lines + [""]:
        if line.startswith("$ "):
            typed.append(line[2:].split("  ")[0].strip())
            continue
        if typed:
            run = "emu run images/toyos.img"
            if out and out[-1].startswith(run):
                run = out.pop()
            out.append("printf '%s\\n' " + " ".join(f"'{t}'" for t in typed) + f" | {run}")
            typed = []
        for done in DONE_ELSEWHERE:
            line = line.replace(done, "") if done.endswith(" ") else line
        if line.strip() and not any(line.startswith(d) for d in DONE_ELSEWHERE):
            out.append(line)
    return "".join(line + "\n" for line in out)


def tour_steps():
    with open(os.path.join(REPO, "docs", "tour.md")) as f:
        machines = f.read().split("## Containers")[0]     # the containers' half is minirt's
    for step in re.split(r"^### ", machines, flags=re.M)[1:]:
        number = step.split()[0]
        yield number, "".join(script(lang, lines) for lang, lines in blocks(step))


def readme_emu():
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("## emu:")[1].split("\n## ")[0]
    return "".join(script(lang, lines) for lang, lines in blocks(section))


STEPS = dict(tour_steps(), README=readme_emu())


def test_every_emu_step_of_the_tour_has_commands_and_a_check():
    assert sorted(STEPS, key=lambda s: (len(s), s)) == sorted(SHOWS, key=lambda s: (len(s), s))
    assert all(STEPS.values())


@pytest.mark.parametrize("step", sorted(STEPS))
def test_doc_commands_run_as_written(step, toyos, tmp_path):
    bin_dir = tmp_path / "bin"                  # `emu` and `python` as `make install` makes them
    bin_dir.mkdir()
    (bin_dir / "emu").write_text(f'#!/bin/sh\nexec {sys.executable} -m emu "$@"\n')
    (bin_dir / "emu").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    work = tmp_path / "repo"                    # the repository, as far as the commands look
    work.mkdir()
    (work / "emu").symlink_to(os.path.join(REPO, "emu"))
    (work / "images").mkdir()
    (work / "images" / "toyos.img").symlink_to(toyos)
    for name, source in (("prog.s", "hello.s"), ("lib.s", "lib.s")):     # `prog.s`: any program
        (work / name).symlink_to(os.path.join(GUEST, source))
    (work / "d.img").write_bytes(bytes(8 * 512))                         # `d.img`: any disk
    (tmp_path / "tmp").mkdir()
    commands = STEPS[step].replace("/tmp/", f"{tmp_path}/tmp/")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(["bash", "-e", "-c", commands], cwd=work, env=env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, f"{commands}\n{out}"
    for shown in SHOWS[step]:
        assert (shown.search(out) if isinstance(shown, re.Pattern) else
                shown(out) if callable(shown) else shown in out), \
            f"{step}: {shown!r} not in the output of\n{commands}\n{out}"
    for home in ("vms", "vms2"):
        vms_left_running(tmp_path / "tmp" / home)


def vms_left_running(path):
    """A step that uses `emu vm` leaves every VM off and its host gone
    (the host exits when idle: wait for that, a hang is what fails)."""
    from emu.vm.store import LIVE, Home
    if not path.exists():
        return
    home = Home(str(path))
    assert [name for name in home.names() if home.read(name)["state"] in LIVE] == []
    deadline, pid = time.monotonic() + 30, None
    while host := home.host_id():
        pid = int(host.split("-")[0])
        assert time.monotonic() < deadline, f"the host of {path} did not exit"
        time.sleep(0.02)
    while pid and os.path.exists(f"/proc/{pid}"):  # its lock goes a moment before it
        assert time.monotonic() < deadline, f"the host of {path} did not exit"
        time.sleep(0.02)
