"""Exits, counted by cause: what ``kvm_stat`` shows for a KVM guest.

Lecture idea: "each environment communicates to resources through the
hypervisor ... can significantly impact performance".  Every time the guest
does something it may not do itself, the real CPU traps and the monitor runs
instead of the guest: an *exit*.  How many there are, and why, is the cost of
virtualisation made visible.  A guest program computing in a loop makes none;
a guest kernel handling a system call makes a few dozen; a console line is an
exit per byte.
"""

# In the order they are printed, with what brings the guest to the monitor.
CAUSES = {
    "sysreg read":  "mfsr in guest supervisor mode: read the virtual system register",
    "sysreg write": "mtsr in guest supervisor mode: write it (ptbr also empties the shadows)",
    "eret":         "return from the guest's trap handler: virtual mode and interrupt bits",
    "halt":         "the guest waits for an interrupt (or, with them off, powers off)",
    "tlbflush":     "the guest's TLB flush: the shadows are emptied",
    "device":       "a load or store in the device region from guest supervisor mode",
    "shadow fill":  "a real page fault the guest's own tables allow: a shadow entry is "
                    "written, the guest never sees it",
    "guest fault":  "a page fault or bad address of the guest's own, delivered to it",
    "guest trap":   "a system call, breakpoint, illegal or misaligned instruction, or a "
                    "privileged one in guest user mode, delivered to the guest",
    "interrupt":    "a virtual device interrupt injected (the guest's virtual IE allows it)",
    "translated":   "binary translation: a sensitive instruction that would not trap "
                    "(variant P), rewritten into a call to the monitor",
    "2nd-level fill": "hardware assistance: a guest-physical page the second-level table "
                      "does not map yet; the monitor maps it, the guest never sees it",
}
# The exit an emulated privileged instruction counts as, by mnemonic.
BY_MNEMONIC = {"mfsr": "sysreg read", "mtsr": "sysreg write", "eret": "eret", "halt": "halt",
               "tlbflush": "tlbflush"}


class Exits:
    """Exits so far, by cause."""

    def __init__(self):
        self.counts = dict.fromkeys(CAUSES, 0)

    def count(self, cause):
        self.counts[cause] += 1

    @property
    def total(self):
        return sum(self.counts.values())

    def table(self, seconds=None):
        """The counts as lines of text, like kvm_stat's; with `seconds` (of
        host time), also per second."""
        rate = seconds is not None and seconds > 0
        lines = [f"{'exit':<16}{'count':>10}" + (f"{'per s':>12}" if rate else "")]
        for cause, count in [*self.counts.items(), ("total", self.total)]:
            lines.append(f"{cause:<16}{count:>10}" + (f"{count / seconds:>12.0f}" if rate else ""))
        return "\n".join(lines)
