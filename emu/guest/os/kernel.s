; kernel.s -- toyos, a tiny operating system for the emu machine.
;
; Lecture idea: "an additional operating system runs on the virtual hardware".
; This is that operating system: it boots from the disk, turns on paging,
; runs programs from its file system in user mode, each in its own address
; space, shares the CPU among them with timer interrupts, and kills a program
; that touches memory that is not its own -- all through the same traps and
; devices a real kernel uses.  Its shape is xv6's, made smaller:
;
;   main.s      start-up: paging, traps, devices, the first process
;   vm.s        page tables: the kernel's, and one address space per process
;   trap.s      entering and leaving the kernel; faults kill the process
;   proc.s      the process table, creating processes, exit, the scheduler
;   syscall.s   the system calls
;   fs.s        the read-only file system on the disk
;   console.s   console input (interrupt-driven) and output
;   disk.s      reading sectors
;   data.s      every variable, after the code, on pages of their own
;
; One kernel stack, no kernel threads: every trap starts at the top of the
; stack and ends by returning to a process (resume) or choosing another one
; (schedule), so nothing on the stack outlives a trap.  Interrupts are off
; in the kernel.  A system call that has to wait (read from an empty console,
; wait for a child that is still running) puts the process to sleep *without*
; advancing its pc: when it runs again it simply makes the same call again.
;
; Kernel register use follows docs/isa.md: a0..a3 arguments and results,
; t0..t4 scratch, s0..s2 kept by whoever uses them.  In trap and system-call
; code s0 holds the trapped process.
.include "layout.s"

.org KERNEL_BASE
_start:
    jmp  main

.include "../lib.s"               ; device addresses, putc, puts, print_uint, exit
.include "main.s"
.include "vm.s"
.include "trap.s"
.include "proc.s"
.include "syscall.s"
.include "fs.s"
.include "console.s"
.include "disk.s"

    .align 4096
etext:                            ; code ends: pages from here on are data (not executable)
.include "data.s"
