"""A container's resource usage, read from its cgroup, in runc's shape (``events``).

Lecture idea: the cgroup that limits a container also counts what it uses --
CPU time, memory, processes, block I/O -- in plain files beside the limits.
The two versions name and scale them differently:

    what               cgroup v1 (one tree per controller)      cgroup v2 (one directory)
    CPU time           cpuacct.usage (ns), cpuacct.stat (ticks)  cpu.stat usage_usec, user_usec, ...
    throttling         cpu.stat nr_periods, throttled_time (ns)  cpu.stat nr_periods, throttled_usec
    memory             memory.usage_in_bytes, .limit_in_bytes,   memory.current, memory.max, memory.peak,
                       .max_usage_in_bytes, .failcnt, memsw.*    memory.swap.* (without the memory: added)
    processes          pids.current, pids.max                    the same
    block I/O          blkio.throttle.io_service*_recursive      io.stat rbytes=, wbytes=, rios=, wios=

``read`` turns either into the one JSON object ``runc events --stats``
prints (runc's types.Stats, with Go's omitempty rules: zero numbers and empty
lists left out where runc leaves them out), so a tool written for runc reads
minirt's the same way.
"""

import os

MAX = (1 << 64) - 1   # "max" (no limit), as runc reports it
USER_HZ = 100         # cpuacct.stat counts in clock ticks of 1/USER_HZ s


def read(cgroup):
    """runc's Stats for ``cgroup`` (a ``kernel.cgroups.Cgroup``), from its files now."""
    if cgroup.version == "v2":
        d = cgroup.dirs[0]
        cpu, memory, pids, blkio = _cpu_v2(d), _memory_v2(d), _pids(d), _blkio_v2(d)
    else:
        dirs = {}
        for tree, d in zip(cgroup.trees, cgroup.dirs):
            for controller in tree.controllers if tree.version == "v1" else ():
                dirs[controller] = d
        cpu = _cpu_v1(dirs.get("cpuacct"), dirs.get("cpu"))
        memory = _memory_v1(dirs.get("memory"))
        pids = _pids(dirs.get("pids"))
        blkio = _blkio_v1(dirs.get("blkio"))
    return {"cpu": cpu, "cpuset": _CPUSET, "memory": memory, "pids": pids, "blkio": blkio,
            "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None}


# runc's CPUSet with nothing filled in (its counters are not omitempty).
_CPUSET = {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
           "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0, "sched_load_balance": 0,
           "sched_relax_domain_level": 0}


def _cpu_v2(d):
    stat = _keyed(d, "cpu.stat")
    usage = _nonzero(total=stat.get("usage_usec", 0) * 1000)
    usage.update(kernel=stat.get("system_usec", 0) * 1000, user=stat.get("user_usec", 0) * 1000)
    return {"usage": usage, "throttling": _nonzero(periods=stat.get("nr_periods", 0),
                                                   throttledPeriods=stat.get("nr_throttled", 0),
                                                   throttledTime=stat.get("throttled_usec", 0) * 1000)}


def _cpu_v1(cpuacct, cpu):
    ticks = _keyed(cpuacct, "cpuacct.stat")
    usage = _nonzero(total=_number(cpuacct, "cpuacct.usage"), percpu=_numbers(cpuacct, "cpuacct.usage_percpu"),
                     percpu_kernel=_numbers(cpuacct, "cpuacct.usage_percpu_sys"),
                     percpu_user=_numbers(cpuacct, "cpuacct.usage_percpu_user"))
    usage.update(kernel=ticks.get("system", 0) * 10**9 // USER_HZ, user=ticks.get("user", 0) * 10**9 // USER_HZ)
    stat = _keyed(cpu, "cpu.stat")
    return {"usage": usage, "throttling": _nonzero(periods=stat.get("nr_periods", 0),
                                                   throttledPeriods=stat.get("nr_throttled", 0),
                                                   throttledTime=stat.get("throttled_time", 0))}


def _memory_v2(d):
    raw = _keyed(d, "memory.stat")
    usage = _entry(_number(d, "memory.current"), _number(d, "memory.max"), _number(d, "memory.peak"), 0)
    swap = _entry(_number(d, "memory.swap.current"), _number(d, "memory.swap.max"), _number(d, "memory.swap.peak"), 0)
    # v1 counts swap as memory + swap: so does runc's v2 report, for its readers' sake
    swap["usage"] = swap.get("usage", 0) + usage.get("usage", 0)
    if swap["limit"] != MAX:
        swap["limit"] = min(MAX, swap["limit"] + usage["limit"])  # (no limit on memory: none on both)
    return _memory(raw.get("file", 0), usage, swap, _entry(0, 0, 0, 0), _entry(0, 0, 0, 0), raw)


def _memory_v1(d):
    def entry(prefix):
        return _entry(*(_number(d, f"{prefix}.{name}") for name in
                        ("usage_in_bytes", "limit_in_bytes", "max_usage_in_bytes", "failcnt")))

    raw = _keyed(d, "memory.stat")
    return _memory(raw.get("cache", 0), entry("memory"), entry("memory.memsw"), entry("memory.kmem"),
                   entry("memory.kmem.tcp"), raw)


def _memory(cache, usage, swap, kernel, tcp, raw):
    memory = _nonzero(cache=cache)
    memory.update(usage=usage, swap=swap, kernel=kernel, kernelTCP=tcp)
    if raw:
        memory["raw"] = raw
    return memory


def _entry(usage, limit, peak, failcnt):
    """runc's MemoryEntry: limit and failcnt always, usage and max when not zero."""
    entry = {"limit": limit}
    entry.update(_nonzero(usage=usage, max=peak))
    entry["failcnt"] = failcnt
    return entry


def _pids(d):
    limit = _number(d, "pids.max")
    return _nonzero(current=_number(d, "pids.current"), limit=0 if limit == MAX else limit)


def _blkio_v2(d):
    served, serviced = [], []
    for line in _lines(d, "io.stat"):
        device, *fields = line.split()
        major, _, minor = device.partition(":")
        counts = dict(f.split("=", 1) for f in fields if "=" in f)
        for key, into, op in (("rbytes", served, "Read"), ("wbytes", served, "Write"),
                              ("rios", serviced, "Read"), ("wios", serviced, "Write")):
            if key in counts:
                into.append(_nonzero(major=int(major), minor=int(minor), op=op, value=int(counts[key])))
    return _nonzero(ioServiceBytesRecursive=served, ioServicedRecursive=serviced)


def _blkio_v1(d):
    def entries(name):
        out = []
        for line in _lines(d, name):
            fields = line.split()
            if len(fields) == 3:  # "MAJ:MIN Op value" (the last line, "Total value", has two)
                major, _, minor = fields[0].partition(":")
                out.append(_nonzero(major=int(major), minor=int(minor), op=fields[1], value=int(fields[2])))
        return out

    return _nonzero(ioServiceBytesRecursive=entries("blkio.throttle.io_service_bytes_recursive"),
                    ioServicedRecursive=entries("blkio.throttle.io_serviced_recursive"))


# -- reading cgroup files: a missing controller or file counts as zero --------------------

def _nonzero(**fields):
    """Go's omitempty: leave out zeros and empty lists."""
    return {k: v for k, v in fields.items() if v}


def _lines(d, name):
    if d is None:
        return []
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _number(d, name):
    """A one-number file ("max": MAX); 0 where there is none."""
    lines = _lines(d, name)
    if not lines:
        return 0
    return MAX if lines[0] == "max" else int(lines[0])


def _numbers(d, name):
    lines = _lines(d, name)
    return [int(n) for n in lines[0].split()] if lines else []


def _keyed(d, name):
    """A flat-keyed file ("key value" per line) as a dict of numbers."""
    return {key: int(value) for key, value in (line.split() for line in _lines(d, name)) if value.isdigit()}
