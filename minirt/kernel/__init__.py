"""Thin, honest wrappers over the Linux kernel; each file is one mechanism."""
