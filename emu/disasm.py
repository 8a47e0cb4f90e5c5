"""The disassembler: a program image back to assembly source.

Lecture idea: a hypervisor that emulates a CPU has to *read* guest code, and a
person debugging a guest has to as well.  Decoding is ``isa.decode`` -- the same
table the CPU uses -- so the disassembler can never disagree with the machine.

The output is itself valid input to the assembler, and assembling it gives
back the same bytes: labels come from the image's symbol table, branch
targets without a label are written as absolute addresses, and words that
are not instructions become ``.word`` directives.
"""

from . import isa


def disassemble(image):
    symbols = {}
    for name, value in sorted(image.symbols.items()):
        symbols.setdefault(value, []).append(name)

    def label_for(addr):
        names = symbols.get(addr)
        return sorted(names, key=lambda n: (n.startswith((".", "_")), n))[0] if names else None

    out = [f"; disassembly of an emu image, entry {image.entry:#010x}"]
    placed = set()

    def labels_at(addr):
        for name in symbols.get(addr, ()):
            out.append(f"{name}:")
        placed.add(addr)

    for start, data in sorted(image.segments):
        out.append(f"    .org {start:#010x}")
        addr, end = start, start + len(data)
        while addr < end:
            labels_at(addr)
            offset = addr - start
            if addr % 4 or end - addr < 4:
                out.append(f"    .byte {data[offset]:#04x}")
                addr += 1
                continue
            word = int.from_bytes(data[offset:offset + 4], "little")
            text = isa.disassemble_word(word, addr, label_for)
            out.append(f"    {text:<32} ; {addr:08x}: {word:08x}")
            addr += 4
        if end in symbols and end not in placed:
            labels_at(end)
    # Labels outside every segment (say, the end of a .space at the very end).
    for addr in sorted(set(symbols) - placed):
        out.append(f"    .org {addr:#010x}")
        labels_at(addr)
    return "\n".join(out) + "\n"
