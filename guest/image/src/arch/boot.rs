//! PVH entry: QEMU's `-kernel` loader finds `pvh_start32` through the Xen ELF
//! note and jumps to it in 32-bit protected mode, paging off, with EBX holding
//! the physical address of `hvm_start_info`.
//!
//! The stub zeroes .bss, identity-maps the first 4 GiB with 2 MiB pages, turns
//! on long mode and SSE (the prebuilt `core` uses SSE and cannot be built
//! without it on stable Rust), and calls `kmain(start_info)` on a 64 KiB stack.
//! See docs/guest-build.md ("Boot") for why each step is there.

core::arch::global_asm!(
    r#"
    /* XEN_ELFNOTE_PHYS32_ENTRY: name "Xen", type 18, an 8-byte descriptor.
       The descriptor must be 8 bytes and the section 4-aligned: QEMU 7.2
       reads it as a size_t and pads the name to the PT_NOTE's alignment. */
    .section .note.Xen, "a"
    .p2align 2
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .bss.boot, "aw", @nobits
    .p2align 12
boot_pml4:      .skip 4096
boot_pdpt:      .skip 4096
boot_pd:        .skip 4096 * 4
    .p2align 4
boot_stack:     .skip 65536
boot_stack_top:

    .section .data
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff      /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff      /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                /* keep start_info across the bss wipe */

    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* 2048 page-directory entries of 2 MiB: present | writable | huge. */
    mov $boot_pd, %edi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    /* Four PDPT entries, one per page directory, and one PML4 entry. */
    mov $boot_pdpt, %edi
    mov $boot_pd, %eax
    or $0x3, %eax
    xor %ecx, %ecx
2:  mov %eax, (%edi, %ecx, 8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jne 2b
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4

    mov $boot_pml4, %eax
    mov %eax, %cr3

    /* CR4: PAE | OSFXSR | OSXMMEXCPT. */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4

    /* EFER.LME */
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr

    /* CR0: PG | PE | MP, clear EM, NW and CD. */
    mov %cr0, %eax
    and $0x9ffffffb, %eax
    or $0x80000003, %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    lea boot_stack_top(%rip), %rsp
    xor %rbp, %rbp
    fninit
    mov %esi, %edi                /* kmain(start_info: u32) */
    call kmain
3:  cli
    hlt
    jmp 3b
    "#,
    options(att_syntax)
);
