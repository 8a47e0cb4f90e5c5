; lib.s -- the devices' addresses and a few routines the example programs share.
;
; Include it first: it defines constants and macros the programs use, and
; routines that only run when called (execution starts at `_start`).
;
; Calling convention (docs/isa.md): arguments in a0..a3, the result in a0,
; t0..t4 may be clobbered, s0..s2 survive a call, `call` leaves the return
; address in lr and `ret` goes back to it.

.equ CONSOLE,        0xF0000000   ; devices/console.py
.equ CONSOLE_DATA,   0
.equ CONSOLE_STATUS, 4
.equ CONSOLE_CTRL,   8
.equ RX_READY,       1
.equ RX_EOF,         2
.equ TERMINAL,       8            ; STATUS: a person at a raw terminal (echo what you read)
.equ RX_IRQ,         1

.equ TIMER,          0xF0000100   ; devices/timer.py
.equ TIMER_COUNT,    0
.equ TIMER_PERIOD,   4
.equ TIMER_CTRL,     8
.equ TIMER_STATUS,   12

.equ POWER,          0xF0000200   ; devices/power.py

.equ IRQ_TIMER,      16           ; cause of a timer interrupt (IRQ_BASE + line 0)
.equ IRQ_CONSOLE,    17           ; cause of a console interrupt (line 1)
.equ TRAP_SYSCALL,   5

; exit code: power the machine off; `emu run` exits with `code`.
.macro exit code
    li   t0, POWER
    li   t1, \code
    stw  t1, [t0]
.endm

; putc(a0): write one character to the console.
putc:
    li   t0, CONSOLE
    stb  a0, [t0]
    ret

; puts(a0): write a NUL-terminated string.
puts:
    li   t0, CONSOLE
puts_next:
    ldbu t1, [a0]
    beqz t1, puts_done
    stb  t1, [t0]
    addi a0, a0, 1
    b    puts_next
puts_done:
    ret

; print_uint(a0): write a0 as an unsigned decimal number.
; The digits come out last first, so they are pushed and then popped.
print_uint:
    li   t0, CONSOLE
    mov  t1, sp              ; where the pushed digits end
    li   t2, 10
print_uint_digit:
    remu t3, a0, t2
    addi t3, t3, '0'
    push t3
    divu a0, a0, t2
    bnez a0, print_uint_digit
print_uint_out:
    pop  t3
    stb  t3, [t0]
    bne  sp, t1, print_uint_out
    ret
