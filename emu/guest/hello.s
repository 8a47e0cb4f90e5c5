; hello -- the smallest complete program: print a line, power off.
.include "lib.s"

_start:
    la   a0, greeting
    call puts
    exit 0

greeting:
    .asciz "Hello, world!\n"
