// PVH entry: QEMU (qboot) jumps here in 32-bit protected mode with paging off
// and EBX = physical address of the hvm_start_info structure.
// We identity-map the first 4 GiB with 2 MiB pages, enter long mode and call
// `loader_main(start_info)` on a stack inside the loader image.

.section .note.Xen, "a", @note
    .balign 4
    .long 4                     // name size ("Xen\0")
    .long 8                     // descriptor size: 64-bit ELF
    .long 18                    // XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

.section .text.boot32, "ax"
.code32
.global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx

    // .bss holds the page tables and the stack: make sure it is zero.
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax

    mov eax, offset boot_pd
    or eax, 3
    mov dword ptr [boot_pdpt], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 8], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 16], eax
    add eax, 4096
    mov dword ptr [boot_pdpt + 24], eax

    // 2048 entries of 2 MiB: present | writable | huge.
    mov edi, offset boot_pd
    mov eax, 0x83
    mov ecx, 2048
1:
    mov dword ptr [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    dec ecx
    jnz 1b

    // Nothing programs the MTRRs on microvm, so their default type is UC and,
    // under KVM, every RAM access is uncached (~6000 cycles per read when nested).
    // Make the default write-back; MMIO is mapped uncached through PAT later.
    mov eax, 1
    cpuid
    test edx, 0x1000            // CPUID.1:EDX.MTRR
    jz 3f
    mov ecx, 0x2ff              // IA32_MTRR_DEF_TYPE
    rdmsr
    and eax, 0xfffff300         // clear type and FE (bit 10)
    or eax, 0x806               // E | WB
    wrmsr
3:
    mov eax, cr4
    or eax, 0x20                // PAE
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ecx, 0xC0000080         // EFER
    rdmsr
    or eax, 0x900               // LME | NXE
    wrmsr
    // Caches on (CD and NW may still be set from reset: every access would then
    // be uncached, which under nested KVM costs microseconds), paging on.
    mov eax, cr0
    and eax, 0x9fffffff         // clear CD | NW
    or eax, 0x80010001          // PG | WP | PE
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    // Far return into the 64-bit code segment (selector 0x08).
    mov ecx, 0x08
    push ecx
    mov eax, offset start64
    push eax
    retf

.code64
start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    xor ebp, ebp
    mov edi, esi
    call loader_main
2:
    hlt
    jmp 2b

.section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    // 64-bit code
    .quad 0x00cf92000000ffff    // data
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

.section .bss.boot_tables, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
boot_stack:
    .skip 65536
boot_stack_top:
