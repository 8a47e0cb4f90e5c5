; vm.s -- page tables.
;
; Every address space has the same top half: the kernel's page table, which
; maps the kernel and all of RAM at their own addresses for the supervisor
; only.  So the kernel keeps running, unchanged, whichever process's page
; directory is loaded, and it can reach any physical page by its address --
; while to user mode all of it is as good as not there (see mmu.py).  The
; bottom half is the process's own: USER_PAGES pages at USER_BASE.
;
; Memory is not allocated, it is assigned: process slot i owns a fixed page
; directory, page table and USER_SIZE bytes of RAM (layout.s).  A real kernel
; keeps a list of free pages instead; nothing else here would change.

.equ PTE_P,         1             ; isa.py: present, readable, writable, executable, user
.equ PTE_R,         2
.equ PTE_W,         4
.equ PTE_X,         8
.equ PTE_U,         16
.equ KERNEL_DIR,    KERNEL_PT + 0x1000   ; the page directory the kernel runs on before any process

; vm_init: map the kernel -- its code read-only and executable, everything
; after it writable and not executable; page 0 not at all -- and turn paging on.
vm_init:
    li   t0, KERNEL_PT + 4        ; entry 1: page 0 stays unmapped
    li   t1, KERNEL_BASE          ; physical address of the page being mapped
    la   t2, etext
    li   t3, RAM_TOP
vm_init_code:
    ori  t4, t1, PTE_P | PTE_R | PTE_X
    bltu t1, t2, vm_init_store
    ori  t4, t1, PTE_P | PTE_R | PTE_W
vm_init_store:
    stw  t4, [t0]
    addi t0, t0, 4
    li   t4, 4096
    add  t1, t1, t4
    bltu t1, t3, vm_init_code
    li   t0, KERNEL_DIR
    li   t1, KERNEL_PT | PTE_P
    stw  t1, [t0]                 ; directory entry 0 covers the first 4 MiB
    li   t0, KERNEL_DIR | 1
    mtsr ptbr, t0                 ; paging on: from here every address is translated
    ret

; vm_create(slot a0) -> a0 = the ptbr value for a fresh address space of that
; slot: the kernel's half, and USER_PAGES zeroed user pages at USER_BASE.
vm_create:
    push lr
    push s0
    push s1
    shli s0, a0, 13               ; * 0x2000
    li   t0, PROC_PT
    add  s0, s0, t0               ; s0 = page directory; its page table follows it
    li   t0, USER_SIZE
    mul  s1, a0, t0
    li   t0, USER_MEM
    add  s1, s1, t0               ; s1 = the slot's RAM
    mov  a0, s0
    li   a1, 8192
    call memzero                  ; directory and page table
    mov  a0, s1
    li   a1, USER_SIZE
    call memzero                  ; no process sees what the last one in this slot left
    li   t0, KERNEL_PT | PTE_P
    stw  t0, [s0]                 ; the kernel half
    li   t0, 4096
    add  t1, s0, t0               ; the user page table
    ori  t2, t1, PTE_P
    li   t3, (USER_BASE >> 22) * 4
    add  t3, s0, t3
    stw  t2, [t3]
    li   t3, USER_PAGES
    ori  t2, s1, PTE_P | PTE_R | PTE_W | PTE_X | PTE_U
vm_create_page:
    stw  t2, [t1]
    addi t1, t1, 4
    add  t2, t2, t0
    addi t3, t3, -1
    bnez t3, vm_create_page
    ori  a0, s0, 1                ; directory | paging on
    pop  s1
    pop  s0
    pop  lr
    ret

; memzero(address a0, bytes a1): a1 a multiple of 16.
memzero:
    add  t0, a0, a1
memzero_loop:
    stw  zero, [a0]
    stw  zero, [a0 + 4]
    stw  zero, [a0 + 8]
    stw  zero, [a0 + 12]
    addi a0, a0, 16
    bne  a0, t0, memzero_loop
    ret
