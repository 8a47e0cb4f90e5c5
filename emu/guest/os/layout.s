; layout.s -- the facts that the boot sector, the kernel, the user programs
; and the file-system writer (emu/mkfs.py, which reads this file) share.

; -- the disk ------------------------------------------------------------------
;
;   sector 0        boot sector (boot.s), ending in the bytes 55 aa
;   sector 1        superblock
;   sectors 2..3    the directory: 32 entries of 32 bytes
;   then            the files, each in consecutive sectors from a sector boundary
;
; The directory lists itself as "." and the kernel as "kernel": like Unix, a
; directory is a file of entries, so `ls` needs no system call of its own.
.equ SECTOR,        512
.equ FS_MAGIC,      0x46594F54    ; "TOYF" read as a little-endian word
.equ SB_MAGIC,      0             ; superblock fields
.equ SB_DIR,        4             ;   first sector of the directory
.equ SB_DIR_SECTORS, 8
.equ SB_KERNEL,     12            ;   first sector of the kernel
.equ SB_KERNEL_SECTORS, 16
.equ DIR_SECTORS,   2
.equ DIRENT,        32            ; directory entry: name, NUL-padded ...
.equ NAME_MAX,      24
.equ DE_START,      24            ; ... first sector ...
.equ DE_SIZE,       28            ; ... and size in bytes; an empty name is a free entry
.equ NDIRENT,       DIR_SECTORS * SECTOR / DIRENT

; -- physical memory (1 MiB) -------------------------------------------------------
.equ BOOT_BASE,     0x00000       ; the firmware loads the boot sector here
.equ SUPER_BUF,     0x00200       ; where the boot sector reads the superblock
.equ KERNEL_BASE,   0x01000       ; the kernel image: code, data, stack
.equ KERNEL_PT,     0x10000       ; the kernel's page table, shared by every process
.equ PROC_PT,       0x20000       ; slot i: page directory at PROC_PT + i * 0x2000,
                                  ;         its user page table right after it
.equ USER_MEM,      0x40000       ; slot i: USER_SIZE bytes of RAM from USER_MEM + i * USER_SIZE
.equ RAM_TOP,       0x100000

; -- a process's virtual memory ------------------------------------------------------
;
;   0x00000000            page 0: not mapped, so a null pointer faults
;   0x00001000..RAM_TOP   the kernel and all of RAM, identity-mapped, supervisor only
;   USER_BASE..USER_TOP   the program, its data and its stack, user pages
.equ USER_BASE,     0x40000000
.equ USER_PAGES,    16
.equ USER_SIZE,     USER_PAGES * 4096
.equ USER_TOP,      USER_BASE + USER_SIZE
.equ ARG_SIZE,      128           ; the argument string sits at USER_TOP - ARG_SIZE,
                                  ; and the stack grows down from there

; -- system calls: number in t0, arguments in a0..a2, result in a0 ----------------------
; A call blocked in wait() or read() returns -2 when Ctrl-C is typed (console.s).
.equ SYS_EXIT,      0             ; exit(status)
.equ SYS_READ,      1             ; read(fd, buf, n) -> bytes read, 0 at the end, -1 error
.equ SYS_WRITE,     2             ; write(fd, buf, n) -> n or -1
.equ SYS_OPEN,      3             ; open(name) -> fd or -1
.equ SYS_CLOSE,     4             ; close(fd) -> 0 or -1
.equ SYS_SPAWN,     5             ; spawn(name, arg) -> pid or -1
.equ SYS_WAIT,      6             ; wait(pid) -> its exit status, or -1; wait(0): reap
                                  ;   finished children without waiting, -> how many
.equ SYS_YIELD,     7             ; yield() -> 0
.equ SYS_SLEEP,     8             ; sleep(ticks) -> 0
.equ SYS_GETPID,    9             ; getpid() -> pid
.equ SYS_PS,        10            ; ps(): the kernel prints the process table
.equ SYS_KILL,      11            ; kill(pid) -> 0, or -1 if it is not a child: it ends
                                  ;   at once with status KILLED
.equ NSYSCALLS,     12
.equ KILLED,        130           ; 128 + 2, what a Unix shell shows for Ctrl-C (SIGINT)

.equ STDIN,         0
.equ STDOUT,        1
