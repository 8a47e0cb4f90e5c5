"""Build script for minirt's libc bindings (cffi, ABI mode, out-of-line).

Running this file writes ``minirt/kernel/_libc.py``: a small generated module that
holds the already-parsed declarations below, so importing minirt costs no C
parsing.  ``setup.py`` runs it at build time and ``make install`` runs it in the
source tree.  Only calls that Python's ``os`` module lacks (in 3.11) are here.
"""

import os

from cffi import FFI

ffibuilder = FFI()
ffibuilder.set_source("minirt.kernel._libc", None)
ffibuilder.cdef(
    """
    int mount(const char *source, const char *target, const char *filesystemtype,
              unsigned long mountflags, const void *data);
    int umount2(const char *target, int flags);
    int unshare(int flags);
    int setns(int fd, int nstype);
    int sethostname(const char *name, size_t len);
    long syscall(long number, ...);
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);

    /* <linux/filter.h>: a classic BPF program, as seccomp(2) takes it */
    struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
    struct sock_fprog { unsigned short len; struct sock_filter *filter; };
    """
)

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(os.path.dirname(os.path.dirname(here)))
    ffibuilder.emit_python_code("minirt/kernel/_libc.py")
