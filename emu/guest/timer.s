; timer -- a tiny kernel: it runs a user program that never gives up the CPU,
; and takes the CPU back with timer interrupts.
;
; The kernel runs in supervisor mode and the program in user mode, where it
; cannot reach the devices: to print, it asks the kernel with `syscall`.
; Every trap -- timer interrupt or system call -- enters `on_trap`, which
; saves the registers it uses so that the user program never notices.
.include "lib.s"

.equ PERIOD, 5000           ; cycles between timer interrupts
.equ TICKS,  5              ; power off after this many

_start:
    la   t0, on_trap
    mtsr tvec, t0
    li   t0, TIMER
    li   t1, PERIOD
    stw  t1, [t0 + TIMER_PERIOD]
    li   t1, 1
    stw  t1, [t0 + TIMER_CTRL]
    ; "Return" into the user program: epc is where it starts, and the status
    ; bits eret restores say user mode (PU) with interrupts enabled (PIE).
    la   t0, user_main
    mtsr epc, t0
    li   t0, 0b1100         ; PU | PIE
    mtsr status, t0
    la   sp, user_stack_top
    eret

; -- the kernel's trap handler -----------------------------------------------

on_trap:
    mtsr scratch, t0        ; free one register to find the save area with
    la   t0, saved
    stw  t1, [t0 + 4]
    stw  t2, [t0 + 8]
    stw  t3, [t0 + 12]
    stw  a0, [t0 + 16]
    stw  lr, [t0 + 20]
    stw  sp, [t0 + 24]
    mfsr t1, scratch
    stw  t1, [t0]           ; the user's t0
    la   sp, kernel_stack_top

    mfsr t1, cause
    li   t2, IRQ_TIMER
    beq  t1, t2, timer_tick
    li   t2, TRAP_SYSCALL
    beq  t1, t2, system_call
    la   a0, unexpected     ; a fault in the user program: report and stop
    call puts
    exit 1

timer_tick:
    li   t0, TIMER
    li   t1, 1
    stw  t1, [t0 + TIMER_STATUS]     ; acknowledge, or it fires again at once
    la   t0, ticks
    ldw  t1, [t0]
    addi t1, t1, 1
    stw  t1, [t0]
    la   a0, tick_message
    call puts
    la   t0, ticks
    ldw  a0, [t0]
    call print_uint
    li   a0, '\n'
    call putc
    la   t0, ticks
    ldw  t1, [t0]
    li   t2, TICKS
    bne  t1, t2, back_to_user
    exit 0

system_call:                ; the only call: print the character in the user's a0
    la   t0, saved
    ldw  a0, [t0 + 16]
    call putc
    mfsr t0, epc            ; epc points at the syscall: resume after it
    addi t0, t0, 4
    mtsr epc, t0

back_to_user:
    la   t0, saved
    ldw  t1, [t0 + 4]
    ldw  t2, [t0 + 8]
    ldw  t3, [t0 + 12]
    ldw  a0, [t0 + 16]
    ldw  lr, [t0 + 20]
    ldw  sp, [t0 + 24]
    ldw  t0, [t0]
    eret

; -- the user program ------------------------------------------------------------

user_main:
    la   s0, hello_from_user
print_next:
    ldbu a0, [s0]
    beqz a0, spin
    syscall
    addi s0, s0, 1
    b    print_next
spin:
    addi s1, s1, 1          ; busy forever: only the timer gets the CPU back
    b    spin

; -- data -----------------------------------------------------------------------

tick_message:    .asciz "tick "
unexpected:      .asciz "unexpected trap\n"
hello_from_user: .asciz "user program running\n"
    .align 4
ticks:  .word 0
saved:  .space 28
        .space 256
kernel_stack_top:
        .space 256
user_stack_top:
