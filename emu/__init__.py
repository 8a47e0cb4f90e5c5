"""emu: an educational virtual machine for a toy instruction set."""
