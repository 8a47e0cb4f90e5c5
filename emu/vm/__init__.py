"""Many virtual machines on one host, managed as VirtualBox manages them.

Lecture idea: "defining, launching, stopping, checkpointing" virtual
machines, many at once, sharing one host.  Read in this order:
``store.py`` (the definitions and their locks), ``manage.py`` (defining),
``disks.py`` (copy-on-write disks of snapshots and clones), ``host.py``
(the one process that runs them all, and its scheduler), ``consolelog.py``
(each guest's output, in bounded space), ``control.py``
(commands talking to it), ``migration.py`` (a VM moved to another
home's host), ``cli.py`` (``emu vm``).
"""
