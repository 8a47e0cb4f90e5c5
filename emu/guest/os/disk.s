; disk.s -- reading sectors.
;
; The disk can interrupt when a transfer completes (devices/disk.py), and a
; bigger kernel would run another process meanwhile.  Transfers here are a
; few hundred cycles, shorter than a context switch, so this kernel simply
; waits for the BUSY bit to clear -- the same loop as the boot sector's.

.equ DISK,          0xF0000400
.equ DISK_SECTOR,   0x00
.equ DISK_ADDR,     0x04
.equ DISK_COUNT,    0x08
.equ DISK_CMD,      0x0C
.equ DISK_STATUS,   0x10
.equ DISK_BUSY,     1
.equ DISK_DONE,     2
.equ DISK_ERROR,    4

; disk_read(sector a0, physical address a1, count a2) -> a0 = 0, or -1 on error.
disk_read:
    li   t0, DISK
    stw  a0, [t0 + DISK_SECTOR]
    stw  a1, [t0 + DISK_ADDR]
    stw  a2, [t0 + DISK_COUNT]
    li   t1, 1
    stw  t1, [t0 + DISK_CMD]
disk_busy:
    ldw  t1, [t0 + DISK_STATUS]
    andi t2, t1, DISK_BUSY
    bnez t2, disk_busy
    li   t2, DISK_DONE
    stw  t2, [t0 + DISK_STATUS]   ; acknowledge
    li   a0, 0
    andi t1, t1, DISK_ERROR
    beqz t1, disk_read_done
    li   a0, -1
disk_read_done:
    ret
