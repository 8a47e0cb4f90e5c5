"""emu: an educational virtual machine for a toy instruction set.

Lecture idea: "a software layer (hypervisor) emulates the underlying hardware;
an additional operating system runs on the virtual hardware".  emu builds that
software layer from the bottom: an instruction set, a CPU, memory, devices,
a whole machine that can be checkpointed and restored.

Read in this order: ``isa.py`` (the hardware contract), ``cpu.py`` (the
fetch-decode-execute loop), ``memory.py`` and ``devices/``, ``machine.py``,
``snapshot.py``, then ``translate.py`` (the fast path).  ``docs/emu.md`` has
the map; ``emu/guest/`` has programs to run.
"""
