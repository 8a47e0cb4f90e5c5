; proc.s -- processes: the table, creating one, ending one, and the scheduler.
;
; A process is a slot in `procs`: its saved registers (trap.s), its state,
; its page directory, its open files.  The scheduler is round-robin: starting
; after the slot that ran last, the first RUNNABLE process gets the CPU until
; the timer interrupts (QUANTUM cycles), it blocks, or it exits.  A process
; that loops forever therefore only ever costs the others a share of the CPU.

.equ NPROC,         8
.equ PROC_SIZE,     128
.equ P_STATE,       64
.equ P_PID,         68
.equ P_PARENT,      72            ; the parent's pid; 0 when nobody will wait
.equ P_STATUS,      76            ; exit status, for the parent's wait
.equ P_WAKE,        80            ; the tick a SLEEPING process wakes at
.equ P_PTBR,        84            ; its address space
.equ P_NAME,        88            ; 16 bytes: the program's name
.equ NAME_LEN,      16
.equ P_FILES,       104           ; NFILE open files: directory entry, offset
.equ NFILE,         3
.equ FIRST_FD,      2             ; 0 and 1 are the console

.equ UNUSED,        0             ; process states
.equ RUNNABLE,      1
.equ RUNNING,       2
.equ SLEEPING,      3             ; in sleep(), until ticks reaches P_WAKE
.equ WAITING,       4             ; in wait(), for a child to exit
.equ READING,       5             ; in read() from the console, for a key
.equ ZOMBIE,        6             ; exited; its parent has not collected the status yet

; proc_create(name a0, argument a1, parent pid a2) -> a0 = pid, or -1 when
; there is no such program or no free slot.  Loads the program from the
; file system into a fresh address space and makes it RUNNABLE.
proc_create:
    push lr
    push s0
    push s1
    push s2
    push fp
    mov  s1, a1
    mov  s2, a2
    call fs_lookup                ; a0 = directory entry, or 0
    beqz a0, proc_create_fail
    mov  fp, a0
    ldw  t0, [fp + DE_SIZE]
    li   t1, USER_SIZE - ARG_SIZE
    bgeu t0, t1, proc_create_fail  ; too big for its slot (the stack needs room too)
    la   s0, procs                ; find a free slot
    li   t1, NPROC
proc_create_find:
    ldw  t0, [s0 + P_STATE]
    beqz t0, proc_create_found
    addi s0, s0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, proc_create_find
proc_create_fail:
    li   a0, -1
    b    proc_create_done
proc_create_found:
    mov  a0, s0
    li   a1, PROC_SIZE
    call memzero                  ; registers 0, no open files
    call slot_of                  ; a0 = slot number of s0
    call vm_create
    stw  a0, [s0 + P_PTBR]
    call slot_memory              ; a0 = physical address of the slot's user memory
    mov  a1, a0
    li   t0, USER_SIZE - ARG_SIZE
    add  a0, a0, t0               ; copy the argument to the top of the user pages
    mov  t2, a1                   ; (keep the base)
    mov  a1, s1
    li   a2, ARG_SIZE
    push t2
    call strlcpy
    pop  a1                       ; load the program at the bottom: physical = USER_BASE
    ldw  a0, [fp + DE_START]
    ldw  a2, [fp + DE_SIZE]
    addi a2, a2, SECTOR - 1
    shri a2, a2, 9                ; whole sectors
    call disk_read
    li   t0, USER_BASE
    stw  t0, [s0]                 ; pc
    li   t0, USER_TOP - ARG_SIZE
    stw  t0, [s0 + 4]             ; a0: the argument string
    stw  t0, [s0 + 56]            ; sp: below it
    addi a0, s0, P_NAME
    mov  a1, fp
    li   a2, NAME_LEN
    call strlcpy
    stw  s2, [s0 + P_PARENT]
    la   t0, next_pid
    ldw  a0, [t0]
    addi t1, a0, 1
    stw  t1, [t0]
    stw  a0, [s0 + P_PID]
    li   t0, RUNNABLE
    stw  t0, [s0 + P_STATE]
proc_create_done:
    pop  fp
    pop  s2
    pop  s1
    pop  s0
    pop  lr
    ret

; slot_of() -> a0 = the slot number of the process at s0.
slot_of:
    la   t0, procs
    sub  a0, s0, t0
    shri a0, a0, 7                ; / PROC_SIZE
    ret

; slot_memory() -> a0 = physical address of the user memory of the process at s0.
slot_memory:
    push lr
    call slot_of
    li   t0, USER_SIZE
    mul  a0, a0, t0
    li   t0, USER_MEM
    add  a0, a0, t0
    pop  lr
    ret

; do_exit(status a0): end the process at s0.  It stays a ZOMBIE until its
; parent collects the status with wait; if nobody will, it is gone at once.
; Its children are orphaned: nobody will wait for them either.
do_exit:
    stw  a0, [s0 + P_STATUS]
    ldw  t0, [s0 + P_PID]
    li   t1, 1
    bne  t0, t1, do_exit_not_init
    li   t0, POWER                ; the shell has exited: power off
    stw  a0, [t0]
do_exit_not_init:
    la   t1, procs                ; orphan the children
    li   t2, NPROC
do_exit_child:
    ldw  t3, [t1 + P_PARENT]
    bne  t3, t0, do_exit_next
    stw  zero, [t1 + P_PARENT]
    ldw  t3, [t1 + P_STATE]
    li   t4, ZOMBIE
    bne  t3, t4, do_exit_next
    stw  zero, [t1 + P_STATE]     ; an orphaned zombie is collected now
do_exit_next:
    addi t1, t1, PROC_SIZE
    addi t2, t2, -1
    bnez t2, do_exit_child
    ldw  a0, [s0 + P_PARENT]
    li   t0, UNUSED
    beqz a0, do_exit_state
    li   t0, ZOMBIE
    call find_pid                 ; wake the parent if it is in wait()
    beqz a0, do_exit_zombie
    ldw  t1, [a0 + P_STATE]
    li   t2, WAITING
    bne  t1, t2, do_exit_zombie
    li   t1, RUNNABLE
    stw  t1, [a0 + P_STATE]
do_exit_zombie:
    li   t0, ZOMBIE
do_exit_state:
    stw  t0, [s0 + P_STATE]
    jmp  schedule

; find_pid(pid a0) -> a0 = its process, or 0.
find_pid:
    la   t0, procs
    li   t1, NPROC
find_pid_loop:
    ldw  t2, [t0 + P_STATE]
    beqz t2, find_pid_next
    ldw  t2, [t0 + P_PID]
    beq  t2, a0, find_pid_found
find_pid_next:
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, find_pid_loop
    li   a0, 0
    ret
find_pid_found:
    mov  a0, t0
    ret

; wake_all(state a0): make every process in that state RUNNABLE.
wake_all:
    la   t0, procs
    li   t1, NPROC
    li   t3, RUNNABLE
wake_all_loop:
    ldw  t2, [t0 + P_STATE]
    bne  t2, a0, wake_all_next
    stw  t3, [t0 + P_STATE]
wake_all_next:
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, wake_all_loop
    ret

; timer_interrupt: a tick.  Wake the sleepers whose time has come, and take
; the CPU from the running process: it goes to the back of the queue.
timer_interrupt:
    li   t0, TIMER
    li   t1, 1
    stw  t1, [t0 + TIMER_STATUS]  ; acknowledge, or it fires again at once
    la   t0, ticks
    ldw  t4, [t0]
    addi t4, t4, 1
    stw  t4, [t0]
    la   t0, procs
    li   t1, NPROC
timer_wake:
    ldw  t2, [t0 + P_STATE]
    li   t3, SLEEPING
    bne  t2, t3, timer_next
    ldw  t2, [t0 + P_WAKE]
    bltu t4, t2, timer_next
    li   t3, RUNNABLE
    stw  t3, [t0 + P_STATE]
timer_next:
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, timer_wake
    la   t0, current
    ldw  t0, [t0]
    beqz t0, schedule
    ldw  t1, [t0 + P_STATE]
    li   t2, RUNNING
    bne  t1, t2, schedule
    li   t1, RUNNABLE             ; preempted
    stw  t1, [t0 + P_STATE]
    jmp  schedule

; schedule: choose the next RUNNABLE process round-robin and resume it; if
; there is none, idle until an interrupt makes one runnable.
schedule:
    la   sp, kstack_top           ; nothing on the kernel stack survives this
    la   t0, last_slot
    ldw  t1, [t0]
    li   t2, NPROC
    mov  t3, t2
schedule_next:
    addi t1, t1, 1
    bne  t1, t2, schedule_look
    li   t1, 0
schedule_look:
    shli t4, t1, 7
    la   s0, procs
    add  s0, s0, t4
    ldw  t4, [s0 + P_STATE]
    li   a0, RUNNABLE
    beq  t4, a0, schedule_found
    addi t3, t3, -1
    bnez t3, schedule_next
    jmp  idle
schedule_found:
    stw  t1, [t0]                 ; last_slot
    li   t1, RUNNING
    stw  t1, [s0 + P_STATE]
    la   t0, current
    ldw  t1, [t0]
    stw  s0, [t0]
    beq  t1, s0, schedule_timer   ; same address space: keep the TLB
    ldw  t1, [s0 + P_PTBR]
    mtsr ptbr, t1                 ; switch address spaces (this flushes the TLB)
schedule_timer:
    la   t0, timer_on
    ldw  t1, [t0]
    bnez t1, resume
    li   t1, 1
    stw  t1, [t0]
    li   t0, TIMER
    stw  t1, [t0 + TIMER_CTRL]    ; a process runs: it must not be able to keep the CPU
    jmp  resume

; idle: nothing can run.  Halt with interrupts on; the interrupt that ends
; the halt enters trap.s from supervisor mode and comes back to schedule.
; With nobody asleep, stop the timer too, so that an idle machine really
; is idle (emu then waits for the host's keyboard instead of ticking).
idle:
    la   t0, current
    stw  zero, [t0]
    la   t0, procs
    li   t1, NPROC
    li   t3, SLEEPING
idle_sleepers:
    ldw  t2, [t0 + P_STATE]
    beq  t2, t3, idle_wait
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, idle_sleepers
    la   t0, timer_on
    stw  zero, [t0]
    li   t0, TIMER
    stw  zero, [t0 + TIMER_CTRL]
    li   t1, 1
    stw  t1, [t0 + TIMER_STATUS]  ; and forget a tick that may be pending
idle_wait:
    li   t0, STATUS_IE
    mtsr status, t0
    halt
    b    idle_wait
