; sieve -- the sieve of Eratosthenes: print the primes below 100 and how many
; primes there are below N.  Loads and stores of bytes, nested loops.
.include "lib.s"

.equ N, 10000               ; the benchmark assembles this with a larger N

_start:
    la   s0, composite      ; composite[i] != 0: i has a factor
    li   s1, 2              ; i
    li   t1, N
sieve:
    mul  t0, s1, s1         ; crossing out starts at i*i; done once i*i >= N
    bgeu t0, t1, count
    add  t2, s0, s1
    ldbu t3, [t2]
    bnez t3, next_i         ; a composite's multiples are already crossed out
    li   t3, 1
cross:
    add  t2, s0, t0
    stb  t3, [t2]
    add  t0, t0, s1
    bltu t0, t1, cross
next_i:
    addi s1, s1, 1
    b    sieve

count:
    li   s1, 2              ; i
    li   s2, 0              ; primes found
count_next:
    add  t2, s0, s1
    ldbu t3, [t2]
    bnez t3, count_skip
    addi s2, s2, 1
    slti t0, s1, 100
    beqz t0, count_skip
    mov  a0, s1
    call print_uint
    li   a0, ' '
    call putc
count_skip:
    addi s1, s1, 1
    li   t0, N
    bltu s1, t0, count_next

    li   a0, '\n'
    call putc
    la   a0, below
    call puts
    li   a0, N
    call print_uint
    li   a0, ':'
    call putc
    li   a0, ' '
    call putc
    mov  a0, s2
    call print_uint
    li   a0, '\n'
    call putc
    exit 0

below:
    .asciz "primes below "

    .align 4096             ; data on its own page, away from the code
composite:
    .space N
