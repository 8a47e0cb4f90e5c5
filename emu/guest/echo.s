; echo -- copy console input to console output until the input ends.
;
; Interrupt-driven: instead of spinning on the console's STATUS register, the
; program asks for an interrupt when input arrives and halts.  While it is
; halted the emulator blocks on the host's stdin, so an idle guest costs no
; host CPU -- the same reason real kernels halt in their idle loop.
.include "lib.s"

_start:
    la   t0, on_interrupt
    mtsr tvec, t0
    li   s0, CONSOLE
    li   t0, RX_IRQ
    stw  t0, [s0 + CONSOLE_CTRL]
    li   t0, 1              ; status.IE: let interrupts in
    mtsr status, t0
idle:
    halt                    ; sleep until the console has something
    b    idle

on_interrupt:
    mfsr t0, cause
    li   t1, IRQ_CONSOLE
    bne  t0, t1, unexpected
drain:
    ldw  t0, [s0 + CONSOLE_STATUS]
    andi t1, t0, RX_READY
    beqz t1, drained
    ldw  a0, [s0 + CONSOLE_DATA]
    stw  a0, [s0 + CONSOLE_DATA]
    b    drain
drained:
    andi t1, t0, RX_EOF
    bnez t1, finished
    eret                    ; back to the halt, which has already completed

finished:
    exit 0
unexpected:
    exit 1
