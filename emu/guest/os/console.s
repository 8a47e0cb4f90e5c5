; console.s -- the console: output is immediate, input arrives by interrupt.
;
; Keys are taken from the device when its interrupt says one is there and
; kept in a ring buffer until a process reads them; a process that reads
; while no whole line is there sleeps (READING) and is woken by the next
; interrupt.  Like xv6's console, the kernel is the line discipline:
;
;   cin_head .. cin_tail    whole lines, for read()
;   cin_tail .. cin_edit    the line being typed: backspace edits it
;
; (indexes count up forever; a position is index & (CIN_SIZE - 1)).  When a
; person types at a raw terminal (STATUS.TERMINAL), the kernel echoes; piped
; input is not echoed.  Ctrl-C drops the line being typed and interrupts
; every process blocked in wait() or read(): its call returns -2, and the
; shell ends its foreground program (sh.s).
;
; A full ring takes nothing more: the interrupt is switched off and the
; rest of the input waits in the device, and behind it on the host, until a
; read makes room.  Nothing is ever dropped, however fast input comes.

.equ CIN_SIZE,      256           ; a power of two: indexes wrap with a mask
.equ CTRL_C,        3
.equ BACKSPACE,     8
.equ DELETE,        0x7f          ; what the backspace key sends on most terminals
.equ INTERRUPTED,   -2            ; what a blocked call returns after Ctrl-C

; console_interrupt: take bytes from the device while the ring has room.
console_interrupt:
    li   s1, CONSOLE
console_next:
    ldw  s2, [s1 + CONSOLE_STATUS]
    andi t0, s2, RX_READY
    beqz t0, console_drained
    la   t0, cin_head
    ldw  t0, [t0]
    la   t1, cin_edit
    ldw  t1, [t1]
    sub  t0, t1, t0
    li   t1, CIN_SIZE
    beq  t0, t1, console_full
    ldw  a0, [s1 + CONSOLE_DATA]
    call console_key
    b    console_next
console_full:
    stw  zero, [s1 + CONSOLE_CTRL]  ; no more interrupts until console_read makes room
    b    console_wake
console_drained:
    andi s2, s2, RX_EOF
    beqz s2, console_wake
    stw  zero, [s1 + CONSOLE_CTRL]  ; the end of input: the line would stay raised forever
    la   t0, cin_eof
    li   t1, 1
    stw  t1, [t0]
    call console_commit           ; an unfinished last line can still be read
console_wake:
    li   a0, READING
    call wake_all
    jmp  ret_from_trap

; console_key(byte a0): one byte of input.
console_key:
    push lr
    li   t0, CTRL_C
    beq  a0, t0, console_ctrl_c
    li   t0, DELETE
    beq  a0, t0, console_erase
    li   t0, BACKSPACE
    beq  a0, t0, console_erase
    la   t0, cin_edit
    ldw  t1, [t0]
    andi t2, t1, CIN_SIZE - 1
    la   t3, cin_buf
    add  t2, t2, t3
    stb  a0, [t2]
    addi t1, t1, 1
    stw  t1, [t0]
    call console_echo
    li   t0, '\n'
    beq  a0, t0, console_key_line
    la   t0, cin_edit             ; a line as long as the ring goes as it is
    ldw  t1, [t0]
    la   t0, cin_head
    ldw  t0, [t0]
    sub  t0, t1, t0
    li   t2, CIN_SIZE
    bne  t0, t2, console_key_done
console_key_line:
    call console_commit
console_key_done:
    pop  lr
    ret
console_erase:
    la   t0, cin_edit
    ldw  t1, [t0]
    la   t2, cin_tail
    ldw  t2, [t2]
    beq  t1, t2, console_key_done ; nothing typed on this line
    addi t1, t1, -1
    stw  t1, [t0]
    la   a0, erase_echo
    call console_echo_string
    b    console_key_done
console_ctrl_c:
    la   t0, cin_tail
    ldw  t1, [t0]
    la   t0, cin_edit
    stw  t1, [t0]                 ; the line being typed is dropped
    la   a0, ctrl_c_echo
    call console_echo_string
    call interrupt_blocked
    b    console_key_done

; console_commit: the line being typed becomes readable.
console_commit:
    la   t0, cin_edit
    ldw  t0, [t0]
    la   t1, cin_tail
    stw  t0, [t1]
    ret

; console_echo(byte a0) and console_echo_string(string a0): show what was
; typed, if a person typed it (a0 is kept).
console_echo:
    li   t0, CONSOLE
    ldw  t1, [t0 + CONSOLE_STATUS]
    andi t1, t1, TERMINAL
    beqz t1, console_echo_done
    stw  a0, [t0 + CONSOLE_DATA]
console_echo_done:
    ret
console_echo_string:
    li   t0, CONSOLE
    ldw  t1, [t0 + CONSOLE_STATUS]
    andi t1, t1, TERMINAL
    beqz t1, console_echo_done
    jmp  puts

; interrupt_blocked: Ctrl-C.  The kernel finishes the call of every process
; blocked in wait() or read() itself -- result INTERRUPTED, pc past the
; `syscall` -- instead of letting it try again when woken.
interrupt_blocked:
    la   t0, procs
    li   t1, NPROC
interrupt_blocked_one:
    ldw  t2, [t0 + P_STATE]
    li   t3, WAITING
    beq  t2, t3, interrupt_blocked_call
    li   t3, READING
    bne  t2, t3, interrupt_blocked_next
interrupt_blocked_call:
    li   t3, INTERRUPTED
    stw  t3, [t0 + 4]             ; its a0
    ldw  t3, [t0]
    addi t3, t3, 4
    stw  t3, [t0]                 ; its pc
    li   t3, RUNNABLE
    stw  t3, [t0 + P_STATE]
interrupt_blocked_next:
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, interrupt_blocked_one
    ret

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
    la   t0, cin_eof              ; there is room now: take input again
    ldw  t0, [t0]
    bnez t0, console_read_done
    li   t0, CONSOLE
    li   t1, RX_IRQ
    stw  t1, [t0 + CONSOLE_CTRL]
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

erase_echo:  .byte BACKSPACE, ' ', BACKSPACE, 0
ctrl_c_echo: .asciz "^C\n"
    .align 4
