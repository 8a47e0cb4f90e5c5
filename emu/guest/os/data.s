; data.s -- every variable of the kernel, on writable, non-executable pages.

    .align 4
current:    .word 0               ; the process running now, 0 when idle
last_slot:  .word NPROC - 1       ; where the scheduler's round-robin resumes
next_pid:   .word 1
ticks:      .word 0               ; timer interrupts so far
timer_on:   .word 0
cin_head:   .word 0               ; console ring (console.s): next byte to read,
cin_tail:   .word 0               ;   end of the whole lines,
cin_edit:   .word 0               ;   end of the line being typed
cin_eof:    .word 0
procs:      .space NPROC * PROC_SIZE
dir_cache:  .space DIR_SECTORS * SECTOR
sector_buf: .space SECTOR
cin_buf:    .space CIN_SIZE
            .space 2048
kstack_top:
