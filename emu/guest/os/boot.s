; boot.s -- the boot sector: the first guest code that runs.
;
; The firmware (Machine.boot) has copied this sector to address 0 and jumped
; here, in supervisor mode, paging off, interrupts off.  Its one job, like a
; PC's boot sector or xv6's bootmain: find the kernel on the disk, read it
; into RAM, jump to it.  It has 510 bytes to do that in, so it polls the disk
; instead of waiting for interrupts, and trusts the superblock's numbers.
; The firmware leaves the size of RAM in sp: too little, and it says so.
.include "layout.s"

.equ DISK,          0xF0000400    ; devices/disk.py
.equ DISK_SECTOR,   0x00
.equ DISK_ADDR,     0x04
.equ DISK_COUNT,    0x08
.equ DISK_CMD,      0x0C
.equ DISK_STATUS,   0x10
.equ CONSOLE,       0xF0000000
.equ POWER,         0xF0000200

.org BOOT_BASE
_start:
    la   a0, too_small
    li   t0, RAM_TOP
    bltu sp, t0, fail             ; (the kernel's layout assumes all of it)
    li   a0, 1                    ; the superblock
    li   a1, SUPER_BUF
    li   a2, 1
    call disk_read
    ldw  t0, [zero + SUPER_BUF + SB_MAGIC]
    la   t1, FS_MAGIC
    bne  t0, t1, no_kernel
    ldw  a0, [zero + SUPER_BUF + SB_KERNEL]
    ldw  a2, [zero + SUPER_BUF + SB_KERNEL_SECTORS]
    beqz a2, no_kernel
    li   a1, KERNEL_BASE
    call disk_read
    li   t0, KERNEL_BASE
    jr   t0                       ; and the kernel takes it from here

no_kernel:
    la   a0, no_kernel_message
fail:                             ; print a0, power off with status 1
    li   t0, CONSOLE
print:
    ldbu t1, [a0]
    beqz t1, off
    stw  t1, [t0]
    addi a0, a0, 1
    b    print
off:
    li   t0, POWER
    li   t1, 1
    stw  t1, [t0]

; disk_read(sector a0, address a1, count a2): start a transfer, wait until
; the disk is no longer busy.
disk_read:
    li   t0, DISK
    stw  a0, [t0 + DISK_SECTOR]
    stw  a1, [t0 + DISK_ADDR]
    stw  a2, [t0 + DISK_COUNT]
    li   t1, 1                    ; read
    stw  t1, [t0 + DISK_CMD]
busy:
    ldw  t1, [t0 + DISK_STATUS]
    andi t1, t1, 1
    bnez t1, busy
    li   t1, 2
    stw  t1, [t0 + DISK_STATUS]   ; acknowledge
    ret

no_kernel_message: .asciz "boot: no kernel on this disk\n"
too_small:         .asciz "boot: toyos needs 1 MiB of memory (--mem 1M)\n"
