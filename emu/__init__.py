"""emu: an educational virtual machine for a toy instruction set.

Lecture idea: "a software layer (hypervisor) emulates the underlying hardware;
an additional operating system runs on the virtual hardware".  emu builds that
software layer from the bottom: an instruction set, a CPU, memory, devices,
a whole machine that can be checkpointed and restored.

Read in this order: ``isa.py`` (the hardware contract), ``cpu.py`` (the
fetch-decode-execute loop), ``memory.py`` and ``mmu.py`` (RAM and paging),
``devices/``, ``machine.py``, ``snapshot.py``, then ``translate.py`` (the fast
path).  ``emu/guest/os/`` is a guest operating system for all of it, and
``mkfs.py`` makes its disk.  ``docs/emu.md`` has the map; ``docs/tour.md``
walks the lecture through the code.
"""
