; cat FILE -- copy a file to the console.
.include "ulib.s"

main:
    push lr
    push s0
    push s1
    mov  s1, a0
    call open
    mov  s0, a0
    li   t0, -1
    beq  a0, t0, cat_missing
cat_more:
    mov  a0, s0
    la   a1, buffer
    li   a2, 256
    call read
    beqz a0, cat_done
    mov  a2, a0
    li   a0, STDOUT
    la   a1, buffer
    call write
    b    cat_more
cat_done:
    mov  a0, s0
    call close
    li   a0, 0
    b    cat_return
cat_missing:
    la   a0, no_such_file
    call puts
    mov  a0, s1
    call puts
    li   a0, '\n'
    call putc
    li   a0, 1
cat_return:
    pop  s1
    pop  s0
    pop  lr
    ret

no_such_file: .asciz "cat: no such file: "
    .align 4
buffer: .space 256
