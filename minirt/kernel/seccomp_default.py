"""The default seccomp profile: which system calls a container may make.

Lecture idea: capabilities decide what root may do *through* a system call;
seccomp decides which system calls may be made at all.  Many kernel exploits
need an obscure, rarely used call (keyctl, bpf, userfaultfd, perf_event_open);
a container that cannot make it cannot use the bug, whatever its privileges.

This is docker's default profile (moby ``profiles/seccomp/default.json``, as of
moby 25), restricted to the x86_64 system calls and written in the same JSON
shape, so ``seccomp.parse_profile`` reads it exactly like a user's profile.
"One fact, one place": these rules live here and nowhere else.

It is an **allow-list**: the default action denies with EPERM and every call a
normal program needs is listed.  A deny-list (allow all, refuse the dangerous
ones) would be shorter, but each new kernel brings new system calls, and a
deny-list would let all of them through until someone noticed.  With an
allow-list a new call is refused until it has been looked at.  (Calls *newer
than every call named here* are refused with ENOSYS instead, so that libc sees
"this kernel does not have it" and falls back, see ``seccomp.compile_profile``.)

What is *not* in the allow-list, and so fails with EPERM (unless the capability
named in a rule below is added, which makes the call meaningful again):

    namespaces and mounts   unshare, setns, mount, umount2, pivot_root, fsopen,
                            fsmount, fsconfig, fspick, open_tree, move_mount,
                            mount_setattr, and clone with any CLONE_NEW* flag
    kernel keyring          keyctl, add_key, request_key
    kernel code and state   bpf, init_module, finit_module, delete_module,
                            kexec_load, kexec_file_load, reboot, swapon, swapoff,
                            acct, syslog, quotactl, lookup_dcookie, _sysctl
    clock                   settimeofday, clock_settime (adjtimex may read it)
    spying on others        kcmp, process_vm_readv/writev (before Linux 4.8),
                            perf_event_open, open_by_handle_at, userfaultfd
    hardware, NUMA memory   iopl, ioperm, mbind, set_mempolicy, move_pages,
                            migrate_pages
    obsolete or odd         uselib, ustat, sysfs, create_module, get_kernel_syms,
                            query_module, nfsservctl, vhangup, and personality
                            except with the harmless values below
    vsock                   socket(AF_VSOCK, ...): talks to the hypervisor

``ptrace`` is allowed, as in docker on Linux >= 4.8: since 4.8 the kernel runs
seccomp again after a tracer changed a call, so ptrace can no longer be used to
slip past the filter, and a container can only trace its own processes anyway:
the host's are not in its PID namespace, so "ptrace a host process" fails
before seccomp is even asked.  Without CAP_SYS_PTRACE it can trace only its own
user's, dumpable processes.  ``clone3`` fails with ENOSYS, not EPERM, because
its flags live in memory a BPF filter cannot read; ENOSYS makes glibc fall back
to ``clone``, whose flags the filter can check.
"""

# The namespace flags of clone(2): a container may create threads and
# processes, but no new namespaces (that would undo its isolation, and reach
# kernel code that user namespaces expose to unprivileged users).
#   CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000

AF_VSOCK = 40

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,   # EPERM
    "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [
        {
            "names": [
                # files and directories
                "open", "openat", "openat2", "creat", "close", "close_range",
                "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
                "access", "faccessat", "faccessat2", "readlink", "readlinkat",
                "getdents", "getdents64", "getcwd", "chdir", "fchdir",
                "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2",
                "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat",
                "mknod", "mknodat", "truncate", "ftruncate", "fallocate", "umask",
                "chmod", "fchmod", "fchmodat", "fchmodat2",
                "chown", "fchown", "lchown", "fchownat",
                "utime", "utimes", "utimensat", "futimesat",
                "setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr",
                "listxattr", "llistxattr", "flistxattr",
                "removexattr", "lremovexattr", "fremovexattr",
                "name_to_handle_at",   # harmless alone; open_by_handle_at is the dangerous half
                "flock", "fcntl", "inotify_init", "inotify_init1", "inotify_add_watch",
                "inotify_rm_watch", "fanotify_mark",
                # reading and writing
                "read", "write", "readv", "writev", "pread64", "pwrite64",
                "preadv", "pwritev", "preadv2", "pwritev2", "lseek",
                "sendfile", "splice", "tee", "vmsplice", "copy_file_range",
                "fsync", "fdatasync", "sync", "syncfs", "sync_file_range",
                "readahead", "fadvise64", "cachestat", "ioctl",
                "dup", "dup2", "dup3", "pipe", "pipe2",
                "select", "pselect6", "poll", "ppoll",
                "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
                "epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2",
                "eventfd", "eventfd2", "signalfd", "signalfd4",
                "timerfd_create", "timerfd_settime", "timerfd_gettime",
                "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents",
                "io_pgetevents", "io_uring_setup", "io_uring_enter", "io_uring_register",
                # memory
                "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore",
                "msync", "remap_file_pages", "mlock", "mlock2", "munlock", "mlockall",
                "munlockall", "memfd_create", "memfd_secret", "membarrier",
                "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack",
                # processes and threads (clone: see its own rule below)
                "fork", "vfork", "execve", "execveat", "exit", "exit_group",
                "wait4", "waitid", "getpid", "getppid", "gettid", "getpgid", "setpgid",
                "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
                "get_robust_list", "futex", "futex_waitv", "futex_wake", "futex_wait",
                "futex_requeue", "rseq", "arch_prctl", "modify_ldt",
                "set_thread_area", "get_thread_area", "prctl", "seccomp",
                "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
                "pidfd_open", "pidfd_send_signal", "process_mrelease",
                "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
                "restart_syscall", "uname", "sysinfo", "getrandom", "getcpu",
                # signals
                "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
                "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
                "rt_sigsuspend", "sigaltstack", "pause",
                # time (reading it; setting it needs CAP_SYS_TIME, see below)
                "time", "gettimeofday", "clock_gettime", "clock_getres",
                "clock_nanosleep", "nanosleep", "alarm", "getitimer", "setitimer",
                "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
                "timer_delete", "adjtimex", "clock_adjtime",
                # identity (changing it still needs CAP_SETUID / CAP_SETGID)
                "getuid", "geteuid", "getresuid", "setuid", "setreuid", "setresuid",
                "getgid", "getegid", "getresgid", "setgid", "setregid", "setresgid",
                "getgroups", "setgroups", "setfsuid", "setfsgid", "capget", "capset",
                # sockets (socket itself: see its rule below)
                "socketpair", "bind", "listen", "accept", "accept4", "connect",
                "getsockname", "getpeername", "setsockopt", "getsockopt",
                "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
                "shutdown",
                # System V and POSIX IPC (private to the IPC namespace)
                "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop",
                "semctl", "msgget", "msgsnd", "msgrcv", "msgctl",
                "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
                "mq_getsetattr",
                # scheduling
                "sched_yield", "sched_setparam", "sched_getparam", "sched_setscheduler",
                "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
                "sched_rr_get_interval", "sched_setaffinity", "sched_getaffinity",
                "sched_setattr", "sched_getattr", "getpriority", "setpriority",
                "ioprio_get", "ioprio_set",
            ],
            "action": "SCMP_ACT_ALLOW",
        },
        {
            # Since 4.8 seccomp re-checks a call after a tracer changed it.
            "names": ["ptrace", "process_vm_readv", "process_vm_writev"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"minKernel": "4.8"},
        },
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
        },
        {
            # personality(2) can switch on odd execution domains (READ_IMPLIES_EXEC,
            # ADDR_NO_RANDOMIZE, ...).  Allowed: PER_LINUX (0), UNAME26 (8),
            # PER_LINUX32 (0x20000) and their combination, and 0xffffffff, which
            # only queries the current value.
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x0, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},

        # -- what the added capabilities make meaningful again -----------------
        {"names": ["open_by_handle_at"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_DAC_READ_SEARCH"]}},
        {
            "names": [
                "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
                "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
                "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                "setdomainname", "sethostname", "setns", "syslog", "umount2", "unshare",
            ],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            # clone(flags, ...) with no namespace flag: fork and threads.
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                      "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,   # ENOSYS
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["reboot"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_BOOT"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["delete_module", "init_module", "finit_module"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_MODULE"]}},
        {"names": ["acct"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_PACCT"]}},
        {"names": ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                   "process_vm_writev", "ptrace"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["iopl", "ioperm"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_RAWIO"]}},
        {"names": ["settimeofday", "clock_settime"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_TIME"]}},
        {"names": ["vhangup"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_TTY_CONFIG"]}},
        {"names": ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
         "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_NICE"]}},
        {"names": ["syslog"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYSLOG"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_BPF"]}},
        {"names": ["perf_event_open"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_PERFMON"]}},
    ],
}
