; sh -- the shell: read a line, run the program it names, wait for it.
;
;   PROGRAM [ARGUMENT]      run it and wait until it exits
;   PROGRAM [ARGUMENT] &    run it in the background
;   exit                    leave the shell (which powers the machine off)
;
; Ctrl-C ends the program the shell is waiting for (the kernel interrupts
; the shell's wait, and the shell kills it); at the prompt it drops the line.
;
; Every command is a program on the disk (`ls` lists them): the shell only
; starts programs, exactly as a Unix shell does.  It is process 1; the
; kernel starts it and powers off when it exits, or when the console input
; ends.
.include "ulib.s"

.equ LINE_MAX, 120

main:
    push lr
sh_prompt:
    li   a0, 0
    call wait                     ; collect background jobs that have finished
    la   a0, prompt
    call puts
    la   s0, line                 ; read one line
    li   s1, 0
sh_read:
    li   a0, STDIN
    la   a1, char
    li   a2, 1
    call read
    beqz a0, sh_end_of_input
    blt  a0, zero, sh_prompt      ; Ctrl-C
    la   t0, char
    ldbu t0, [t0]
    li   t1, '\n'
    beq  t0, t1, sh_line
    li   t1, LINE_MAX
    bge  s1, t1, sh_read          ; too long: the rest is dropped
    add  t1, s0, s1
    stb  t0, [t1]
    addi s1, s1, 1
    b    sh_read
sh_line:
    add  t1, s0, s1
    stb  zero, [t1]
    ; trailing spaces and '&'
    li   s2, 0                    ; background?
sh_trim:
    beqz s1, sh_prompt            ; an empty line
    add  t1, s0, s1
    ldbu t0, [t1 - 1]
    li   t2, ' '
    beq  t0, t2, sh_drop
    li   t2, '&'
    bne  t0, t2, sh_trimmed
    bnez s2, sh_trimmed           ; only one '&'
    li   s2, 1
sh_drop:
    addi s1, s1, -1
    add  t1, s0, s1
    stb  zero, [t1]
    b    sh_trim
sh_trimmed:
    ldbu t0, [s0]                 ; leading spaces
    li   t2, ' '
    bne  t0, t2, sh_split
    addi s0, s0, 1
    b    sh_trimmed
sh_split:                         ; the program's name ends at the first space
    mov  t1, s0
sh_name:
    ldbu t0, [t1]
    beqz t0, sh_no_argument
    li   t2, ' '
    beq  t0, t2, sh_argument
    addi t1, t1, 1
    b    sh_name
sh_argument:
    stb  zero, [t1]
    addi t1, t1, 1
    ldbu t0, [t1]
    beq  t0, t2, sh_argument      ; skip the spaces
sh_no_argument:
    mov  s1, t1                   ; the argument (maybe empty)
    mov  a0, s0
    la   a1, exit_word
    call streq
    bnez a0, sh_exit
    mov  a0, s0
    mov  a1, s1
    call spawn
    li   t0, -1
    beq  a0, t0, sh_not_found
    bnez s2, sh_background
    mov  s1, a0
    call wait
    li   t0, -2                   ; Ctrl-C interrupted the wait:
    bne  a0, t0, sh_prompt
    mov  a0, s1
    call kill                     ; end the job (sh_prompt's wait(0) collects it)
    b    sh_prompt
sh_background:
    push a0
    li   a0, '['
    call putc
    pop  a0
    call print_uint
    la   a0, started
    call puts
    b    sh_prompt
sh_not_found:
    la   a0, not_found
    call puts
    mov  a0, s0
    call puts
    li   a0, '\n'
    call putc
    b    sh_prompt
sh_end_of_input:
    li   a0, '\n'
    call putc
sh_exit:
    li   a0, 0
    pop  lr
    ret

prompt:    .asciz "$ "
started:   .asciz "]\n"
not_found: .asciz "sh: no such program: "
exit_word: .asciz "exit"
    .align 4
char:      .space 4
line:      .space LINE_MAX + 8
