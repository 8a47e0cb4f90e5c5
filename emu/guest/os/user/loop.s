; loop [C] -- spin forever and never make a system call, except to print
; the character C (default '.') now and then.  Start two in the background
; (`loop a &` `loop b &`): both make progress, and the shell still answers,
; because the timer takes the CPU away from each in turn.
.include "ulib.s"

.equ EVERY, 40000                 ; iterations between prints

main:
    ldbu s0, [a0]
    bnez s0, loop_start
    li   s0, '.'
loop_start:
    li   s1, 0
loop_spin:
    addi s1, s1, 1
    li   t0, EVERY
    bne  s1, t0, loop_spin
    mov  a0, s0
    call putc
    b    loop_start
