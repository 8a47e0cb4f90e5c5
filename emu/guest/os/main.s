; main.s -- start-up.  The boot sector jumped here; paging is off, every
; register is whatever the boot sector left, interrupts are off.

.equ QUANTUM,       20000         ; cycles a process runs before the timer takes the CPU back
.equ PIC,           0xF0000300    ; devices/pic.py
.equ PIC_ENABLE,    4

main:
    la   sp, kstack_top
    la   a0, banner
    call puts
    call vm_init                  ; the kernel's page table; paging on
    la   t0, trap_entry
    mtsr tvec, t0                 ; every trap and interrupt comes to trap.s
    call fs_init                  ; the directory, read once
    beqz a0, no_fs
    li   t0, PIC
    li   t1, 0b011                ; the timer (line 0) and the console (line 1); the disk is polled
    stw  t1, [t0 + PIC_ENABLE]
    li   t0, CONSOLE
    li   t1, RX_IRQ
    stw  t1, [t0 + CONSOLE_CTRL]  ; an interrupt when a key arrives
    li   t0, TIMER
    li   t1, QUANTUM
    stw  t1, [t0 + TIMER_PERIOD]  ; the scheduler starts the timer when a process runs
    la   a0, init_name            ; the first process: the shell
    la   a1, no_argument
    li   a2, 0                    ; no parent
    call proc_create
    li   t0, -1
    beq  a0, t0, no_init
    jmp  schedule                 ; and never come back here

no_fs:
    la   a0, no_fs_message
    jmp  panic
no_init:
    la   a0, no_init_message
    jmp  panic

; panic(message a0): something the kernel cannot recover from.
panic:
    mov  s0, a0
    la   a0, panic_message
    call puts
    mov  a0, s0
    call puts
    li   a0, '\n'
    call putc
    exit 99

banner:          .asciz "toyos booting\n"
init_name:       .asciz "sh"
no_argument:     .asciz ""
panic_message:   .asciz "panic: "
no_fs_message:   .asciz "no file system on the disk"
no_init_message: .asciz "cannot start sh"
    .align 4
