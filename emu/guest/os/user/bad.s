; bad [kernel|peek|jump] -- misbehave on purpose, to show isolation.
;
;   kernel  write into the kernel's memory (the default)
;   peek    read the shell's memory, at the physical address it lives at
;   jump    jump into the kernel's code
;
; Each is a page fault: those pages are not mapped for user mode at all.
; The kernel kills this process and says why; everything else carries on.
.include "ulib.s"

main:
    push lr
    push s0
    mov  s0, a0
    la   a1, peek_word
    call streq
    bnez a0, bad_peek
    mov  a0, s0
    la   a1, jump_word
    call streq
    bnez a0, bad_jump
    la   a0, kernel_message
    call puts
    li   t0, KERNEL_BASE
    stw  zero, [t0]               ; killed here
    b    survived
bad_peek:
    la   a0, peek_message
    call puts
    li   t0, USER_MEM             ; slot 0: the shell
    ldw  a0, [t0]                 ; killed here
    b    survived
bad_jump:
    la   a0, jump_message
    call puts
    li   t0, KERNEL_BASE
    jr   t0                       ; killed here
survived:
    la   a0, survived_message
    call puts
    li   a0, 0
    pop  s0
    pop  lr
    ret

peek_word:        .asciz "peek"
jump_word:        .asciz "jump"
kernel_message:   .asciz "bad: writing to kernel memory\n"
peek_message:     .asciz "bad: reading the shell's memory\n"
jump_message:     .asciz "bad: jumping into the kernel\n"
survived_message: .asciz "bad: nothing stopped me!\n"
