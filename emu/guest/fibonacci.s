; fibonacci -- the first COUNT Fibonacci numbers, one per line.
; Shows calls (print_uint clobbers t registers, so the state lives in s0..s2).
.include "lib.s"

.equ COUNT, 30

_start:
    li   s0, 0              ; F(n)
    li   s1, 1              ; F(n + 1)
    li   s2, COUNT          ; numbers still to print
next:
    mov  a0, s0
    call print_uint
    li   a0, '\n'
    call putc
    add  t0, s0, s1         ; step: (F(n), F(n+1)) -> (F(n+1), F(n+2))
    mov  s0, s1
    mov  s1, t0
    addi s2, s2, -1
    bnez s2, next
    exit 0
