; ulib.s -- the start of every user program, and its library.
;
; Include it first: a program is loaded at USER_BASE and starts at its first
; byte, which is here.  `_start` calls the program's `main` with a0 pointing
; at its argument string and exits with what main returns.  Below that: one
; small function per system call (number in t0, see layout.s), and a few
; string and printing helpers.  User programs cannot touch a device: all
; they can do is compute, and ask the kernel.
.include "../layout.s"

.org USER_BASE
_start:
    call main
    li   t0, SYS_EXIT
    syscall

.macro syscall_function name number
\name:
    li   t0, \number
    syscall
    ret
.endm

syscall_function exit,   SYS_EXIT
syscall_function read,   SYS_READ
syscall_function write,  SYS_WRITE
syscall_function open,   SYS_OPEN
syscall_function close,  SYS_CLOSE
syscall_function spawn,  SYS_SPAWN
syscall_function wait,   SYS_WAIT
syscall_function yield,  SYS_YIELD
syscall_function sleep,  SYS_SLEEP
syscall_function getpid, SYS_GETPID
syscall_function ps,     SYS_PS
syscall_function kill,   SYS_KILL

; strlen(s a0) -> a0 = its length.
strlen:
    mov  t0, a0
strlen_next:
    ldbu t1, [t0]
    beqz t1, strlen_done
    addi t0, t0, 1
    b    strlen_next
strlen_done:
    sub  a0, t0, a0
    ret

; puts(s a0): write a string to the console.
puts:
    push lr
    push a0
    call strlen
    mov  a2, a0
    pop  a1
    li   a0, STDOUT
    call write
    pop  lr
    ret

; putc(c a0): write one character.
putc:
    push lr
    push a0
    li   a0, STDOUT
    mov  a1, sp
    li   a2, 1
    call write
    pop  a0
    pop  lr
    ret

; print_uint(n a0): in decimal.
print_uint:
    push lr
    addi sp, sp, -16
    addi t0, sp, 15               ; digits fill the buffer from the end
    stb  zero, [t0]
    li   t1, 10
print_uint_digit:
    addi t0, t0, -1
    remu t2, a0, t1
    addi t2, t2, '0'
    stb  t2, [t0]
    divu a0, a0, t1
    bnez a0, print_uint_digit
    mov  a0, t0
    call puts
    addi sp, sp, 16
    pop  lr
    ret

; streq(a a0, b a1) -> a0 = 1 if equal.
streq:
    ldbu t0, [a0]
    ldbu t1, [a1]
    bne  t0, t1, streq_no
    beqz t0, streq_yes
    addi a0, a0, 1
    addi a1, a1, 1
    b    streq
streq_yes:
    li   a0, 1
    ret
streq_no:
    li   a0, 0
    ret
