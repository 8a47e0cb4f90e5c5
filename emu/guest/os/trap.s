; trap.s -- into the kernel and out again.
;
; Every trap -- a system call, a fault, an interrupt -- arrives at
; trap_entry in supervisor mode with interrupts off (isa.py).  If it came
; from user mode, the process's registers go into its slot in the process
; table, so that it can be resumed later exactly where it was; the kernel
; then works on its own stack.  If it came from supervisor mode, the kernel
; was idle (halted in schedule) and an interrupt woke it: there is nothing
; to save.  Anything else in supervisor mode is a kernel bug.
;
; A process's saved registers are words 0..15 of its slot: word n holds
; register n, and word 0 -- r0 is always zero -- holds the pc.

.equ STATUS_IE,     1
.equ STATUS_PIE,    4
.equ STATUS_PU,     8
.equ IRQ_BASE,      16

trap_entry:
    mtsr scratch, t0              ; one register free to work with
    mfsr t0, status
    andi t0, t0, STATUS_PU
    beqz t0, kernel_trap
    la   t0, current
    ldw  t0, [t0]
    stw  a0, [t0 + 4]
    stw  a1, [t0 + 8]
    stw  a2, [t0 + 12]
    stw  a3, [t0 + 16]
    stw  t1, [t0 + 24]
    stw  t2, [t0 + 28]
    stw  t3, [t0 + 32]
    stw  t4, [t0 + 36]
    stw  s0, [t0 + 40]
    stw  s1, [t0 + 44]
    stw  s2, [t0 + 48]
    stw  fp, [t0 + 52]
    stw  sp, [t0 + 56]
    stw  lr, [t0 + 60]
    mfsr t1, scratch
    stw  t1, [t0 + 20]            ; the process's own t0
    mfsr t1, epc
    stw  t1, [t0]
    la   sp, kstack_top
    mov  s0, t0
    mfsr t1, cause
    li   t2, TRAP_SYSCALL
    beq  t1, t2, syscall
    li   t2, IRQ_BASE
    bgeu t1, t2, interrupt
    jmp  fault

kernel_trap:
    la   sp, kstack_top
    mfsr t1, cause
    li   t2, IRQ_BASE
    bgeu t1, t2, interrupt
    la   a0, kernel_fault_message     ; a kernel bug: say what and where, stop
    call puts
    mfsr a0, cause
    call print_uint
    la   a0, at_message
    call puts
    mfsr a0, epc
    call print_hex
    la   a0, badaddr_message
    call puts
    mfsr a0, badaddr
    call print_hex
    la   a0, no_argument
    jmp  panic

interrupt:                        ; t1 = cause
    li   t2, IRQ_TIMER
    beq  t1, t2, timer_interrupt
    li   t2, IRQ_CONSOLE
    beq  t1, t2, console_interrupt
    la   a0, stray_irq_message
    jmp  panic

; After a trap: back to the process that was running, unless it can no
; longer run (it blocked, exited, was preempted) -- then choose another.
ret_from_trap:
    la   t0, current
    ldw  t0, [t0]
    beqz t0, schedule
    ldw  t1, [t0 + P_STATE]
    li   t2, RUNNING
    bne  t1, t2, schedule
    ; fall through

; resume: load the current process's registers and return to user mode.
resume:
    la   t0, current
    ldw  t0, [t0]
    ldw  t1, [t0]
    mtsr epc, t1
    li   t1, STATUS_PU | STATUS_PIE   ; eret: user mode, interrupts on
    mtsr status, t1
    ldw  a0, [t0 + 4]
    ldw  a1, [t0 + 8]
    ldw  a2, [t0 + 12]
    ldw  a3, [t0 + 16]
    ldw  t1, [t0 + 24]
    ldw  t2, [t0 + 28]
    ldw  t3, [t0 + 32]
    ldw  t4, [t0 + 36]
    ldw  s0, [t0 + 40]
    ldw  s1, [t0 + 44]
    ldw  s2, [t0 + 48]
    ldw  fp, [t0 + 52]
    ldw  sp, [t0 + 56]
    ldw  lr, [t0 + 60]
    ldw  t0, [t0 + 20]
    eret

; fault: the process in s0 did something the hardware refused -- touched
; memory that is not mapped for it, ran an illegal or privileged instruction.
; Say so, and end it as if it had called exit(128 + cause).  The kernel and
; every other process carry on: isolation is this, plus the page tables.
fault:                            ; t1 = cause
    mov  s1, t1
    addi a0, s0, P_NAME
    call puts
    la   a0, pid_message
    call puts
    ldw  a0, [s0 + P_PID]
    call print_uint
    la   a0, killed_message
    call puts
    la   t0, cause_names
    shli t1, s1, 2
    add  t0, t0, t1
    ldw  a0, [t0]
    call puts
    la   a0, at_message
    call puts
    mfsr a0, badaddr
    call print_hex
    li   a0, '\n'
    call putc
    addi a0, s1, 128
    jmp  do_exit

; print_hex(a0): eight hex digits.
print_hex:
    li   t0, CONSOLE
    li   t1, 28
print_hex_digit:
    shr  t2, a0, t1
    andi t2, t2, 15
    addi t3, t2, '0'
    li   t4, 10
    blt  t2, t4, print_hex_put
    addi t3, t2, 'a' - 10
print_hex_put:
    stw  t3, [t0]
    addi t1, t1, -4
    bge  t1, zero, print_hex_digit
    ret

pid_message:          .asciz " (pid "
killed_message:       .asciz "): killed: "
at_message:           .asciz " at 0x"
kernel_fault_message: .asciz "kernel trap: cause "
badaddr_message:      .asciz ", badaddr 0x"
stray_irq_message:    .asciz "unexpected interrupt"
cause_0:  .asciz "trap 0"
cause_1:  .asciz "illegal instruction"
cause_2:  .asciz "privileged instruction"
cause_3:  .asciz "bad address"
cause_4:  .asciz "misaligned access"
cause_6:  .asciz "breakpoint"
cause_7:  .asciz "page fault on instruction fetch"
cause_8:  .asciz "page fault on load"
cause_9:  .asciz "page fault on store"
    .align 4
cause_names:
    .word cause_0, cause_1, cause_2, cause_3, cause_4, cause_0, cause_6, cause_7, cause_8, cause_9
