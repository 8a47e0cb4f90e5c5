; console.s -- the console: output is immediate, input arrives by interrupt.
;
; Keys are taken from the device as soon as its interrupt says one is there,
; and kept in a ring buffer until a process reads them; a process that reads
; while the buffer is empty sleeps (READING) and is woken by the next
; interrupt.  The host terminal echoes and edits lines itself, so the kernel
; does not echo.

.equ CIN_SIZE,      256           ; a power of two: indexes wrap with a mask

; console_interrupt: move every waiting byte into the ring; note the end of
; input (and stop the interrupt, which would otherwise stay raised forever).
console_interrupt:
    li   t0, CONSOLE
    la   t1, cin_tail
    ldw  t2, [t1]
    la   t3, cin_buf
console_drain:
    ldw  t4, [t0 + CONSOLE_STATUS]
    andi a0, t4, RX_READY
    beqz a0, console_drained
    ldw  a0, [t0 + CONSOLE_DATA]
    andi a1, t2, CIN_SIZE - 1
    add  a1, a1, t3
    stb  a0, [a1]                 ; (a full ring overwrites its oldest bytes)
    addi t2, t2, 1
    b    console_drain
console_drained:
    stw  t2, [t1]
    andi t4, t4, RX_EOF
    beqz t4, console_wake
    stw  zero, [t0 + CONSOLE_CTRL]
    la   t1, cin_eof
    li   t2, 1
    stw  t2, [t1]
console_wake:
    li   a0, READING
    call wake_all
    jmp  ret_from_trap

; console_read(user buffer a0, count a1) -> a0 = bytes copied, 0 at the end
; of input, or -1 when there is nothing yet (the caller blocks).
console_read:
    la   t0, cin_head
    ldw  t1, [t0]
    la   t2, cin_tail
    ldw  t2, [t2]
    bne  t1, t2, console_copy
    la   t3, cin_eof
    ldw  t3, [t3]
    li   a0, 0
    bnez t3, console_read_done
    li   a0, -1
    ret
console_copy:
    la   t3, cin_buf
    li   t4, 0                    ; copied
console_copy_byte:
    beq  t4, a1, console_copied
    beq  t1, t2, console_copied
    andi a2, t1, CIN_SIZE - 1
    add  a2, a2, t3
    ldbu a2, [a2]
    add  a3, a0, t4
    stb  a2, [a3]
    addi t1, t1, 1
    addi t4, t4, 1
    li   a3, '\n'                 ; a line at a time at most, like a terminal
    bne  a2, a3, console_copy_byte
console_copied:
    stw  t1, [t0]
    mov  a0, t4
console_read_done:
    ret

; console_write(user buffer a0, count a1) -> a0 = count.
console_write:
    li   t0, CONSOLE
    mov  t1, a0
    add  t2, a0, a1
console_write_byte:
    beq  t1, t2, console_written
    ldbu t3, [t1]
    stw  t3, [t0]
    addi t1, t1, 1
    b    console_write_byte
console_written:
    mov  a0, a1
    ret
