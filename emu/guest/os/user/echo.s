; echo -- print the argument.
.include "ulib.s"

main:
    push lr
    call puts                     ; a0 is the argument already
    li   a0, '\n'
    call putc
    li   a0, 0
    pop  lr
    ret
