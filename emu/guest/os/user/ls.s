; ls -- list the files.  The directory is itself a file, ".", of 32-byte
; entries (layout.s): read it like any other file.
.include "ulib.s"

main:
    push lr
    push s0
    la   a0, dot
    call open
    mov  s0, a0
ls_entry:
    mov  a0, s0
    la   a1, entry
    li   a2, DIRENT
    call read
    li   t0, DIRENT
    bne  a0, t0, ls_done
    la   a0, entry
    ldbu t0, [a0]
    beqz t0, ls_entry             ; a free entry
    call puts
    la   a0, entry
    call strlen
ls_pad:                           ; names in a column of 12
    li   t0, 12
    bge  a0, t0, ls_size
    push a0
    li   a0, ' '
    call putc
    pop  a0
    addi a0, a0, 1
    b    ls_pad
ls_size:
    la   t0, entry
    ldw  a0, [t0 + DE_SIZE]
    call print_uint
    li   a0, '\n'
    call putc
    b    ls_entry
ls_done:
    li   a0, 0
    pop  s0
    pop  lr
    ret

dot: .asciz "."
    .align 4
entry: .space DIRENT
