; counter [N] -- count to N (default 5), one number a tick apart.  Run it in
; the background (`counter &`) and keep using the shell: sleeping processes
; cost nothing, and the timer wakes this one on time.
.include "ulib.s"

main:
    push lr
    push s0
    push s1
    li   s1, 0                    ; parse N
counter_digit:
    ldbu t0, [a0]
    addi t0, t0, -'0'
    li   t1, 10
    bgeu t0, t1, counter_parsed
    mul  s1, s1, t1
    add  s1, s1, t0
    addi a0, a0, 1
    b    counter_digit
counter_parsed:
    bnez s1, counter_start
    li   s1, 5
counter_start:
    li   s0, 1
counter_next:
    la   a0, label
    call puts
    mov  a0, s0
    call print_uint
    li   a0, '\n'
    call putc
    beq  s0, s1, counter_done
    addi s0, s0, 1
    li   a0, 10
    call sleep
    b    counter_next
counter_done:
    li   a0, 0
    pop  s1
    pop  s0
    pop  lr
    ret

label: .asciz "counter: "
