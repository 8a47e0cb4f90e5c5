; fs.s -- the file system: read-only, flat, on the disk (layout.s).
;
; The superblock and the directory are read once at start-up and kept in
; memory.  A file is a run of consecutive sectors, so reading byte `offset`
; of a file is reading sector start + offset / 512: no block maps, no inodes.
; emu/mkfs.py writes such disks.

; fs_init() -> a0 = 1 if the disk holds a file system (directory now in dir_cache), else 0.
fs_init:
    push lr
    li   a0, 1
    la   a1, sector_buf
    li   a2, 1
    call disk_read
    la   t0, sector_buf
    ldw  t1, [t0 + SB_MAGIC]
    la   t2, FS_MAGIC
    li   a0, 0
    bne  t1, t2, fs_init_done
    ldw  a0, [t0 + SB_DIR]
    la   a1, dir_cache
    li   a2, DIR_SECTORS
    call disk_read
    li   a0, 1
fs_init_done:
    pop  lr
    ret

; fs_lookup(name a0) -> a0 = its directory entry, or 0.
fs_lookup:
    push lr
    push s0
    push s1
    push s2
    mov  s0, a0
    la   s1, dir_cache
    li   s2, NDIRENT
fs_lookup_entry:
    ldbu t0, [s1]
    beqz t0, fs_lookup_next       ; a free entry
    mov  a0, s0
    mov  a1, s1
    li   a2, NAME_MAX
    call strneq
    bnez a0, fs_lookup_found
fs_lookup_next:
    addi s1, s1, DIRENT
    addi s2, s2, -1
    bnez s2, fs_lookup_entry
    li   a0, 0
    b    fs_lookup_done
fs_lookup_found:
    mov  a0, s1
fs_lookup_done:
    pop  s2
    pop  s1
    pop  s0
    pop  lr
    ret

; file_read(open file a0, user buffer a1, count a2) -> a0 = bytes read, 0 at
; the end of the file.  Reads at most to the end of the current sector; the
; caller asks again for more, as with any Unix read.
file_read:
    push lr
    push s0
    push s1
    push s2
    mov  s0, a0                   ; the open file: entry, offset
    mov  s1, a1
    mov  s2, a2
    ldw  t0, [s0]                 ; directory entry
    ldw  t1, [s0 + 4]             ; offset
    ldw  t2, [t0 + DE_SIZE]
    sub  t3, t2, t1               ; bytes left in the file
    li   a0, 0
    bgeu t1, t2, file_read_done
    beqz s2, file_read_done
    bgeu s2, t3, file_read_clip_file
    b    file_read_clip_sector
file_read_clip_file:
    mov  s2, t3
file_read_clip_sector:
    andi t4, t1, SECTOR - 1
    li   t3, SECTOR
    sub  t3, t3, t4               ; bytes left in this sector
    bgeu t3, s2, file_read_sector
    mov  s2, t3
file_read_sector:
    ldw  a0, [t0 + DE_START]
    shri t1, t1, 9
    add  a0, a0, t1
    la   a1, sector_buf
    li   a2, 1
    call disk_read
    ldw  t1, [s0 + 4]
    andi t4, t1, SECTOR - 1
    la   t0, sector_buf
    add  t0, t0, t4               ; from here in the buffer ...
    li   t2, 0
file_read_copy:
    add  t3, t0, t2
    ldbu t3, [t3]
    add  t4, s1, t2
    stb  t3, [t4]                 ; ... to the user's buffer
    addi t2, t2, 1
    bne  t2, s2, file_read_copy
    add  t1, t1, s2
    stw  t1, [s0 + 4]
    mov  a0, s2
file_read_done:
    pop  s2
    pop  s1
    pop  s0
    pop  lr
    ret

; -- strings --------------------------------------------------------------------

; strlcpy(destination a0, source a1, size a2): copy at most size - 1 bytes
; and always end the destination with a NUL.
strlcpy:
    addi a2, a2, -1
strlcpy_byte:
    beqz a2, strlcpy_end
    ldbu t0, [a1]
    beqz t0, strlcpy_end
    stb  t0, [a0]
    addi a0, a0, 1
    addi a1, a1, 1
    addi a2, a2, -1
    b    strlcpy_byte
strlcpy_end:
    stb  zero, [a0]
    ret

; strneq(a a0, b a1, n a2) -> a0 = 1 if the strings are equal in their first n bytes.
strneq:
    beqz a2, strneq_yes
    ldbu t0, [a0]
    ldbu t1, [a1]
    bne  t0, t1, strneq_no
    beqz t0, strneq_yes
    addi a0, a0, 1
    addi a1, a1, 1
    addi a2, a2, -1
    b    strneq
strneq_yes:
    li   a0, 1
    ret
strneq_no:
    li   a0, 0
    ret
