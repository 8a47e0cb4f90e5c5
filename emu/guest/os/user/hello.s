; hello -- the smallest program worth running: say hello, and who we are.
.include "ulib.s"

main:
    push lr
    la   a0, greeting
    call puts
    call getpid
    call print_uint
    li   a0, '\n'
    call putc
    li   a0, 0
    pop  lr
    ret

greeting: .asciz "Hello from user space! I am process "
