; ps -- the process table, as the kernel sees it.
.include "ulib.s"

main:
    push lr
    call ps
    li   a0, 0
    pop  lr
    ret
