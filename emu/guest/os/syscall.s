; syscall.s -- the system calls: number in the process's t0, arguments in
; a0..a2, the result back in its a0 (layout.s lists them).
;
; A call that returns goes through syscall_return, which also steps the saved
; pc past the `syscall` instruction.  A call that has to wait sets the
; process's state and goes to schedule *without* that step, so when the
; process is woken it executes the same `syscall` again and this time finds
; what it waited for.
;
; Every pointer a process passes is checked to lie inside its own pages
; (check_user) before the kernel touches it: the kernel may read and write
; anything, so it must never do so on a process's say-so alone.

syscall:                          ; s0 = the calling process
    ldw  t1, [s0 + 20]            ; its t0
    li   t2, NSYSCALLS
    li   a0, -1
    bgeu t1, t2, syscall_return
    shli t1, t1, 2
    la   t2, syscall_table
    add  t2, t2, t1
    ldw  t2, [t2]
    ldw  a0, [s0 + 4]
    ldw  a1, [s0 + 8]
    ldw  a2, [s0 + 12]
    jr   t2

syscall_return:                   ; a0 = the result
    stw  a0, [s0 + 4]
    ldw  t0, [s0]
    addi t0, t0, 4
    stw  t0, [s0]
    jmp  ret_from_trap

; block(state a0): the process waits in that state and will retry its call.
block:
    stw  a0, [s0 + P_STATE]
    jmp  schedule

    .align 4
syscall_table:
    .word sys_exit, sys_read, sys_write, sys_open, sys_close, sys_spawn
    .word sys_wait, sys_yield, sys_sleep, sys_getpid, sys_ps, sys_kill

; check_user(address a0, length a1) -> a0 = 1 if [a0, a0 + a1) is inside
; USER_BASE..USER_TOP, else 0.  Arguments are left in a0/a1 otherwise.
check_user:
    li   t0, USER_BASE
    bltu a0, t0, check_user_no
    li   t0, USER_TOP
    bgeu a0, t0, check_user_no
    sub  t0, t0, a0               ; room left above a0
    bltu t0, a1, check_user_no
    li   a0, 1
    ret
check_user_no:
    li   a0, 0
    ret

sys_exit:
    jmp  do_exit

; read(fd, buffer, count)
sys_read:
    mov  s1, a0
    mov  s2, a1
    mov  a0, a1
    mov  a1, a2
    call check_user
    beqz a0, syscall_fail
    ldw  a1, [s0 + 12]
    mov  a0, s2
    bnez s1, sys_read_file
    call console_read
    li   t0, -1
    bne  a0, t0, syscall_return
    li   a0, READING              ; nothing typed yet: wait for the console
    jmp  block
sys_read_file:
    mov  a0, s1
    call open_file                ; a0 = the open file, or 0
    beqz a0, syscall_fail
    mov  a1, s2
    ldw  a2, [s0 + 12]
    call file_read
    jmp  syscall_return

; write(fd, buffer, count): only the console can be written
sys_write:
    li   t0, STDOUT
    bne  a0, t0, syscall_fail
    mov  s1, a1
    mov  a0, a1
    mov  a1, a2
    call check_user
    beqz a0, syscall_fail
    mov  a0, s1
    ldw  a1, [s0 + 12]
    call console_write
    jmp  syscall_return

; open(name) -> fd
sys_open:
    mov  s1, a0
    li   a1, NAME_MAX
    call check_user
    beqz a0, syscall_fail
    mov  a0, s1
    call fs_lookup
    beqz a0, syscall_fail
    addi t0, s0, P_FILES          ; a free open-file slot
    li   t1, FIRST_FD
    li   t2, FIRST_FD + NFILE
sys_open_slot:
    ldw  t3, [t0]
    beqz t3, sys_open_found
    addi t0, t0, 8
    addi t1, t1, 1
    bne  t1, t2, sys_open_slot
    jmp  syscall_fail
sys_open_found:
    stw  a0, [t0]                 ; directory entry
    stw  zero, [t0 + 4]           ; offset
    mov  a0, t1
    jmp  syscall_return

; close(fd)
sys_close:
    call open_file
    beqz a0, syscall_fail
    stw  zero, [a0]
    li   a0, 0
    jmp  syscall_return

; open_file(fd a0) -> a0 = the process's open file for fd, or 0.
open_file:
    addi a0, a0, -FIRST_FD
    li   t0, NFILE
    bgeu a0, t0, open_file_none   ; (unsigned: fd 0 and 1 wrap around to huge)
    shli a0, a0, 3
    add  a0, a0, s0
    addi a0, a0, P_FILES
    ldw  t0, [a0]
    beqz t0, open_file_none
    ret
open_file_none:
    li   a0, 0
    ret

; spawn(name, argument) -> pid
sys_spawn:
    mov  s1, a0
    mov  s2, a1
    li   a1, NAME_MAX
    call check_user
    beqz a0, syscall_fail
    mov  a0, s2
    li   a1, ARG_SIZE
    call check_user
    beqz a0, syscall_fail
    mov  a0, s1
    mov  a1, s2
    ldw  a2, [s0 + P_PID]
    call proc_create
    jmp  syscall_return

; wait(pid) -> the child's exit status.  wait(0): collect every child that
; has exited, without waiting -> how many.
sys_wait:
    ldw  s1, [s0 + P_PID]
    beqz a0, sys_wait_reap
    call find_pid
    beqz a0, syscall_fail
    ldw  t0, [a0 + P_PARENT]
    bne  t0, s1, syscall_fail     ; not our child
    ldw  t0, [a0 + P_STATE]
    li   t1, ZOMBIE
    bne  t0, t1, sys_wait_block
    stw  zero, [a0 + P_STATE]     ; collected: the slot is free again
    ldw  a0, [a0 + P_STATUS]
    jmp  syscall_return
sys_wait_block:
    li   a0, WAITING              ; do_exit wakes us
    jmp  block
sys_wait_reap:
    la   t0, procs
    li   t1, NPROC
    li   a0, 0
sys_wait_reap_one:
    ldw  t2, [t0 + P_PARENT]
    bne  t2, s1, sys_wait_reap_next
    ldw  t2, [t0 + P_STATE]
    li   t3, ZOMBIE
    bne  t2, t3, sys_wait_reap_next
    stw  zero, [t0 + P_STATE]
    addi a0, a0, 1
sys_wait_reap_next:
    addi t0, t0, PROC_SIZE
    addi t1, t1, -1
    bnez t1, sys_wait_reap_one
    jmp  syscall_return

; kill(pid): end a child now.  Our own call is finished first (result 0,
; ready to run), because do_exit ends in the scheduler and never returns.
sys_kill:
    ldw  s1, [s0 + P_PID]
    call find_pid
    beqz a0, syscall_fail
    ldw  t0, [a0 + P_PARENT]
    bne  t0, s1, syscall_fail     ; not our child
    ldw  t0, [a0 + P_STATE]
    li   t1, ZOMBIE
    beq  t0, t1, sys_kill_ended   ; it has ended already
    mov  s1, a0
    stw  zero, [s0 + 4]
    ldw  t0, [s0]
    addi t0, t0, 4
    stw  t0, [s0]
    li   t0, RUNNABLE
    stw  t0, [s0 + P_STATE]
    mov  s0, s1
    li   a0, KILLED
    jmp  do_exit
sys_kill_ended:
    li   a0, 0
    jmp  syscall_return

sys_yield:
    li   t0, RUNNABLE             ; to the back of the queue
    stw  t0, [s0 + P_STATE]
    li   a0, 0
    jmp  syscall_return

; sleep(ticks)
sys_sleep:
    la   t0, ticks
    ldw  t0, [t0]
    add  t0, t0, a0
    addi t0, t0, 1                ; whole ticks: the current one has partly gone
    stw  t0, [s0 + P_WAKE]
    li   t0, SLEEPING
    stw  t0, [s0 + P_STATE]
    li   a0, 0
    jmp  syscall_return

sys_getpid:
    ldw  a0, [s0 + P_PID]
    jmp  syscall_return

; ps(): one line per process: pid, state, name.
sys_ps:
    la   a0, ps_header
    call puts
    la   s1, procs
    li   s2, NPROC
sys_ps_proc:
    ldw  t0, [s1 + P_STATE]
    beqz t0, sys_ps_next
    ldw  a0, [s1 + P_PID]
    call print_uint
    li   a0, '\t'
    call putc
    ldw  t0, [s1 + P_STATE]
    shli t0, t0, 2
    la   t1, state_names
    add  t0, t0, t1
    ldw  a0, [t0]
    call puts
    li   a0, '\t'
    call putc
    addi a0, s1, P_NAME
    call puts
    li   a0, '\n'
    call putc
sys_ps_next:
    addi s1, s1, PROC_SIZE
    addi s2, s2, -1
    bnez s2, sys_ps_proc
    li   a0, 0
    jmp  syscall_return

syscall_fail:
    li   a0, -1
    jmp  syscall_return

ps_header:      .asciz "PID\tSTATE\tNAME\n"
state_unused:   .asciz "unused"
state_runnable: .asciz "ready"
state_running:  .asciz "running"
state_sleeping: .asciz "sleeping"
state_waiting:  .asciz "waiting"
state_reading:  .asciz "reading"
state_zombie:   .asciz "zombie"
    .align 4
state_names:
    .word state_unused, state_runnable, state_running, state_sleeping
    .word state_waiting, state_reading, state_zombie
